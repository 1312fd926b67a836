"""Object detection with any SSD-style Open Model Zoo detector (HttpTriggerObjectDetection).

Two output forms are recognised from the model's metadata, so a detector is swapped by settings
only (``OBJECTDETECTION_MODEL_NAME``), never by code:

- ``detection_out`` / ``DetectionOutput`` ``[1,1,N,7]``: rows ``[image_id, label, confidence,
  x_min, y_min, x_max, y_max]`` with the box normalised to 0..1; the first row whose ``image_id``
  is negative ends the list (the rest is padding). E.g. person-detection-0200,
  person-vehicle-bike-detection-2000, person-detection-retail-0013.
- ``boxes`` ``[N,5]`` (``x_min, y_min, x_max, y_max`` in input pixels, then the score) with
  ``labels`` ``[N]`` (optional; label 0 without it). E.g. face-detection-0205, person-detection-0106.

Preprocessing, as these models' documentation says: stretch-resize to the input size (bilinear,
half-pixel centres, rounded to 8-bit levels like OpenVINO's own preprocessing), BGR 0..255, in the
layout the input shape shows (``[1,3,H,W]`` NCHW or ``[1,H,W,3]`` NHWC), float32 unless the model
takes uint8. Boxes come back in original-image pixels, clipped to the image.

Labels: ``OBJECTDETECTION_LABELS_PATH`` (local path or ``az://container/path``) names a labels file,
either plain text with one label per line (line ``i`` is label id ``i``; a blank line leaves that id
unnamed) or JSON: an object ``{"<id>": "<name>"}`` or a list of names in id order. Ids without a
name are reported as the id in text (``"3"``).

The JSON answer follows CVAT's serverless detectors: ``{"detections": [{"label", "label_id",
"confidence", "points": [xtl, ytl, xbr, ybr], "type": "rectangle"}, ...]}``, highest confidence
first (``confidence`` is a number here, where CVAT's functions send a string). ``to_shapes()`` is
CVAT's own answer, the bare list without ``label_id`` (``/api/cvat/detector`` and the nuclio
function in ``serverless/``).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import cv2
import numpy as np

from shared import config, resources
from shared.errors import BadModelOutput, Misconfigured
from shared.logs import get_logger
from shared.options import opt_float, opt_int
from shared.serving.base import ModelMetadata, TensorInfo
from shared.tasks.base import Task

log = get_logger("tasks.detection")

LABELS_SETTING = "OBJECTDETECTION_LABELS_PATH"
DEFAULT_THRESHOLD = 0.5
MAX_DETECTIONS_LIMIT = 100_000

_SSD_NAMES = ("detection_out", "DetectionOutput")
_BOXES_NAMES = ("boxes",)
_LABELS_NAMES = ("labels",)

FORM_SSD = "detection_out"
FORM_BOXES = "boxes"

# Drawing: box line thickness is the picture's shorter side over LINE_DIVISOR; caption font scale
# is the shorter side over FONT_DIVISOR, at least MIN_FONT_SCALE.
LINE_DIVISOR = 300
FONT_DIVISOR = 900
MIN_FONT_SCALE = 0.4


# ---- options and results ----------------------------------------------------------------------

@dataclass(frozen=True)
class DetectionOptions:
    """``threshold``: keep detections whose confidence is above it; ``max_detections``: keep at
    most this many, best first (None = all)."""

    threshold: float = DEFAULT_THRESHOLD
    max_detections: Optional[int] = None


@dataclass(frozen=True)
class Detection:
    """One detected object; ``points`` are (xtl, ytl, xbr, ybr) in original-image pixels."""

    label: str
    label_id: int
    confidence: float
    points: Tuple[float, float, float, float]

    def to_dict(self) -> dict:
        return {"label": self.label, "label_id": self.label_id, "confidence": self.confidence,
                "points": list(self.points), "type": "rectangle"}


@dataclass(frozen=True)
class DetectionResult:
    """Detections sorted by confidence, highest first."""

    detections: Tuple[Detection, ...]

    def to_dict(self) -> dict:
        return {"detections": [d.to_dict() for d in self.detections]}

    def to_shapes(self) -> list:
        """CVAT's detector answer: a bare list of ``{"label", "points", "type", "confidence"}``
        (``confidence`` a number; CVAT accepts a number or a string and does not read it)."""
        return [{"label": d.label, "points": list(d.points), "type": "rectangle",
                 "confidence": d.confidence} for d in self.detections]


# ---- model geometry ---------------------------------------------------------------------------

@dataclass(frozen=True)
class InputSpec:
    """Where and how the image goes into the model."""

    name: str
    height: int
    width: int
    nhwc: bool


@dataclass(frozen=True)
class OutputSpec:
    """Which output form the model has and the names of its outputs."""

    form: str  # FORM_SSD | FORM_BOXES
    detections: str  # the [.., 7] output (SSD) or the [.., 5] boxes output
    labels: Optional[str] = None  # the labels output of the boxes form (None: all label 0)


@dataclass(frozen=True)
class Detector:
    """A served detector as this task sees it: where the image goes, what comes back."""

    input: InputSpec
    output: OutputSpec


def input_spec(meta: ModelMetadata) -> InputSpec:
    """The single image input's name, size and layout, from the metadata (502 if unusable)."""
    info = meta.only_input()
    shape = tuple(int(d) for d in info.shape)
    if len(shape) != 4:
        raise BadModelOutput(f"model {meta.name!r} input {info.name!r} has shape {list(shape)}; "
                             "an image input [1,3,H,W] or [1,H,W,3] is expected")
    if shape[1] == 3 and shape[3] != 3:
        nhwc, (h, w) = False, shape[2:4]
    elif shape[3] == 3 and shape[1] != 3:
        nhwc, (h, w) = True, shape[1:3]
    elif shape[1] == 3 and shape[3] == 3:  # [1,3,H,3]: ambiguous, NCHW is the OpenVINO default
        nhwc, (h, w) = False, shape[2:4]
    else:
        raise BadModelOutput(f"model {meta.name!r} input {info.name!r} has shape {list(shape)}; "
                             "a 3-channel image input [1,3,H,W] or [1,H,W,3] is expected")
    if h <= 0 or w <= 0:
        raise BadModelOutput(f"model {meta.name!r} input {info.name!r} has a dynamic size "
                             f"{list(shape)}; this endpoint needs a static input size")
    return InputSpec(info.name, h, w, nhwc)


