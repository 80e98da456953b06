"""serve(), ServedModel, the client's server discovery, %tfserving and exports, against the
embedded server (a real ModelService + the extension's handlers on a thread of this process)."""

from __future__ import annotations

import json
import re
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from jupyter_tfserving.kernel import client as client_module
from jupyter_tfserving.kernel.client import ServerUnavailable, TFServingClient, TFServingError
from jupyter_tfserving.kernel.export import export_version
from jupyter_tfserving.kernel.magics import tfserving_magic
from jupyter_tfserving.kernel.serving import serve


def double(x):
    return np.asarray(x) * 2.0


def test_serve_a_callable_and_call_it(server, capsys):
    m = serve(double, name="double", example=np.ones((1, 2), np.float32))
    assert m.version == 1 and m.client.url == server.url
    np.testing.assert_allclose(m.predict([[1.0, 2.0]]), [[2.0, 4.0]])
    out = capsys.readouterr().out
    assert "double version 1 is AVAILABLE" in out and m.curl() in out
    assert '"instances": [[1.0, 1.0]]' in m.curl()  # shaped like the example
    assert m.status()["state"] == "AVAILABLE" and m.status()["traffic"] == 1.0


def test_keras_model_answers_as_itself(server, exported_models: Path):
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    m = serve(model, name="k", quiet=True)
    x = np.random.rand(5, 4).astype("float32")
    np.testing.assert_allclose(m.predict(x), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    # a SavedModel directory serves as it is
    m2 = serve(exported_models / "half_plus_two" / "1", name="hpt", quiet=True)
    np.testing.assert_allclose(m2.predict([[1.0], [4.0]]), [[2.5], [4.0]])


@pytest.mark.parametrize("name", ["../x", "a/b", "", "x" * 300, ".hidden"])
def test_bad_names_are_refused_before_anything_is_sent(isolated, name):
    with pytest.raises(ValueError, match="Invalid model name"):
        serve(double, name=name)


def test_objects_that_cannot_be_served_are_refused(isolated, tmp_path):
    with pytest.raises(ValueError, match="not callable"):
        serve(42, name="x")
    with pytest.raises(ValueError, match="pickle"):
        serve(lambda x, lock=threading.Lock(): x, name="x")  # noqa: B008  a lock cannot be pickled
    with pytest.raises(ValueError, match="not a SavedModel"):
        serve(str(tmp_path), name="x")
    with pytest.raises(ValueError, match="canary"):
        serve(double, name="x", canary=2.0)


def test_a_load_error_is_raised_with_the_servers_message(server):
    def broken(x):
        raise RuntimeError("boom")

    # the python platform loads fine, but a model whose example call fails cannot be exported
    with pytest.raises(ValueError, match="boom"):
        serve(broken, name="broken", example=np.ones((1, 1)))


def test_a_server_that_went_away_is_a_clear_error(isolated):
    client = TFServingClient("http://127.0.0.1:9/tfserving", "t", timeout=2)
    with pytest.raises(ServerUnavailable, match="not reachable"):
        client.models()
    assert not client.ping()


def test_find_server_prefers_the_environment_then_running_servers(server, isolated,
                                                                 monkeypatch):
    assert client_module.find_server().url == server.url
    monkeypatch.setenv(client_module.ENV_TOKEN, "wrong")
    assert client_module.find_server() is None  # a server that refuses the token is not it
    monkeypatch.delenv(client_module.ENV_URL)
    # a jpserver-*.json in the runtime dir, as a running Jupyter server writes it
    info = {"url": server.url.rsplit("/tfserving", 1)[0] + "/", "token": server.token,
            "base_url": "/"}
    (isolated / "runtime" / "jpserver-123.json").write_text(json.dumps(info))
    assert client_module.find_server().url == server.url


def test_embedded_fallback_starts_once_and_says_so(isolated, monkeypatch, capsys):
    from jupyter_tfserving.kernel import embedded

    monkeypatch.setenv(embedded.ENV_MODEL_ROOT, str(isolated / "embedded-models"))
    try:
        m = serve(double, name="d", quiet=True)
        err = capsys.readouterr().err
        assert err.count("serving from this process") == 1
        serve(double, name="e", quiet=True)
        assert "serving from this process" not in capsys.readouterr().err
        assert (isolated / "embedded-models" / "d" / "1" / "servable.json").is_file()
        assert m.client.url.startswith("http://127.0.0.1:")
    finally:
        embedded.stop_embedded_server()


def test_the_magic_lists_and_acts_and_reports_errors(server, capsys):
    serve(double, name="magic", quiet=True)
    serve(double, name="magic", quiet=True)
    tfserving_magic("list")
    out = capsys.readouterr().out
    assert "magic" in out and "stable" in out and "AVAILABLE" in out
    tfserving_magic("rollback magic")
    assert "v1" in capsys.readouterr().out
    tfserving_magic("promote nope")
    assert "Could not find model nope" in capsys.readouterr().out
    tfserving_magic("unload magic 1")  # stable: refused with the server's reason
    assert "carries the label" in capsys.readouterr().out
    tfserving_magic(f"export-config {server.model_root}/handoff.config")
    out = capsys.readouterr().out
    assert "tensorflow_model_server --model_config_file=" in out
    assert "left out magic: served by the python platform" in out  # TF Serving cannot load it
    handoff = Path(server.model_root, "handoff.config").read_text()
    assert handoff.startswith("model_config_list")
    tfserving_magic("frobnicate")
    assert "Unknown subcommand" in capsys.readouterr().out


def test_served_model_errors_carry_the_server_message(server):
    m = serve(double, name="solo", quiet=True)
    with pytest.raises(TFServingError) as err:
        m.canary(0.5)  # nothing to canary against: it is the only version
    assert err.value.status == 400 and "AVAILABLE" in err.value.message


def test_a_tf_module_with_an_input_signature_is_served(server):
    import io
    import tarfile

    import tensorflow as tf

    class Times3(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="v")])
        def serve(self, v):
            return {"w": v * 3.0}

    module = Times3()
    with tarfile.open(fileobj=io.BytesIO(export_version(module))) as tar:
        names = tar.getnames()
    assert "saved_model.pb" in names and not any(n.startswith(("/", "..")) for n in names)
    m = serve(module, name="times3", quiet=True)
    np.testing.assert_allclose(m.predict([1.0, 2.0]), [3.0, 6.0])


