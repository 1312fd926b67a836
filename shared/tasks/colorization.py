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

Efficiency: a grey pixel's L depends only on its 8-bit level, so L is one 256-entry lookup
(exact CIE values) instead of an RGB -> Lab pass. Memory: no full-size float copy is ever made.
The model's input reads only the rows bilinear resizing samples; the answer is built a band of
rows at a time (grey -> L, ab resized to the band, Lab -> BGR in float32, rounded to uint8),
written over the request's own decoded picture when the caller hands it over (``run(owned=True)``,
as ``shared.http`` does). Its pixels match the full-size float32 computation within 1 level
(tests/test_colorization_memory.py measures it on a real photo).
"""
from __future__ import annotations

import binascii
import io
import threading
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import cv2
import numpy as np

from shared import config, imaging, resources
from shared.errors import BadModelOutput, Misconfigured
from shared.formats import MIME_TYPES, Base64Text
from shared.logs import get_logger
from shared.options import opt_bool, opt_choice, opt_int
from shared.serving.base import InferenceAdapter, ModelMetadata, TensorInfo
from shared.tasks.base import Task
from shared.timings import Timings

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
        buffer = imaging.encode_buffer(picture, self.output_format, self.quality)
        return EncodedImage(binascii.b2a_base64(memoryview(buffer), newline=False).decode("ascii"),
                            MIME_TYPES[self.output_format], int(picture.shape[1]), int(picture.shape[0]))

    def _encoded(self, field: str, consume: bool = False) -> "EncodedImage":
        """The picture in ``field`` encoded, its base64 as ``Base64Text`` (from the encoder's own
        buffer: one base64 copy, no str). With ``consume`` this result lets go of the picture
        once it is encoded, before the base64 is made (the caller holds no other reference)."""
        picture = getattr(self, field)
        width, height = int(picture.shape[1]), int(picture.shape[0])
        buffer = imaging.encode_buffer(picture, self.output_format, self.quality)
        if consume:
            del picture
            object.__setattr__(self, field, None)  # frozen: the one sanctioned way to drop it
        text = Base64Text(binascii.b2a_base64(memoryview(buffer), newline=False))
        del buffer
        return EncodedImage(text, MIME_TYPES[self.output_format], width, height)  # type: ignore[arg-type]

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"colorized": self.encoded(self.colorized).to_dict(),
                               "variant": self.variant}
        if self.comparison is not None:
            out["comparison"] = self.encoded(self.comparison).to_dict()
        return out

    def to_answer(self) -> Dict[str, Any]:
        """``to_dict`` as ``shared.http`` writes it, once, as the last use of this result: each
        picture is let go of as soon as it is encoded, and its base64 is ``Base64Text`` (written
        into the body without str copies). A 40 MP JSON answer with a PNG peaked at +561 MiB
        before, +337 to +372 now (README "Limits")."""
        out: Dict[str, Any] = {"colorized": self._encoded("colorized", consume=True).to_dict(),
                               "variant": self.variant}
        if self.comparison is not None:
            out["comparison"] = self._encoded("comparison", consume=True).to_dict()
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
    image: np.ndarray  # the picture (BGR uint8); its L is read a band of rows at a time
    layout: ModelLayout
    left_panel: Optional[np.ndarray]  # the original's comparison panel, kept only for ``compare``
    out: Optional[np.ndarray]  # where the colorized picture goes (None: a new array)


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
                log.info("colorization coefficients: %d bins (setting %s)", cached.shape[1],
                         COEFFICIENTS_SETTING)
        return cached

    # -- pipeline
    def bind(self, meta: ModelMetadata) -> ModelLayout:
        """Input name and size, and the variant (PyTorch ab or Caffe bins), from the metadata."""
        return model_layout(meta)

    def run_owned(self, image: np.ndarray, adapter: InferenceAdapter, options: ColorizationOptions,
                  timings: Timings, meta: Optional[ModelMetadata] = None) -> ColorizationResult:
        """The base pass, the colorized picture written over ``image`` (the request's own decoded
        picture, when it is contiguous): no second full-size picture is held."""
        meta = meta or adapter.metadata()
        out = image if image.flags.c_contiguous and image.flags.writeable else None
        with timings.stage("preprocess"):
            inputs, context = self.preprocess(image, meta, options, out=out)
        with timings.stage("inference"):
            outputs = adapter.infer(inputs)
        with timings.stage("postprocess"):
            return self.postprocess(outputs, context, meta, options)

    def preprocess(self, image: np.ndarray, meta: ModelMetadata, options: ColorizationOptions,
                   out: Optional[np.ndarray] = None) -> Tuple[Dict[str, np.ndarray], _Context]:
        """The model's L input, read from the rows it samples (no full-size L). ``out``: where
        postprocess writes the colorized picture (``image`` itself, when the caller owns it)."""
        layout = self.bound(meta)
        model_l = model_lightness(image, layout.height, layout.width)
        tensor = model_l.reshape(1, 1, layout.height, layout.width)  # float32; the adapter casts
        left = _panel(image, COMPARE_HEIGHT) if options.compare else None
        context = _Context(image, layout, left, out)
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
        colorized = colorize(context.image, ab_small, context.out)
        comparison = None
        if options.compare and context.left_panel is not None:
            comparison = side_by_side(None, colorized, left=context.left_panel)
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


def linear_taps(src: int, dst: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, weight of i1) of each of ``dst`` samples along an axis of ``src`` samples, as
    ``cv2.resize(..., INTER_LINEAR)`` computes them: centre-aligned, clamped at the edges."""
    scale = src / dst
    pos = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(pos).astype(np.intp)
    frac = (pos - i0.astype(np.float32)).astype(np.float32)
    low, high = i0 < 0, i0 >= src - 1
    frac[low | high] = 0.0
    i0 = np.clip(i0, 0, src - 1)
    return i0, np.minimum(i0 + 1, src - 1), frac


