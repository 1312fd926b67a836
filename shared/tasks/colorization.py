"""Colorization of black-and-white photos with colorization-v2 (both published variants).

The variant is read from the model's metadata, so no setting chooses it:

- PyTorch-derived (Open Model Zoo 2021.2 and later): ``data_l`` [1,1,256,256] -> ``color_ab``
  [1,2,256,256], the a and b channels directly.
- Caffe-derived (Open Model Zoo 2021.1, the one the original OVaaS served): ``data_l``
  [1,1,224,224] (the mean of 50 is subtracted inside the graph) -> ``class8_313_rh``
  [1,313,56,56], a distribution over 313 quantised ab bins. ab is its expectation over the
  bins' centres: the 313x2 coefficients (``colorization-v2.npy``, read once from the location
  in ``COLORIZATION_COEFFICIENTS_PATH``).

Pipeline, as Open Model Zoo's colorization demo: the picture goes to grey, then to RGB in
[0, 1], then to CIE Lab; the L channel resized to the model's input is fed raw (0..100). The
predicted ab is resized back to the picture's size, joined with the full-resolution L, taken
from Lab back to BGR and clipped.

Efficiency: a grey pixel's L depends only on its 8-bit level, so the full-resolution L is one
256-entry lookup (exact CIE values) instead of a full-image RGB -> Lab pass. Everything else
is float32 OpenCV.
"""
from __future__ import annotations

import base64
import io
import threading
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import cv2
import numpy as np

from shared import config, imaging, resources
from shared.errors import BadModelOutput, Misconfigured
from shared.formats import MIME_TYPES
from shared.logs import get_logger
from shared.options import opt_bool, opt_choice, opt_int
from shared.serving.base import ModelMetadata, TensorInfo
from shared.tasks.base import Task

log = get_logger("tasks.colorization")

COEFFICIENTS_SETTING = "COLORIZATION_COEFFICIENTS_PATH"
AB_OUTPUT = "color_ab"  # PyTorch variant
BINS_OUTPUT = "class8_313_rh"  # Caffe variant
VARIANT_AB = "pytorch"
VARIANT_BINS = "caffe"
COMPARE_HEIGHT = 400  # the original OVaaS drew both panels 400 pixels high
COMPARE_MAX_PANEL_WIDTH = 2400  # keeps a panorama's comparison bounded
_BAND_PIXELS = 1 << 18  # Lab -> BGR band size (pixels): 3 MB float buffers


def _gray_to_l_table() -> np.ndarray:
    """CIE L* (0..100) of each 8-bit grey level: sRGB decoding, then L* of the luminance.

    Grey has R = G = B, so the luminance Y is the linear value itself (the sRGB matrix rows
    sum to 1 for the white point). OpenCV's float RGB -> Lab, which the demo uses, approximates
    this within 0.2; the exact values make grey -> Lab -> BGR round-trip to within 0.02 levels.
    """
    c = np.arange(256, dtype=np.float64) / 255.0
    y = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    eps = (6.0 / 29.0) ** 3
    f = np.where(y > eps, np.cbrt(y), y * (841.0 / 108.0) + 4.0 / 29.0)
    return (116.0 * f - 16.0).astype(np.float32)


_L_OF_GRAY = _gray_to_l_table()


# ---- options and results -------------------------------------------------------------------

@dataclass(frozen=True)
class ColorizationOptions:
    """``compare``: answer the original and the result side by side, labelled.
    ``output_format``/``quality``: how the JSON answer encodes its pictures."""

    compare: bool = False
    output_format: str = "jpeg"
    quality: int = 90


@dataclass(frozen=True)
class EncodedImage:
    """A picture as it goes into JSON: base64 bytes, MIME type, size."""

    data: str
    mime_type: str
    width: int
    height: int

    def to_dict(self) -> Dict[str, Any]:
        return {"data": self.data, "mime_type": self.mime_type,
                "width": self.width, "height": self.height}


