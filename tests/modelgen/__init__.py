"""Small OpenVINO models generated from code, with the real models' input/output names, shapes and types.

Every generator writes ``<path>`` (an ``.xml`` with its ``.bin``; ``path`` may also be a folder, then
``model.xml`` is written in it) and returns the ``.xml`` path. Two families:

* **constant models** return exactly the arrays you give them (post-processing tests can assert exact
  answers). Each output is ``const + 0 * ReduceMean(input)`` so it still depends on the input and is
  not folded into a constant-only graph; with finite inputs and f32 inference precision the output is
  bit-exact (serve them with ``plugin_config {"INFERENCE_PRECISION_HINT": "f32"}`` on CPUs that
  default to bf16; :func:`write_repo` callers in tests do).
* **probe models** compute a deterministic function of the input so a test can tell channel order,
  layout and scaling from the answer (see :func:`channel_mean_probe_model`, :func:`pool_probe_model`).

Use :func:`write_version` to lay a model out in an OVMS repository (``<base>/<version>/model.xml``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import openvino as ov
import openvino.opset13 as ops

PathLike = Union[str, Path]

POSE_INPUT = ("data", (1, 3, 256, 456))
POSE_PAFS = ("Mconv7_stage2_L1", (1, 38, 32, 57))
POSE_HEATMAPS = ("Mconv7_stage2_L2", (1, 19, 32, 57))
HANDWRITING_INPUT = ("actual_input", (1, 1, 96, 2000))
HANDWRITING_OUTPUT = ("output", (186, 1, 4442))
COLORIZATION = {
    "pytorch": (("data_l", (1, 1, 256, 256)), ("color_ab", (1, 2, 256, 256))),
    "caffe": (("data_l", (1, 1, 224, 224)), ("class8_313_rh", (1, 313, 56, 56))),
}


# ----------------------------------------------------------------------------- helpers
def _xml_path(path: PathLike) -> Path:
    p = Path(path)
    if p.suffix != ".xml":
        p = p / "model.xml"
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _name(node, name: str):
    node.output(0).get_tensor().set_names({name})
    node.set_friendly_name(name)
    return node


def _param(name: str, shape: Sequence[int], dtype=np.float32):
    p = ops.parameter(list(shape), dtype, name=name)
    p.output(0).get_tensor().set_names({name})
    return p


def _save(outputs, params, path: PathLike, name: str) -> Path:
    xml = _xml_path(path)
    model = ov.Model([ops.result(o) for o in outputs], params, name)
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def _zero_of(param):
    """A scalar 0 (f32) that depends on the input: 0 * ReduceMean(input)."""
    x = param if param.get_output_element_type(0) == ov.Type.f32 else ops.convert(param, ov.Type.f32)
    mean = ops.reduce_mean(x, ops.constant(np.arange(len(param.get_output_partial_shape(0)), dtype=np.int64)),
                           keep_dims=False)
    return ops.multiply(mean, ops.constant(np.float32(0)))


def _const_output(value: np.ndarray, zero, name: str):
    value = np.ascontiguousarray(value)
    if value.dtype == np.float32:
        out = ops.add(ops.constant(value), zero)
    else:
        out = ops.add(ops.constant(value), ops.convert(zero, ov.Type(value.dtype)))
    return _name(out, name)


def constant_model(path: PathLike, inputs: Mapping[str, Sequence[int]], outputs: Mapping[str, np.ndarray],
                   model_name: str = "constant") -> Path:
    """Generic constant model: f32 inputs ``{name: shape}``; each output ``name`` returns exactly the given
    array (its dtype and shape), whatever the (finite) input."""
    params = [_param(n, s) for n, s in inputs.items()]
    zero = _zero_of(params[0])
    for p in params[1:]:
        zero = ops.add(zero, _zero_of(p))
    outs = [_const_output(np.asarray(v), zero, n) for n, v in outputs.items()]
    return _save(outs, params, path, model_name)


def _check(arr, shape, what) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float32)
    if arr.shape != tuple(shape):
        raise ValueError(f"{what} must have shape {tuple(shape)}, got {arr.shape}")
    return arr


def _pattern(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


# ----------------------------------------------------------------------------- real-model stand-ins
def pose_model(path: PathLike, heatmaps: Optional[np.ndarray] = None, pafs: Optional[np.ndarray] = None) -> Path:
    """human-pose-estimation-0001: ``data`` f32 [1,3,256,456] -> ``Mconv7_stage2_L1`` (PAFs) f32
    [1,38,32,57] and ``Mconv7_stage2_L2`` (heatmaps) f32 [1,19,32,57], exactly ``pafs`` and ``heatmaps``
    (defaults: seeded uniform [0,1) arrays, seeds 19 and 38)."""
    heat = _check(_pattern(POSE_HEATMAPS[1], 19) if heatmaps is None else heatmaps, POSE_HEATMAPS[1], "heatmaps")
    paf = _check(_pattern(POSE_PAFS[1], 38) if pafs is None else pafs, POSE_PAFS[1], "pafs")
    return constant_model(path, {POSE_INPUT[0]: POSE_INPUT[1]}, {POSE_PAFS[0]: paf, POSE_HEATMAPS[0]: heat},
                          "human-pose-estimation-0001")


def handwriting_model(path: PathLike, logits: Optional[np.ndarray] = None) -> Path:
    """handwritten-japanese-recognition-0001: ``actual_input`` f32 [1,1,96,2000] -> ``output`` f32
    [186,1,4442] (time-major, class 0 = CTC blank), exactly ``logits`` (default: all-blank, i.e. class 0
    scores 10 and others 0, which decodes to the empty string)."""
    if logits is None:
        logits = np.zeros(HANDWRITING_OUTPUT[1], np.float32)
        logits[:, :, 0] = 10.0
    return constant_model(path, {HANDWRITING_INPUT[0]: HANDWRITING_INPUT[1]},
                          {HANDWRITING_OUTPUT[0]: _check(logits, HANDWRITING_OUTPUT[1], "logits")},
                          "handwritten-japanese-recognition-0001")


def ctc_logits(indices: Sequence[int], steps: int = 186, classes: int = 4442, blank_between: bool = True) -> np.ndarray:
    """CTC logits [steps,1,classes] whose greedy decode is ``indices`` (1-based char-list indices; 0 = blank).

    Each index takes one step, followed by a blank step when ``blank_between`` (so repeats survive);
    remaining steps are blank. Winning class scores 10, others 0."""
    seq = []
    for i in indices:
        seq.append(int(i))
        if blank_between:
            seq.append(0)
    if len(seq) > steps:
        raise ValueError("too many characters for the number of time steps")
    seq += [0] * (steps - len(seq))
    out = np.zeros((steps, 1, classes), np.float32)
    out[np.arange(steps), 0, seq] = 10.0
    return out


def colorization_model(path: PathLike, variant: str = "caffe", output: Optional[np.ndarray] = None) -> Path:
    """colorization-v2. ``variant="pytorch"``: ``data_l`` f32 [1,1,256,256] -> ``color_ab`` f32 [1,2,256,256];
    ``variant="caffe"``: ``data_l`` f32 [1,1,224,224] -> ``class8_313_rh`` f32 [1,313,56,56] (per-pixel
    distribution over the 313 ab bins). Returns exactly ``output`` (default: pytorch ab = 0 (grey);
    caffe: one-hot on bin 0 at every pixel)."""
    (in_name, in_shape), (out_name, out_shape) = COLORIZATION[variant]
    if output is None:
        output = np.zeros(out_shape, np.float32)
        if variant == "caffe":
            output[:, 0] = 1.0
    return constant_model(path, {in_name: in_shape}, {out_name: _check(output, out_shape, "output")},
                          f"colorization-v2-{variant}")


def ssd_rows(rows: Sequence[Sequence[float]], num: int = 200) -> np.ndarray:
    """A ``detection_out`` array [1,1,num,7] holding ``rows`` then a terminating row with image_id -1
    (then zeros), as OMZ SSD models do."""
    out = np.zeros((1, 1, num, 7), np.float32)
    rows = np.asarray(rows, np.float32).reshape(-1, 7)
    if len(rows) > num:
        raise ValueError("more rows than detections")
    out[0, 0, :len(rows)] = rows
    if len(rows) < num:
        out[0, 0, len(rows), 0] = -1.0
    return out


def ssd_model(path: PathLike, rows: Sequence[Sequence[float]] = (), input_name: str = "image",
              hw: Tuple[int, int] = (256, 256), num: int = 200) -> Path:
    """An SSD detector: ``input_name`` f32 [1,3,H,W] -> ``detection_out`` f32 [1,1,num,7] whose rows are
    ``rows`` ([image_id, label, conf, x_min, y_min, x_max, y_max], normalised coords) followed by an
    image_id -1 terminator (see :func:`ssd_rows`). E.g. person-detection-retail-0013: ``input_name="data"``,
    ``hw=(320, 544)``."""
    return constant_model(path, {input_name: (1, 3, *hw)}, {"detection_out": ssd_rows(rows, num)},
                          "ssd-detector")


def boxes_labels_model(path: PathLike, boxes: np.ndarray, labels: np.ndarray, input_name: str = "image",
                       hw: Tuple[int, int] = (256, 256)) -> Path:
    """The other OMZ detector output form (e.g. face-detection-0205): ``input_name`` f32 [1,3,H,W] ->
    ``boxes`` f32 [N,5] ([x_min, y_min, x_max, y_max, conf] in input pixels) and ``labels`` i64 [N]."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 5)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if len(labels) != len(boxes):
        raise ValueError("boxes and labels must have the same N")
    return constant_model(path, {input_name: (1, 3, *hw)}, {"boxes": boxes, "labels": labels}, "boxes-labels")