def _named(outputs: Mapping[str, TensorInfo], names: Tuple[str, ...]) -> Optional[str]:
    for name in names:
        if name in outputs:
            return name
    lowered = {k.lower(): k for k in outputs}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def output_spec(meta: ModelMetadata) -> OutputSpec:
    """Tell the output form from the metadata's output names and shapes (502 if neither)."""
    outs = meta.outputs
    name = _named(outs, _SSD_NAMES)
    if name is None:
        sevens = [k for k, t in outs.items() if len(t.shape) >= 2 and t.shape[-1] == 7]
        if len(sevens) == 1:
            name = sevens[0]
    if name is not None:
        return OutputSpec(FORM_SSD, name)

    boxes = _named(outs, _BOXES_NAMES)
    if boxes is None:
        fives = [k for k, t in outs.items() if len(t.shape) in (2, 3) and t.shape[-1] == 5]
        if len(fives) == 1:
            boxes = fives[0]
    if boxes is not None:
        labels = _named(outs, _LABELS_NAMES)
        if labels is None:
            rest = [k for k, t in outs.items() if k != boxes and len(t.shape) in (1, 2)
                    and "label" in k.lower()]
            labels = rest[0] if len(rest) == 1 else None
        return OutputSpec(FORM_BOXES, boxes, labels)

    shown = ", ".join(f"{k} {list(t.shape)}" for k, t in outs.items()) or "none"
    raise BadModelOutput(
        f"model {meta.name!r} is not an SSD-style detector: expected an output detection_out "
        f"[1,1,N,7] or boxes [N,5] (+ labels [N]); it has {shown}")


