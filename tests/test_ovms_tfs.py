"""The OVMS emulator's TensorFlow-Serving gRPC API, with ovmsclient as the peer."""
from __future__ import annotations

import grpc
import numpy as np
import ovmsclient
import pytest
from ovmsclient.tfs_compat.base.errors import InvalidInputError, ModelNotFoundError
from ovmsclient.tfs_compat.protos.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import (get_model_metadata_pb2, predict_pb2,
                                                                  prediction_service_pb2_grpc)

from tests import modelgen
from tests.precision import F32

LOGITS = modelgen.ctc_logits([3, 3, 1, 4441])
AB = np.random.default_rng(5).uniform(-100, 100, (1, 2, 256, 256)).astype(np.float32)


@pytest.fixture(scope="module")
def server(model_repo, tmp_path_factory):
    from emulators.ovms.launcher import start_server, write_config

    hw = model_repo.add("tfs-handwriting", modelgen.handwriting_model, LOGITS)
    col = model_repo.add("tfs-color", modelgen.colorization_model, "pytorch", AB)
    aff = model_repo.root / "tfs-affine"
    for v in (1, 2, 3):
        modelgen.write_version(aff, v, modelgen.affine_model, scale=float(v), shape=(1, 4))
    cfg = write_config(tmp_path_factory.mktemp("tfs") / "config.json", [
        {"name": "handwriting", "base_path": str(hw), "plugin_config": F32},
        {"name": "color", "base_path": str(col), "plugin_config": F32},
        {"name": "affine", "base_path": str(aff), "model_version_policy": {"specific": {"versions": [1, 3]}}},
        {"name": "affine_all", "base_path": str(aff), "model_version_policy": {"all": {}}},
    ])
    srv = start_server(["--config_path", str(cfg)], timeout=60)
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def client(server):
    return ovmsclient.make_grpc_client(server.address)


@pytest.fixture
def stub(server):
    ch = grpc.insecure_channel(server.address)
    yield prediction_service_pb2_grpc.PredictionServiceStub(ch)
    ch.close()


def test_predict_single_output_is_bare_array(client):
    x = np.random.default_rng(0).random((1, 1, 96, 2000), dtype=np.float32)
    out = client.predict({"actual_input": x}, "handwriting")
    assert isinstance(out, np.ndarray) and out.shape == (186, 1, 4442)
    assert np.array_equal(out, LOGITS)
    assert np.array_equal(client.predict({"data_l": np.full((1, 1, 256, 256), 50, np.float32)}, "color"), AB)


def test_predict_versions(client):
    x = np.array([[1, 2, 3, 4]], np.float32)
    assert np.array_equal(client.predict({"x": x}, "affine"), x * 3)
    assert np.array_equal(client.predict({"x": x}, "affine", model_version=1), x)
    with pytest.raises(ModelNotFoundError, match="Model with requested version is not found"):
        client.predict({"x": x}, "affine", model_version=2)
    assert np.array_equal(client.predict({"x": x}, "affine_all", model_version=2), x * 2)


def test_get_model_metadata(client):
    md = client.get_model_metadata("handwriting")
    assert md == {"model_version": 1,
                  "inputs": {"actual_input": {"shape": [1, 1, 96, 2000], "dtype": "DT_FLOAT"}},
                  "outputs": {"output": {"shape": [186, 1, 4442], "dtype": "DT_FLOAT"}}}
    assert client.get_model_metadata("affine")["model_version"] == 3
    assert client.get_model_metadata("affine", model_version=1)["model_version"] == 1