@dataclass(frozen=True)
class ColorizationResult:
    """The colorized picture (BGR uint8, the input's size) and, with ``compare``, the
    side-by-side comparison. Pictures are encoded only when the JSON answer is built."""

    colorized: np.ndarray
    variant: str
    output_format: str = "jpeg"
    quality: int = 90
    comparison: Optional[np.ndarray] = None

    def encoded(self, picture: np.ndarray) -> EncodedImage:
        """``picture`` encoded with this result's format, as base64."""
        data = imaging.encode(picture, self.output_format, self.quality)
        return EncodedImage(base64.b64encode(data).decode("ascii"),
                            MIME_TYPES[self.output_format],
                            int(picture.shape[1]), int(picture.shape[0]))

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"colorized": self.encoded(self.colorized).to_dict(),
                               "variant": self.variant}
        if self.comparison is not None:
            out["comparison"] = self.encoded(self.comparison).to_dict()
        return out


@dataclass(frozen=True)
class ModelLayout:
    """What the served model takes and returns, as read from its metadata."""

    input_name: str
    height: int
    width: int
    output_name: str
    variant: str  # VARIANT_AB or VARIANT_BINS


@dataclass(frozen=True)
class _Context:
    lightness: np.ndarray  # HxW float32, L of the original picture at full resolution
    layout: ModelLayout
    original: Optional[np.ndarray]  # kept only for ``compare``


# ---- the task --------------------------------------------------------------------------------

class ColorizationTask(Task[ModelLayout]):
    """colorization-v2: grey photo in, colour photo out."""

    name = "colorization"

    def __init__(self) -> None:
        super().__init__()
        self._coeff_lock = threading.Lock()
        self._coefficients: Dict[str, np.ndarray] = {}  # location -> (2, K) float32

    # -- options
    def parse_options(self, raw: Mapping[str, Any]) -> ColorizationOptions:
        fmt = opt_choice(raw, "output_format", "jpeg", ("jpeg", "jpg", "png"))
        return ColorizationOptions(
            compare=opt_bool(raw, "compare", False),
            output_format="jpeg" if fmt == "jpg" else fmt,
            quality=int(opt_int(raw, "quality", 90, 1, 100)),
        )

    # -- side file
    def coefficients(self) -> np.ndarray:
        """The bins' ab centres as a (2, K) float32 matrix, read once per location."""
        location = config.side_file_location(COEFFICIENTS_SETTING)
        if not location:
            raise Misconfigured(
                f"the served colorization model outputs ab bins ({BINS_OUTPUT}), which need the "
                f"colour coefficients; set {COEFFICIENTS_SETTING}")
        cached = self._coefficients.get(location)
        if cached is not None:
            return cached
        with self._coeff_lock:
            cached = self._coefficients.get(location)
            if cached is None:
                cached = _parse_coefficients(resources.read_bytes(location, COEFFICIENTS_SETTING),
                                             location)
                self._coefficients[location] = cached
                log.info("colorization coefficients: %d bins from %s", cached.shape[1], location)
        return cached

    # -- pipeline
    def bind(self, meta: ModelMetadata) -> ModelLayout:
        """Input name and size, and the variant (PyTorch ab or Caffe bins), from the metadata."""
        return model_layout(meta)

    def preprocess(self, image: np.ndarray, meta: ModelMetadata, options: ColorizationOptions
                   ) -> Tuple[Dict[str, np.ndarray], _Context]:
        layout = self.bound(meta)
        lightness = lightness_of(image)
        model_l = cv2.resize(lightness, (layout.width, layout.height), interpolation=cv2.INTER_LINEAR)
        tensor = model_l.reshape(1, 1, layout.height, layout.width)  # float32; the adapter casts
        context = _Context(lightness, layout, image if options.compare else None)
        return {layout.input_name: tensor}, context

    def postprocess(self, outputs: Mapping[str, np.ndarray], context: _Context, meta: ModelMetadata,
                    options: ColorizationOptions) -> ColorizationResult:
        layout = context.layout
        if layout.output_name not in outputs:
            raise BadModelOutput(f"model {meta.name!r} did not return output {layout.output_name!r}")
        raw = np.asarray(outputs[layout.output_name])
        if layout.variant == VARIANT_BINS:
            ab_small = ab_from_bins(raw, self.coefficients(), layout.output_name)
        else:
            ab_small = ab_from_ab(raw, layout.output_name)
        colorized = compose(context.lightness, ab_small)
        comparison = None
        if options.compare and context.original is not None:
            comparison = side_by_side(context.original, colorized)
        return ColorizationResult(colorized, layout.variant, options.output_format,
                                  options.quality, comparison)

    def render(self, image: np.ndarray, result: ColorizationResult,
               options: ColorizationOptions) -> np.ndarray:
        if options.compare:
            return result.comparison if result.comparison is not None else side_by_side(
                image, result.colorized)
        return result.colorized


