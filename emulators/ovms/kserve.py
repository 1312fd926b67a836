"""KServe v2 gRPC front end (``inference.GRPCInferenceService``) on tritonclient's generated stubs.

``ModelInfer`` reads its request's tensors where they arrived: the request bytes are split into
the message's small fields (parsed by protobuf) and its ``raw_input_contents`` (numpy views of the
received bytes, no copy), and the answer's tensors are written once, from OpenVINO's output memory
into the reply. ``add_to_server`` registers that and the generated handlers for the rest.
"""
from __future__ import annotations

import logging
from typing import Any, List, Sequence, Tuple

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from . import errors as E
from .dtypes import BY_KFS
from .models import ModelManager, RequestTensor
from .rpc import rpc

log = logging.getLogger("ovms.kserve")

SERVER_NAME = "OpenVINO Model Server"
SERVER_VERSION = "2026.2.0 (emulators.ovms)"


def parse_version(text: str) -> int:
    """KServe carries versions as strings; "" is the default version."""
    if text == "":
        return 0
    if not text.isdigit() or int(text) <= 0:
        raise E.invalid("Model version invalid format", f"'{text}' is not a positive integer")
    return int(text)


def _raw_payload(name: str, shape: List[int], dt, raw: bytes):
    def payload() -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        expected = count * dt.np_dtype.itemsize
        if len(raw) != expected:
            raise E.invalid(E.INVALID_CONTENT_SIZE,
                            f"Expected: {expected} bytes; Actual: {len(raw)} bytes; input name: {name}")
        return np.frombuffer(raw, dtype=dt.np_dtype).reshape(shape)
    return payload


def _typed_payload(name: str, shape: List[int], dt, contents):
    def payload() -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        values = getattr(contents, dt.kfs_field) if dt.kfs_field else ()
        if len(values) != count:
            raise E.invalid(E.INVALID_VALUE_COUNT,
                            f"Expected: {count} values; Actual: {len(values)} values; input name: {name}")
        return np.asarray(values, dtype=dt.np_dtype).reshape(shape)
    return payload


RAW_INPUT_FIELD = 7  # ModelInferRequest.raw_input_contents
RAW_OUTPUT_TAG = bytes([6 << 3 | 2])  # ModelInferResponse.raw_output_contents, length-delimited


