"""The gRPC codec: TensorProto <-> numpy with TensorFlow's rules (TensorFlow itself is the
oracle: ``tf.make_tensor_proto`` / ``tf.make_ndarray``), tf.Example inputs, and the answers'
messages."""

from __future__ import annotations

import ml_dtypes  # noqa: F401  (registers the "bfloat16" numpy dtype)
import numpy as np
import pytest

from jupyter_tfserving.core.servable import SignatureInfo, TensorInfo
from jupyter_tfserving.core.state import ServableState, VersionStatus
from jupyter_tfserving.core.status import Code, ServingError, SignatureNotFound
from jupyter_tfserving.dataplane import classifications, regressions
from jupyter_tfserving.grpc import codec, protos
from jupyter_tfserving.grpc.codec import TensorError, array_to_tensor, tensor_to_array

P = protos.load()

# Every DataType the codec holds, with values that exercise its range.
ARRAYS = {
    "DT_FLOAT": np.array([[1.5, -2.25], [np.inf, 3.0e38]], np.float32),
    "DT_DOUBLE": np.array([1e-300, -0.1, np.nan], np.float64),
    "DT_HALF": np.array([0.5, -65504.0, 1e-4], np.float16),
    "DT_INT8": np.array([-128, 0, 127], np.int8),
    "DT_INT16": np.array([-32768, 32767], np.int16),
    "DT_INT32": np.array([[-(2**31), 2**31 - 1]], np.int32),
    "DT_INT64": np.array([-(2**63), 2**63 - 1], np.int64),
    "DT_UINT8": np.array([0, 255], np.uint8),
    "DT_UINT16": np.array([0, 65535], np.uint16),
    "DT_UINT32": np.array([0, 2**32 - 1], np.uint32),
    "DT_UINT64": np.array([0, 2**64 - 1], np.uint64),
    "DT_BOOL": np.array([[True], [False]]),
    "DT_COMPLEX64": np.array([1 + 2j, -3.5j], np.complex64),
    "DT_COMPLEX128": np.array([[1e200 - 1j]], np.complex128),
    "DT_STRING": np.array([b"a", b"", "é".encode(), b"\x00\xff"], object),
    "DT_BFLOAT16": np.array([1.0, -2.5, 3.0e38], "bfloat16"),
}


def _tf():
    import tensorflow as tf

    return tf


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object or b.dtype == object:
        return a.shape == b.shape and a.tolist() == b.tolist()
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def _proto(dtype: str, shape: list[int], **fields) -> object:
    proto = P.tensor_pb2.TensorProto(dtype=P.types_pb2.DataType.Value(dtype), **fields)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    return proto


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_every_dtype_decodes_what_tensorflow_encodes(name):
    tf = _tf()
    arr = ARRAYS[name]
    for proto in (tf.make_tensor_proto(arr),  # tensor_content for numbers, string_val for text
                  array_to_tensor(arr)):  # typed fields
        decoded = tensor_to_array(P.tensor_pb2.TensorProto.FromString(proto.SerializeToString()))
        assert _equal(decoded, arr), (name, decoded)
        assert P.types_pb2.DataType.Name(proto.dtype) == name


@pytest.mark.parametrize("name", sorted(ARRAYS))
@pytest.mark.parametrize("tensor_content", [False, True])
def test_every_dtype_encodes_what_tensorflow_decodes(name, tensor_content):
    tf = _tf()
    arr = ARRAYS[name]
    proto = array_to_tensor(arr, tensor_content=tensor_content)
    if tensor_content and name != "DT_STRING":
        assert proto.tensor_content
        assert not any(field.name.endswith("_val") for field, _ in proto.ListFields())
    else:
        assert not proto.tensor_content
    tf_proto = tf.make_tensor_proto(0.0)
    tf_proto.CopyFrom(proto)  # the same message class once TensorFlow is imported
    assert _equal(tf.make_ndarray(tf_proto), arr)


