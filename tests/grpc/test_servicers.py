"""TF Serving's gRPC services against a real Jupyter server with the extension, serving TF
Serving's own test models: a ``tensorflow-serving-api`` client gets the numbers REST gives.

The end-to-end cases share as few server starts as possible (each loads TensorFlow models):
:func:`test_tf_serving_clients_work_against_a_notebook_server` covers the services, their errors,
auth, health, reflection, metrics and the kernel's stub on one server.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import json_format

from tests import conftest as shared
from tests.conftest import TESTDATA
from tests.grpc.conftest import extension_app, started_grpc

CONFIG = """
model_config_list {
  config { name: "default" base_path: "%(d)s/saved_model_half_plus_two_cpu"
           model_platform: "tensorflow" }
  config {
    name: "two"
    base_path: "%(d)s/saved_model_half_plus_two_2_versions"
    model_platform: "tensorflow"
    model_version_policy { all {} }
    version_labels { key: "stable" value: 123 }
    version_labels { key: "canary" value: 124 }
  }
}
"""


@pytest.fixture
def tfserving_config(tmp_path: Path) -> dict:
    shared.testdata_or_skip()
    config = tmp_path / "models.config"
    config.write_text(CONFIG % {"d": TESTDATA})
    return {"model_config_file": str(config)}


def _apis():
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        inference_pb2,
        model_management_pb2,
        predict_pb2,
        regression_pb2,
    )

    return (predict_pb2, classification_pb2, regression_pb2, inference_pb2,
            get_model_metadata_pb2, get_model_status_pb2, model_management_pb2)


def _example(**floats):
    import tensorflow as tf

    return tf.train.Example(features=tf.train.Features(feature={
        k: tf.train.Feature(float_list=tf.train.FloatList(value=[v])) for k, v in floats.items()}))


async def _serve(rest) -> None:
    await rest.wait_for("default", 123)
    await rest.wait_for("two", 123)
    await rest.wait_for("two", 124)


async def test_tf_serving_clients_work_against_a_notebook_server(
        jp_serverapp, rest, grpc_client_factory, capsys):
    import tensorflow as tf

    (predict_pb2, classification_pb2, regression_pb2, inference_pb2, get_model_metadata_pb2,
     get_model_status_pb2, model_management_pb2) = _apis()
    server = await started_grpc(jp_serverapp)
    token = jp_serverapp.identity_provider.token
    assert os.environ["JUPYTER_TFSERVING_GRPC_TARGET"] == server.target
    client = grpc_client_factory(server.target, token)
    await _serve(rest)

    # ---- Predict, as TF Serving's mnist_client.py builds it: same numbers as REST.
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "serving_default"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([2.0, 3.0, 4.0], shape=[3, 1]))
    response = await client.call(client.prediction.Predict, request)
    assert not isinstance(response, grpc.RpcError), response
    grpc_y = tf.make_ndarray(response.outputs["y"])
    code, rest_body, _ = await rest.call("/v1/models/default:predict",
                                         {"instances": [[2.0], [3.0], [4.0]]})
    assert code == 200 and grpc_y.tolist() == rest_body["predictions"] == [[3.0], [3.5], [4.0]]
    assert grpc_y.dtype == np.float32
    assert response.outputs["y"].float_val  # TF Serving's default: typed fields
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == ("default", 123, "serving_default")
    # Typed fields in, an empty signature name (serving_default); a message past the inline
    # size, decoded off the loop, whose values beyond the shape's 1000 are ignored (TF's rule).
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    rows = np.arange(1000, dtype=np.float32).reshape(-1, 1)
    request.inputs["x"].dtype = tf.float32.as_datatype_enum
    request.inputs["x"].tensor_shape.dim.add().size = rows.shape[0]
    request.inputs["x"].tensor_shape.dim.add().size = 1
    request.inputs["x"].float_val.extend(rows.ravel().tolist() * 5)
    assert request.ByteSize() > 16 * 1024
    response = await client.call(client.prediction.Predict, request)
    assert not isinstance(response, grpc.RpcError), response
    assert np.array_equal(tf.make_ndarray(response.outputs["y"]), rows * 0.5 + 2)
    assert response.model_spec.signature_name == "serving_default"

    # ---- Auth: no token, a wrong token.
    small = predict_pb2.PredictRequest()
    small.model_spec.name = "default"
    small.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]]))
    for bad in (None, "wrong"):
        error = await client.call(client.prediction.Predict, small, token=bad)
        assert isinstance(error, grpc.RpcError)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "authorization: token" in error.details()
    error = await client.call(client.model.GetModelStatus,
                              get_model_status_pb2.GetModelStatusRequest(
                                  model_spec={"name": "default"}), token=None)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    # "Bearer" works too.
    response = await asyncio.get_running_loop().run_in_executor(None, lambda: (
        client.prediction.Predict(small, timeout=30,
                                  metadata=[("authorization", f"Bearer {token}")])))
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [[2.5]]

    # ---- Errors, with TF Serving's codes and words.
    async def error_of(method, request):
        result = await client.call(method, request)
        assert isinstance(result, grpc.RpcError), result
        return result.code(), result.details()

    unknown = predict_pb2.PredictRequest()
    unknown.CopyFrom(small)
    unknown.model_spec.name = "half"
    assert await error_of(client.prediction.Predict, unknown) == (
        grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(half)")
    unknown.model_spec.name = "default"
    unknown.model_spec.version.value = 99
    assert await error_of(client.prediction.Predict, unknown) == (
        grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(default, 99)")
    unknown.model_spec.name = "two"
    unknown.model_spec.version_label = "X"
    assert await error_of(client.prediction.Predict, unknown) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: X")
    unknown.model_spec.name = "default"
    unknown.model_spec.ClearField("version_label")
    unknown.model_spec.signature_name = "nope"
    assert await error_of(client.prediction.Predict, unknown) == (
        grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.')
    bad = predict_pb2.PredictRequest()
    bad.CopyFrom(small)
    bad.inputs["z"].CopyFrom(tf.make_tensor_proto([1.0]))
    code, details = await error_of(client.prediction.Predict, bad)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == ("input size does not match signature: 2!=1 len({x,z}) != len({x}). "
                       "Sent extra: {z}. Missing but required: {}.")
    bad = predict_pb2.PredictRequest()
    bad.model_spec.name = "default"
    bad.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]]))
    bad.inputs["x"].tensor_content = b"\0" * 5
    code, details = await error_of(client.prediction.Predict, bad)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("tensor parsing error: x: tensor_content holds 5 bytes")
    bad.inputs["x"].tensor_shape.dim[0].size = -2
    code, details = await error_of(client.prediction.Predict, bad)
    assert (code, "negative dimensions" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    bad.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], dtype=tf.float64))
    code, details = await error_of(client.prediction.Predict, bad)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "float but double" in details
    bad = predict_pb2.PredictRequest()
    bad.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]]))
    assert await error_of(client.prediction.Predict, bad) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
    # Garbage bytes for a PredictRequest.
    raw = client.channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    garbage = await client.call(raw, b"\xff\xff\xff\xff")
    assert garbage.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tensorflow.serving.PredictRequest" in garbage.details()

    # ---- output_filter.
    filtered = predict_pb2.PredictRequest()
    filtered.CopyFrom(small)
    filtered.output_filter.append("y")
    response = await client.call(client.prediction.Predict, filtered)
    assert list(response.outputs) == ["y"]
    filtered.output_filter.append("y")
    assert await error_of(client.prediction.Predict, filtered) == (
        grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias: y")
    filtered.ClearField("output_filter")
    filtered.output_filter.append("w")
    code, details = await error_of(client.prediction.Predict, filtered)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("output tensor alias not found in signature: w")

    # ---- Labels and versions route as in REST.
    for choice, version in (({"version_label": "canary"}, 124), ({"version_label": "stable"}, 123),
                            ({"version": 124}, 124), ({}, 123)):
        routed = predict_pb2.PredictRequest()
        routed.CopyFrom(small)
        routed.model_spec.name = "two"
        json_format.ParseDict(choice, routed.model_spec, ignore_unknown_fields=False)
        response = await client.call(client.prediction.Predict, routed)
        assert response.model_spec.version.value == version, choice
        assert tf.make_ndarray(response.outputs["y"]).tolist() == [[2.5]]

    # ---- Classify and regress, as REST answers them.
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "default"
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.append(_example(x=2.0))
    response = await client.call(client.prediction.Classify, classify)
    _, rest_body, _ = await rest.call("/v1/models/default:classify", {
        "signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]})
    assert [[[c.label, c.score] for c in cl.classes]
            for cl in response.result.classifications] == rest_body["results"] == [[["", 3.0]]]
    assert (response.model_spec.version.value, response.model_spec.signature_name) == (
        123, "classify_x_to_y")
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "default"
    regress.model_spec.signature_name = "regress_x_to_y2"
    regress.input.example_list_with_context.examples.extend([_example(x=2.0), _example(o=1.0)])
    regress.input.example_list_with_context.context.CopyFrom(_example(x=4.0))
    response = await client.call(client.prediction.Regress, regress)
    _, rest_body, _ = await rest.call("/v1/models/default:regress", {
        "signature_name": "regress_x_to_y2", "context": {"x": 4.0},
        "examples": [{"x": 2.0}, {"o": 1.0}]})
    assert [r.value for r in response.result.regressions] == rest_body["results"] == [4.0, 5.0]
    regress.model_spec.signature_name = ""  # serving_default is a predict signature
    code, details = await error_of(client.prediction.Regress, regress)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "tensorflow/serving/regress" in details
    regress.model_spec.signature_name = "nope"
    assert await error_of(client.prediction.Regress, regress) == (
        grpc.StatusCode.INVALID_ARGUMENT, "No signature was found with the name: nope")
    regress.ClearField("input")
    regress.model_spec.signature_name = "regress_x_to_y"
    assert await error_of(client.prediction.Regress, regress) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")

    # ---- MultiInference: a classification and a regression of the same examples.
    multi = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify_x_to_y", "tensorflow/serving/classify"),
                              ("regress_x_to_y", "tensorflow/serving/regress")):
        task = multi.tasks.add()
        task.model_spec.name = "default"
        task.model_spec.signature_name = signature
        task.method_name = method
    multi.input.example_list.examples.extend([_example(x=2.0), _example(x=4.0)])
    response = await client.call(client.prediction.MultiInference, multi)
    first, second = response.results
    assert [[c.score for c in cl.classes] for cl in first.classification_result.classifications
            ] == [[3.0], [4.0]]
    assert [r.value for r in second.regression_result.regressions] == [3.0, 4.0]
    assert (second.model_spec.name, second.model_spec.version.value,
            second.model_spec.signature_name) == ("default", 123, "regress_x_to_y")
    multi.tasks[1].model_spec.signature_name = "classify_x_to_y"
    assert await error_of(client.prediction.MultiInference, multi) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Duplicate evaluation of signature: classify_x_to_y")

    # ---- GetModelStatus and GetModelMetadata, as REST's.
    response = await client.call(client.model.GetModelStatus,
                                 get_model_status_pb2.GetModelStatusRequest(
                                     model_spec={"name": "two"}))
    states = get_model_status_pb2.ModelVersionStatus.State
    assert [(s.version, states.Name(s.state), s.status.error_code)
            for s in response.model_version_status] == [(124, "AVAILABLE", 0),
                                                         (123, "AVAILABLE", 0)]
    assert await error_of(client.model.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(
        model_spec={"name": "foo"})) == (grpc.StatusCode.NOT_FOUND,
                                         "Could not find any versions of model foo")
    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": "default"}, metadata_field=["signature_def"])
    response = await client.call(client.prediction.GetModelMetadata, metadata_request)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(sig_map)
    expected = json.loads((TESTDATA / "half_plus_two_model_metadata.json").read_text())
    assert json_format.MessageToDict(
        sig_map, preserving_proto_field_name=True, always_print_fields_with_no_presence=True,
    ) == expected["metadata"]["signature_def"]
    assert (response.model_spec.name, response.model_spec.version.value) == ("default", 123)
    metadata_request.ClearField("metadata_field")
    code, _ = await error_of(client.prediction.GetModelMetadata, metadata_request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    # ---- HandleReloadConfigRequest: an empty config re-reads the config file.
    response = await client.call(client.model.HandleReloadConfigRequest,
                                 model_management_pb2.ReloadConfigRequest())
    assert not isinstance(response, grpc.RpcError) and response.status.error_code == 0

    # ---- Metrics and per-version statistics count gRPC requests with their entrypoint.
    code, text, _ = await rest.call("/monitoring/prometheus/metrics")
    assert code == 200 and 'entrypoint="GRPC"' in text
    code, report, _ = await rest.call("/api/stats")  # the side panel shows the target
    assert code == 200 and report["grpc_target"] == server.target
    stats = extension_app(jp_serverapp).service.stats
    assert ("default", "predict", "GRPC") in stats.request_latency
    assert stats.versions[("two", 124)].request_count >= 2

    # ---- Health and reflection answer without a token.
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    health = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "tensorflow.serving.PredictionService"):
        answer = await client.call(health.Check, health_pb2.HealthCheckRequest(service=service),
                                   token=None)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    database = ProtoReflectionDescriptorDatabase(client.channel)
    services = await asyncio.get_running_loop().run_in_executor(None, database.get_services)
    assert {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService",
            "grpc.health.v1.Health"} <= set(services)
    from google.protobuf import descriptor_pool

    def describe():  # what grpcurl does: the service and its messages, from the server
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName("tensorflow.serving.PredictionService")
        return sorted(m.name for m in service.methods), \
            service.methods_by_name["Predict"].input_type.full_name

    assert await asyncio.get_running_loop().run_in_executor(None, describe) == (
        ["Classify", "GetModelMetadata", "MultiInference", "Predict", "Regress"],
        "tensorflow.serving.PredictRequest")

    # ---- Mangled requests get a status, never a crash (nor INTERNAL / UNKNOWN).
    import random

    rng = random.Random(11)
    valid = small.SerializeToString()
    codes = set()
    for _ in range(150):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = bytes(data[:rng.randint(0, len(data))]) if rng.random() < 0.3 else bytes(data)
        result = await client.call(raw, cut)
        code = result.code() if isinstance(result, grpc.RpcError) else grpc.StatusCode.OK
        codes.add(code)
    assert not codes & {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}, codes
    response = await client.call(client.prediction.Predict, small)  # still serving
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [[2.5]]

    # ---- The kernel side: the client finds the target, its stub carries the token.
    from jupyter_tfserving.kernel.client import find_server
    from jupyter_tfserving.kernel.serving import ServedModel

    kernel_client = await asyncio.get_running_loop().run_in_executor(None, find_server)
    assert kernel_client is not None and kernel_client.grpc_target == server.target
    model = ServedModel(kernel_client, "default", 123)
    assert model.grpc_target == server.target
    stub = model.grpc_stub()
    response = await asyncio.get_running_loop().run_in_executor(
        None, lambda: stub.Predict(small, 30.0))
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [[2.5]]
    kernel_client.grpc_channel().close()
    from jupyter_tfserving.kernel.magics import tfserving_magic
    from jupyter_tfserving.kernel.serving import reset_connection

    reset_connection()
    await asyncio.get_running_loop().run_in_executor(None, tfserving_magic, "status default")
    assert f"gRPC: {server.target}" in capsys.readouterr().out
    reset_connection()

    # ---- HandleReloadConfigRequest with a model_config_list: serve exactly those models.
    from tensorflow_serving.config import model_server_config_pb2

    def reload_request(*entries: tuple[str, str]):
        config = model_server_config_pb2.ModelServerConfig()
        for name, directory in entries:
            config.model_config_list.config.add(
                name=name, base_path=str(TESTDATA / directory), model_platform="tensorflow")
        return model_management_pb2.ReloadConfigRequest(config=config)

    config_file = Path(extension_app(jp_serverapp).model_config_file)
    before = config_file.read_text()
    bad = reload_request(("bad name!", "saved_model_half_plus_three"))
    code, message = await error_of(client.model.HandleReloadConfigRequest, bad)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "bad name!" in message
    assert config_file.read_text() == before  # nothing changed
    response = await client.call(client.model.HandleReloadConfigRequest, reload_request(
        ("default", "saved_model_half_plus_two_cpu"),
        ("three", "saved_model_half_plus_three")))
    assert not isinstance(response, grpc.RpcError), response
    # Answered once the new model is loaded, as TF Serving's ReloadConfig waits for it.
    three = predict_pb2.PredictRequest(model_spec={"name": "three"})
    three.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], dtype=tf.float32))
    response = await client.call(client.prediction.Predict, three)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [[3.5]]  # 1.0 / 2 + 3
    assert '"three"' in config_file.read_text() and '"two"' not in config_file.read_text()
    status = get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "two"})
    for _ in range(100):  # "two" is no longer configured: it is unloaded
        result = await client.call(client.model.GetModelStatus, status)
        if isinstance(result, grpc.RpcError) or all(
                v.state == v.END for v in result.model_version_status):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"model two is still served: {result}")
    # A model whose load fails answers with the load's error.
    response = await client.call(client.model.HandleReloadConfigRequest, reload_request(
        ("default", "saved_model_half_plus_two_cpu"), ("broken", "bad_half_plus_two")))
    assert isinstance(response, grpc.RpcError), response
    assert response.code() != grpc.StatusCode.OK