# ---- labels -----------------------------------------------------------------------------------

def parse_labels(text: str) -> Dict[int, str]:
    """A labels file -> {id: name}: JSON object/list, or one label per line (line i = id i)."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            data = json.loads(stripped)
        except ValueError as exc:
            raise ValueError(f"labels file looks like JSON but is not valid JSON: {exc}") from None
        if isinstance(data, list):
            items = enumerate(data)
        elif isinstance(data, dict):
            items = data.items()
        else:  # pragma: no cover - json.loads of "{..." / "[..." is a dict or list
            raise ValueError("labels JSON must be an object or a list")
        out: Dict[int, str] = {}
        for key, value in items:
            try:
                label_id = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"labels JSON key {key!r} is not an integer id") from None
            if value is not None and str(value).strip():
                out[label_id] = str(value).strip()
        return out
    return {i: line.strip() for i, line in enumerate(text.splitlines()) if line.strip()}


# ---- the task ---------------------------------------------------------------------------------

class DetectionTask(Task[Detector]):
    """SSD-style object detection: boxes with labels and confidences."""

    name = "detection"

    def __init__(self) -> None:
        super().__init__()
        self._labels_lock = threading.Lock()
        self._labels: Tuple[Optional[str], Dict[int, str]] = (None, {})

    # -- options
    def parse_options(self, raw: Mapping[str, Any]) -> DetectionOptions:
        """``threshold`` in [0, 1] (default 0.5), ``max_detections`` >= 1 (default all)."""
        return DetectionOptions(
            threshold=opt_float(raw, "threshold", DEFAULT_THRESHOLD, 0.0, 1.0),
            max_detections=opt_int(raw, "max_detections", None, 1, MAX_DETECTIONS_LIMIT),
        )

    # -- labels
    def label_names(self) -> Dict[int, str]:
        """The configured {id: name} map (empty without a labels file); re-read if the setting changes."""
        location = config.side_file_location(LABELS_SETTING)
        if location is None:
            return {}
        cached_location, names = self._labels
        if cached_location == location:
            return names
        with self._labels_lock:
            text = resources.read_text(location, LABELS_SETTING)
            try:
                names = parse_labels(text)
            except ValueError as exc:
                raise Misconfigured(f"the labels file (setting {LABELS_SETTING}) is "
                                    f"invalid: {exc}") from None
            self._labels = (location, names)
            log.info("loaded %d labels (setting %s)", len(names), LABELS_SETTING)
        return names

    # -- pipeline
    def bind(self, meta: ModelMetadata) -> Detector:
        """Input spec and output form; a model that is not a detector is refused here, before
        any inference is spent on it."""
        return Detector(input_spec(meta), output_spec(meta))

    def preprocess(self, image: np.ndarray, meta: ModelMetadata, options: DetectionOptions
                   ) -> Tuple[Dict[str, np.ndarray], Tuple[int, int, InputSpec]]:
        """Stretch-resize to the model input, BGR 0..255 in whole levels, NCHW (or NHWC) float32
        (the adapter casts it for a uint8 input)."""
        spec = self.bound(meta).input
        blob = resize_input(image, spec.height, spec.width)
        blob = blob[None] if spec.nhwc else blob.transpose(2, 0, 1)[None]
        h, w = image.shape[:2]
        return {spec.name: blob}, (h, w, spec)

    def postprocess(self, outputs: Mapping[str, np.ndarray], context: Tuple[int, int, InputSpec],
                    meta: ModelMetadata, options: DetectionOptions) -> DetectionResult:
        """Model outputs -> detections in original-image pixels, best first."""
        height, width, spec = context
        out = self.bound(meta).output
        if out.form == FORM_SSD:
            boxes, scores, label_ids = decode_ssd(_output(outputs, out.detections, meta))
            boxes = boxes * np.array([width, height, width, height], np.float64)
        else:
            raw_labels = _output(outputs, out.labels, meta) if out.labels else None
            boxes, scores, label_ids = decode_boxes(_output(outputs, out.detections, meta), raw_labels)
            boxes = boxes * np.array([width / spec.width, height / spec.height,
                                      width / spec.width, height / spec.height], np.float64)
        return build_result(boxes, scores, label_ids, width, height, options, self.label_names())

    def render(self, image: np.ndarray, result: DetectionResult, options: DetectionOptions) -> np.ndarray:
        """The image with one labelled box per detection."""
        return draw_detections(image, result)

    def render_owned(self, image: np.ndarray, result: DetectionResult,
                     options: DetectionOptions) -> np.ndarray:
        """The boxes drawn on the request's own picture (no full-size copy)."""
        return draw_detections(image, result, in_place=True)