def test_typed_fields_are_the_dtypes_own():
    assert array_to_tensor(np.float16([1.0])).half_val == [0x3C00]  # the bits of 1.0
    assert array_to_tensor(np.int8([-1])).int_val == [-1]
    assert array_to_tensor(np.uint16([65535])).int_val == [65535]
    assert array_to_tensor(np.complex64([1 + 2j])).scomplex_val == [1.0, 2.0]
    assert array_to_tensor(np.array(["text"])).string_val == [b"text"]
    assert array_to_tensor(np.array([], np.float32).reshape(0, 3)).tensor_shape.dim[1].size == 3


def test_tensor_content_wins_over_typed_fields():
    content = np.float32([1, 2, 3]).tobytes()
    proto = _proto("DT_FLOAT", [3], tensor_content=content, float_val=[9.0])
    assert tensor_to_array(proto).tolist() == [1.0, 2.0, 3.0]


def test_tensor_content_must_be_exactly_n_times_itemsize():
    for size in (11, 13, 24):
        proto = _proto("DT_FLOAT", [3], tensor_content=b"\0" * size)
        with pytest.raises(TensorError, match=r"holds \d+ bytes; shape \[3\] of DT_FLOAT"):
            tensor_to_array(proto)
    assert tensor_to_array(_proto("DT_DOUBLE", [2], tensor_content=b"\0" * 16)).tolist() == [0, 0]


def test_typed_field_fill_rules_are_tensorflows():
    tf = _tf()
    cases = [
        ("DT_FLOAT", {"float_val": [1.0, 2.0]}, [4]),  # fewer: the last repeats
        ("DT_FLOAT", {"float_val": [7.0]}, [2, 3]),  # one value broadcasts
        ("DT_INT32", {}, [3]),  # none: zeros
        ("DT_FLOAT", {"float_val": [1.0, 2.0, 3.0, 4.0]}, [2]),  # more: the first N
        ("DT_STRING", {"string_val": [b"a", b"b"]}, [3]),
        ("DT_BOOL", {"bool_val": [True]}, [3]),
        ("DT_HALF", {"half_val": [0x3C00]}, [2]),
        ("DT_COMPLEX64", {"scomplex_val": [1.0, 2.0]}, [2]),
    ]
    for dtype, fields, shape in cases:
        proto = _proto(dtype, shape, **fields)
        ours = tensor_to_array(proto)
        tf_proto = tf.make_tensor_proto(0.0)
        tf_proto.CopyFrom(proto)
        if sum(len(v) for v in fields.values()) <= np.prod(shape):  # make_ndarray cannot trim
            assert _equal(ours, tf.make_ndarray(tf_proto)), (dtype, fields, ours)
        assert ours.shape == tuple(shape)
    # No values: C++'s empty strings (Python's make_ndarray gives zeros of dtype object).
    assert tensor_to_array(_proto("DT_STRING", [2])).tolist() == [b"", b""]
    assert tensor_to_array(_proto("DT_FLOAT", [2], float_val=[1, 2, 3, 4])).tolist() == [1, 2]
    assert tensor_to_array(_proto("DT_FLOAT", [4], float_val=[1, 2])).tolist() == [1, 2, 2, 2]


def test_empty_tensors_ignore_their_values():
    proto = _proto("DT_FLOAT", [0, 5], tensor_content=b"garbage", float_val=[1.0])
    arr = tensor_to_array(proto)
    assert arr.shape == (0, 5) and arr.dtype == np.float32
    assert tensor_to_array(_proto("DT_STRING", [0])).dtype == object


def test_scalars_and_narrow_ints_convert_like_cpp():
    assert tensor_to_array(_proto("DT_FLOAT", [], float_val=[2.5])).shape == ()
    assert tensor_to_array(_proto("DT_INT8", [2], int_val=[255, -129])).tolist() == [-1, 127]


