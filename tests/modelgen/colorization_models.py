"""Tiny OpenVINO IR models with the colorization-v2 signatures and answers chosen by the test.

- PyTorch variant: ``data_l`` [1,1,H,W] -> ``color_ab`` [1,2,H,W] with
  ``a = a_slope * (L - 50) + a0`` and ``b = b0``: the answer depends on the L the server got.
- Caffe variant: ``data_l`` [1,1,224,224] -> ``class8_313_rh`` [1,313,56,56]: a fixed probability
  map (given by the test) added to 0 x the input pooled 4x4, so the input still flows through.

``write_*`` save the model in the OVMS layout ``<dir>/<name>/1/model.xml`` and return ``<dir>/<name>``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops


def pytorch_variant(a0: float, b0: float, a_slope: float = 0.0, height: int = 256,
                    width: int = 256) -> ov.Model:
    """``color_ab = [a_slope * (L - 50) + a0, b0]`` per pixel."""
    data = ops.parameter([1, 1, height, width], np.float32, name="data_l")
    scale = ops.constant(np.array([a_slope, 0.0], np.float32).reshape(1, 2, 1, 1))
    bias = ops.constant(np.array([a0 - 50.0 * a_slope, b0], np.float32).reshape(1, 2, 1, 1))
    out = ops.add(ops.multiply(data, scale), bias)
    out.output(0).get_tensor().set_names({"color_ab"})
    result = ops.result(out, name="color_ab")
    return ov.Model([result], [data], "colorization-v2-pytorch-synthetic")


def caffe_variant(probabilities: np.ndarray, height: int = 224, width: int = 224) -> ov.Model:
    """``class8_313_rh`` = ``probabilities`` ([1,K,h,w] or [1,K,1,1]); input pooled to h x w."""
    probs = np.asarray(probabilities, np.float32)
    out_h, out_w = (height // 4, width // 4)
    data = ops.parameter([1, 1, height, width], np.float32, name="data_l")
    pooled = ops.avg_pool(data, [4, 4], [0, 0], [0, 0], [4, 4], exclude_pad=True)  # [1,1,h/4,w/4]
    zeros = ops.constant(np.zeros((1, probs.shape[1], 1, 1), np.float32))
    out = ops.add(ops.multiply(pooled, zeros), ops.constant(probs))
    out.output(0).get_tensor().set_names({"class8_313_rh"})
    result = ops.result(out, name="class8_313_rh")
    assert tuple(result.get_output_partial_shape(0).to_shape()) == (1, probs.shape[1], out_h, out_w)
    return ov.Model([result], [data], "colorization-v2-caffe-synthetic")


def write(model: ov.Model, root: Path, name: str) -> Path:
    """Save ``model`` as ``root/name/1/model.xml`` (+ .bin); return ``root/name``."""
    base = Path(root) / name
    (base / "1").mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(base / "1" / "model.xml"), compress_to_fp16=False)
    return base
