"""shared.serving adapters against real gRPC servers (in-process servicers built from the
stubs shipped with tritonclient and ovmsclient), so every status and transport path is real."""
from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
from ovmsclient.tfs_compat.protos.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from ovmsclient.tfs_compat.protos.tensorflow.core.protobuf import meta_graph_pb2
from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import (get_model_metadata_pb2,
                                                                   get_model_status_pb2,
                                                                   model_service_pb2_grpc, predict_pb2,
                                                                   prediction_service_pb2_grpc)
from tritonclient.grpc import service_pb2, service_pb2_grpc

from scripts.tooling.azurite import free_port
from shared import config, errors, serving
from shared.serving.grpc_common import STATUS_TABLE, ManagedChannel, error_from_status
from shared.serving.kserve import KServeAdapter
from tests.fake_stub import FutureStub


#: The longest a held call waits for its event before the fake server answers anyway: only
#: reached when the behaviour under test is broken (the test then fails instead of hanging).
HOLD_S = 10.0


class Behaviour:
    """What the fake server does next: ok, fail with a status, hold each call until ``release`` is
    set, or hold calls until ``meet`` of them are inside at once."""

    def __init__(self) -> None:
        self.error: tuple | None = None
        self.release: threading.Event | None = None
        self.meet = 0
        self.met = threading.Event()
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def enter(self, context) -> None:
        with self.lock:
            self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.meet and self.in_flight >= self.meet:
                self.met.set()
        try:
            if self.meet:
                self.met.wait(HOLD_S)
            if self.release is not None:
                self.release.wait(HOLD_S)
            if self.error:
                context.abort(*self.error)
        finally:
            with self.lock:
                self.in_flight -= 1


class FakeKServe(service_pb2_grpc.GRPCInferenceServiceServicer):
    """A KServe v2 model 'double': y = 2 * x, x [1,3] f32, versions 1 and 2."""

    def __init__(self, b: Behaviour) -> None:
        self.b = b

    def ModelMetadata(self, request, context):
        self.b.enter(context)
        if request.name != "double":
            context.abort(grpc.StatusCode.NOT_FOUND, "Model with requested name is not found")
        r = service_pb2.ModelMetadataResponse(name="double", versions=["1", "2"], platform="OpenVINO")
        r.inputs.add(name="x", datatype="FP32", shape=[1, 3])
        r.outputs.add(name="y", datatype="FP32", shape=[1, 3])
        return r

    def ModelReady(self, request, context):
        self.b.enter(context)
        if request.name != "double":
            context.abort(grpc.StatusCode.NOT_FOUND, "Model with requested name is not found")
        return service_pb2.ModelReadyResponse(ready=True)

    def ModelInfer(self, request, context):
        self.b.enter(context)
        x = np.frombuffer(request.raw_input_contents[0], np.float32).reshape(list(request.inputs[0].shape))
        r = service_pb2.ModelInferResponse(model_name="double", model_version="2")
        r.outputs.add(name="y", datatype="FP32", shape=list(x.shape))
        r.raw_output_contents.append((x * 2).astype(np.float32).tobytes())
        return r


def _tensor(name_shape, dtype=types_pb2.DT_FLOAT):
    return meta_graph_pb2.TensorInfo(name=name_shape[0], dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in name_shape[1]]))


class FakeTfs(prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer):
    """The same 'double' model over the TensorFlow-Serving API."""

    def __init__(self, b: Behaviour) -> None:
        self.b = b

    def GetModelMetadata(self, request, context):
        self.b.enter(context)
        if request.model_spec.name != "double":
            context.abort(grpc.StatusCode.NOT_FOUND, "Model with requested name is not found")
        sig = get_model_metadata_pb2.SignatureDefMap()
        sd = sig.signature_def["serving_default"]
        sd.inputs["x"].CopyFrom(_tensor(("x", [1, 3])))
        sd.outputs["y"].CopyFrom(_tensor(("y", [1, 3])))
        r = get_model_metadata_pb2.GetModelMetadataResponse()
        r.model_spec.name = "double"
        r.model_spec.version.value = 2
        r.metadata["signature_def"].Pack(sig)
        return r

    def GetModelStatus(self, request, context):
        self.b.enter(context)
        if request.model_spec.name != "double":
            context.abort(grpc.StatusCode.NOT_FOUND, "Model with requested name is not found")
        r = get_model_status_pb2.GetModelStatusResponse()
        s = r.model_version_status.add()
        s.version = 2
        s.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return r

    def Predict(self, request, context):
        self.b.enter(context)
        t = request.inputs["x"]
        x = np.frombuffer(t.tensor_content, np.float32).reshape([d.size for d in t.tensor_shape.dim])
        r = predict_pb2.PredictResponse()
        r.model_spec.name = "double"
        y = (x * 2).astype(np.float32)
        r.outputs["y"].CopyFrom(tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT, tensor_content=y.tobytes(),
            tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in y.shape])))
        return r