# ---- the maths (module functions so tests and the bench can call them) ----------------------

def model_layout(meta: ModelMetadata) -> ModelLayout:
    """Input name/size and the variant, from the model's metadata (502 when it fits neither)."""
    info = meta.only_input()
    shape = tuple(int(d) for d in info.shape)
    try:
        height, width = imaging.nchw_hw(shape)
    except ValueError:
        raise BadModelOutput(f"model {meta.name!r} input {info.name!r} has shape {list(shape)}; "
                             "colorization expects [1,1,H,W]") from None
    if shape[0] not in (1, -1) or shape[1] != 1:
        raise BadModelOutput(f"model {meta.name!r} input {info.name!r} has shape {list(shape)}; "
                             "colorization expects one L channel, [1,1,H,W]")
    dtype = info.dtype or "float32"
    if dtype not in ("float32", "float16", "float64"):
        raise BadModelOutput(f"model {meta.name!r} input {info.name!r} is {dtype}; colorization "
                             "feeds a floating-point L channel")
    output, variant = _pick_output(meta)
    return ModelLayout(info.name, height, width, output.name, variant)


def _pick_output(meta: ModelMetadata) -> Tuple[TensorInfo, str]:
    outs = meta.outputs
    if AB_OUTPUT in outs:
        return outs[AB_OUTPUT], VARIANT_AB
    if BINS_OUTPUT in outs:
        return outs[BINS_OUTPUT], VARIANT_BINS
    if len(outs) == 1:  # renamed output: tell the variants apart by their channel count
        info = next(iter(outs.values()))
        if len(info.shape) == 4 and info.shape[1] == 2:
            return info, VARIANT_AB
        if len(info.shape) == 4 and info.shape[1] > 2:
            return info, VARIANT_BINS
    raise BadModelOutput(
        f"model {meta.name!r} has outputs {sorted(outs)}; colorization expects {AB_OUTPUT!r} "
        f"[1,2,H,W] or {BINS_OUTPUT!r} [1,313,H,W]")


def lightness_of(image: np.ndarray) -> np.ndarray:
    """HxW float32 L (0..100) of the picture's grey version, as the demo computes it."""
    return cv2.LUT(np.ascontiguousarray(imaging.to_gray(image), dtype=np.uint8), _L_OF_GRAY)


def _check_4d(raw: np.ndarray, name: str, channels: int) -> np.ndarray:
    if raw.ndim != 4 or raw.shape[0] != 1 or raw.shape[1] != channels or raw.shape[2] < 1 \
            or raw.shape[3] < 1:
        raise BadModelOutput(f"output {name!r} has shape {list(raw.shape)}; expected "
                             f"[1,{channels},H,W]")
    if not np.issubdtype(raw.dtype, np.floating):
        raise BadModelOutput(f"output {name!r} has type {raw.dtype}; expected floating point")
    if not np.isfinite(raw).all():
        raise BadModelOutput(f"output {name!r} contains NaN or infinite values")
    return raw


def ab_from_ab(raw: np.ndarray, name: str = AB_OUTPUT) -> np.ndarray:
    """[1,2,h,w] ab -> hxwx2 float32 (a copy: adapter outputs may be read-only)."""
    raw = _check_4d(raw, name, 2)
    return np.ascontiguousarray(raw[0].transpose(1, 2, 0), dtype=np.float32)