def _warmup_records(archive: bytes) -> list:
    """The PredictionLog records of an exported version's warmup file (none: [])."""
    import io
    import tarfile

    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from jupyter_tfserving.platforms.warmup import WARMUP_FILE

    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            if WARMUP_FILE not in tar.getnames():
                return []
            tar.extract(WARMUP_FILE, tmp, filter="data")
        return [prediction_log_pb2.PredictionLog.FromString(raw) for raw in
                tf.data.TFRecordDataset(str(Path(tmp, WARMUP_FILE))).as_numpy_iterator()]


def test_serve_with_an_example_warms_the_version_up_before_it_is_available(
        server, exported_models: Path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    x = np.random.rand(5, 4)  # float64 rows: cast to the signature's DT_FLOAT
    m = serve(model, name="warm", example=x, quiet=True)
    warmup = m.status()["warmup"]  # what ran before AVAILABLE, which serve() waited for
    assert warmup["requests"] == 1 and warmup["seconds"] >= 0
    assert '"instances": [[' in m.curl()  # the example's first row
    # a SavedModel directory: a copy gets the records, the caller's files stay as they were
    source = exported_models / "half_plus_two" / "1"
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    m2 = serve(source, name="warm_hpt", example={"x": [[1.0], [2.0]]}, quiet=True)
    assert m2.status()["warmup"]["requests"] == 1
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before
    # logged requests are written as they are, one warmup request each
    (record,) = _warmup_records(export_version(source, example=np.ones((3, 1), np.float32),
                                               model_name="hpt"))
    request = record.predict_log.request
    assert (request.model_spec.name, request.model_spec.signature_name) == (
        "hpt", "serving_default")
    m3 = serve(source, name="warm_logs", example=[record] * 3, quiet=True)
    assert m3.status()["warmup"]["requests"] == 3
    np.testing.assert_allclose(m3.predict([[2.0]]), [[3.0]])
    # without an example nothing is replayed
    assert serve(source, name="cold", quiet=True).status()["warmup"] is None


def test_an_example_that_does_not_fit_the_model_is_refused_before_anything_is_sent(
        isolated, exported_models: Path):
    from tensorflow_serving.apis import predict_pb2

    source = exported_models / "half_plus_two" / "1"
    for example, words in [
        ({"y": np.ones((1, 1))}, "does not fit the serving_default signature"),
        (np.ones((2, 3)), "takes shape (None, 1)"),
        (np.array([["a"]]), "takes DT_FLOAT"),
        ([predict_pb2.PredictRequest()], "not a tensorflow.serving.PredictionLog"),
        ([], "The example is empty"),
        ({"x": [[1.0], [2.0, 3.0]]}, "The example's x is not an array"),
    ]:
        with pytest.raises(ValueError, match=re.escape(words)):
            serve(source, name="x", example=example)
    multi = exported_models / "multi" / "1"
    with pytest.raises(ValueError, match=re.escape("takes 3 inputs (a, b, s)")):
        serve(multi, name="x", example=np.ones((1, 2)))
    with pytest.raises(ValueError, match="for TensorFlow models"):
        serve(double, name="x", example={"x": np.ones((1, 2))})