# ---- steps (module functions so tests can call them on plain arrays) ---------------------------

# Above this many source values (4 MP x 3 channels) the image is not converted to float32 whole
# (up to 480 MB for a 40 MP photo): only the rows the vertical pass samples are.
FULL_FLOAT_LIMIT = 12_000_000
#: output rows the vertical pass interpolates at once
_ROW_CHUNK = 16


def resize_input(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Stretch ``image`` (HxWx3 uint8) to ``height`` x ``width``: bilinear with half-pixel centres,
    rounded to whole 8-bit levels, as float32 HxWx3.

    This is what OpenVINO's preprocessing (``Interpolate`` linear on u8, as Open Model Zoo's
    model_api embeds it) computes; cv2's fixed-point uint8 bilinear differs by one level on ~10%
    of pixels, which moves SSD scores by up to ~0.01. Large images are resized in two passes
    (vertical in numpy on the sampled rows only, then horizontal with cv2) to bound memory.
    """
    src_h, src_w = image.shape[:2]
    if src_h == height and src_w == width:
        return image.astype(np.float32)
    if image.size <= FULL_FLOAT_LIMIT:
        resized = cv2.resize(image.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    else:
        y = (np.arange(height, dtype=np.float64) + 0.5) * (src_h / height) - 0.5
        np.clip(y, 0, src_h - 1, out=y)
        y0 = y.astype(np.intp)
        y1 = np.minimum(y0 + 1, src_h - 1)
        fy = (y - y0).astype(np.float32)[:, None, None]
        rows = np.empty((height, src_w, image.shape[2]), np.float32)
        for k in range(0, height, _ROW_CHUNK):  # a few rows at a time: no full-height temporaries
            part = slice(k, k + _ROW_CHUNK)
            top = image[y0[part]].astype(np.float32)
            below = image[y1[part]].astype(np.float32)
            below -= top
            below *= fy[part]
            top += below
            rows[part] = top
        # same height: cv2 only interpolates horizontally (its vertical weights are all 0)
        resized = cv2.resize(rows, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.rint(resized, out=resized)


def _output(outputs: Mapping[str, np.ndarray], name: str, meta: ModelMetadata) -> np.ndarray:
    try:
        return np.asarray(outputs[name])
    except KeyError:
        raise BadModelOutput(f"model {meta.name!r} did not return output {name!r}") from None


def decode_ssd(raw: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[1,1,N,7]`` rows -> (normalised boxes Nx4, scores N, label ids N), padding removed."""
    if raw.ndim < 2 or raw.shape[-1] != 7:
        raise BadModelOutput(f"detection output has shape {list(raw.shape)}; expected [1,1,N,7]")
    rows = raw.reshape(-1, 7)
    ends = np.flatnonzero(rows[:, 0] < 0)
    if ends.size:
        rows = rows[: ends[0]]
    return rows[:, 3:7].astype(np.float64), rows[:, 2].astype(np.float64), rows[:, 1]


