"""The ``tensorflow`` platform: SavedModels exported here with TensorFlow, and TF Serving's own
test models (../shared/testdata/tfserving) loaded, run and described as TF Serving does."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jupyter_tfserving.core.servable import ExampleBatch, Feature, LoadSpec
from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.platforms import make_loader
from jupyter_tfserving.platforms.tensorflow import SavedModelLoader, SavedModelServable

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "tfserving"

pytestmark = pytest.mark.filterwarnings("ignore")


class _Id:
    def __init__(self, name: str, version: int) -> None:
        self.name = name
        self.version = version


def _testdata() -> Path:
    if not (TESTDATA / "README.md").is_file():
        pytest.skip(f"TF Serving's test models are not at {TESTDATA} (../shared is absent)")
    return TESTDATA


def _load(path: Path | str) -> SavedModelServable:
    return SavedModelLoader(str(path)).load()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A tf.Module with named signatures and a Keras 3 model, exported once, loaded once."""
    import keras
    import tensorflow as tf

    root = tmp_path_factory.mktemp("exported")

    class Multi(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(3.0)
            self.calls = tf.Variable(0, dtype=tf.int64)

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def scale(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": x * self.w, "total": tf.reduce_sum(x, axis=1)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="s")])
        def upper(self, s: tf.Tensor) -> dict[str, tf.Tensor]:
            self.calls.assign_add(1)
            return {"upper": tf.strings.upper(s), "calls": tf.identity(self.calls)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def regress(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
            parsed = tf.io.parse_example(
                examples,
                {
                    "x": tf.io.FixedLenFeature([1], tf.float32),
                    "k": tf.io.FixedLenFeature([1], tf.int64),
                    "tag": tf.io.FixedLenFeature([1], tf.string),
                },
            )
            return {
                "outputs": parsed["x"] * self.w + tf.cast(parsed["k"], tf.float32),
                "tag": parsed["tag"],
            }

    module = Multi()
    tf.saved_model.save(
        module,
        str(root / "module"),
        signatures={
            "serving_default": module.scale,
            "strings": module.upper,
            "regress": module.regress,
        },
    )

    inp = keras.Input((3,), name="features")
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    model.export(str(root / "keras"), verbose=False)
    probe = np.arange(6, dtype=np.float32).reshape(2, 3)
    expected = np.asarray(model.predict(probe, verbose=0))

    servables = {"module": _load(root / "module"), "keras": _load(root / "keras")}
    yield {**servables, "root": root, "probe": probe, "keras_expected": expected}
    for s in servables.values():
        s.close()


# --- models exported here ------------------------------------------------------------------------


def test_module_signatures(exported: dict[str, Any]) -> None:
    sigs = exported["module"].signatures()
    assert set(sigs) == {"serving_default", "strings", "regress"}
    sd = sigs["serving_default"]
    assert sd.method_name == "tensorflow/serving/predict"
    assert sd.inputs["x"].dtype == "DT_FLOAT"
    assert sd.inputs["x"].shape == (-1, 2)
    assert set(sd.outputs) == {"y", "total"}
    assert sigs["strings"].inputs["s"].dtype == "DT_STRING"
    assert sigs["strings"].outputs["calls"].dtype == "DT_INT64"


def test_module_run_variables(exported: dict[str, Any]) -> None:
    out = exported["module"].run(
        "serving_default", {"x": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)}
    )
    np.testing.assert_allclose(out["y"], [[3.0, 6.0], [9.0, 12.0]])
    np.testing.assert_allclose(out["total"], [3.0, 7.0])


def test_module_strings_and_state(exported: dict[str, Any]) -> None:
    s = np.array([b"ab", b"Cd\xc3\xa9"], dtype=object)
    first = exported["module"].run("strings", {"s": s})
    second = exported["module"].run("strings", {"s": s})
    assert first["upper"].dtype == object
    # non-ASCII bytes pass through untouched (tf.strings.upper is ASCII-only by default)
    assert list(first["upper"]) == [b"AB", b"CD\xc3\xa9"]
    assert int(second["calls"]) == int(first["calls"]) + 1


def test_module_run_examples_context_merge(exported: dict[str, Any]) -> None:
    batch = ExampleBatch(
        examples=[
            {"x": Feature("float", [1.0])},
            {"x": Feature("float", [2.0]), "k": Feature("int64", [100])},
        ],
        context={"k": Feature("int64", [10]), "tag": Feature("bytes", [b"ctx"])},
    )
    out = exported["module"].run_examples("regress", batch)
    # example 2's own k=100 wins over the context's k=10
    np.testing.assert_allclose(out["outputs"], [[13.0], [106.0]])
    assert list(out["tag"].ravel()) == [b"ctx", b"ctx"]


def test_keras_export(exported: dict[str, Any]) -> None:
    keras_servable = exported["keras"]
    sigs = keras_servable.signatures()
    assert {"serve", "serving_default"} <= set(sigs)
    (alias,) = sigs["serving_default"].inputs
    (out_alias,) = sigs["serving_default"].outputs
    out = keras_servable.run("serving_default", {alias: exported["probe"]})
    np.testing.assert_allclose(out[out_alias], exported["keras_expected"], rtol=1e-5)


def test_unknown_signature(exported: dict[str, Any]) -> None:
    with pytest.raises(ServingError) as err:
        exported["module"].run("foo", {"x": np.zeros((1, 2), np.float32)})
    assert err.value.code == Code.INVALID_ARGUMENT
    assert err.value.message == 'Serving signature name: "foo" not found in signature def'


def test_bad_shape_is_invalid_argument(exported: dict[str, Any]) -> None:
    # As in TF Serving, a placeholder's static shape is not enforced on the feed; a shape the
    # graph cannot compute with (reduce_sum over axis 1 of a vector) is INVALID_ARGUMENT.
    with pytest.raises(ServingError) as err:
        exported["module"].run("serving_default", {"x": np.zeros((3,), np.float32)})
    assert err.value.code == Code.INVALID_ARGUMENT


def test_wrong_input_names_are_invalid_argument(exported: dict[str, Any]) -> None:
    for inputs in ({"nope": np.zeros((1, 2), np.float32)}, {}):
        with pytest.raises(ServingError) as err:
            exported["module"].run("serving_default", inputs)
        assert err.value.code == Code.INVALID_ARGUMENT


def test_not_a_saved_model(tmp_path: Path) -> None:
    (tmp_path / "junk.txt").write_text("hello")
    with pytest.raises(ServingError) as err:
        _load(tmp_path)
    assert err.value.code == Code.NOT_FOUND
    assert str(tmp_path) in err.value.message
    with pytest.raises(ServingError) as err:
        _load(tmp_path / "missing")
    assert err.value.code == Code.NOT_FOUND


def test_corrupt_saved_model(tmp_path: Path) -> None:
    (tmp_path / "saved_model.pb").write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(ServingError) as err:
        _load(tmp_path)
    assert err.value.code == Code.DATA_LOSS
    assert str(tmp_path) in err.value.message


def test_make_loader_dispatch(exported: dict[str, Any]) -> None:
    loader = make_loader(_Id("m", 1), LoadSpec(path=str(exported["root"] / "module")))
    assert isinstance(loader, SavedModelLoader)
    loader = make_loader(_Id("m", 1), LoadSpec(path="/x", platform="onnx"))
    with pytest.raises(ServingError) as err:
        loader.load()
    assert err.value.code == Code.UNIMPLEMENTED
    assert err.value.message.startswith("Platform 'onnx' is not supported")


def test_import_does_not_import_tensorflow() -> None:
    code = (
        "import sys, jupyter_tfserving.platforms, jupyter_tfserving.platforms.tensorflow; "
        "print('tensorflow' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    )
    assert out.stdout.strip() == "False"


# --- TF Serving's own test models -----------------------------------------------------------------

_HALF_PLUS_TWO = [
    "saved_model_half_plus_two_cpu/00000123",
    "saved_model_half_plus_two_cpu_with_saved_model_config/00000123",
    "saved_model_half_plus_two_2_versions/00000123",
    "saved_model_half_plus_two_2_versions/00000124",
]
_ALL = _HALF_PLUS_TWO + [
    "saved_model_half_plus_two_tf2_cpu/00000123",
    "saved_model_half_plus_three/00000123",
    "saved_model_counter/00000123",
    "matrix_half_plus_two/1",
]


@pytest.fixture(scope="module")
def tfs() -> Iterator[dict[str, SavedModelServable]]:
    """Every loadable model of TF Serving's testdata, loaded once."""
    root = _testdata()
    servables = {rel: _load(root / rel) for rel in _ALL}
    yield servables
    for s in servables.values():
        s.close()


def _x(values: list[float]) -> dict[str, np.ndarray]:
    return {"x": np.array(values, np.float32).reshape(-1, 1)}


@pytest.mark.parametrize("rel", _HALF_PLUS_TWO)
def test_half_plus_two(tfs: dict[str, SavedModelServable], rel: str) -> None:
    out = tfs[rel].run("serving_default", _x([1.0, 2.0, 5.0]))
    np.testing.assert_allclose(out["y"].ravel(), [2.5, 3.0, 4.5])


def test_half_plus_two_tf2(tfs: dict[str, SavedModelServable]) -> None:
    servable = tfs["saved_model_half_plus_two_tf2_cpu/00000123"]
    sigs = servable.signatures()
    assert "__saved_model_init_op" not in sigs
    assert sigs["serving_default"].inputs["x"].shape == (1,)
    results = [
        float(servable.run("serving_default", {"x": np.array([v], np.float32)})["y"][0])
        for v in (1.0, 2.0, 5.0)
    ]
    assert results == [2.5, 3.0, 4.5]
    # the signature declares a default for x (0.0), fed when the request omits it
    np.testing.assert_allclose(servable.run("serving_default", {})["y"], [2.0])


def test_half_plus_three(tfs: dict[str, SavedModelServable]) -> None:
    out = tfs["saved_model_half_plus_three/00000123"].run("serving_default", _x([1.0, 2.0, 5.0]))
    np.testing.assert_allclose(out["y"].ravel(), [3.5, 4.0, 5.5])


def test_matrix_half_plus_two(tfs: dict[str, SavedModelServable]) -> None:
    servable = tfs["matrix_half_plus_two/1"]
    assert servable.signatures()["serving_default"].inputs["x"].shape == (-1, 3, 3)
    x = np.arange(18, dtype=np.float32).reshape(2, 3, 3)
    np.testing.assert_allclose(servable.run("serving_default", {"x": x})["y"], 0.5 * x + 2)


def test_counter_is_stateful(tfs: dict[str, SavedModelServable]) -> None:
    servable = tfs["saved_model_counter/00000123"]
    sigs = servable.signatures()
    assert set(sigs) == {"get_counter", "incr_counter", "incr_counter_by", "reset_counter"}
    assert sigs["incr_counter_by"].inputs["delta"].dtype == "DT_FLOAT"
    assert sigs["get_counter"].outputs["output"].dtype == "DT_FLOAT"  # DT_FLOAT_REF in the graph
    assert float(servable.run("reset_counter", {})["output"]) == 0.0
    assert float(servable.run("incr_counter", {})["output"]) == 1.0
    assert float(servable.run("incr_counter", {})["output"]) == 2.0
    assert float(servable.run("get_counter", {})["output"]) == 2.0
    delta = {"delta": np.array(3.0, np.float32)}
    assert float(servable.run("incr_counter_by", delta)["output"]) == 5.0
    assert float(servable.run("get_counter", {})["output"]) == 5.0


@pytest.mark.parametrize(
    "rel",
    ["saved_model_half_plus_two_cpu/00000123", "saved_model_half_plus_two_2_versions/00000124"],
)
def test_regress_and_classify_examples(tfs: dict[str, SavedModelServable], rel: str) -> None:
    servable = tfs[rel]
    batch = ExampleBatch(examples=[{"x": Feature("float", [2.0]), "x2": Feature("float", [1.0])}])
    np.testing.assert_allclose(servable.run_examples("regress_x_to_y", batch)["outputs"], [[3.0]])
    np.testing.assert_allclose(servable.run_examples("regress_x_to_y2", batch)["outputs"], [[4.0]])
    np.testing.assert_allclose(servable.run_examples("classify_x_to_y", batch)["scores"], [[3.0]])
    with_context = ExampleBatch(
        examples=[{}, {"x": Feature("float", [4.0])}], context={"x": Feature("float", [2.0])}
    )
    np.testing.assert_allclose(
        servable.run_examples("regress_x_to_y", with_context)["outputs"], [[3.0], [4.0]]
    )
    # regress_x2_to_y3 takes a float tensor, not serialized examples
    with pytest.raises(ServingError) as err:
        servable.run_examples("regress_x2_to_y3", batch)
    assert err.value.code == Code.INVALID_ARGUMENT


def test_tf2_string_signatures(tfs: dict[str, SavedModelServable]) -> None:
    servable = tfs["saved_model_half_plus_two_tf2_cpu/00000123"]
    batch = ExampleBatch(examples=[{"x": Feature("float", [2.0])}])
    np.testing.assert_allclose(servable.run_examples("regress_x_to_y", batch)["outputs"], [[3.0]])
    np.testing.assert_allclose(servable.run_examples("classify_x_to_y", batch)["scores"], [[3.0]])


def _expected_metadata(name: str) -> dict[str, Any]:
    return json.loads((_testdata() / name).read_text())["metadata"]


def _without_defaults(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _without_defaults(v) for k, v in d.items() if k != "defaults"}
    return d


@pytest.mark.parametrize(
    "rel, expected",
    [
        ("saved_model_half_plus_two_cpu/00000123", "half_plus_two_model_metadata.json"),
        (
            "saved_model_half_plus_two_2_versions/00000123",
            "saved_model_half_plus_two_2_versions_metadata.json",
        ),
    ],
)
def test_metadata_matches_tf_serving(
    tfs: dict[str, SavedModelServable], rel: str, expected: str
) -> None:
    assert tfs[rel].metadata() == _expected_metadata(expected)


def test_metadata_tf2(tfs: dict[str, SavedModelServable]) -> None:
    """saved_model_half_plus_two_tf2_2_versions_metadata.json describes a TF2 export served as
    saved_model_half_plus_two_2_versions, a model the testdata does not hold. Its graph matches
    saved_model_half_plus_two_tf2_cpu tensor for tensor; only ``defaults`` differ (the JSON
    predates signature defaults: empty there, x=0.0 in the tf2_cpu export)."""
    got = tfs["saved_model_half_plus_two_tf2_cpu/00000123"].metadata()
    expected = _expected_metadata("saved_model_half_plus_two_tf2_2_versions_metadata.json")
    assert _without_defaults(got) == _without_defaults(expected)
    default_x = got["signature_def"]["signature_def"]["serving_default"]["defaults"]["x"]
    assert default_x["dtype"] == "DT_FLOAT" and default_x["float_val"] == [0.0]


def test_metadata_is_a_copy(tfs: dict[str, SavedModelServable]) -> None:
    servable = tfs["saved_model_half_plus_two_cpu/00000123"]
    servable.metadata()["signature_def"].clear()
    assert servable.metadata()["signature_def"]["signature_def"]


def test_testdata_feeds_are_not_shape_checked_like_tf_serving(
    tfs: dict[str, SavedModelServable],
) -> None:
    # TF Serving's C++ Session::Run does not enforce a placeholder's static shape: the
    # elementwise matrix model computes on a [1, 2, 2] feed, and a wrong dtype is refused.
    out = tfs["matrix_half_plus_two/1"].run(
        "serving_default", {"x": np.zeros((1, 2, 2), np.float32)}
    )
    np.testing.assert_allclose(out["y"], np.full((1, 2, 2), 2.0))
    with pytest.raises(ServingError) as err:
        tfs["matrix_half_plus_two/1"].run("serving_default", {"x": np.zeros((1, 3, 3), np.int32)})
    assert err.value.code == Code.INVALID_ARGUMENT


def test_bad_half_plus_two_fails_cleanly() -> None:
    path = _testdata() / "bad_half_plus_two" / "00000123"
    with pytest.raises(ServingError) as err:
        _load(path)
    assert err.value.code == Code.NOT_FOUND
    assert str(path) in err.value.message


def test_concurrent_runs(tfs: dict[str, SavedModelServable]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    servable = tfs["saved_model_half_plus_two_cpu/00000123"]

    def one(i: int) -> float:
        return float(servable.run("serving_default", _x([float(i)]))["y"][0, 0])

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(64))) == [0.5 * i + 2 for i in range(64)]


def test_close_then_run_fails(tmp_path: Path) -> None:
    servable = _load(_testdata() / "saved_model_half_plus_two_cpu" / "00000123")
    servable.close()
    servable.close()
    with pytest.raises(ServingError) as err:
        servable.run("serving_default", _x([1.0]))
    assert err.value.code == Code.FAILED_PRECONDITION


def test_examples_are_fed_by_tensor_name_whatever_dtype_the_signature_declares(
        tmp_path: Path) -> None:
    """Old TF1 exports declare DT_FLOAT for the ``tf_example:0`` placeholder that takes the
    serialized tf.Examples; TF Serving feeds the tensor by name and follows the graph, so this
    server does too. A graph whose input really is not a string still fails cleanly."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        parsed = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})
        y = tf.identity(parsed["x"] * 0.5 + 2.0, name="y")
        floats = v1.placeholder(tf.float32, [None, 1], name="floats")
        inputs = v1.saved_model.utils.build_tensor_info(serialized)
        inputs.dtype = tf.float32.as_datatype_enum  # what old exports declare
        outputs = v1.saved_model.utils.build_tensor_info(y)
        regress = v1.saved_model.signature_def_utils.build_signature_def(
            {"inputs": inputs}, {"outputs": outputs}, "tensorflow/serving/regress")
        wrong = v1.saved_model.signature_def_utils.build_signature_def(
            {"inputs": v1.saved_model.utils.build_tensor_info(floats)},
            {"outputs": v1.saved_model.utils.build_tensor_info(tf.identity(floats))},
            "tensorflow/serving/regress")
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(str(tmp_path / "1"))
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map={"serving_default": regress,
                                                       "floats": wrong})
            builder.save()
    servable = _load(tmp_path / "1")
    batch = ExampleBatch([{"x": Feature("float", [2.0])}, {"x": Feature("float", [6.0])}])
    np.testing.assert_allclose(servable.run_examples("serving_default", batch)["outputs"],
                               [[3.0], [5.0]])
    with pytest.raises(ServingError) as err:
        servable.run_examples("floats", batch)
    assert err.value.code == Code.INVALID_ARGUMENT
    servable.close()