def test_string_tensor_content_is_tensorflows_string_list():
    content = codec._encode_string_list([b"ab", b"", b"c" * 200])
    arr = tensor_to_array(_proto("DT_STRING", [3], tensor_content=content))
    assert arr.tolist() == [b"ab", b"", b"c" * 200]
    for bad in (content[:-1], content + b"x", b"\xff\xff\xff\xff\xff\xff"):
        with pytest.raises(TensorError, match="DT_STRING list"):
            tensor_to_array(_proto("DT_STRING", [3], tensor_content=bad))


def test_bad_shapes_and_dtypes():
    with pytest.raises(TensorError, match="negative dimensions"):
        tensor_to_array(_proto("DT_FLOAT", [2, -1]))
    with pytest.raises(TensorError, match="too large"):
        tensor_to_array(_proto("DT_FLOAT", [2**40, 2**40]))
    # At most 32 dimensions (core.dtypes.MAX_TENSOR_RANK): TensorFlow's numpy conversion of
    # a string array crashes the process past 32.
    for dtype in ("DT_FLOAT", "DT_STRING"):
        with pytest.raises(TensorError, match="33 dimensions, more than 32"):
            tensor_to_array(_proto(dtype, [1] * 33))
    assert tensor_to_array(_proto("DT_FLOAT", [1] * 32)).ndim == 32
    with pytest.raises(TensorError, match="DT_INVALID"):
        tensor_to_array(P.tensor_pb2.TensorProto(float_val=[1.0]))
    with pytest.raises(TensorError, match="unknown dtype DataType 999"):
        tensor_to_array(P.tensor_pb2.TensorProto(dtype=999))
    with pytest.raises(TensorError, match="unknown dtype DT_FLOAT_REF"):
        tensor_to_array(_proto("DT_FLOAT_REF", [1]))
    with pytest.raises(TensorError) as info:
        tensor_to_array(_proto("DT_QINT8", [1]))
    assert info.value.code == Code.UNIMPLEMENTED


def test_element_limit_is_checked_before_allocating():
    proto = _proto("DT_FLOAT", [1 << 20, 1 << 20], float_val=[1.0])  # 1T elements, one value
    with pytest.raises(TensorError, match="max_tensor_elements"):
        tensor_to_array(proto, max_elements=1 << 24)
    assert tensor_to_array(_proto("DT_FLOAT", [4], float_val=[1.0]), 4).size == 4


SIG = SignatureInfo(inputs={"x": TensorInfo("DT_FLOAT", (-1,)), "s": TensorInfo("DT_STRING", None)},
                    outputs={"y": TensorInfo("DT_FLOAT", (-1,)), "z": TensorInfo("DT_FLOAT", None)})


def test_decode_inputs_checks_aliases_dtypes_and_the_total():
    x = array_to_tensor(np.float32([1, 2]))
    s = array_to_tensor(np.array([b"a"], object))
    out = codec.decode_inputs({"x": x, "s": s}, SIG, 10)
    assert out["x"].tolist() == [1.0, 2.0] and out["s"].tolist() == [b"a"]
    # TF Serving's Predict: the size first, then each alias (TensorFlow's GetInputValues).
    with pytest.raises(ServingError, match=r"input size does not match signature: 1!=2 "
                                           r"len\(\{q\}\) != len\(\{s,x\}\)\. Sent extra: "
                                           r"\{q\}\. Missing but required: \{s,x\}\."):
        codec.decode_inputs({"q": x}, SIG)
    with pytest.raises(ServingError, match=r"^Signature input alias: x\(feed name: \) not found "
                                           r"in request and no default value provided\. Inputs "
                                           r"expected to be in the request \{q,s\}, or default "
                                           r"input alias set: $"):
        codec.decode_inputs({"q": x, "s": s}, SIG)
    with_default = SignatureInfo(SIG.inputs, SIG.outputs, defaults=frozenset({"s"}))
    assert codec.decode_inputs({"x": x}, with_default)["x"].tolist() == [1.0, 2.0]
    with pytest.raises(ServingError, match=r"^Inputs contains invalid name\. Used request "
                                           r"inputs: x, request input: q,x$"):
        codec.decode_inputs({"x": x, "q": x}, with_default)
    with pytest.raises(ServingError, match="Expects arg x to be float but double is provided"):
        codec.decode_inputs({"x": array_to_tensor(np.float64([1]))}, with_default)
    with pytest.raises(ServingError, match="tensor parsing error: x: .*negative"):
        codec.decode_inputs({"x": _proto("DT_FLOAT", [-1])}, with_default)
    with pytest.raises(ServingError, match="hold 3 elements, more than .* limit of 2"):
        codec.decode_inputs({"x": x, "s": s}, SIG, 2)


