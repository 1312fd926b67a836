"""TensorFlow-Serving gRPC front end (PredictionService + ModelService) on ovmsclient's generated stubs."""
from __future__ import annotations

import logging
from typing import List

import numpy as np
from ovmsclient.tfs_compat.protos.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from ovmsclient.tfs_compat.protos.tensorflow.core.protobuf import meta_graph_pb2
from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                                                  model_service_pb2_grpc, predict_pb2,
                                                                  prediction_service_pb2_grpc)

from . import errors as E
from .dtypes import BY_TF, tf_type_string
from .models import STATE_NAMES, ModelManager, RequestTensor, TensorSpec
from .rpc import rpc

log = logging.getLogger("ovms.tfs")

SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
TF_OK, TF_UNKNOWN = 0, 2


def _version(spec) -> int:
    return spec.version.value if spec.HasField("version") else 0


def _payload(name: str, shape: List[int], dt, proto):
    def payload() -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        content = proto.tensor_content
        if content:
            expected = count * dt.np_dtype.itemsize
            if len(content) != expected:
                raise E.invalid(E.INVALID_CONTENT_SIZE,
                                f"Expected: {expected} bytes; Actual: {len(content)} bytes; input name: {name}")
            return np.frombuffer(content, dtype=dt.np_dtype).reshape(shape)
        values = getattr(proto, dt.tf_field) if dt.tf_field else ()
        if len(values) == count and count > 0:
            if dt.ov_name == "f16":  # half_val carries the raw 16-bit patterns
                return np.asarray(values, dtype=np.uint16).view(np.float16).reshape(shape)
            return np.asarray(values, dtype=dt.np_dtype).reshape(shape)
        if dt.ov_name in ("f16", "u16"):
            raise E.invalid(E.INVALID_VALUE_COUNT,
                            f"Expected: {count}; Actual: {len(values)}; input name: {name}")
        raise E.invalid(E.INVALID_CONTENT_SIZE, f"Expected: {count * dt.np_dtype.itemsize} bytes; Actual: 0 bytes; "
                                                f"input name: {name}")
    return payload


def _tensor_info(spec: TensorSpec) -> meta_graph_pb2.TensorInfo:
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in spec.shape])
    return meta_graph_pb2.TensorInfo(name=spec.name, dtype=spec.dtype.tf, tensor_shape=shape)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata as OVMS answers them (Classify/Regress/MultiInference: UNIMPLEMENTED)."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    @rpc
    def Predict(self, request, context):
        if not request.HasField("model_spec"):
            raise E.invalid(E.MODEL_SPEC_MISSING)
        model = self.manager.get(request.model_spec.name)
        mv = model.get_version(_version(request.model_spec))
        tensors = []
        for name, proto in request.inputs.items():
            dt = BY_TF.get(proto.dtype)
            shape = [d.size for d in proto.tensor_shape.dim]
            tensors.append(RequestTensor(name, shape, dt, tf_type_string(proto.dtype),
                                         _payload(name, shape, dt, proto) if dt else None))
        outputs = mv.infer(tensors, list(request.output_filter))
        resp = predict_pb2.PredictResponse()
        resp.model_spec.name = model.name
        resp.model_spec.version.value = mv.version
        resp.model_spec.signature_name = SIGNATURE
        for out in outputs:
            shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d)
                                                           for d in out.shape])
            resp.outputs[out.name].CopyFrom(tensor_pb2.TensorProto(dtype=out.dtype.tf, tensor_shape=shape,
                                                                   tensor_content=out.data))
        return resp

    @rpc
    def GetModelMetadata(self, request, context):
        if not request.HasField("model_spec"):
            raise E.invalid(E.MODEL_SPEC_MISSING)
        fields = list(request.metadata_field)
        if fields and fields != ["signature_def"]:
            raise E.invalid(E.INVALID_SIGNATURE_DEF, f"metadata_field {fields}; only 'signature_def' is supported")
        model = self.manager.get(request.model_spec.name)
        mv = model.get_version(_version(request.model_spec))
        sig = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
        for spec in mv.inputs:
            sig.inputs[spec.name].CopyFrom(_tensor_info(spec))
        for spec in mv.outputs:
            sig.outputs[spec.name].CopyFrom(_tensor_info(spec))
        sigmap = get_model_metadata_pb2.SignatureDefMap()
        sigmap.signature_def[SIGNATURE].CopyFrom(sig)
        resp = get_model_metadata_pb2.GetModelMetadataResponse()
        resp.model_spec.name = model.name
        resp.model_spec.version.value = mv.version
        # ovmsclient's copies of the protos live in package "ovmsclient.serving"; real OVMS (and TF
        # Serving) name the type tensorflow.serving.SignatureDefMap, so set the Any by hand.
        resp.metadata["signature_def"].type_url = "type.googleapis.com/tensorflow.serving.SignatureDefMap"
        resp.metadata["signature_def"].value = sigmap.SerializeToString()
        return resp

    def _unimplemented(self, request, context):
        import grpc
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not supported by OpenVINO Model Server")

    Classify = Regress = MultiInference = _unimplemented


class ModelStatusServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus (HandleReloadConfigRequest: UNIMPLEMENTED)."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    @rpc
    def GetModelStatus(self, request, context):
        if not request.HasField("model_spec"):
            raise E.invalid(E.MODEL_SPEC_MISSING)
        model = self.manager.get(request.model_spec.name)
        resp = get_model_status_pb2.GetModelStatusResponse()
        for mv in model.status_versions(_version(request.model_spec)):
            st = resp.model_version_status.add(version=mv.version, state=mv.state)
            if mv.error:
                st.status.error_code = TF_UNKNOWN
                st.status.error_message = mv.error
            else:
                st.status.error_code = TF_OK
                st.status.error_message = "OK"
            log.debug("status %s v%d %s", model.name, mv.version, STATE_NAMES.get(mv.state))
        return resp

    def HandleReloadConfigRequest(self, request, context):
        import grpc
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Config reload is not supported by this emulator")