class Server:
    def __init__(self, port: int) -> None:
        self.port = port
        self.b = Behaviour()
        self.server = None

    def start(self) -> "Server":
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(FakeKServe(self.b), self.server)
        tfs = FakeTfs(self.b)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(tfs, self.server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(tfs, self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.stop(0).wait()
            self.server = None


@pytest.fixture
def server():
    s = Server(free_port()).start()
    yield s
    s.stop()


def settings(port: int, api: str, **over) -> config.ModelSettings:
    env = {"T_IPADDRESS": "127.0.0.1", "T_PORT": str(port), "T_MODEL_NAME": "double", "OVMS_API": api,
           "T_TIMEOUT_SECONDS": "2", "OVMS_CONNECT_TIMEOUT_SECONDS": "0.3"}
    env.update(over)
    return config.model_settings("T", env)


@pytest.fixture(autouse=True)
def _reset_adapters():
    serving.reset()
    yield
    serving.reset()


APIS = ["kserve", "tfs"]


@pytest.mark.parametrize("api", APIS)
def test_metadata_and_infer(server, api):
    a = serving.get_adapter(settings(server.port, api))
    meta = a.metadata()
    assert list(meta.inputs) == ["x"] and meta.inputs["x"].shape == (1, 3) and meta.inputs["x"].dtype == "float32"
    assert meta.outputs["y"].dtype == "float32" and meta.version == "2"
    out = a.infer({"x": np.array([[1, 2, 3]], np.float32)})
    assert out["y"].tolist() == [[2, 4, 6]]
    st = a.status()
    assert st.ready and st.state == "AVAILABLE"


@pytest.mark.parametrize("api", APIS)
def test_metadata_is_cached_and_adapter_reused(server, api):
    s = settings(server.port, api)
    a = serving.get_adapter(s)
    assert serving.get_adapter(s) is a
    a.metadata()
    calls = server.b.calls
    for _ in range(5):
        a.metadata()
    assert server.b.calls == calls


def test_one_channel_per_address_shared_by_models(server):
    a = serving.get_adapter(settings(server.port, "kserve"))
    b = serving.get_adapter(settings(server.port, "tfs"))
    assert a is not b and a._channel is b._channel


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("code,expected", [
    (grpc.StatusCode.UNAVAILABLE, errors.ModelUnavailable),
    (grpc.StatusCode.NOT_FOUND, errors.ModelNotFound),
    (grpc.StatusCode.INVALID_ARGUMENT, errors.ModelServerError),
    (grpc.StatusCode.INTERNAL, errors.ModelServerError),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ModelUnavailable),
])
def test_status_mapping_through_real_grpc(server, api, code, expected):
    a = serving.get_adapter(settings(server.port, api))
    a.metadata()
    server.b.error = (code, "Model with requested version is not loaded yet" if code == grpc.StatusCode.UNAVAILABLE
                      else "boom")
    with pytest.raises(expected) as info:
        a.infer({"x": np.zeros((1, 3), np.float32)})
    assert info.value.status == expected.status
    assert "double" in info.value.message
    if expected.status == 503:
        assert info.value.headers.get("Retry-After")


@pytest.mark.parametrize("api", APIS)
def test_deadline_gives_504(server, api):
    a = serving.get_adapter(settings(server.port, api, T_TIMEOUT_SECONDS="0.3"))
    a.metadata()
    server.b.release = threading.Event()  # the server holds the call until released
    try:
        with pytest.raises(errors.ModelTimeout, match=r"within 0\.3 s"):
            a.infer({"x": np.zeros((1, 3), np.float32)})
        # the client gave up at its deadline while the server still held the call
        assert server.b.in_flight == 1
    finally:
        server.b.release.set()


@pytest.mark.parametrize("api", APIS)
def test_unknown_model_is_503_naming_it(server, api):
    a = serving.get_adapter(settings(server.port, api, T_MODEL_NAME="nope"))
    with pytest.raises(errors.ModelNotFound, match="nope"):
        a.metadata()
    st = a.status()
    assert not st.ready


#: A server that is down must fail a call after the connect timeout (CONNECT_S), never after the
#: inference deadline (INFERENCE_S). Measured with two busy loops on the 2 cores (24 rounds over
#: both APIs): down 0.30 to 0.36 s, after the server stopped 0.30 to 0.35 s, ManagedChannel with
#: 0.2 s 0.20 to 0.22 s. Bounds: the timeout plus SLACK_S (23x the worst overhead measured), 5x
#: under the inference deadline.
CONNECT_S, INFERENCE_S, SLACK_S = 0.3, 10.0, 1.5


@pytest.mark.parametrize("api", APIS)
def test_down_server_fails_fast_then_recovers(api):
    port = free_port()
    a = serving.get_adapter(settings(port, api, T_TIMEOUT_SECONDS=str(INFERENCE_S),
                                     OVMS_CONNECT_TIMEOUT_SECONDS=str(CONNECT_S)))
    for _ in range(3):
        t = time.monotonic()
        with pytest.raises(errors.ModelUnreachable):  # the connect timeout, not a call's deadline
            a.metadata()
        assert time.monotonic() - t < CONNECT_S + SLACK_S
    st = a.status()
    assert not st.ready and st.state == "UNREACHABLE"
    s = Server(port).start()
    try:
        # measured with two busy loops: recovered 0.003 to 0.60 s after the start (24 rounds)
        deadline = time.monotonic() + 5
        while True:  # the same adapter (same worker) recovers without being rebuilt
            try:
                assert a.infer({"x": np.ones((1, 3), np.float32)})["y"].tolist() == [[2, 2, 2]]
                break
            except errors.ModelUnavailable:
                assert time.monotonic() < deadline, "did not recover within 5 s"
                time.sleep(0.1)
        s.stop()
        t = time.monotonic()
        with pytest.raises(errors.ModelUnavailable):  # refused, or the connect timeout: no deadline
            a.infer({"x": np.ones((1, 3), np.float32)})
        assert time.monotonic() - t < CONNECT_S + SLACK_S
    finally:
        s.stop()


@pytest.mark.parametrize("api", APIS)
def test_concurrent_calls_share_one_channel(server, api):
    a = serving.get_adapter(settings(server.port, api, T_TIMEOUT_SECONDS=str(2 * HOLD_S)))
    a.metadata()
    server.b.meet = 4  # the server answers once the four calls are inside it at the same time
    with futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: a.infer({"x": np.full((1, 3), i, np.float32)})["y"][0, 0], range(4)))
    assert results == [0, 2, 4, 6]
    assert server.b.max_in_flight == 4 and len(serving._channels) == 1  # four at once, on one channel