def decode_boxes(raw: np.ndarray, labels: Optional[np.ndarray]
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[N,5]`` (input pixels + score) and ``[N]`` labels -> (boxes in input pixels, scores, ids)."""
    if raw.ndim not in (2, 3) or raw.shape[-1] != 5 or (raw.ndim == 3 and raw.shape[0] != 1):
        raise BadModelOutput(f"boxes output has shape {list(raw.shape)}; expected [N,5]")
    rows = raw.reshape(-1, 5)
    if labels is None:
        ids = np.zeros(len(rows), np.int64)
    else:
        ids = labels.reshape(-1)
        if ids.shape[0] != rows.shape[0]:
            raise BadModelOutput(f"labels output has {ids.shape[0]} entries for {rows.shape[0]} boxes")
    return rows[:, :4].astype(np.float64), rows[:, 4].astype(np.float64), ids


def build_result(boxes: np.ndarray, scores: np.ndarray, label_ids: np.ndarray, width: int, height: int,
                 options: DetectionOptions, names: Mapping[int, str]) -> DetectionResult:
    """Filter (threshold, finite, non-empty after clipping), sort by confidence, cap, label."""
    ids_f = np.asarray(label_ids, np.float64)
    keep = ((scores > options.threshold) & np.isfinite(boxes).all(axis=1)
            & (np.abs(np.nan_to_num(ids_f, nan=np.inf)) < 2 ** 31))
    boxes, scores, ids_f = boxes[keep], scores[keep], ids_f[keep]
    boxes = np.clip(boxes, 0.0, np.array([width, height, width, height], np.float64))
    nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores, ids_f = boxes[nonempty], scores[nonempty], ids_f[nonempty]
    order = np.argsort(-scores, kind="stable")
    if options.max_detections is not None:
        order = order[: options.max_detections]
    ids = np.rint(ids_f[order]).astype(np.int64).tolist()
    points = np.round(boxes[order], 2).tolist()
    confs = np.round(scores[order], 6).tolist()
    detections = tuple(
        Detection(label=names.get(i) or str(i), label_id=i, confidence=c, points=tuple(p))
        for i, c, p in zip(ids, confs, points))
    return DetectionResult(detections)


_PALETTE = np.array([(0, 200, 255), (255, 128, 0), (0, 200, 0), (200, 0, 200), (0, 0, 255),
                     (255, 255, 0), (128, 0, 255), (0, 128, 128), (255, 0, 128), (128, 128, 0)],
                    np.uint8)


def draw_detections(image: np.ndarray, result: DetectionResult, in_place: bool = False) -> np.ndarray:
    """Draw each detection as a rectangle with a filled caption "label 0.93" (on a BGR uint8 copy;
    on ``image`` itself with ``in_place``, when it is contiguous)."""
    canvas = image if in_place and image.flags.c_contiguous else np.ascontiguousarray(image.copy())
    h, w = canvas.shape[:2]
    thick = max(1, int(round(min(h, w) / LINE_DIVISOR)))
    font_scale = max(MIN_FONT_SCALE, min(h, w) / FONT_DIVISOR)
    # lowest confidence first so the best boxes end up on top
    for det in reversed(result.detections):
        color = tuple(int(c) for c in _PALETTE[det.label_id % len(_PALETTE)])
        x1, y1, x2, y2 = (int(round(v)) for v in det.points)
        cv2.rectangle(canvas, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), color, thick)
        caption = f"{det.label} {det.confidence:.2f}"
        (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else min(y1 + thick, h - th - base - 2)
        tx = min(max(0, x1), max(0, w - tw - 2))
        cv2.rectangle(canvas, (tx, ty), (tx + tw + 2, ty + th + base + 2), color, cv2.FILLED)
        text_color = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
        cv2.putText(canvas, caption, (tx + 1, ty + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    text_color, 1, cv2.LINE_AA)
    return canvas
