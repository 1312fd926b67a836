"""TensorFlow-Serving gRPC adapter via ``ovmsclient`` (OVMS up to 2026.2, and TF Serving).

``ovmsclient.GrpcClient`` takes its channel and stubs as arguments; we hand it our managed
channel so the fail-fast and reconnect behaviour is the same as the KServe adapter's.
ovmsclient turns gRPC errors into its own exception classes; the original ``RpcError`` stays
on ``__context__``, so both adapters go through the same status table.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import grpc
import numpy as np
from ovmsclient.tfs_compat.base import errors as ovms_errors
from ovmsclient.tfs_compat.grpc.serving_client import GrpcClient
from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import (model_service_pb2_grpc,
                                                                   prediction_service_pb2_grpc)

from shared.errors import BadModelOutput, ModelServerError, OvaasError
from shared.serving.base import CachedMetadataAdapter, ModelMetadata, ModelStatus, TensorInfo
from shared.serving.grpc_common import (READINESS_DEADLINE_S, ManagedChannel, error_from_status,
                                         status_from_error)

# When ovmsclient hides the gRPC status, its exception class tells the status.
_CLASS_TO_STATUS = {
    "ModelNotFoundError": grpc.StatusCode.NOT_FOUND,
    "InvalidInputError": grpc.StatusCode.INVALID_ARGUMENT,
    "TimeoutError": grpc.StatusCode.DEADLINE_EXCEEDED,
    "ConnectionError": grpc.StatusCode.UNAVAILABLE,
}

_TF_DTYPES = {
    "DT_FLOAT": "float32", "DT_HALF": "float16", "DT_DOUBLE": "float64", "DT_INT32": "int32",
    "DT_INT64": "int64", "DT_UINT8": "uint8", "DT_INT8": "int8", "DT_INT16": "int16",
    "DT_UINT16": "uint16", "DT_BOOL": "bool", "DT_STRING": "bytes",
}


class TfsAdapter(CachedMetadataAdapter):
    """One model on a TensorFlow-Serving gRPC endpoint."""

    def __init__(self, channel: ManagedChannel, model_name: str, model_version: Optional[int],
                 timeout_s: float, metadata_ttl_s: float = 300.0, client: Any = None) -> None:
        super().__init__(metadata_ttl_s)
        self._channel = channel
        self._client = client or GrpcClient(
            channel.channel,
            prediction_service_pb2_grpc.PredictionServiceStub(channel.calls),
            model_service_pb2_grpc.ModelServiceStub(channel.calls))
        self.model_name = model_name
        self.model_version = model_version or 0  # 0 = latest for ovmsclient
        self.timeout_s = timeout_s

    @property
    def _label(self) -> str:
        return f"{self.model_name!r}" + (f" version {self.model_version}" if self.model_version else "")

    def _call(self, method: str, timeout: float, **kwargs: Any) -> Any:
        self._channel.ensure_ready(self._label)
        try:
            return getattr(self._client, method)(model_name=self.model_name,
                                                  model_version=self.model_version,
                                                  timeout=timeout, **kwargs)
        except ovms_errors.BadResponseError as exc:
            raise BadModelOutput(f"model server sent a malformed answer for {self._label}: {exc}") from None
        except (ovms_errors.ModelServerError, TimeoutError, ConnectionError) as exc:
            # ovmsclient's own classes, and the builtins it raises, for gRPC failures; logged
            # once, by shared.http, as the error it maps to
            code, details = _status_of(exc)
            raise error_from_status(code, details, self._label, timeout) from None
        except (TypeError, ValueError) as exc:  # ovmsclient validates inputs client-side
            raise ModelServerError(f"request for {self._label} could not be built: {exc}") from None

    def _fetch_metadata(self) -> ModelMetadata:
        return self._parse_metadata(self._call("get_model_metadata", self.timeout_s))

    def _parse_metadata(self, raw: Mapping[str, Any]) -> ModelMetadata:
        def tensors(items: Mapping[str, Any]) -> Dict[str, TensorInfo]:
            return {name: TensorInfo(name, tuple(int(d) for d in spec.get("shape", ())),
                                     _TF_DTYPES.get(spec.get("dtype", ""), str(spec.get("dtype", "")).lower()))
                    for name, spec in items.items()}

        try:
            version = str(raw["model_version"])
            return ModelMetadata(self.model_name, version, tensors(raw["inputs"]), tensors(raw["outputs"]))
        except (KeyError, TypeError, AttributeError):
            raise BadModelOutput(f"model server sent malformed metadata for {self._label}") from None

    def status(self) -> ModelStatus:
        try:
            raw = self._call("get_model_status", min(self.timeout_s, READINESS_DEADLINE_S))
        except OvaasError as exc:
            return status_from_error(exc, self.model_name, str(self.model_version or "") or None)
        # {version: {"state": "AVAILABLE", "error_code": 0, "error_message": "OK"}}
        if not raw:
            return ModelStatus(self.model_name, None, False, "NOT_FOUND", "no versions")
        version = max(raw, key=lambda v: int(v))
        state = str(raw[version].get("state", "UNKNOWN"))
        return ModelStatus(self.model_name, str(version), state == "AVAILABLE", state,
                           str(raw[version].get("error_message", "")))

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        result = self._call("predict", self.timeout_s, inputs=self._typed_inputs(inputs))
        if isinstance(result, np.ndarray):  # ovmsclient returns a bare array for one output
            outputs = self.metadata().outputs
            if len(outputs) != 1:
                raise BadModelOutput(f"model {self._label} returned one output; metadata lists {len(outputs)}")
            return {next(iter(outputs)): result}
        if not isinstance(result, dict):
            raise BadModelOutput(f"model {self._label} returned an unexpected answer")
        return result


def _status_of(exc: BaseException):
    """The gRPC status behind an ovmsclient exception (from ``__context__``, else its class)."""
    ctx = exc.__context__
    if isinstance(ctx, grpc.RpcError) and hasattr(ctx, "code"):
        return ctx.code(), ctx.details()
    return _CLASS_TO_STATUS.get(type(exc).__name__), str(exc)
