"""TF Lite versions (``model.tflite``), served as TF Serving serves them with
``--prefer_tflite_model``: its signature rules (SignatureDefs stored in the model's metadata,
else one made from the model's tensors), batched inputs resized, errors with codes. The models
are converted here with TensorFlow's own converter."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jupyter_tfserving.core.servable import LoadSpec
from jupyter_tfserving.core.status import Code, ServingError, SignatureNotFound
from jupyter_tfserving.platforms import make_loader
from jupyter_tfserving.platforms.tensorflow import SavedModelLoader
from jupyter_tfserving.platforms.tflite import TfLiteLoader, TfLiteServable

pytestmark = pytest.mark.filterwarnings("ignore")


class _Id:
    name, version = "m", 1


def _convert(scale: float, offset: float) -> bytes:
    """``y = x * scale + offset`` over a [None, 1] float input named ``x``, as TF Lite bytes."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def f(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": x * scale + offset}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()])
    return bytes(converter.convert())


def _with_signature_defs(model: bytes, signature_defs: dict[str, Any]) -> bytes:
    """``model`` with ``signature_defs`` stored as TF Lite's ``SetSignatureDefMap`` stores
    them: metadata ``signature_defs_metadata``, a FlexBuffer map of key -> serialized
    SignatureDef (a FlexBuffer string)."""
    from flatbuffers import flexbuffers
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    builder = flexbuffers.Builder()
    with builder.Map():
        for key, sig in signature_defs.items():
            raw = sig.SerializeToString()
            assert raw.isascii()  # a FlexBuffer string is written from text
            builder.Key(key)
            builder.String(raw.decode("ascii"))
    payload = bytes(builder.Finish())
    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, np.uint8)
    obj.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = "signature_defs_metadata"
    entry.buffer = len(obj.buffers) - 1
    obj.metadata = [*(obj.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def _tensor_info(name: str) -> Any:
    from tensorflow.core.protobuf import meta_graph_pb2

    info = meta_graph_pb2.TensorInfo(name=name, dtype=1)
    info.tensor_shape.dim.add(size=1)
    info.tensor_shape.dim.add(size=1)
    return info


def _version(tmp_path: Path, model: bytes) -> Path:
    version = tmp_path / "1"
    version.mkdir(parents=True, exist_ok=True)
    (version / "model.tflite").write_bytes(model)
    return version


@pytest.fixture(scope="module")
def half_plus_two() -> bytes:
    return _convert(0.5, 2.0)


def _tensor_names(model: bytes) -> tuple[str, str]:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=model)
    (x,), (y,) = interpreter.get_input_details(), interpreter.get_output_details()
    return x["name"], y["name"]


def test_a_model_without_stored_signatures_gets_one_from_its_tensors(
        tmp_path: Path, half_plus_two: bytes) -> None:
    servable = TfLiteLoader(str(_version(tmp_path, half_plus_two))).load()
    x_name, y_name = _tensor_names(half_plus_two)
    signature = servable.signatures()["serving_default"]
    assert list(signature.inputs) == [x_name.split(":")[0]]
    assert list(signature.outputs) == [y_name.split(":")[0]]
    assert signature.inputs[x_name.split(":")[0]].dtype == "DT_FLOAT"
    assert signature.method_name == "tensorflow/serving/predict"
    (alias,), (out,) = signature.inputs, signature.outputs
    # A batch of 3 runs as one: the input tensor is resized to it.
    result = servable.run("serving_default", {alias: np.array([[1.0], [2.0], [5.0]], np.float32)})
    assert result[out].tolist() == [[2.5], [3.0], [4.5]]
    assert servable.run("serving_default", {alias: np.array([[4.0]], np.float32)})[out].tolist() \
        == [[4.0]]
    metadata = servable.metadata()["signature_def"]["signature_def"]["serving_default"]
    assert metadata["method_name"] == "tensorflow/serving/predict"
    assert metadata["inputs"][alias]["name"] == x_name


def test_stored_signature_defs_are_served_with_legacy_names_fixed(
        tmp_path: Path, half_plus_two: bytes) -> None:
    from tensorflow.core.protobuf import meta_graph_pb2

    x_name, y_name = _tensor_names(half_plus_two)
    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    sig.inputs["x"].CopyFrom(_tensor_info(x_name.split(":")[0] + ":0"))  # TF's name for it
    sig.outputs["y"].CopyFrom(_tensor_info(y_name))
    model = _with_signature_defs(half_plus_two, {"serving_default": sig, "other": sig})
    servable = TfLiteLoader(str(_version(tmp_path, model))).load()
    assert sorted(servable.signatures()) == ["other", "serving_default"]
    assert servable.run("other", {"x": np.array([[2.0]], np.float32)})["y"].tolist() == [[3.0]]
    with pytest.raises(ServingError) as missing:
        servable.run("serving_default", {"z": np.array([[2.0]], np.float32)})
    assert missing.value.code == Code.INVALID_ARGUMENT
    assert "not found in request and no default value provided. Inputs expected to be in "\
        "the request {z}" in missing.value.message
    with pytest.raises(ServingError) as unknown:
        servable.run("nope", {"x": np.array([[2.0]], np.float32)})
    assert isinstance(unknown.value, SignatureNotFound)  # as SavedModels: the front ends map it
    with pytest.raises(ServingError) as examples:
        servable.run_examples("serving_default", None)  # type: ignore[arg-type]
    assert examples.value.code == Code.UNIMPLEMENTED


def test_a_stored_signature_naming_an_unknown_tensor_fails_the_load(
        tmp_path: Path, half_plus_two: bytes) -> None:
    from tensorflow.core.protobuf import meta_graph_pb2

    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    sig.inputs["x"].CopyFrom(_tensor_info("nope:0"))
    model = _with_signature_defs(half_plus_two, {"serving_default": sig})
    with pytest.raises(ServingError) as failed:
        TfLiteLoader(str(_version(tmp_path, model))).load()
    assert failed.value.code == Code.INVALID_ARGUMENT and "'nope:0'" in failed.value.message


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ServingError) as missing:
        TfLiteLoader(str(tmp_path)).load()
    assert missing.value.code == Code.NOT_FOUND
    with pytest.raises(ServingError) as broken:
        TfLiteLoader(str(_version(tmp_path, b"not a flatbuffer" * 8))).load()
    assert broken.value.code == Code.INVALID_ARGUMENT


