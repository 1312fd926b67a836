"""KServe v2 gRPC front end (``inference.GRPCInferenceService``) on tritonclient's generated stubs."""
from __future__ import annotations

import logging
from typing import List

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
    def ModelInfer(self, request, context):
        model = self.manager.get(request.model_name)
        mv = model.get_version(parse_version(request.model_version))
        raw = request.raw_input_contents
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
        resp.raw_output_contents.extend([out.data for out in outputs])
        return resp

    def ModelStreamInfer(self, request_iterator, context):
        import grpc
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "ModelStreamInfer is not supported by this emulator")