def test_injected_stub_is_used():
    """The transport takes its stub as an argument: a test double needs no network."""
    class Stub:
        def ModelMetadata(self, request, timeout):
            r = service_pb2.ModelMetadataResponse(name="m", versions=["1"])
            r.inputs.add(name="x", datatype="FP32", shape=[1])
            return r

        def ModelInfer(self, request, timeout):
            r = service_pb2.ModelInferResponse()
            r.outputs.add(name="y", datatype="INT64", shape=[2])
            r.raw_output_contents.append(np.array([7, 8], np.int64).tobytes())
            return r

    class ReadyChannel:
        channel = None

        def ensure_ready(self, what):
            return None

    a = KServeAdapter(ReadyChannel(), "m", None, 1.0, stub=FutureStub(Stub()))
    assert a.infer({"x": np.zeros(1, np.float32)})["y"].tolist() == [7, 8]


def test_bad_output_shape_is_502():
    class Stub:
        def ModelMetadata(self, request, timeout):
            r = service_pb2.ModelMetadataResponse(name="m", versions=["1"])
            r.inputs.add(name="x", datatype="FP32", shape=[1])
            return r

        def ModelInfer(self, request, timeout):
            r = service_pb2.ModelInferResponse()
            r.outputs.add(name="y", datatype="FP32", shape=[5])
            r.raw_output_contents.append(b"\x00" * 8)
            return r

    class ReadyChannel:
        channel = None

        def ensure_ready(self, what):
            return None

    with pytest.raises(errors.BadModelOutput):
        KServeAdapter(ReadyChannel(), "m", None, 1.0, stub=FutureStub(Stub())).infer({"x": np.zeros(1, np.float32)})