# ----------------------------------------------------------------------------- probes
def channel_mean_probe_model(path: PathLike, input_name: str, input_shape: Sequence[int],
                             outputs: Mapping[str, Sequence[int]]) -> Path:
    """Probe: for an NCHW f32 input, every output ``o`` satisfies
    ``o.flat[j] == mean(input[0, j % C])`` (C = input channels; mean over H and W, in f32).

    So for the pose/SSD shapes (3 channels) ``o.flat[0]`` is the mean of channel 0 (B for a BGR model),
    ``o.flat[1]`` of channel 1 and ``o.flat[2]`` of channel 2: a client sending RGB, NHWC bytes reshaped
    as NCHW, or 0..1 instead of 0..255 gets a recognisably different answer."""
    c = int(input_shape[1])
    p = _param(input_name, input_shape)
    means = ops.reduce_mean(p, ops.constant(np.array([0, 2, 3], np.int64)), keep_dims=False)  # [C]
    outs = []
    for name, shape in outputs.items():
        n = int(np.prod(shape))
        tiled = ops.tile(means, ops.constant(np.array([-(-n // c)], np.int64)))
        flat = ops.slice(tiled, np.array([0], np.int64), np.array([n], np.int64), np.array([1], np.int64))
        outs.append(_name(ops.reshape(flat, ops.constant(np.array(shape, np.int64)), False), name))
    return _save(outs, [p], path, "channel-mean-probe")


def pool_probe_model(path: PathLike, input_name: str, input_shape: Sequence[int],
                     outputs: Mapping[str, Sequence[int]]) -> Path:
    """Probe: for an NCHW f32 input [1,C,H,W], each 4-D output ``o`` [1,K,h,w] is
    ``AdaptiveAvgPool(input, (h, w))[:, k % C]`` for k in 0..K-1 (when H, W are multiples of h, w this
    is the mean of each (H/h)x(W/w) block); channel order, layout (a transposed or flipped image) and
    scaling all show in it. Use :func:`pool_reference` to compute the expected answer in numpy."""
    c = int(input_shape[1])
    p = _param(input_name, input_shape)
    outs = []
    for name, shape in outputs.items():
        _, k, h, w = (int(d) for d in shape)
        pooled = ops.adaptive_avg_pool(p, ops.constant(np.array([h, w], np.int64)))
        idx = np.arange(k, dtype=np.int64) % c
        outs.append(_name(ops.gather(pooled, ops.constant(idx), ops.constant(np.int64(1))), name))
    return _save(outs, [p], path, "pool-probe")


def pool_reference(x: np.ndarray, out_shape: Sequence[int]) -> np.ndarray:
    """numpy reference for :func:`pool_probe_model` when H % h == 0 and W % w == 0."""
    _, c, hh, ww = x.shape
    _, k, h, w = out_shape
    pooled = x.reshape(1, c, h, hh // h, w, ww // w).mean(axis=(3, 5), dtype=np.float64)
    return pooled[:, np.arange(k) % c].astype(np.float32)


def affine_model(path: PathLike, scale: float = 1.0, bias: float = 0.0, shape: Sequence[int] = (1, 4),
                 input_name: str = "x", output_name: str = "y", dtype=np.float32) -> Path:
    """``output_name`` = ``input_name`` * scale + bias, same shape and dtype (f32, or an integer dtype
    with integer scale/bias). Handy to tell versions apart and to test precision handling."""
    dt = np.dtype(dtype)
    p = _param(input_name, shape, dt)
    out = ops.add(ops.multiply(p, ops.constant(np.asarray(scale, dt))), ops.constant(np.asarray(bias, dt)))
    return _save([_name(out, output_name)], [p], path, "affine")


def write_version(base: PathLike, version: int, build, *args, **kwargs) -> Path:
    """Write ``build(<base>/<version>/model.xml, *args, **kwargs)`` into an OVMS repository; returns base."""
    base = Path(base)
    build(base / str(version) / "model.xml", *args, **kwargs)
    return base


__all__ = ["POSE_INPUT", "POSE_PAFS", "POSE_HEATMAPS", "HANDWRITING_INPUT", "HANDWRITING_OUTPUT", "COLORIZATION",
           "constant_model", "pose_model", "handwriting_model", "ctc_logits", "colorization_model", "ssd_rows",
           "ssd_model", "boxes_labels_model", "channel_mean_probe_model", "pool_probe_model", "pool_reference",
           "affine_model", "write_version"]
