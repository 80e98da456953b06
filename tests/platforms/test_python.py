"""The ``python`` platform: cloudpickled callables written in the kernel, signed by the server,
loaded only when the signature verifies, served behind one predict signature."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jupyter_tfserving.core.archive import pack_directory, unpack_version_archive
from jupyter_tfserving.core.servable import LoadSpec, SignatureInfo, TensorInfo
from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.platforms import make_loader, supported_platforms
from jupyter_tfserving.platforms.python import (
    PICKLE_FILE,
    SERVABLE_JSON,
    PythonLoader,
    PythonServable,
    read_platform,
    sign_python_version,
    write_python_version,
)

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "tfserving"


class _Id:
    name = "m"
    version = 1


def half_plus_two(x: np.ndarray) -> np.ndarray:
    return 0.5 * x + 2


class Scaler:
    """An sklearn-like object: ``predict`` wins over ``__call__``."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x * self.factor

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise AssertionError("predict should have been called")


def _touch(marker: str) -> Callable[[np.ndarray], np.ndarray]:
    """What unpickling a _Bomb runs: proof that a pickle was loaded."""
    Path(marker).write_text("unpickled")
    return half_plus_two


class _Bomb:
    """Unpickling it creates ``marker``: a stand-in for a hostile pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (self.marker,))


def _publish(
    root: Path, obj: Any, signature: dict[str, Any] | None = None, key: bytes | None = KEY
) -> Path:
    """Write a version as the kernel does and, with a key, sign it as the server does."""
    dest = root / "version"
    write_python_version(str(dest), obj, signature=signature)
    if key is not None:
        sign_python_version(str(dest), key)
    return dest


def _load(path: Path, key: bytes | None = KEY) -> PythonServable:
    servable = make_loader(
        _Id(), LoadSpec(path=str(path), platform="python", extra={"signing_key": key})
    ).load()
    assert isinstance(servable, PythonServable)
    return servable


def _refused(path: Path, key: bytes | None = KEY) -> ServingError:
    with pytest.raises(ServingError) as info:
        PythonLoader(str(path), key).load()
    assert info.value.code == Code.FAILED_PRECONDITION
    assert info.value.message == (
        f"Refusing to unpickle {path}: it was not published through jupyter_tfserving "
        "(signature missing or invalid)"
    )
    return info.value


def _doc(path: Path) -> dict[str, Any]:
    return json.loads((path / SERVABLE_JSON).read_text())


def _floats(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


# --- loading and running --------------------------------------------------------------------------


def test_python_is_a_registered_platform() -> None:
    assert "python" in supported_platforms()


def test_plain_function_loads_and_runs(tmp_path: Path) -> None:
    servable = _load(_publish(tmp_path, half_plus_two))

    out = servable.run("serving_default", {"x": _floats(1, 2, 5)})

    assert list(out) == ["output_0"]
    np.testing.assert_allclose(out["output_0"], [2.5, 3.0, 4.5])


def test_closure_is_pickled_by_value(tmp_path: Path) -> None:
    offset = 10.0

    def shifted(x: np.ndarray) -> list[float]:
        return [float(v) + offset for v in x]

    out = _load(_publish(tmp_path, shifted)).run("serving_default", {"x": _floats(1, 2)})

    assert isinstance(out["output_0"], np.ndarray)
    np.testing.assert_allclose(out["output_0"], [11.0, 12.0])


def test_object_with_predict_loads_and_runs(tmp_path: Path) -> None:
    servable = _load(_publish(tmp_path, Scaler(3.0)))
    out = servable.run("serving_default", {"x": _floats(1, 2)})
    np.testing.assert_allclose(out["output_0"], [3.0, 6.0])


MULTI = {
    "inputs": {
        "a": {"dtype": "DT_FLOAT", "shape": [-1]},
        "b": {"dtype": "DT_INT64", "shape": [-1]},
    },
    "outputs": {"diff": {"dtype": "DT_FLOAT", "shape": [-1]}},
}


def test_multi_input_function_gets_keyword_arguments(tmp_path: Path) -> None:
    def subtract(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a - b

    servable = _load(_publish(tmp_path, subtract, MULTI))
    out = servable.run("serving_default", {"b": np.array([1, 1]), "a": _floats(5, 7)})

    np.testing.assert_allclose(out["diff"], [4.0, 6.0])


def test_single_output_with_its_own_name(tmp_path: Path) -> None:
    signature = {
        "inputs": {"x": {"dtype": "DT_FLOAT", "shape": [-1, 1]}},
        "outputs": {"y": {"dtype": "DT_FLOAT", "shape": [-1, 1]}},
    }
    out = _load(_publish(tmp_path, half_plus_two, signature)).run(
        "serving_default", {"x": _floats(2).reshape(1, 1)}
    )
    assert list(out) == ["y"]
    np.testing.assert_allclose(out["y"], [[3.0]])


DICT_SIG = {
    "inputs": {"x": {"dtype": "DT_FLOAT", "shape": [-1]}},
    "outputs": {
        "total": {"dtype": "DT_FLOAT", "shape": []},
        "double": {"dtype": "DT_FLOAT", "shape": [-1]},
    },
}


def test_dict_returning_function_maps_output_names(tmp_path: Path) -> None:
    def stats(x: np.ndarray) -> dict[str, Any]:
        return {"total": float(x.sum()), "double": (x * 2).tolist(), "undeclared": 1}

    out = _load(_publish(tmp_path, stats, DICT_SIG)).run("serving_default", {"x": _floats(1, 2)})

    assert set(out) == {"total", "double"}
    assert out["total"].shape == ()
    assert float(out["total"]) == 3.0
    np.testing.assert_allclose(out["double"], [2.0, 4.0])


def test_dict_missing_a_declared_output_is_internal(tmp_path: Path) -> None:
    servable = _load(_publish(tmp_path, lambda x: {"total": 1.0}, DICT_SIG))
    with pytest.raises(ServingError) as info:
        servable.run("serving_default", {"x": _floats(1)})
    assert info.value.code == Code.INTERNAL
    assert "'double'" in info.value.message


def test_non_dict_result_for_several_outputs_is_internal(tmp_path: Path) -> None:
    servable = _load(_publish(tmp_path, lambda x: x, DICT_SIG))
    with pytest.raises(ServingError) as info:
        servable.run("serving_default", {"x": _floats(1)})
    assert info.value.code == Code.INTERNAL


def test_user_exceptions_are_invalid_argument(tmp_path: Path) -> None:
    def picky(x: np.ndarray) -> np.ndarray:
        raise ValueError(f"expected 3 features, got {x.shape[-1]}")

    servable = _load(_publish(tmp_path, picky))
    with pytest.raises(ServingError) as info:
        servable.run("serving_default", {"x": _floats(1, 2)})
    assert info.value.code == Code.INVALID_ARGUMENT
    assert info.value.message == "ValueError: expected 3 features, got 2"


def test_unconvertible_result_is_invalid_argument(tmp_path: Path) -> None:
    servable = _load(_publish(tmp_path, lambda x: [[1.0], [1.0, 2.0]]))
    with pytest.raises(ServingError) as info:
        servable.run("serving_default", {"x": _floats(1)})
    assert info.value.code == Code.INVALID_ARGUMENT
    assert info.value.message.startswith("ValueError: ")


def test_wrong_signature_name_and_inputs_are_invalid_argument(tmp_path: Path) -> None:
    servable = _load(_publish(tmp_path, lambda a, b: a, MULTI))
    cases = [
        ("other", {"a": _floats(1), "b": np.array([1])}, 'Serving signature name: "other"'),
        ("serving_default", {"a": _floats(1)}, "Missing input(s) for signature"),
        (
            "serving_default",
            {"a": _floats(1), "b": np.array([1]), "c": _floats(1)},
            "input tensor alias not found in signature: c",
        ),
    ]
    for name, inputs, message in cases:
        with pytest.raises(ServingError) as info:
            servable.run(name, inputs)
        assert info.value.code == Code.INVALID_ARGUMENT
        assert message in info.value.message


def test_run_examples_is_unimplemented(tmp_path: Path) -> None:
    from jupyter_tfserving.core.servable import ExampleBatch

    servable = _load(_publish(tmp_path, half_plus_two))
    with pytest.raises(ServingError) as info:
        servable.run_examples("serving_default", ExampleBatch(examples=[]))
    assert info.value.code == Code.UNIMPLEMENTED


def test_close_drops_the_object(tmp_path: Path) -> None:
    servable = _load(_publish(tmp_path, half_plus_two))
    servable.close()
    servable.close()
    with pytest.raises(ServingError) as info:
        servable.run("serving_default", {"x": _floats(1)})
    assert info.value.code == Code.FAILED_PRECONDITION


def test_signatures_come_from_servable_json(tmp_path: Path) -> None:
    servable = _load(_publish(tmp_path, lambda a, b: a, MULTI))
    assert servable.signatures() == {
        "serving_default": SignatureInfo(
            inputs={
                "a": TensorInfo("DT_FLOAT", (-1,), "a"),
                "b": TensorInfo("DT_INT64", (-1,), "b"),
            },
            outputs={"diff": TensorInfo("DT_FLOAT", (-1,), "diff")},
            method_name="tensorflow/serving/predict",
        )
    }
    default = _load(_publish(tmp_path / "d", half_plus_two)).signatures()["serving_default"]
    assert default.inputs == {"x": TensorInfo("DT_FLOAT", None, "x")}
    assert default.outputs == {"output_0": TensorInfo("DT_FLOAT", None, "output_0")}


def test_upload_round_trip_through_an_archive(tmp_path: Path) -> None:
    """The whole path: kernel writes and packs, server unpacks, signs, loads."""
    write_python_version(str(tmp_path / "kernel"), Scaler(2.0))
    staging = tmp_path / "staging"
    staging.mkdir()
    unpack_version_archive(pack_directory(str(tmp_path / "kernel")), str(staging))
    sign_python_version(str(staging), KEY)

    out = _load(staging).run("serving_default", {"x": _floats(4)})
    np.testing.assert_allclose(out["output_0"], [8.0])


# --- refusing to unpickle -------------------------------------------------------------------------


def test_a_signed_bomb_does_go_off(tmp_path: Path) -> None:
    """The control for the refusals below: loading a signed _Bomb does create its marker."""
    marker = tmp_path / "marker"
    _load(_publish(tmp_path, _Bomb(marker)))
    assert marker.read_text() == "unpickled"


def test_unsigned_version_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = _publish(tmp_path, _Bomb(marker), key=None)
    _refused(path)
    assert not marker.exists()


def test_wrong_key_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = _publish(tmp_path, _Bomb(marker), key=OTHER_KEY)
    _refused(path)
    assert not marker.exists()


@pytest.mark.parametrize("key", [None, b""])
def test_no_key_is_refused(tmp_path: Path, key: bytes | None) -> None:
    marker = tmp_path / "marker"
    path = _publish(tmp_path, _Bomb(marker))
    _refused(path, key=key)
    assert not marker.exists()


def _bomb_pickle(marker: Path) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(_Bomb(marker))


def test_tampered_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = _publish(tmp_path, half_plus_two)
    (path / PICKLE_FILE).write_bytes(_bomb_pickle(marker))
    _refused(path)
    assert not marker.exists()


def test_tampered_pickle_with_matching_sha256_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = _publish(tmp_path, half_plus_two)
    payload = _bomb_pickle(marker)
    (path / PICKLE_FILE).write_bytes(payload)
    doc = _doc(path)
    doc["sha256"] = hashlib.sha256(payload).hexdigest()
    (path / SERVABLE_JSON).write_text(json.dumps(doc))
    _refused(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d["signature"]["inputs"]["x"].update(dtype="DT_DOUBLE"),
        lambda d: d.update(hmac=d["hmac"].upper()),
        lambda d: d.update(hmac=d["hmac"][:-1] + ("0" if d["hmac"][-1] != "0" else "1")),
        lambda d: d.pop("hmac"),
        lambda d: d.update(hmac=None),
        lambda d: d.update(extra="field"),
        lambda d: d.update(format=2),
    ],
    ids=["signature", "hmac-case", "hmac-digit", "no-hmac", "null-hmac", "extra", "format"],
)
def test_tampered_servable_json_is_refused(
    tmp_path: Path, tamper: Callable[[dict[str, Any]], Any]
) -> None:
    marker = tmp_path / "marker"
    path = _publish(tmp_path, _Bomb(marker))
    doc = _doc(path)
    tamper(doc)
    (path / SERVABLE_JSON).write_text(json.dumps(doc))
    _refused(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"hmac": NaN}', "\xff"])
def test_unreadable_servable_json_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "v"
    path.mkdir()
    (path / SERVABLE_JSON).write_text(content, encoding="latin-1")
    _refused(path)


def test_missing_pickle_is_refused(tmp_path: Path) -> None:
    path = _publish(tmp_path, half_plus_two)
    (path / PICKLE_FILE).unlink()
    _refused(path)


def test_symlinked_pickle_is_refused(tmp_path: Path) -> None:
    path = _publish(tmp_path, half_plus_two)
    real = tmp_path / "real.pkl"
    (path / PICKLE_FILE).rename(real)
    (path / PICKLE_FILE).symlink_to(real)
    _refused(path)


def test_missing_servable_json_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ServingError) as info:
        PythonLoader(str(tmp_path), KEY).load()
    assert info.value.code == Code.NOT_FOUND
    assert SERVABLE_JSON in info.value.message


def _hand_written(path: Path, payload: bytes, **fields: Any) -> Path:
    """A version directory written by hand (what an uploader could send)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / PICKLE_FILE).write_bytes(payload)
    doc: dict[str, Any] = {
        "platform": "python",
        "format": 1,
        "pickle": PICKLE_FILE,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "signature": {
            "inputs": {"x": {"dtype": "DT_FLOAT", "shape": None}},
            "outputs": {"output_0": {"dtype": "DT_FLOAT", "shape": None}},
        },
    }
    doc.update(fields)
    (path / SERVABLE_JSON).write_text(json.dumps(doc))
    return path