def _mix_rows(rows0: np.ndarray, rows1: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """rows0 * (1 - frac) + rows1 * frac, one weight per row (float32)."""
    shape = (-1,) + (1,) * (rows0.ndim - 1)
    w1 = frac.reshape(shape)
    return rows0 * (np.float32(1.0) - w1) + rows1 * w1


def model_lightness(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``height`` x ``width`` float32 L of the picture's grey version, bilinear as
    ``cv2.resize(lightness_of(image), (width, height))``, read from only the rows that resize
    samples (two per output row): no full-size grey or L copy."""
    i0, i1, frac = linear_taps(image.shape[0], height)
    rows = np.unique(np.concatenate([i0, i1]))
    picked = cv2.LUT(_gray_rows(image[rows]), _L_OF_GRAY)  # len(rows) x W float32
    narrow = cv2.resize(picked, (width, len(rows)), interpolation=cv2.INTER_LINEAR)  # columns only
    where = {int(r): k for k, r in enumerate(rows)}
    k0 = np.array([where[int(r)] for r in i0], np.intp)
    k1 = np.array([where[int(r)] for r in i1], np.intp)
    return np.ascontiguousarray(_mix_rows(narrow[k0], narrow[k1], frac), dtype=np.float32)


def _gray_rows(rows: np.ndarray) -> np.ndarray:
    """Rows of a BGR (or grey) picture -> contiguous uint8 grey."""
    return np.ascontiguousarray(imaging.to_gray(np.ascontiguousarray(rows)), dtype=np.uint8)


def colorize(image: np.ndarray, ab_small: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """The picture's full-resolution L + ab at model resolution -> BGR uint8 of the picture's size.

    A band of rows at a time through small reused buffers: the band's grey -> L (a lookup), ab
    resized bilinearly to the band (columns once for the whole width at model height, rows per
    band, the coordinates ``cv2.resize`` uses), Lab -> BGR in float32, saturated and rounded to
    uint8 into ``out`` (``image`` itself is allowed: a band is read before it is written). No
    full-size float copy exists: the peak beyond the picture and ``out`` is a few megabytes.
    """
    height, width = image.shape[:2]
    if out is None:
        out = np.empty((height, width, 3), np.uint8)
    wide = cv2.resize(np.ascontiguousarray(ab_small, dtype=np.float32), (width, ab_small.shape[0]),
                      interpolation=cv2.INTER_LINEAR)  # model rows x W x 2
    i0, i1, frac = linear_taps(ab_small.shape[0], height)
    rows = max(1, min(height, _BAND_PIXELS // width))
    lab = np.empty((rows, width, 3), np.float32)
    bgr = np.empty((rows, width, 3), np.float32)
    band8 = np.empty((rows, width, 3), np.uint8)
    for top in range(0, height, rows):
        n = min(rows, height - top)
        lab_band, bgr_band = lab[:n], bgr[:n]
        lightness = cv2.LUT(_gray_rows(image[top:top + n]), _L_OF_GRAY)
        ab = _mix_rows(wide[i0[top:top + n]], wide[i1[top:top + n]], frac[top:top + n])
        cv2.merge([lightness, ab], lab_band)
        cv2.cvtColor(lab_band, cv2.COLOR_Lab2BGR, bgr_band)
        # 255 * x saturated to uint8: negatives -> 0, above 1 -> 255, rounded
        cv2.addWeighted(bgr_band, 255.0, bgr_band, 0.0, 0.0, band8[:n], dtype=cv2.CV_8U)
        out[top:top + n] = band8[:n]
    return out


def _parse_coefficients(data: bytes, location: str) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:  # np.load raises several types on a broken file
        raise Misconfigured(f"the colour coefficients (setting {COEFFICIENTS_SETTING}) "
                            "are not a readable .npy file") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 2 or \
            not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise Misconfigured(f"the colour coefficients (setting {COEFFICIENTS_SETTING}) "
                            f"have shape {list(arr.shape)}; expected finite [K,2]")
    return np.ascontiguousarray(arr.T, dtype=np.float32)


# ---- comparison picture ----------------------------------------------------------------------

def side_by_side(original: Optional[np.ndarray], colorized: np.ndarray,
                 height: int = COMPARE_HEIGHT, left: Optional[np.ndarray] = None) -> np.ndarray:
    """The original and the colorized picture side by side at ``height`` pixels, labelled
    "Original" and "Colorized" in red, as the original OVaaS answered (``left``: the original's
    panel made beforehand, when the original's pixels are gone)."""
    left = _panel(original, height) if left is None else left.copy()
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