def test_metadata_wire_format(stub):
    """As real OVMS: a SignatureDefMap packed in an Any under metadata['signature_def']."""
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = "color"
    resp = stub.GetModelMetadata(req)
    assert resp.metadata["signature_def"].type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    sm = get_model_metadata_pb2.SignatureDefMap()
    sm.ParseFromString(resp.metadata["signature_def"].value)
    sig = sm.signature_def["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert [d.size for d in sig.inputs["data_l"].tensor_shape.dim] == [1, 1, 256, 256]
    assert sig.outputs["color_ab"].dtype == 1  # DT_FLOAT
    req.metadata_field[:] = ["something_else"]
    with pytest.raises(grpc.RpcError) as ei:
        stub.GetModelMetadata(req)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_model_status(client):
    assert client.get_model_status("handwriting") == {1: {"state": "AVAILABLE", "error_code": 0,
                                                          "error_message": "OK"}}
    st = client.get_model_status("affine")
    assert sorted(st) == [1, 3] and all(v["state"] == "AVAILABLE" for v in st.values())
    assert list(client.get_model_status("affine_all", model_version=2)) == [2]
    with pytest.raises(ModelNotFoundError, match="Model with requested name is not found"):
        client.get_model_status("nope")
    with pytest.raises(ModelNotFoundError, match="Model with requested version is not found"):
        client.get_model_status("affine", model_version=2)


@pytest.mark.parametrize("inputs, message", [
    ({"x": np.zeros((1, 4), np.float32), "z": np.zeros((1, 4), np.float32)},
     "Invalid number of inputs - Expected: 1; Actual: 2"),
    ({"data": np.zeros((1, 4), np.float32)}, "Missing input with specific name - Required input: x"),
    ({"x": np.zeros((1, 5), np.float32)}, "Invalid input shape - Expected: (1,4); Actual: (1,5); input name: x"),
    ({"x": np.zeros((3, 4), np.float32)}, "Invalid input batch size - Expected: 1; Actual: 3; input name: x"),
    ({"x": np.zeros((1, 4), np.int32)}, "Invalid input precision - Expected: FP32; Actual: I32; input name: x"),
    ({"x": np.zeros((1, 4), np.float64)}, "Invalid input precision - Expected: FP32; Actual: FP64; input name: x"),
])
def test_predict_invalid_input(client, inputs, message):
    with pytest.raises(InvalidInputError) as ei:
        client.predict(inputs, "affine")
    assert message in str(ei.value)


def test_predict_unknown_model(client):
    with pytest.raises(ModelNotFoundError, match="Model with requested name is not found"):
        client.predict({"x": np.zeros((1, 4), np.float32)}, "nope")
    with pytest.raises(ModelNotFoundError):
        client.get_model_metadata("nope")


def _predict_request(name="affine", **tensor):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.inputs["x"].CopyFrom(tensor_pb2.TensorProto(
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1),
                                                            tensor_shape_pb2.TensorShapeProto.Dim(size=4)]),
        **tensor))
    return req


def test_predict_typed_float_val_and_wire_response(stub):
    resp = stub.Predict(_predict_request(dtype=1, float_val=[1, 2, 3, 4]))
    assert resp.model_spec.name == "affine" and resp.model_spec.version.value == 3
    out = resp.outputs["y"]
    assert out.dtype == 1 and [d.size for d in out.tensor_shape.dim] == [1, 4]
    assert np.frombuffer(out.tensor_content, np.float32).tolist() == [3, 6, 9, 12]


def test_predict_content_size_checked(stub):
    with pytest.raises(grpc.RpcError) as ei:
        stub.Predict(_predict_request(dtype=1, tensor_content=b"\0" * 12))
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ei.value.details() == ("Invalid content size of tensor proto - Expected: 16 bytes; Actual: 12 bytes; "
                                  "input name: x")


def test_predict_output_filter(stub, server):
    req = _predict_request(dtype=1, float_val=[1, 1, 1, 1])
    req.output_filter.append("y")
    assert list(stub.Predict(req).outputs) == ["y"]
    req.output_filter[:] = ["nope"]
    with pytest.raises(grpc.RpcError) as ei:
        stub.Predict(req)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_predict_without_model_spec(stub):
    with pytest.raises(grpc.RpcError) as ei:
        stub.Predict(predict_pb2.PredictRequest())
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "model_spec missing" in ei.value.details()