def test_pickle_of_a_missing_module_fails_cleanly(tmp_path: Path) -> None:
    # A protocol-0 GLOBAL opcode naming a module the server does not have.
    path = _hand_written(tmp_path / "v", b"cno_such_module_for_jupyter_tfserving\nf\n.")
    sign_python_version(str(path), KEY)
    with pytest.raises(ServingError) as info:
        PythonLoader(str(path), KEY).load()
    assert info.value.code == Code.FAILED_PRECONDITION
    assert "no_such_module_for_jupyter_tfserving" in info.value.message


def test_signed_object_that_cannot_be_served_fails_cleanly(tmp_path: Path) -> None:
    import cloudpickle

    path = _hand_written(tmp_path / "v", cloudpickle.dumps(42))
    sign_python_version(str(path), KEY)
    with pytest.raises(ServingError) as info:
        PythonLoader(str(path), KEY).load()
    assert info.value.code == Code.FAILED_PRECONDITION
    assert "int" in info.value.message


# --- signing --------------------------------------------------------------------------------------


def test_sign_adds_an_hmac_and_keeps_the_rest(tmp_path: Path) -> None:
    path = _publish(tmp_path, half_plus_two, key=None)
    before = _doc(path)
    sign_python_version(str(path), KEY)
    after = _doc(path)

    assert "hmac" not in before
    assert len(after.pop("hmac")) == 64
    assert after == before
    assert before["sha256"] == hashlib.sha256((path / PICKLE_FILE).read_bytes()).hexdigest()
    assert sorted(p.name for p in path.iterdir()) == [SERVABLE_JSON, PICKLE_FILE]


