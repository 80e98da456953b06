"""TFServingApp as a whole: configuration, start-up without TensorFlow, hot swaps under traffic,
failed loads, and the standalone and demo commands."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets import TraitError

from jupyter_tfserving.app import TFServingApp

ROOT = Path(__file__).resolve().parents[1]


def test_every_trait_has_help():
    names = [
        "model_root", "model_config_file", "file_system_poll_wait_seconds",
        "model_config_file_poll_wait_seconds", "url_prefix",
        "allow_version_labels_for_unavailable_models", "max_num_load_retries",
        "rest_api_timeout_in_ms",
    ]
    traits = TFServingApp.class_traits(config=True)
    for name in names:
        assert name in traits and traits[name].help, name


def test_traits_become_plain_options(tmp_path):
    app = TFServingApp(model_root=str(tmp_path / "r"), max_num_load_retries=2,
                       rest_api_timeout_in_ms=0, url_prefix="/serve/", shadow_max_pending=8,
                       shadow_max_cpu_share=0.25, request_log_max_file_bytes=1000)
    options = app.service_options()
    assert options.model_root == str(tmp_path / "r")
    assert (options.shadow_max_pending, options.shadow_max_cpu_share) == (8, 0.25)
    assert options.request_log_max_file_bytes == 1000
    with pytest.raises(TraitError, match="shadow_max_cpu_share"):
        TFServingApp(shadow_max_cpu_share=0)
    assert options.manager.max_num_load_retries == 2
    assert options.request_timeout_seconds is None
    assert app.api_prefix == "/serve"


def test_empty_repository_starts_without_tensorflow(tmp_path):
    code = f"""
import sys
from jupyter_server.serverapp import ServerApp
app = ServerApp.instance()
app.initialize(argv=["--allow-root", "--port=0", "--ServerApp.open_browser=False",
                     "--TFServingApp.model_root={tmp_path}",
                     "--ServerApp.jpserver_extensions={{'jupyter_tfserving': True}}"],
               find_extensions=False)
ext = app.web_app.settings["jupyter_tfserving.service"]
ext.control.reload()
print("LOADED" if "jupyter_tfserving" in app.extension_manager.extensions else "MISSING")
tf_loaded = any(m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules)
print("TF" if tf_loaded else "NO-TF")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["LOADED", "NO-TF"], out.stdout + out.stderr[-3000:]


async def test_hot_swap_keeps_every_request_succeeding(rest, publish, model_root):
    publish("half_plus_two", 1)
    await rest.wait_for("half_plus_two", 1)
    results: list[tuple[int, str]] = []
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            code, data, headers = await rest.call("/v1/models/half_plus_two:predict",
                                                  {"instances": [[4.0]]})
            assert (code, data) == (200, {"predictions": [[4.0]]}), (code, data)
            results.append((code, headers["X-Model-Version"]))

    clients = [asyncio.create_task(client()) for _ in range(4)]
    await asyncio.sleep(0.3)
    publish("half_plus_two", 2)  # a new version directory appears, renamed into place
    await rest.wait_for("half_plus_two", 2)
    await rest.wait_for("half_plus_two", 1, state="END")
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*clients)
    versions = [v for _, v in results]
    assert set(versions) == {"1", "2"}
    # Once version 2 answered, version 1 never answered again (no flapping back).
    assert "1" not in versions[versions.index("2") + 4:]