def test_output_filter_is_checked_like_tf_serving():
    assert codec.check_output_filter([], SIG) == ["y", "z"]
    assert codec.check_output_filter(["z"], SIG) == ["z"]
    with pytest.raises(ServingError, match="duplicate output tensor alias: z"):
        codec.check_output_filter(["z", "z"], SIG)
    with pytest.raises(ServingError, match="output tensor alias not found in signature: w"):
        codec.check_output_filter(["w"], SIG)


def test_predict_response_fills_model_spec():
    response = codec.predict_response("m", 7, "", {"y": np.float32([1]), "z": np.float32([2])},
                                      ["z"])
    assert response.model_spec.name == "m" and response.model_spec.version.value == 7
    assert response.model_spec.signature_name == "serving_default"
    assert list(response.outputs) == ["z"]


def _example(**features):
    example = P.example_pb2.Example()
    for name, value in features.items():
        feature = example.features.feature[name]
        if isinstance(value, float):
            feature.float_list.value.append(value)
        elif isinstance(value, int):
            feature.int64_list.value.append(value)
        else:
            feature.bytes_list.value.append(value)
    return example


def test_inputs_become_example_batches():
    proto = P.input_pb2.Input()
    proto.example_list.examples.extend([_example(x=2.0, n=3, s=b"t"), _example()])
    batch = codec.input_to_batch(proto)
    assert [dict(e) for e in batch.examples][0]["x"].values == [2.0]
    assert batch.examples[0]["n"].kind == "int64" and batch.examples[0]["s"].kind == "bytes"
    assert batch.context is None and len(batch.examples) == 2

    proto = P.input_pb2.Input()
    proto.example_list_with_context.examples.append(_example(x=1.0))
    proto.example_list_with_context.context.CopyFrom(_example(c=5.0))
    batch = codec.input_to_batch(proto)
    assert batch.context is not None and batch.context["c"].values == [5.0]

    for empty in (P.input_pb2.Input(), P.input_pb2.Input(example_list={})):
        with pytest.raises(ServingError, match="Input is empty."):
            codec.input_to_batch(empty)
    with pytest.raises(ServingError, match="max_tensor_elements"):
        codec.input_to_batch(P.input_pb2.Input(example_list={"examples": [_example(x=1.0)] * 3}),
                             2)


def test_classification_and_regression_results():
    response = codec.classify_response("m", 1, "c", classifications({
        "classes": np.array([[b"a", b"b"]], object), "scores": np.float32([[0.25, 0.75]])}), 1)
    classes = response.result.classifications[0].classes
    assert [(c.label, c.score) for c in classes] == [("a", 0.25), ("b", 0.75)]
    response = codec.classify_response("m", 1, "c", classifications({"scores": np.float32([3.0])}))
    assert [(c.label, c.score) for c in response.result.classifications[0].classes] == [("", 3.0)]
    with pytest.raises(ServingError, match="batch size did not match"):
        codec.classify_response("m", 1, "c", classifications({"scores": np.float32([3.0])}), 2)
    values = regressions({"outputs": np.float32([[3.0], [4.5]])})
    response = codec.regress_response("m", 1, "r", values, 2)
    assert [r.value for r in response.result.regressions] == [3.0, 4.5]
    assert response.model_spec.signature_name == "r"
    with pytest.raises(ServingError, match="batch size did not match"):
        codec.regress_response("m", 1, "r", regressions({"outputs": np.float32([1.0])}), 2)