def _read_varint(data: memoryview, pos: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _write_varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def split_infer_request(wire: bytes) -> Tuple[Any, List[memoryview]]:
    """A serialized ModelInferRequest -> (the message without its raw_input_contents, those
    contents as views of ``wire``). ValueError when the bytes are not a protobuf message."""
    data = memoryview(wire)
    head: List[memoryview] = []
    raw: List[memoryview] = []
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _read_varint(data, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, pos = _read_varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            if field == RAW_INPUT_FIELD:
                raw.append(data[pos:pos + size])
                pos += size
                continue
            pos += size
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if pos > len(data):
            raise ValueError("truncated field")
        head.append(data[start:pos])
    return service_pb2.ModelInferRequest.FromString(b"".join(head)), raw


def serialize_infer_response(head: Any, outputs: Sequence[Any]) -> bytes:
    """The reply: ``head`` (a ModelInferResponse without raw contents), then each output's data as
    a ``raw_output_contents`` entry (one copy into the reply; protobuf would make two)."""
    parts: List[Any] = [head.SerializeToString()]
    for out in outputs:
        data = memoryview(out.data).cast("B")
        parts += [RAW_OUTPUT_TAG, _write_varint(len(data)), data]
    return b"".join(parts)


def add_to_server(servicer: "KServeServicer", server: grpc.Server) -> None:
    """Register the KServe service: every method as the generated code would, except
    ``ModelInfer``, which takes and answers bytes (see the module docstring)."""
    service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers = {}
    for method in service.methods:
        if method.name == "ModelInfer":
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(servicer.ModelInferWire)
            continue
        request = getattr(service_pb2, method.input_type.name).FromString
        response = getattr(service_pb2, method.output_type.name).SerializeToString
        factory = {(False, False): grpc.unary_unary_rpc_method_handler,
                   (False, True): grpc.unary_stream_rpc_method_handler,
                   (True, False): grpc.stream_unary_rpc_method_handler,
                   (True, True): grpc.stream_stream_rpc_method_handler}[
            (method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(getattr(servicer, method.name), request_deserializer=request,
                                        response_serializer=response)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))


class KServeServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """ServerLive, ServerReady, ServerMetadata, ModelReady, ModelMetadata and ModelInfer as OVMS answers them."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    @rpc
    def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    @rpc
    def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=self.manager.config_loaded.is_set())

    @rpc
    def ServerMetadata(self, request, context):
        return service_pb2.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=[])

    @rpc
    def ModelReady(self, request, context):
        model = self.manager.get(request.name)
        version = parse_version(request.version)
        if version == 0:
            return service_pb2.ModelReadyResponse(ready=bool(model.ready_versions()))
        if version not in model.versions:
            if not model.listed:
                return service_pb2.ModelReadyResponse(ready=False)
            raise E.model_version_missing()
        return service_pb2.ModelReadyResponse(ready=model.versions[version].available)

    @rpc
    def ModelMetadata(self, request, context):
        model = self.manager.get(request.name)
        mv = model.get_version(parse_version(request.version))
        resp = service_pb2.ModelMetadataResponse(name=model.name, versions=[str(mv.version)], platform="OpenVINO")
        for spec in mv.inputs:
            resp.inputs.add(name=spec.name, datatype=spec.dtype.kfs, shape=spec.shape)
        for spec in mv.outputs:
            resp.outputs.add(name=spec.name, datatype=spec.dtype.kfs, shape=spec.shape)
        return resp

    @rpc
    def ModelInferWire(self, wire, context):
        """ModelInfer on the request's bytes; answers the reply's bytes (``add_to_server``)."""
        try:
            request, raw = split_infer_request(wire)
        except Exception as exc:  # noqa: BLE001 - a malformed message (protobuf raises its own types)
            raise E.OvmsError(grpc.StatusCode.INVALID_ARGUMENT, "Invalid message structure",
                              f"the request is not a ModelInferRequest ({exc})") from None
        head, outputs = self._infer(request, raw)
        return serialize_infer_response(head, outputs)

    def _infer(self, request, raw):
        """Validate and run one inference; (the reply without raw contents, the outputs)."""
        model = self.manager.get(request.model_name)
        mv = model.get_version(parse_version(request.model_version))
        if raw:
            if len(raw) != len(request.inputs):
                raise E.invalid(E.INVALID_MESSAGE_STRUCTURE,
                                f"Number of raw_input_contents ({len(raw)}) does not match number of inputs "
                                f"({len(request.inputs)})")
            for inp in request.inputs:
                if inp.HasField("contents"):
                    raise E.invalid(E.INVALID_MESSAGE_STRUCTURE,
                                    "Passing buffers both in InferInputTensor contents and in raw_input_contents "
                                    f"is not allowed. Detected buffer in InferInputTensor contents for input: "
                                    f"{inp.name}")
        tensors = []
        for i, inp in enumerate(request.inputs):
            dt = BY_KFS.get(inp.datatype)
            shape = list(inp.shape)
            if dt is None:
                payload = None
            elif raw:
                payload = _raw_payload(inp.name, shape, dt, raw[i])
            else:
                payload = _typed_payload(inp.name, shape, dt, inp.contents)
            tensors.append(RequestTensor(inp.name, shape, dt, inp.datatype or "UNDEFINED", payload))
        requested = [o.name for o in request.outputs]
        outputs = mv.infer(tensors, requested)
        resp = service_pb2.ModelInferResponse(model_name=model.name, model_version=str(mv.version), id=request.id)
        for out in outputs:
            resp.outputs.add(name=out.name, datatype=out.dtype.kfs, shape=out.shape)
        return resp, outputs

    def ModelStreamInfer(self, request_iterator, context):
        import grpc
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "ModelStreamInfer is not supported by this emulator")