def test_status_table_is_complete_for_the_issue_cases():
    assert STATUS_TABLE[grpc.StatusCode.UNAVAILABLE][0].status == 503
    assert STATUS_TABLE[grpc.StatusCode.DEADLINE_EXCEEDED][0].status == 504
    assert STATUS_TABLE[grpc.StatusCode.NOT_FOUND][0].status == 503
    assert STATUS_TABLE[grpc.StatusCode.INVALID_ARGUMENT][0].status == 502
    e = error_from_status(grpc.StatusCode.NOT_FOUND, "x" * 1000, "'m'", 1.0)
    assert len(e.message) < 400 and "'m'" in e.message


def test_managed_channel_reports_unreachable_quickly():
    ch = ManagedChannel(f"127.0.0.1:{free_port()}", 0.2)
    t = time.monotonic()
    with pytest.raises(errors.ModelUnreachable, match="unreachable"):
        ch.ensure_ready("m")
    assert time.monotonic() - t < 0.2 + SLACK_S  # the connect timeout, not gRPC's own wait (none)
    ch.close()


@pytest.mark.parametrize("declared,np_type,expected", [
    ("FP16", np.float16, [0.4, 2.0, 300.0]),
    ("UINT8", np.uint8, [0, 2, 255]),       # rounded to whole levels and clipped, not wrapped
    ("FP32", np.float32, [0.4, 2.0, 300.0]),
])
def test_inputs_are_cast_to_the_types_the_metadata_declares(declared, np_type, expected):
    """Tasks compute in float32; the adapter sends each input as the model declares it (one place,
    for every task), in C order whatever view the task handed over."""
    sent = {}

    class Stub:
        def ModelMetadata(self, request, timeout):
            r = service_pb2.ModelMetadataResponse(name="m", versions=["1"])
            r.inputs.add(name="x", datatype=declared, shape=[1, 3])
            return r

        def ModelInfer(self, request, timeout):
            request = service_pb2.ModelInferRequest.FromString(request)  # the adapter sends it serialized
            sent["type"] = request.inputs[0].datatype
            sent["shape"] = list(request.inputs[0].shape)
            sent["values"] = np.frombuffer(request.raw_input_contents[0], np_type).tolist()
            return service_pb2.ModelInferResponse()

    class ReadyChannel:
        channel = None

        def ensure_ready(self, what):
            return None

    columns = np.array([[0.4, -7.0], [2.0, -7.0], [300.0, -7.0]], np.float32)
    x = columns[:, 0][None]  # [1, 3], not contiguous
    assert not x.flags.c_contiguous
    KServeAdapter(ReadyChannel(), "m", None, 1.0, stub=FutureStub(Stub())).infer({"x": x})
    assert sent["type"] == declared and sent["shape"] == [1, 3]
    assert sent["values"] == pytest.approx(expected, rel=1e-3)


def test_serialized_request_is_what_protobuf_builds():
    """The adapter writes tensors straight into the message: byte for byte what protobuf serializes
    for the same request (several inputs, strided arrays, a cast, an empty and a large tensor)."""
    from shared.serving.kserve import serialize_request

    rng = np.random.default_rng(3)
    image = (rng.random((1, 3, 300, 500), dtype=np.float32) * 255).round()
    tensors = [(image.transpose(0, 2, 3, 1), np.dtype(np.float32)),      # strided view
               (image[:, :1], np.dtype(np.uint8)),                       # cast on the way
               (np.arange(5, dtype=np.int64), np.dtype(np.int64)),
               (np.zeros((0, 3), np.float32), np.dtype(np.float32))]     # empty
    request = service_pb2.ModelInferRequest(model_name="m", model_version="2", id="r1")
    for i, (array, dtype) in enumerate(tensors):
        t = request.inputs.add(name=f"in{i}", datatype="FP32", shape=list(array.shape))
        t.parameters["p"].bool_param = True
    head = request.SerializeToString()
    for array, dtype in tensors:
        request.raw_input_contents.append(np.ascontiguousarray(array).astype(dtype).tobytes())
    assert serialize_request(head, tensors) == request.SerializeToString()
    parsed = service_pb2.ModelInferRequest.FromString(serialize_request(head, tensors))
    assert np.array_equal(np.frombuffer(parsed.raw_input_contents[0], np.float32).reshape(1, 300, 500, 3),
                          image.transpose(0, 2, 3, 1))