def test_status_and_metadata_responses():
    error = ServingError(Code.NOT_FOUND, "gone")
    response = codec.status_response([
        VersionStatus(2, ServableState.AVAILABLE, None, 0.0),
        VersionStatus(1, ServableState.END, error, 0.0)])
    states = P.get_model_status_pb2.ModelVersionStatus.State
    assert [(s.version, states.Name(s.state), s.status.error_code, s.status.error_message)
            for s in response.model_version_status] == [(2, "AVAILABLE", 0, ""),
                                                        (1, "END", 5, "gone")]
    metadata = {"signature_def": {"signature_def": {"serving_default": {
        "method_name": "tensorflow/serving/predict",
        "inputs": {"x": {"name": "x:0", "dtype": "DT_FLOAT",
                         "tensor_shape": {"dim": [{"size": "-1", "name": ""}],
                                          "unknown_rank": False}}},
        "outputs": {}, "defaults": {}}}}}
    response = codec.metadata_response("m", 3, metadata)
    assert response.model_spec.version.value == 3 and not response.model_spec.signature_name
    sig_map = P.get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(sig_map)
    assert sig_map.signature_def["serving_default"].inputs["x"].name == "x:0"
    with pytest.raises(ServingError, match="at least one metadata_field"):
        codec.check_metadata_fields([])
    with pytest.raises(ServingError, match="Metadata field x is not supported"):
        codec.check_metadata_fields(["signature_def", "x"])


def test_status_codes_and_message_limit():
    import grpc

    from jupyter_tfserving.grpc.status import grpc_code, grpc_message, predict_error

    assert grpc_code(Code.NOT_FOUND) is grpc.StatusCode.NOT_FOUND
    assert grpc_code(Code.UNAUTHENTICATED) is grpc.StatusCode.UNAUTHENTICATED
    assert all(grpc_code(c).value[0] == int(c) for c in Code)
    assert grpc_message("x" * 1024) == "x" * 1024
    assert grpc_message("x" * 2000) == "x" * 1024 + "...TRUNCATED"
    error = predict_error(SignatureNotFound("nope"))
    assert (error.code, error.message) == (Code.FAILED_PRECONDITION,
                                           'Serving signature key "nope" not found.')
    # only the type decides, not a message that happens to look the same
    lookalike = ServingError(
        Code.INVALID_ARGUMENT, 'Serving signature name: "nope" not found in signature def')
    assert predict_error(lookalike) is lookalike


def test_protos_load_without_tensorflow(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from jupyter_tfserving.grpc import protos, codec, servicers, server; "
            "p = protos.load(); p.predict_pb2.PredictRequest(); "
            "print('TF' if 'tensorflow' in sys.modules else 'NO-TF')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["NO-TF"]


def test_any_tensor_proto_decodes_or_is_refused_cleanly():
    """Hypothesis over TensorProto fields: decoding returns an array of the declared shape or
    raises TensorError, never anything else, and never allocates past the element limit."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    numbers = list(codec.dtypes()) + [0, 20, 101, 999]

    @settings(max_examples=300, deadline=None)
    @given(dtype=st.sampled_from(numbers),
           dims=st.lists(st.integers(-3, 1 << 33), max_size=5),
           content=st.binary(max_size=64),
           floats=st.lists(st.floats(width=32), max_size=8),
           ints=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=8),
           strings=st.lists(st.binary(max_size=4), max_size=4))
    def check(dtype, dims, content, floats, ints, strings):
        proto = P.tensor_pb2.TensorProto(dtype=dtype, tensor_content=content, float_val=floats,
                                         int_val=ints, half_val=ints, string_val=strings)
        for size in dims:
            proto.tensor_shape.dim.add().size = size
        try:
            arr = tensor_to_array(proto, max_elements=1 << 16)
        except TensorError:
            return
        assert arr.shape == tuple(dims) and arr.size <= 1 << 16

    check()
