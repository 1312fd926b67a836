"""KServe v2 gRPC adapter (OpenVINO Model Server 2026.3+ serves only this API; older ones too).

Uses the service stub and messages shipped with ``tritonclient[grpc]``. Tensors travel as
``raw_input_contents`` / ``raw_output_contents`` (no per-element protobuf). The request is
serialized here: protobuf for its small fields, then each tensor written once, straight from the
task's array and cast to the declared type, into the message (protobuf would copy it three times:
into a contiguous array, into the message, into the wire bytes). Outputs are read-only views of
the answer. The stub is injectable so tests can swap the transport; its ``ModelInfer`` takes the
serialized request.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from shared.errors import BadModelOutput, ModelServerError, OvaasError
from shared.logs import get_logger
from shared.serving.base import CachedMetadataAdapter, ModelMetadata, ModelStatus, TensorInfo, copy_as
from shared.serving.grpc_common import (READINESS_DEADLINE_S, ManagedChannel, error_from_status,
                                         status_from_error)

log = get_logger("serving.kserve")

# KServe v2 datatype <-> numpy
_KSERVE_TO_NP = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
_NP_TO_KSERVE = {np.dtype(v).name: k for k, v in _KSERVE_TO_NP.items()}

#: ModelInferRequest field 7, ``repeated bytes raw_input_contents``, length-delimited (wire type 2)
_RAW_INPUT_TAG = bytes([7 << 3 | 2])
_MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


class _Stub:
    """The KServe service's calls on a channel, ``ModelInfer`` taking the serialized request."""

    def __init__(self, channel: Any) -> None:
        generated = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        self.ModelMetadata = generated.ModelMetadata
        self.ModelReady = generated.ModelReady
        self.ModelInfer = channel.unary_unary(_MODEL_INFER, request_serializer=_as_is,
                                              response_deserializer=service_pb2.ModelInferResponse.FromString)


#: How long past a call's deadline we wait for gRPC to report it before giving up ourselves.
DEADLINE_GRACE_S = 0.05


def _as_is(data: bytes) -> bytes:
    return data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def serialize_request(head: bytes, tensors: Sequence[Tuple[np.ndarray, np.dtype]]) -> bytes:
    """A serialized ModelInferRequest: ``head`` (its other fields, serialized by protobuf), then
    each array as a ``raw_input_contents`` entry, written in C order as the given dtype."""
    sizes = [array.size * dtype.itemsize for array, dtype in tensors]
    prefixes = [_RAW_INPUT_TAG + _varint(n) for n in sizes]
    buf = bytearray(len(head) + sum(len(p) + n for p, n in zip(prefixes, sizes)))
    buf[:len(head)] = head
    pos = len(head)
    for (array, dtype), prefix, n in zip(tensors, prefixes, sizes):
        buf[pos:pos + len(prefix)] = prefix
        pos += len(prefix)
        copy_as(np.frombuffer(buf, dtype, count=array.size, offset=pos).reshape(array.shape), array)
        pos += n
    return bytes(buf)


