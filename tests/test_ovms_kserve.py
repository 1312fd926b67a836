"""The OVMS emulator's KServe v2 gRPC API, with tritonclient as the peer."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests import modelgen
from tests.precision import F32

HEAT = np.random.default_rng(1).standard_normal((1, 19, 32, 57)).astype(np.float32)
PAFS = np.random.default_rng(2).standard_normal((1, 38, 32, 57)).astype(np.float32)


@pytest.fixture(scope="module")
def server(model_repo, tmp_path_factory):
    from emulators.ovms.launcher import start_server, write_config

    pose = model_repo.add("kfs-pose", modelgen.pose_model, HEAT, PAFS)
    # versions 1..3 of y = x * v; the policy serves the latest 2 (2 and 3)
    aff = model_repo.root / "kfs-affine"
    for v in (1, 2, 3):
        modelgen.write_version(aff, v, modelgen.affine_model, scale=float(v), shape=(1, 4))
    ints = model_repo.add("kfs-int", modelgen.affine_model, scale=3, bias=1, shape=(2, 3), dtype=np.int64)
    cfg = write_config(tmp_path_factory.mktemp("kfs") / "config.json", [
        {"name": "pose", "base_path": str(pose), "plugin_config": F32},
        {"name": "affine", "base_path": str(aff), "model_version_policy": {"latest": {"num_versions": 2}}},
        {"name": "ints", "base_path": str(ints)},
    ])
    srv = start_server(["--config_path", str(cfg)], timeout=60)
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def client(server):
    c = tg.InferenceServerClient(server.address)
    yield c
    c.close()


@pytest.fixture
def stub(server):
    ch = grpc.insecure_channel(server.address)
    yield service_pb2_grpc.GRPCInferenceServiceStub(ch)
    ch.close()


def _inp(name, arr, datatype="FP32"):
    i = tg.InferInput(name, list(arr.shape), datatype)
    i.set_data_from_numpy(arr)
    return i


def _err(fn) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as ei:
        fn()
    return ei.value


def test_server_live_ready_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    md = client.get_server_metadata()
    assert md.name == "OpenVINO Model Server" and md.version


def test_model_ready(client):
    assert client.is_model_ready("pose")
    assert client.is_model_ready("affine", "3") and client.is_model_ready("affine", "2")
    e = _err(lambda: client.is_model_ready("affine", "1"))  # retired by the version policy -> never served
    assert e.status() == "StatusCode.NOT_FOUND" and "Model with requested version is not found" in e.message()
    e = _err(lambda: client.is_model_ready("nope"))
    assert e.status() == "StatusCode.NOT_FOUND" and "Model with requested name is not found" in e.message()


def test_model_metadata(client):
    md = client.get_model_metadata("pose")
    assert md.name == "pose" and md.versions == ["1"] and md.platform == "OpenVINO"
    assert [(t.name, t.datatype, list(t.shape)) for t in md.inputs] == [("data", "FP32", [1, 3, 256, 456])]
    assert sorted((t.name, t.datatype, list(t.shape)) for t in md.outputs) == [
        ("Mconv7_stage2_L1", "FP32", [1, 38, 32, 57]), ("Mconv7_stage2_L2", "FP32", [1, 19, 32, 57])]
    assert client.get_model_metadata("affine").versions == ["3"]   # default = highest
    assert client.get_model_metadata("affine", "2").versions == ["2"]
    assert client.get_model_metadata("ints").inputs[0].datatype == "INT64"


def test_infer_raw_contents_exact(client):
    x = np.random.default_rng(0).random((1, 3, 256, 456), dtype=np.float32) * 255
    r = client.infer("pose", [_inp("data", x)])
    assert np.array_equal(r.as_numpy("Mconv7_stage2_L2"), HEAT)
    assert np.array_equal(r.as_numpy("Mconv7_stage2_L1"), PAFS)
    resp = r.get_response()
    assert resp.model_name == "pose" and resp.model_version == "1"


def test_infer_requested_output_and_id(client):
    x = np.zeros((1, 3, 256, 456), np.float32)
    r = client.infer("pose", [_inp("data", x)], outputs=[tg.InferRequestedOutput("Mconv7_stage2_L2")],
                     request_id="req-7")
    resp = r.get_response()
    assert [o.name for o in resp.outputs] == ["Mconv7_stage2_L2"] and resp.id == "req-7"
    assert np.array_equal(r.as_numpy("Mconv7_stage2_L2"), HEAT)


def test_infer_versions(client):
    x = np.array([[1, 2, 3, 4]], np.float32)
    assert np.array_equal(client.infer("affine", [_inp("x", x)]).as_numpy("y"), x * 3)
    assert np.array_equal(client.infer("affine", [_inp("x", x)], model_version="2").as_numpy("y"), x * 2)
    r = client.infer("affine", [_inp("x", x)], model_version="2").get_response()
    assert r.model_version == "2"
    e = _err(lambda: client.infer("affine", [_inp("x", x)], model_version="1"))
    assert e.status() == "StatusCode.NOT_FOUND" and "Model with requested version is not found" in e.message()
    e = _err(lambda: client.infer("affine", [_inp("x", x)], model_version="9"))
    assert e.status() == "StatusCode.NOT_FOUND"


def test_infer_int64(client):
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    r = client.infer("ints", [_inp("x", x, "INT64")])
    assert r.as_numpy("y").dtype == np.int64 and np.array_equal(r.as_numpy("y"), x * 3 + 1)


def test_infer_typed_contents(stub):
    req = service_pb2.ModelInferRequest(model_name="affine", model_version="2")
    t = req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    t.contents.fp32_contents.extend([1.5, -2.0, 3.0, 4.25])
    resp = stub.ModelInfer(req)
    assert len(resp.raw_output_contents) == 1 and resp.outputs[0].datatype == "FP32"
    out = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(list(resp.outputs[0].shape))
    assert np.array_equal(out, np.array([[3.0, -4.0, 6.0, 8.5]], np.float32))
    req = service_pb2.ModelInferRequest(model_name="ints")
    t = req.inputs.add(name="x", datatype="INT64", shape=[2, 3])
    t.contents.int64_contents.extend(range(6))
    resp = stub.ModelInfer(req)
    assert np.frombuffer(resp.raw_output_contents[0], np.int64).tolist() == [1, 4, 7, 10, 13, 16]


def _raw(stub, model, inputs, raw=None, version=""):
    req = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for name, dt, shape in inputs:
        req.inputs.add(name=name, datatype=dt, shape=shape)
    if raw is not None:
        req.raw_input_contents.extend(raw)
    with pytest.raises(grpc.RpcError) as ei:
        stub.ModelInfer(req)
    return ei.value.code(), ei.value.details()


@pytest.mark.parametrize("case, expect", [
    ("unknown_model", (grpc.StatusCode.NOT_FOUND, "Model with requested name is not found")),
    ("two_inputs", (grpc.StatusCode.INVALID_ARGUMENT, "Invalid number of inputs - Expected: 1; Actual: 2")),
    ("no_inputs", (grpc.StatusCode.INVALID_ARGUMENT, "Invalid number of inputs - Expected: 1; Actual: 0")),
    ("wrong_name", (grpc.StatusCode.INVALID_ARGUMENT, "Missing input with specific name - Required input: x")),
    ("wrong_shape", (grpc.StatusCode.INVALID_ARGUMENT,
                     "Invalid input shape - Expected: (1,4); Actual: (1,5); input name: x")),
    ("wrong_rank", (grpc.StatusCode.INVALID_ARGUMENT,
                    "Invalid number of shape dimensions - Expected: (1,4); Actual: (4); input name: x")),
    ("wrong_batch", (grpc.StatusCode.INVALID_ARGUMENT,
                     "Invalid input batch size - Expected: 1; Actual: 2; input name: x")),
    ("wrong_precision", (grpc.StatusCode.INVALID_ARGUMENT,
                         "Invalid input precision - Expected: FP32; Actual: INT64; input name: x")),
    ("short_buffer", (grpc.StatusCode.INVALID_ARGUMENT,
                      "Invalid content size of tensor proto - Expected: 16 bytes; Actual: 12 bytes; input name: x")),
    ("zero_dim", (grpc.StatusCode.INVALID_ARGUMENT, "Invalid input shape - Negative or zero dimension")),
    ("bad_version", (grpc.StatusCode.INVALID_ARGUMENT, "Model version invalid format")),
])
def test_infer_errors(stub, case, expect):
    f16 = np.zeros(4, np.float32).tobytes()
    args = {
        "unknown_model": ("nope", [("x", "FP32", [1, 4])], [f16]),
        "two_inputs": ("affine", [("x", "FP32", [1, 4]), ("z", "FP32", [1, 4])], [f16, f16]),
        "no_inputs": ("affine", [], None),
        "wrong_name": ("affine", [("data", "FP32", [1, 4])], [f16]),
        "wrong_shape": ("affine", [("x", "FP32", [1, 5])], [f16 + f16[:4]]),
        "wrong_rank": ("affine", [("x", "FP32", [4])], [f16]),
        "wrong_batch": ("affine", [("x", "FP32", [2, 4])], [f16 + f16]),
        "wrong_precision": ("affine", [("x", "INT64", [1, 4])], [f16 + f16]),
        "short_buffer": ("affine", [("x", "FP32", [1, 4])], [f16[:12]]),
        "zero_dim": ("affine", [("x", "FP32", [0, 4])], [b""]),
        "bad_version": ("affine", [("x", "FP32", [1, 4])], [f16]),
    }[case]
    code, details = _raw(stub, *args, version="v1" if case == "bad_version" else "")
    assert code == expect[0]
    assert details.startswith(expect[1]), details


def test_raw_and_typed_contents_together_rejected(stub):
    req = service_pb2.ModelInferRequest(model_name="affine")
    t = req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    t.contents.fp32_contents.extend([1, 2, 3, 4])
    req.raw_input_contents.append(np.zeros(4, np.float32).tobytes())
    with pytest.raises(grpc.RpcError) as ei:
        stub.ModelInfer(req)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Passing buffers both in InferInputTensor contents and in raw_input_contents" in ei.value.details()


def test_typed_value_count_checked(stub):
    req = service_pb2.ModelInferRequest(model_name="affine")
    t = req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    t.contents.fp32_contents.extend([1, 2, 3])
    with pytest.raises(grpc.RpcError) as ei:
        stub.ModelInfer(req)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ei.value.details() == ("Invalid number of values in tensor proto container - Expected: 4 values; "
                                  "Actual: 3 values; input name: x")


def test_tritonclient_error_for_unknown_model(client):
    e = _err(lambda: client.infer("nope", [_inp("x", np.zeros((1, 4), np.float32))]))
    assert e.status() == "StatusCode.NOT_FOUND"
    e = _err(lambda: client.get_model_metadata("nope"))
    assert e.status() == "StatusCode.NOT_FOUND"


def test_infer_request_split_matches_protobuf():
    """The server reads raw tensors where they arrived: the small fields parse as protobuf would,
    the raw contents are views of the received bytes, equal to protobuf's."""
    from emulators.ovms.kserve import split_infer_request

    req = service_pb2.ModelInferRequest(model_name="m", model_version="3", id="x")
    req.parameters["k"].int64_param = 7
    for n, size in (("a", 4), ("b", 0), ("c", 70000)):
        req.inputs.add(name=n, datatype="UINT8", shape=[size])
        req.raw_input_contents.append(bytes(range(256)) * (size // 256) + bytes(size % 256))
    req.outputs.add(name="y")
    wire = req.SerializeToString()
    head, raw = split_infer_request(wire)
    assert [bytes(r) for r in raw] == list(req.raw_input_contents)
    del req.raw_input_contents[:]
    assert head == req
    assert all(isinstance(r, memoryview) and r.obj is wire for r in raw)  # views, not copies


@pytest.mark.parametrize("garbage", [b"\x3a\xff\xff\xff\xff\x0f", b"\x0a\x05ab", b"\x3f\x00", b"\xff" * 11])
def test_malformed_infer_bytes_are_invalid_argument_and_survived(server, client, garbage):
    ch = grpc.insecure_channel(server.address)
    call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer", request_serializer=lambda b: b,
                          response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as ei:
        call(garbage, timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ch.close()
    assert client.is_server_live()  # and it answers the next caller
