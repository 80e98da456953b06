"""Shared fixtures: models the tests export themselves, TF Serving's own test models, and a
Jupyter server (pytest-jupyter) with the extension serving a per-test repository."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "tfserving"


def testdata_or_skip() -> Path:
    """TF Serving's test models beside the project (../shared), or skip saying why."""
    if not (TESTDATA / "README.md").is_file():
        pytest.skip(f"TF Serving's test models are not at {TESTDATA} (../shared is absent)")
    return TESTDATA


@pytest.fixture(scope="session")
def testdata() -> Path:
    return testdata_or_skip()


@pytest.fixture(scope="session")
def exported_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository of small models exported once per session with TensorFlow:

    - ``half_plus_two/1``: y = 0.5 x + 2, x float [-1, 1] (the demo's model)
    - ``half_plus_two/2``: y = 0.5 x + 2 again, but a different graph (for swaps)
    - ``multi/1``: inputs a float [-1, 2], b int32 [-1], s string [-1]; outputs total = sum(a)+b,
      doubled = 2a, echo_bytes = s, upper = s in upper case; plus a ``scalar`` signature
    - ``keras/1``: a Keras 3 Dense model exported with ``model.export``
    """
    import numpy as np
    import tensorflow as tf

    from jupyter_tfserving.demo import export_half_plus_two

    root = tmp_path_factory.mktemp("exported")
    export_half_plus_two(str(root / "half_plus_two"), 1)

    class HalfPlusTwoV2(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": x / 2.0 + 2.0}

    v2 = HalfPlusTwoV2()
    tf.saved_model.save(v2, str(root / "half_plus_two" / "2"),
                        signatures={"serving_default": v2.serve})

    class Multi(tf.Module):
        @tf.function(input_signature=[
            tf.TensorSpec([None, 2], tf.float32, name="a"),
            tf.TensorSpec([None], tf.int32, name="b"),
            tf.TensorSpec([None], tf.string, name="s"),
        ])
        def serve(self, a: tf.Tensor, b: tf.Tensor, s: tf.Tensor) -> dict[str, tf.Tensor]:
            return {
                "total": tf.reduce_sum(a, axis=1) + tf.cast(b, tf.float32),
                "doubled": 2.0 * a,
                "echo_bytes": s,
                "upper": tf.strings.upper(s),
            }

        @tf.function(input_signature=[tf.TensorSpec([], tf.float32, name="v")])
        def scalar(self, v: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"w": v * 3.0}

    multi = Multi()
    tf.saved_model.save(multi, str(root / "multi" / "1"),
                        signatures={"serving_default": multi.serve, "scalar": multi.scalar})

    import keras

    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(2)])
    model.export(str(root / "keras" / "1"), verbose=False)
    np.save(root / "keras_probe.npy", np.asarray(model(np.eye(3, dtype="float32"))))
    return root


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


@pytest.fixture
def publish(exported_models: Path, model_root: Path) -> Callable[..., Path]:
    """``publish(model, version, as_name=None, as_version=None)`` copies an exported version
    into the test's repository atomically (copy beside, then rename), like a real publisher."""

    def _publish(model: str, version: int, as_name: str | None = None,
                 as_version: int | None = None, source: Path | None = None) -> Path:
        src = (source or exported_models) / model / str(version)
        dest_dir = model_root / (as_name or model)
        dest_dir.mkdir(exist_ok=True)
        staging = dest_dir / f".staging-{as_version or version}"
        shutil.copytree(src, staging)
        target = dest_dir / str(as_version or version)
        os.replace(staging, target)
        return target

    return _publish


@pytest.fixture
def tfserving_config() -> dict:
    """Extra TFServingApp config for a test (override in a module to change it)."""
    return {}


@pytest.fixture
def jp_server_config(model_root: Path, tfserving_config: dict) -> dict:
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_tfserving": True}},
        "TFServingApp": {
            "model_root": str(model_root),
            "file_system_poll_wait_seconds": 0.1,
            "max_num_load_retries": 0,
            **tfserving_config,
        },
    }


class RestClient:
    """Calls the extension's REST API on the test server and returns (status, JSON body)."""

    def __init__(self, http_server_client, base_url: str, token: str) -> None:
        self._client = http_server_client
        self.prefix = base_url.rstrip("/") + "/tfserving"
        self.token = token

    async def call(self, path: str, body: bytes | str | dict | None = None, *,
                   method: str | None = None, headers: dict | None = None,
                   auth: bool = True) -> tuple[int, object, dict]:
        import json as _json

        if isinstance(body, dict):
            body = _json.dumps(body)
        hdrs = dict(headers or {})
        if auth:
            hdrs.setdefault("Authorization", f"token {self.token}")
        response = await self._client.fetch(
            self.prefix + path,
            method=method or ("GET" if body is None else "POST"),
            body=body,
            headers=hdrs,
            raise_error=False,
            request_timeout=60,
            allow_nonstandard_methods=True,
        )
        text = response.body.decode() if response.body else ""
        try:
            data = _json.loads(text)
        except ValueError:
            data = text
        return response.code, data, dict(response.headers)

    async def wait_for(self, model: str, version: int, state: str = "AVAILABLE",
                       timeout: float = 60.0) -> dict:
        """Poll the model status until ``version`` reaches ``state``; returns its entry."""
        import asyncio
        import time

        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            code, data, _ = await self.call(f"/v1/models/{model}")
            last = data
            if code == 200:
                for entry in data["model_version_status"]:
                    if entry["version"] == str(version) and entry["state"] == state:
                        return entry
            await asyncio.sleep(0.05)
        raise AssertionError(f"{model}/{version} did not reach {state}; last status {last}")


@pytest.fixture
def rest(jp_serverapp, http_server_client, jp_base_url) -> RestClient:
    return RestClient(http_server_client, jp_base_url, jp_serverapp.identity_provider.token)