def test_resigning_replaces_a_stale_hmac(tmp_path: Path) -> None:
    path = _publish(tmp_path, half_plus_two, key=OTHER_KEY)
    sign_python_version(str(path), KEY)
    _load(path)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"platform": "tensorflow"}, "platform"),
        ({"format": 2}, "format"),
        ({"format": True}, "format"),
        ({"format": 1.0}, "format"),
        ({"pickle": "../servable.pkl"}, "plain file name"),
        ({"pickle": "/etc/passwd"}, "plain file name"),
        ({"pickle": SERVABLE_JSON}, "plain file name"),
        ({"pickle": 3}, "plain file name"),
        ({"pickle": "other.pkl"}, "not a file"),
        ({"sha256": "0" * 64}, "sha256"),
        ({"sha256": None}, "sha256"),
        ({"signature": None}, "signature"),
        (
            {"signature": {"inputs": {}, "outputs": {"y": {"dtype": "DT_FLOAT", "shape": None}}}},
            "non-empty",
        ),
        (
            {"signature": {"inputs": {"x": {"dtype": "DT_RESOURCE", "shape": None}},
                           "outputs": {"y": {"dtype": "DT_FLOAT", "shape": None}}}},
            "dtype",
        ),
        (
            {"signature": {"inputs": {"x": {"dtype": "DT_FLOAT", "shape": [-2]}},
                           "outputs": {"y": {"dtype": "DT_FLOAT", "shape": None}}}},
            "shape",
        ),
        ({"owner": "me"}, "exactly the fields"),
    ],
)
def test_sign_refuses_bad_versions(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    path = _hand_written(tmp_path / "v", b"payload", **fields)
    with pytest.raises(ServingError) as info:
        sign_python_version(str(path), KEY)
    assert info.value.code == Code.INVALID_ARGUMENT
    assert message in info.value.message
    assert "hmac" not in _doc(path)


def test_sign_refuses_a_directory_without_servable_json(tmp_path: Path) -> None:
    with pytest.raises(ServingError) as info:
        sign_python_version(str(tmp_path), KEY)
    assert info.value.code == Code.INVALID_ARGUMENT
    assert SERVABLE_JSON in info.value.message


def test_sign_needs_a_key(tmp_path: Path) -> None:
    path = _publish(tmp_path, half_plus_two, key=None)
    with pytest.raises(ServingError) as info:
        sign_python_version(str(path), b"")
    assert info.value.code == Code.FAILED_PRECONDITION


# --- writing --------------------------------------------------------------------------------------


def test_write_produces_the_documented_servable_json(tmp_path: Path) -> None:
    path = _publish(tmp_path, half_plus_two, key=None)
    assert _doc(path) == {
        "platform": "python",
        "format": 1,
        "pickle": "servable.pkl",
        "sha256": hashlib.sha256((path / PICKLE_FILE).read_bytes()).hexdigest(),
        "signature": {
            "inputs": {"x": {"dtype": "DT_FLOAT", "shape": None}},
            "outputs": {"output_0": {"dtype": "DT_FLOAT", "shape": None}},
        },
    }


def test_write_accepts_tuple_shapes(tmp_path: Path) -> None:
    signature = {
        "inputs": {"x": {"dtype": "DT_FLOAT", "shape": (-1, 3)}},
        "outputs": {"y": {"dtype": "DT_INT64", "shape": (-1,)}},
    }
    path = _publish(tmp_path, half_plus_two, signature, key=None)
    assert _doc(path)["signature"]["inputs"]["x"]["shape"] == [-1, 3]


@pytest.mark.parametrize(
    "obj, signature, message",
    [
        (42, None, "not callable"),
        (half_plus_two, {"inputs": {"x": {"dtype": "DT_FLOAT"}}, "outputs": {}}, "dtype"),
        (half_plus_two, {"inputs": {"x": {"dtype": "float32", "shape": None}},
                         "outputs": {"y": {"dtype": "DT_FLOAT", "shape": None}}}, "float32"),
        (half_plus_two, {"inputs": {"x": {"dtype": "DT_FLOAT", "shape": [True]}},
                         "outputs": {"y": {"dtype": "DT_FLOAT", "shape": None}}}, "shape"),
    ],
    ids=["not-callable", "no-shape", "numpy-dtype-name", "bool-dim"],
)
def test_write_refuses_bad_input(tmp_path: Path, obj: Any, signature: Any, message: str) -> None:
    with pytest.raises(ServingError) as info:
        write_python_version(str(tmp_path / "v"), obj, signature=signature)
    assert info.value.code == Code.INVALID_ARGUMENT
    assert message in info.value.message


def test_write_refuses_an_unpicklable_object(tmp_path: Path) -> None:
    lock = threading.Lock()

    def locked(x: np.ndarray) -> np.ndarray:
        with lock:
            return x

    with pytest.raises(ServingError) as info:
        write_python_version(str(tmp_path / "v"), locked)
    assert info.value.code == Code.INVALID_ARGUMENT
    assert "lock" in info.value.message


# --- metadata -------------------------------------------------------------------------------------

HALF_PLUS_TWO_SIG = {
    "inputs": {"x": {"dtype": "DT_FLOAT", "shape": [-1, 1]}},
    "outputs": {"y": {"dtype": "DT_FLOAT", "shape": [-1, 1]}},
}


def test_metadata_structure(tmp_path: Path) -> None:
    signature = {
        "inputs": {
            "x": {"dtype": "DT_FLOAT", "shape": [-1, 3]},
            "s": {"dtype": "DT_STRING", "shape": None},
        },
        "outputs": {"y": {"dtype": "DT_INT64", "shape": []}},
    }
    servable = _load(_publish(tmp_path, lambda x, s: x, signature))

    metadata = servable.metadata()

    assert metadata == {
        "signature_def": {
            "signature_def": {
                "serving_default": {
                    "inputs": {
                        "x": {
                            "dtype": "DT_FLOAT",
                            "tensor_shape": {
                                "dim": [{"size": "-1", "name": ""}, {"size": "3", "name": ""}],
                                "unknown_rank": False,
                            },
                            "name": "x",
                        },
                        "s": {
                            "dtype": "DT_STRING",
                            "tensor_shape": {"dim": [], "unknown_rank": True},
                            "name": "s",
                        },
                    },
                    "outputs": {
                        "y": {
                            "dtype": "DT_INT64",
                            "tensor_shape": {"dim": [], "unknown_rank": False},
                            "name": "y",
                        }
                    },
                    "method_name": "tensorflow/serving/predict",
                    "defaults": {},
                }
            }
        }
    }
    metadata["signature_def"].clear()
    assert servable.metadata()["signature_def"], "metadata() must return a fresh copy"


def test_metadata_matches_tf_servings_own_answer(tmp_path: Path) -> None:
    """The serving_default of TF Serving's half_plus_two metadata answer, tensor names aside."""
    file = TESTDATA / "half_plus_two_model_metadata.json"
    if not file.is_file():
        pytest.skip(f"TF Serving's test data is not at {TESTDATA} (../shared is absent)")
    expected = json.loads(file.read_text())["metadata"]["signature_def"]["signature_def"]
    expected = expected["serving_default"]
    expected["inputs"]["x"]["name"] = "x"
    expected["outputs"]["y"]["name"] = "y"

    actual = _load(_publish(tmp_path, half_plus_two, HALF_PLUS_TWO_SIG)).metadata()

    assert actual["signature_def"]["signature_def"] == {"serving_default": expected}


def test_metadata_matches_the_tensorflow_platform(tmp_path: Path) -> None:
    """What platforms.tensorflow makes of the equivalent SignatureDef, byte for byte."""
    pytest.importorskip("tensorflow_serving.apis.get_model_metadata_pb2")
    from tensorflow.core.protobuf import meta_graph_pb2

    from jupyter_tfserving.platforms.tensorflow import signature_metadata

    signature = {
        "inputs": {
            "x": {"dtype": "DT_FLOAT", "shape": [-1, 1]},
            "s": {"dtype": "DT_STRING", "shape": None},
        },
        "outputs": {"y": {"dtype": "DT_INT64", "shape": []}},
    }
    meta_graph = meta_graph_pb2.MetaGraphDef()
    sig = meta_graph.signature_def["serving_default"]
    sig.method_name = "tensorflow/serving/predict"
    sig.inputs["x"].name = "x"
    sig.inputs["x"].dtype = 1  # DT_FLOAT
    sig.inputs["x"].tensor_shape.dim.add().size = -1
    sig.inputs["x"].tensor_shape.dim.add().size = 1
    sig.inputs["s"].name = "s"
    sig.inputs["s"].dtype = 7  # DT_STRING
    sig.inputs["s"].tensor_shape.unknown_rank = True
    sig.outputs["y"].name = "y"
    sig.outputs["y"].dtype = 9  # DT_INT64
    sig.outputs["y"].tensor_shape.SetInParent()

    actual = _load(_publish(tmp_path, lambda x, s: x, signature)).metadata()

    expected = signature_metadata(meta_graph.signature_def)
    assert json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True)