async def test_failed_new_version_leaves_the_old_one_serving(rest, publish, model_root):
    publish("half_plus_two", 1)
    await rest.wait_for("half_plus_two", 1)
    broken = model_root / "half_plus_two" / "5"
    staging = model_root / "half_plus_two" / ".staging"
    staging.mkdir()
    (staging / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    os.replace(staging, broken)
    entry = await rest.wait_for("half_plus_two", 5, state="END")
    assert entry["status"]["error_code"] != "OK"
    assert entry["status"]["error_message"]
    code, data, headers = await rest.call(
        "/v1/models/half_plus_two:predict", {"instances": [[0.0]]}
    )
    assert (code, data, headers["X-Model-Version"]) == (200, {"predictions": [[2.0]]}, "1")
    code, data, _ = await rest.call("/v1/models/half_plus_two")
    assert [(s["version"], s["state"]) for s in data["model_version_status"]] == [
        ("5", "END"), ("1", "AVAILABLE")]


async def test_removed_model_directory_unloads_it(rest, publish, model_root):
    publish("half_plus_two", 1)
    await rest.wait_for("half_plus_two", 1)
    shutil.rmtree(model_root / "half_plus_two")
    await rest.wait_for("half_plus_two", 1, state="END")
    code, data, _ = await rest.call("/v1/models/half_plus_two:predict", {"instances": [[0.0]]})
    assert code == 404


def test_standalone_command_help():
    out = subprocess.run([sys.executable, "-m", "jupyter_tfserving", "--help-all"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--TFServingApp.model_root" in out.stdout


def test_server_config_enables_the_extension():
    from jupyter_core.paths import jupyter_config_path

    found = []
    for directory in jupyter_config_path():
        path = Path(directory) / "jupyter_server_config.d" / "jupyter_tfserving.json"
        if path.is_file():
            found.append(json.loads(path.read_text()))
    assert {"ServerApp": {"jpserver_extensions": {"jupyter_tfserving": True}}} in found


def test_demo_serves_and_answers(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_tfserving.demo", "--check",
         "--model-root", str(tmp_path / "models")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert '{"predictions":' in out.stdout and "curl -H" in out.stdout
    curl = next(line for line in out.stdout.splitlines() if "try:" in line)
    assert "/tfserving/v1/models/half_plus_two:predict" in curl
    assert "Predict y = [2.5, 3.0, 4.5]" in out.stdout  # the same rows over gRPC


def test_batching_options_from_traits_file_and_per_model(tmp_path):
    from tests.conftest import testdata_or_skip

    app = TFServingApp(model_root=str(tmp_path), max_batch_size=16, batch_timeout_micros=500,
                       allowed_batch_sizes=[4, 16],
                       model_batching_parameters={"slow": {"max_batch_size": 4,
                                                           "allowed_batch_sizes": [4]}})
    options = app.service_options()
    assert (options.batching.max_batch_size, options.batching.batch_timeout_micros) == (16, 500)
    assert options.batching.allowed_batch_sizes == (4, 16)
    assert options.model_batching["slow"].max_batch_size == 4
    assert options.model_batching["slow"].batch_timeout_micros == 500
    unbatched = TFServingApp(model_root=str(tmp_path), enable_batching=False)
    assert unbatched.service_options().batching is None

    testdata = testdata_or_skip()
    from_file = TFServingApp(model_root=str(tmp_path),
                             batching_parameters_file=str(testdata / "batching_config.txt"))
    params = from_file.service_options().batching
    assert (params.max_batch_size, params.batch_timeout_micros, params.max_enqueued_batches,
            params.num_batch_threads) == (128, 0, 1000000, 8)


def test_invalid_batching_traits_are_refused(tmp_path):
    from jupyter_tfserving.core.status import ServingError

    with pytest.raises(ServingError):
        TFServingApp(model_root=str(tmp_path), max_batch_size=8,
                     allowed_batch_sizes=[4, 6]).service_options()


def test_auto_batch_timeout_from_traits_file_per_model_and_command_line(tmp_path):
    """batch_timeout_micros='auto' (ours) with batch_latency_target_ms: from the traits, over
    a batching_parameters_file's value (TF Serving's format cannot say it; a number there is
    the file's to say), per model, and from Jupyter's command line."""
    from traitlets.config.loader import KVArgParseConfigLoader

    app = TFServingApp(model_root=str(tmp_path), batch_timeout_micros="auto",
                       batch_latency_target_ms=15.0,
                       model_batching_parameters={"fixed": {"batch_timeout_micros": 200},
                                                  "slow": {"batch_latency_target_ms": 50}})
    options = app.service_options()
    assert options.batching.adaptive and options.batching.batch_latency_target_ms == 15.0
    assert options.model_batching["fixed"].batch_timeout_micros == 200
    assert options.model_batching["slow"].adaptive
    assert options.model_batching["slow"].batch_latency_target_ms == 50
    per_model = TFServingApp(model_root=str(tmp_path), model_batching_parameters={
        "m": {"batch_timeout_micros": "auto", "batch_latency_target_ms": 30}})
    assert not per_model.service_options().batching.adaptive
    assert per_model.service_options().model_batching["m"].adaptive

    config_file = tmp_path / "batching.txt"
    config_file.write_text("max_batch_size { value: 64 } batch_timeout_micros { value: 900 }")
    over_file = TFServingApp(model_root=str(tmp_path), batching_parameters_file=str(config_file),
                             batch_timeout_micros="auto", batch_latency_target_ms=40.0)
    params = over_file.service_options().batching
    assert (params.max_batch_size, params.batch_timeout_micros,
            params.batch_latency_target_ms) == (64, "auto", 40.0)
    file_only = TFServingApp(model_root=str(tmp_path), batching_parameters_file=str(config_file),
                             batch_timeout_micros=5)
    assert file_only.service_options().batching.batch_timeout_micros == 900

    loader = KVArgParseConfigLoader(["--TFServingApp.batch_timeout_micros=auto",
                                     "--TFServingApp.batch_latency_target_ms=12.5"],
                                    classes=[TFServingApp])
    from_cli = TFServingApp(model_root=str(tmp_path), config=loader.load_config())
    assert from_cli.service_options().batching.adaptive
    assert from_cli.service_options().batching.batch_latency_target_ms == 12.5


@pytest.mark.parametrize(("traits", "fragment"), [
    ({"batch_timeout_micros": "soon"}, "or 'auto'; was 'soon'"),
    ({"batch_timeout_micros": "auto", "batch_latency_target_ms": 0.0},
     "batch_latency_target_ms must be a positive number of milliseconds"),
    ({"model_batching_parameters": {"m": {"batch_timeout_micros": "later"}}}, "'later'"),
    ({"model_batching_parameters": {"m": {"batch_latency_target_ms": -1}}}, "was -1"),
])
def test_bad_auto_batching_traits_are_invalid_argument(tmp_path, traits, fragment):
    from jupyter_tfserving.core.status import Code, ServingError

    with pytest.raises(ServingError) as info:
        TFServingApp(model_root=str(tmp_path), **traits).service_options()
    assert info.value.code == Code.INVALID_ARGUMENT
    assert fragment in info.value.message
    config_file = tmp_path / "batching.txt"
    config_file.write_text("max_batch_size { value: 64 }")
    if "batch_timeout_micros" in traits:  # over a file too
        with pytest.raises(ServingError):
            TFServingApp(model_root=str(tmp_path), batching_parameters_file=str(config_file),
                         **traits).service_options()