def test_concurrent_runs_get_their_own_answers(tmp_path: Path, half_plus_two: bytes) -> None:
    servable: TfLiteServable = TfLiteLoader(str(_version(tmp_path, half_plus_two))).load()
    (alias,), (out,) = (servable.signatures()["serving_default"].inputs,
                        servable.signatures()["serving_default"].outputs)

    def run(i: int) -> list[list[float]]:
        rows = np.arange(i % 5 + 1, dtype=np.float32).reshape(-1, 1) + i
        got = servable.run("serving_default", {alias: rows})[out]
        assert got.tolist() == (rows * 0.5 + 2.0).tolist()
        return got.tolist()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert len(list(pool.map(run, range(200)))) == 200
    servable.close()
    with pytest.raises(ServingError) as closed:
        run(1)
    assert closed.value.code == Code.FAILED_PRECONDITION


def test_prefer_tflite_model_picks_the_tflite_file(tmp_path: Path) -> None:
    """A version with both a SavedModel (half plus two) and a model.tflite (times three): the
    SavedModel by default, the TF Lite model with prefer_tflite_model, as TF Serving."""
    testdata = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "tfserving"
    source = testdata / "saved_model_half_plus_two_cpu" / "00000123"
    if not source.is_dir():
        pytest.skip(f"TF Serving's test models are not at {testdata} (../shared is absent)")
    version = tmp_path / "123"
    shutil.copytree(source, version)
    (version / "model.tflite").write_bytes(_convert(3.0, 0.0))
    saved = make_loader(_Id(), LoadSpec(str(version))).load()
    assert saved.run("serving_default", {"x": np.array([2.0], np.float32)})["y"].tolist() == [3.0]
    lite = make_loader(_Id(), LoadSpec(str(version), extra={"prefer_tflite_model": True})).load()
    assert isinstance(lite, TfLiteServable)
    (alias,), (out,) = (lite.signatures()["serving_default"].inputs,
                        lite.signatures()["serving_default"].outputs)
    assert lite.run("serving_default", {alias: np.array([[2.0]], np.float32)})[out].tolist() \
        == [[6.0]]
    # Without a SavedModel and without the option, the error says what to do.
    os.remove(version / "saved_model.pb")
    with pytest.raises(ServingError) as refused:
        SavedModelLoader(str(version)).load()
    assert refused.value.code == Code.NOT_FOUND and "prefer_tflite_model" in refused.value.message


def test_the_service_serves_tflite_versions_with_the_option(tmp_path: Path,
                                                            half_plus_two: bytes) -> None:
    """ServiceOptions.prefer_tflite_model (the trait and the command-line flag) reaches the
    loader: a repository version holding only a model.tflite loads and answers, batched."""
    from jupyter_tfserving.batching import BatchingParameters
    from jupyter_tfserving.core.state import ServableState
    from jupyter_tfserving.dataplane import ModelRef
    from jupyter_tfserving.service import ModelService, ServiceOptions

    _version(tmp_path / "models" / "lite", half_plus_two)
    service = ModelService(ServiceOptions(
        model_root=str(tmp_path / "models"), file_system_poll_wait_seconds=0,
        batching=BatchingParameters(batch_timeout_micros=20_000), prefer_tflite_model=True))
    service.start()
    try:
        status = service.manager.wait_for("lite", 1, [ServableState.AVAILABLE,
                                                      ServableState.END], 60)
        assert status.state is ServableState.AVAILABLE, status.error
        signature = service.dataplane.model_metadata(ModelRef("lite"))
        assert "serving_default" in str(signature)
        handle = service.manager.acquire("lite", None, None)
        (alias,) = handle.servable.signatures()["serving_default"].inputs
        handle.release()

        def predict(value: float) -> Any:
            call = service.dataplane.begin_predict(
                ModelRef("lite"), None, lambda sig: {alias: np.array([[value]], np.float32)})
            return call, service.dataplane.submit_predict(call)

        calls = [predict(float(i)) for i in range(6)]
        answers = [future.result(30) for _, future in calls]
        assert [next(iter(a.values())).tolist() for a in answers] == \
            [[[i * 0.5 + 2.0]] for i in range(6)]
    finally:
        service.stop()