# --- read_platform and imports --------------------------------------------------------------------


def test_read_platform(tmp_path: Path) -> None:
    assert read_platform(str(_publish(tmp_path / "py", half_plus_two, key=None))) == "python"
    assert read_platform(str(tmp_path / "missing")) is None
    cases = {
        "empty": None,
        "garbage": "{not json",
        "list": "[]",
        "no-platform": "{}",
        "number": '{"platform": 3}',
    }
    for name, content in cases.items():
        d = tmp_path / name
        d.mkdir()
        if content is not None:
            (d / SERVABLE_JSON).write_text(content)
        assert read_platform(str(d)) is None, name
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / SERVABLE_JSON)
    assert read_platform(str(fifo)) is None  # and does not hang
    other = tmp_path / "other"
    other.mkdir()
    (other / SERVABLE_JSON).write_text('{"platform": "sklearn"}')
    assert read_platform(str(other)) == "sklearn"


def test_importing_the_platform_imports_neither_tensorflow_nor_cloudpickle() -> None:
    code = (
        "import sys, jupyter_tfserving.platforms as p, jupyter_tfserving.platforms.python; "
        "from jupyter_tfserving.core.servable import LoadSpec; "
        "p.make_loader(None, LoadSpec(path='/nowhere', platform='python')); "
        "print('tensorflow' in sys.modules, 'cloudpickle' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    )
    assert out.stdout.strip() == "False False"