class KServeAdapter(CachedMetadataAdapter):
    """One model on a KServe v2 gRPC endpoint."""

    def __init__(self, channel: ManagedChannel, model_name: str, model_version: Optional[int],
                 timeout_s: float, metadata_ttl_s: float = 300.0, stub: Any = None) -> None:
        super().__init__(metadata_ttl_s)
        self._channel = channel
        self._stub = stub or _Stub(channel.calls)
        self.model_name = model_name
        self.model_version = "" if model_version is None else str(model_version)
        self.timeout_s = timeout_s

    @property
    def _label(self) -> str:
        return f"{self.model_name!r}" + (f" version {self.model_version}" if self.model_version else "")

    def _call(self, method: str, request: Any, timeout: float) -> Any:
        """One call with ``timeout`` as its deadline, and no wait past it.

        gRPC's own deadline is not enough: with the server stalled (its process stopped, so it
        reads nothing), calls whose request bytes were still queued behind the HTTP/2 window ended
        only when the keepalive gave up on the connection, 5.3 s instead of 1 s (three of four
        concurrent 2 MB calls, on a loaded 2-core machine). So the call runs as a future that we
        wait on for the deadline, and cancel past it.
        """
        self._channel.ensure_ready(self._label)
        try:
            future = getattr(self._stub, method).future(request, timeout=timeout)
            try:
                return future.result(timeout=timeout + DEADLINE_GRACE_S)
            except grpc.FutureTimeoutError:
                future.cancel()
                raise error_from_status(grpc.StatusCode.DEADLINE_EXCEEDED, "", self._label, timeout) from None
        except grpc.RpcError as exc:  # logged once, by shared.http, as the error it maps to
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            raise error_from_status(code, details, self._label, timeout) from None

    # -- interface ---------------------------------------------------------------------------

    def _fetch_metadata(self) -> ModelMetadata:
        response = self._call("ModelMetadata", service_pb2.ModelMetadataRequest(
            name=self.model_name, version=self.model_version), self.timeout_s)
        meta = self._parse_metadata(response)
        log.info("metadata of %s: inputs %s outputs %s", self._label,
                 [t.to_dict() for t in meta.inputs.values()], [t.to_dict() for t in meta.outputs.values()])
        return meta

    def _parse_metadata(self, response: Any) -> ModelMetadata:
        def tensors(items: Any) -> Dict[str, TensorInfo]:
            out: Dict[str, TensorInfo] = {}
            for t in items:
                np_type = _KSERVE_TO_NP.get(t.datatype)
                out[t.name] = TensorInfo(t.name, tuple(int(d) for d in t.shape),
                                         np.dtype(np_type).name if np_type else t.datatype.lower())
            return out

        versions = [v for v in response.versions if v]
        if self.model_version:
            version = self.model_version
        else:
            numeric = [int(v) for v in versions if v.isdigit()]
            version = str(max(numeric)) if numeric else (versions[-1] if versions else "")
        return ModelMetadata(response.name or self.model_name, version,
                             tensors(response.inputs), tensors(response.outputs))

    def status(self) -> ModelStatus:
        deadline = min(self.timeout_s, READINESS_DEADLINE_S)
        try:
            response = self._call("ModelReady", service_pb2.ModelReadyRequest(
                name=self.model_name, version=self.model_version), deadline)
            ready = bool(response.ready)
            version = self.model_version or (self._served_version(deadline) if ready else "")
        except OvaasError as exc:
            return status_from_error(exc, self.model_name, self.model_version or None)
        return ModelStatus(self.model_name, version or None, ready, "AVAILABLE" if ready else "UNAVAILABLE")

    def _served_version(self, deadline: float) -> str:
        """The version 'latest' resolves to (from cached metadata when fresh)."""
        meta = self._meta
        if meta is None:
            response = self._call("ModelMetadata", service_pb2.ModelMetadataRequest(
                name=self.model_name, version=""), deadline)
            return self._parse_metadata(response).version
        return meta.version

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        request = service_pb2.ModelInferRequest(model_name=self.model_name,
                                                model_version=self.model_version)
        dtypes = self._input_dtypes(inputs)
        for name, array in inputs.items():
            datatype = _NP_TO_KSERVE.get(dtypes[name].name)
            if datatype is None:
                raise ModelServerError(f"cannot send a {dtypes[name]} tensor over KServe")
            tensor = request.inputs.add()
            tensor.name = name
            tensor.datatype = datatype
            tensor.shape.extend(array.shape)
        wire = serialize_request(request.SerializeToString(),
                                 [(array, dtypes[name]) for name, array in inputs.items()])
        response = self._call("ModelInfer", wire, self.timeout_s)
        return self._parse_outputs(response)

    def _parse_outputs(self, response: Any) -> Dict[str, np.ndarray]:
        outputs: Dict[str, np.ndarray] = {}
        raw = response.raw_output_contents
        for i, tensor in enumerate(response.outputs):
            np_type = _KSERVE_TO_NP.get(tensor.datatype)
            shape = tuple(int(d) for d in tensor.shape)
            if np_type is None:
                raise BadModelOutput(f"output {tensor.name!r} has unsupported type {tensor.datatype}")
            try:
                if i < len(raw):
                    array = np.frombuffer(raw[i], dtype=np_type).reshape(shape)
                else:  # typed contents (servers that do not use raw contents)
                    array = _from_contents(tensor, np_type, shape)
            except ValueError:
                raise BadModelOutput(f"output {tensor.name!r} does not match its declared shape "
                                     f"{list(shape)}") from None
            outputs[tensor.name] = array
        return outputs


def _from_contents(tensor: Any, np_type: Any, shape: tuple) -> np.ndarray:
    c = tensor.contents
    if np_type in (np.float32, np.float16):
        values = c.fp32_contents
    elif np_type == np.float64:
        values = c.fp64_contents
    elif np_type in (np.int64,):
        values = c.int64_contents
    elif np_type in (np.uint64,):
        values = c.uint64_contents
    elif np_type in (np.uint8, np.uint16, np.uint32):
        values = c.uint_contents
    elif np_type == np.bool_:
        values = c.bool_contents
    else:
        values = c.int_contents
    return np.asarray(values, dtype=np_type).reshape(shape)