def ab_from_bins(raw: np.ndarray, coefficients: np.ndarray, name: str = BINS_OUTPUT) -> np.ndarray:
    """[1,K,h,w] bin probabilities and (2,K) bin centres -> hxwx2 float32 expected ab."""
    bins = coefficients.shape[1]
    raw = _check_4d(raw, name, bins)
    _, _, h, w = raw.shape
    probs = raw[0].reshape(bins, h * w).astype(np.float32, copy=False)
    ab = coefficients @ probs  # (2, h*w)
    return np.ascontiguousarray(ab.reshape(2, h, w).transpose(1, 2, 0))


def compose(lightness: np.ndarray, ab_small: np.ndarray) -> np.ndarray:
    """Full-resolution L + ab at model resolution -> BGR uint8 of L's size.

    Lab -> BGR runs in bands of rows through small reused buffers, so a large picture never
    holds full-size float Lab/BGR copies (less memory, better cache use); the float -> uint8
    step clips to [0, 1] and rounds in the same pass.
    """
    height, width = lightness.shape
    if ab_small.shape[:2] == (height, width):
        ab = ab_small
    else:
        ab = cv2.resize(ab_small, (width, height), interpolation=cv2.INTER_LINEAR)
    out = np.empty((height, width, 3), np.uint8)
    rows = max(1, min(height, _BAND_PIXELS // width))
    lab = np.empty((rows, width, 3), np.float32)
    bgr = np.empty((rows, width, 3), np.float32)
    for top in range(0, height, rows):
        n = min(rows, height - top)
        lab_band, bgr_band = lab[:n], bgr[:n]
        cv2.merge([lightness[top:top + n], ab[top:top + n]], lab_band)
        cv2.cvtColor(lab_band, cv2.COLOR_Lab2BGR, bgr_band)
        # 255 * x saturated to uint8: negatives -> 0, above 1 -> 255, rounded
        cv2.addWeighted(bgr_band, 255.0, bgr_band, 0.0, 0.0, out[top:top + n], dtype=cv2.CV_8U)
    return out


def _parse_coefficients(data: bytes, location: str) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:  # np.load raises several types on a broken file
        raise Misconfigured(f"colour coefficients at {location} (setting {COEFFICIENTS_SETTING}) "
                            "are not a readable .npy file") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 2 or \
            not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise Misconfigured(f"colour coefficients at {location} (setting {COEFFICIENTS_SETTING}) "
                            f"have shape {list(arr.shape)}; expected finite [K,2]")
    return np.ascontiguousarray(arr.T, dtype=np.float32)


# ---- comparison picture ----------------------------------------------------------------------

def side_by_side(original: np.ndarray, colorized: np.ndarray,
                 height: int = COMPARE_HEIGHT) -> np.ndarray:
    """The original and the colorized picture side by side at ``height`` pixels, labelled
    "Original" and "Colorized" in red, as the original OVaaS answered."""
    left = _panel(original, height)
    right = _panel(colorized, left.shape[0], left.shape[1])
    _label(left, "Original")
    _label(right, "Colorized")
    return cv2.hconcat([left, right])


def _panel(image: np.ndarray, height: int, width: Optional[int] = None) -> np.ndarray:
    h, w = image.shape[:2]
    if width is None:
        scale = min(height / h, COMPARE_MAX_PANEL_WIDTH / w)
        width = max(1, int(round(w * scale)))
        height = max(1, int(round(h * scale)))
    shrink = width < w or height < h
    panel = cv2.resize(image, (width, height),
                       interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if panel.ndim == 2:
        panel = cv2.cvtColor(panel, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(panel)


def _label(panel: np.ndarray, text: str) -> None:
    scale = max(0.35, panel.shape[0] / COMPARE_HEIGHT)
    org = (int(round(25 * scale)), int(round(50 * scale)))
    cv2.putText(panel, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 255),
                max(1, int(round(2 * scale))), cv2.LINE_AA)
