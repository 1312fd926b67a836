"""Element-type tables: OpenVINO <-> numpy <-> KServe datatype <-> TensorFlow DataType <-> OVMS name."""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np


class DType(NamedTuple):
    ov_name: str       # openvino Type.get_type_name()
    np_dtype: np.dtype
    kfs: str           # KServe v2 datatype
    tf: int            # tensorflow DataType enum value
    ovms: str          # OVMS precision string used in messages
    kfs_field: Optional[str]  # InferTensorContents field for typed contents
    tf_field: Optional[str]   # TensorProto typed *_val field


_TABLE = [
    DType("f32", np.dtype(np.float32), "FP32", 1, "FP32", "fp32_contents", "float_val"),
    DType("f64", np.dtype(np.float64), "FP64", 2, "FP64", "fp64_contents", "double_val"),
    DType("f16", np.dtype(np.float16), "FP16", 19, "FP16", None, "half_val"),
    DType("i8", np.dtype(np.int8), "INT8", 6, "I8", "int_contents", "int_val"),
    DType("i16", np.dtype(np.int16), "INT16", 5, "I16", "int_contents", "int_val"),
    DType("i32", np.dtype(np.int32), "INT32", 3, "I32", "int_contents", "int_val"),
    DType("i64", np.dtype(np.int64), "INT64", 9, "I64", "int64_contents", "int64_val"),
    DType("u8", np.dtype(np.uint8), "UINT8", 4, "U8", "uint_contents", "int_val"),
    DType("u16", np.dtype(np.uint16), "UINT16", 17, "U16", "uint_contents", "int_val"),
    DType("u32", np.dtype(np.uint32), "UINT32", 22, "U32", "uint_contents", "uint32_val"),
    DType("u64", np.dtype(np.uint64), "UINT64", 23, "U64", "uint64_contents", "uint64_val"),
    DType("boolean", np.dtype(np.bool_), "BOOL", 10, "BOOL", "bool_contents", "bool_val"),
]

BY_OV = {d.ov_name: d for d in _TABLE}
BY_KFS = {d.kfs: d for d in _TABLE}
BY_TF = {d.tf: d for d in _TABLE}

_TF_NAMES = {1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8", 5: "DT_INT16", 6: "DT_INT8",
             7: "DT_STRING", 9: "DT_INT64", 10: "DT_BOOL", 17: "DT_UINT16", 19: "DT_HALF",
             22: "DT_UINT32", 23: "DT_UINT64"}


def tf_type_string(tf_type: int) -> str:
    """How OVMS names a TensorFlow DataType of a request in its messages."""
    d = BY_TF.get(tf_type)
    if d is not None:
        return d.ovms
    return _TF_NAMES.get(tf_type, "UNDEFINED")


def from_ov(element_type) -> DType:
    """The table row for an openvino element type (raises KeyError when unsupported)."""
    return BY_OV[element_type.get_type_name()]
