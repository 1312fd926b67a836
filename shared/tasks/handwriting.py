"""Japanese handwriting recognition with handwritten-japanese-recognition-0001 (CTC).

Pipeline (Open Model Zoo's handwritten text recognition demo, plus line splitting):

- The picture is turned grey and, when it is light ink on a dark ground, inverted.
- ``lines=auto`` (default) finds the text lines by horizontal projection of the ink
  (``shared.tasks.textlines``): each line is cropped and recognised on its own; a single line is
  cropped to its ink but never split, and a picture with no ink answers empty text without
  calling the model. ``lines=single`` sends the whole picture as one line, as the demo does.
- Each line is resized to the input height keeping its aspect ratio (INTER_AREA), then padded
  right and bottom by edge replication to the input size (from the model's metadata); a line too
  long for the input width is scaled down to fit rather than cropped.
- The time-major output [T,1,C] is decoded greedily (``shared.tasks.ctc``) with the char list
  named by ``HANDWRITTEN_CHARLIST_PATH`` (class 0 = blank, class i = line i-1).
  ``allowed=<characters>`` is the demo's designated-characters mode (top-``top_k`` replacement).

Options: ``lines`` (auto | single), ``allowed`` (string), ``top_k`` (1..100, default 20).
JSON: ``text`` (lines joined by newlines), ``confidence`` (geometric mean of the character
confidences, 0 for empty text), ``characters`` ([{char, confidence, line, x}]), ``inverted``,
and ``lines`` ([{text, confidence, box: [x, y, w, h]}]) when the picture was split into two or
more lines. ``render`` shows the picture with the recognised text under it.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import cv2
import numpy as np

from shared import config, imaging, resources
from shared.errors import BadModelOutput, InvalidOption, Misconfigured
from shared.logs import get_logger
from shared.options import opt_choice, opt_int, opt_str
from shared.serving.base import InferenceAdapter, ModelMetadata
from shared.tasks import ctc, textlines
from shared.tasks.base import Task
from shared.timings import Timings

log = get_logger("tasks.handwriting")

# The char list's default location (the catalog's) is beside the model in the app's storage account.
CHARLIST_SETTING = "HANDWRITTEN_CHARLIST_PATH"
FONT_SETTING = "HANDWRITTEN_FONT_PATH"
OUTPUT_NAME = "output"
LINE_MODES = ("auto", "single")

# Drawing: line frames are the picture's shorter side over FRAME_DIVISOR thick; the text panel's
# font size is its width over FONT_DIVISOR, within FONT_SIZE_RANGE.
FRAME_DIVISOR = 300
FONT_DIVISOR = 16
FONT_SIZE_RANGE = (14, 48)


# ---- options and results -----------------------------------------------------------------------

@dataclass(frozen=True)
class HandwritingOptions:
    lines: str = "auto"
    allowed: Optional[str] = None
    top_k: int = ctc.DEFAULT_TOP_K


@dataclass(frozen=True)
class Character:
    char: str
    confidence: float
    line: int
    x: int  # approximate horizontal centre in the original picture

    def to_dict(self) -> Dict[str, Any]:
        return {"char": self.char, "confidence": round(self.confidence, 6), "line": self.line,
                "x": self.x}


@dataclass(frozen=True)
class LineResult:
    text: str
    confidence: float
    box: Tuple[int, int, int, int]  # x, y, width, height in the original picture
    characters: Tuple[Character, ...]

    def to_dict(self) -> Dict[str, Any]:
        return {"text": self.text, "confidence": round(self.confidence, 6), "box": list(self.box)}


@dataclass(frozen=True)
class HandwritingResult:
    lines: Tuple[LineResult, ...]
    inverted: bool
    split: bool  # the picture was split into two or more lines

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    @property
    def characters(self) -> Tuple[Character, ...]:
        return tuple(c for line in self.lines for c in line.characters)

    @property
    def confidence(self) -> float:
        conf = [c.confidence for c in self.characters]
        if not conf:
            return 0.0
        return float(np.exp(np.mean(np.log(np.maximum(conf, 1e-12)))))

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "text": self.text,
            "confidence": round(self.confidence, 6),
            "characters": [c.to_dict() for c in self.characters],
            "inverted": self.inverted,
        }
        if self.split:
            out["lines"] = [line.to_dict() for line in self.lines]
        return out

    def to_original_dict(self, timecost_s: float) -> Dict[str, Any]:
        """The original OVaaS answer: ``count`` (characters in ``text``), ``timecost`` (inference
        seconds) and ``text`` (empty when nothing was recognised; the web frontend then shows
        "No text found")."""
        return {"count": len(self.text), "timecost": round(float(timecost_s), 6), "text": self.text}


@dataclass(frozen=True)
class _LineInput:
    box: textlines.LineBox
    scale: float  # model-input pixels per original pixel


@dataclass(frozen=True)
class Recognizer:
    """The served recognizer's line input and score output, from its metadata."""

    input_name: str
    height: int
    width: int
    channels: int
    output_name: str


# ---- the task ------------------------------------------------------------------------------------

class HandwritingTask(Task[Recognizer]):
    """handwritten-japanese-recognition-0001 behind ``HttpTriggerHandwritten``."""

    name = "handwriting"

    def parse_options(self, raw: Mapping[str, Any]) -> HandwritingOptions:
        allowed = opt_str(raw, "allowed", None, max_len=5000)
        if allowed is not None and not allowed.strip():
            allowed = None
        return HandwritingOptions(
            lines=opt_choice(raw, "lines", "auto", LINE_MODES),
            allowed=allowed,
            top_k=int(opt_int(raw, "top_k", ctc.DEFAULT_TOP_K, lo=1, hi=100)),
        )

    # -- side files

    def charlist(self) -> Tuple[str, ...]:
        """The decoding characters (class i = entry i-1), read once per worker."""
        location = config.side_file_location(CHARLIST_SETTING)
        if not location:
            raise Misconfigured(f"set {CHARLIST_SETTING} to the model's char list")
        return _parse_charlist(location, resources.read_text(location, CHARLIST_SETTING))

    # -- model contract

    def bind(self, meta: ModelMetadata) -> Recognizer:
        """Input name/size and output name from the metadata (502 when they do not fit)."""
        info = meta.only_input()
        try:
            height, width = imaging.nchw_hw(info.shape)
        except ValueError as exc:
            raise BadModelOutput(f"model {meta.name!r} input {info.name!r}: {exc}") from None
        channels = int(info.shape[1])
        if channels not in (1, 3):
            raise BadModelOutput(f"model {meta.name!r} input {info.name!r} has {channels} channels; "
                                 "expected a grey (1-channel) line image")
        if OUTPUT_NAME in meta.outputs:
            out = OUTPUT_NAME
        elif len(meta.outputs) == 1:
            out = next(iter(meta.outputs))
        else:
            raise BadModelOutput(f"model {meta.name!r} has no output {OUTPUT_NAME!r} "
                                 f"(outputs: {', '.join(meta.outputs) or 'none'})")
        return Recognizer(info.name, height, width, channels, out)

    # -- one line (the Task interface: the whole picture as one line)

    def preprocess(self, image: np.ndarray, meta: ModelMetadata, options: HandwritingOptions
                   ) -> Tuple[Dict[str, np.ndarray], _LineInput]:
        gray, _ = textlines.dark_on_light(image)
        h, w = gray.shape
        return self._line_inputs(gray, textlines.LineBox(0, 0, w, h), self.bound(meta))

    def _line_inputs(self, gray: np.ndarray, box: textlines.LineBox, model: Recognizer
                     ) -> Tuple[Dict[str, np.ndarray], _LineInput]:
        crop = gray[box.y0:box.y1, box.x0:box.x1]
        line, scale = textlines.line_input(crop, model.height, model.width)
        tensor = line[None, None]  # float32; the adapter casts it to the model's input type
        if model.channels == 3:
            tensor = np.repeat(tensor, 3, axis=1)
        return {model.input_name: tensor}, _LineInput(box, scale)

    def postprocess(self, outputs: Mapping[str, np.ndarray], context: _LineInput, meta: ModelMetadata,
                    options: HandwritingOptions) -> HandwritingResult:
        line = self._decode_line(outputs, context, self.bound(meta), options, 0,
                                 self._allowed(options))
        return HandwritingResult((line,), inverted=False, split=False)

    def _allowed(self, options: HandwritingOptions) -> Optional[np.ndarray]:
        if options.allowed is None:
            return None
        mask, missing = _allowed_mask(self.charlist(), options.allowed)
        if not mask.any():
            raise InvalidOption("option 'allowed' has no character the model can recognise")
        if missing:
            log.info("allowed characters not in the char list are ignored: %s", "".join(missing[:20]))
        return mask

    def _decode_line(self, outputs: Mapping[str, np.ndarray], line: _LineInput, model: Recognizer,
                     options: HandwritingOptions, index: int, allowed: Optional[np.ndarray]
                     ) -> LineResult:
        scores = _scores(outputs, model.output_name)
        charlist = self.charlist()
        if scores.shape[1] != len(charlist) + 1:
            raise BadModelOutput(
                f"the model scores {scores.shape[1]} classes but the char list ({CHARLIST_SETTING}) "
                f"has {len(charlist)} characters; expected characters + 1 (blank)")
        try:
            decoded = ctc.greedy_decode(scores, charlist, allowed, options.top_k)
        except ValueError as exc:
            raise BadModelOutput(f"output {model.output_name!r}: {exc}") from None
        if not all(np.isfinite(decoded.confidences)):
            raise BadModelOutput("the model output contains non-finite scores")
        # time step -> horizontal centre in the original picture
        step_px = model.width / scores.shape[0]
        box = line.box
        chars = tuple(
            Character(ch, conf, index,
                      int(min(box.x1 - 1, box.x0 + (step + 0.5) * step_px / line.scale)))
            for ch, conf, step in zip(decoded.chars, decoded.confidences, decoded.steps))
        return LineResult(decoded.text, decoded.confidence,
                          (box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0), chars)

    # -- the whole request

    def run(self, image: np.ndarray, adapter: InferenceAdapter, options: HandwritingOptions,
            timings: Timings, meta: Optional[ModelMetadata] = None) -> HandwritingResult:
        model = self.bound(meta or adapter.metadata())
        allowed = self._allowed(options)  # loads the char list; 400 before any inference
        with timings.stage("preprocess"):
            gray, inverted = textlines.dark_on_light(image)
            h, w = gray.shape
            if options.lines == "auto":
                boxes = textlines.find_lines(gray).lines
            else:
                boxes = (textlines.LineBox(0, 0, w, h),)
        results: List[LineResult] = []
        for index, box in enumerate(boxes):
            with timings.stage("preprocess"):
                inputs, line = self._line_inputs(gray, box, model)
            with timings.stage("inference"):
                outputs = adapter.infer(inputs)
            with timings.stage("postprocess"):
                results.append(self._decode_line(outputs, line, model, options, index, allowed))
        return HandwritingResult(tuple(results), inverted, split=len(results) > 1)

    # -- picture

    def render(self, image: np.ndarray, result: HandwritingResult, options: HandwritingOptions
               ) -> np.ndarray:
        return render_result(image, result)

    def render_owned(self, image: np.ndarray, result: HandwritingResult,
                     options: HandwritingOptions) -> np.ndarray:
        """The frames drawn on the request's own picture (no full-size copy)."""
        return render_result(image, result, in_place=True)


# ---- helpers -------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _parse_charlist(location: str, text: str) -> Tuple[str, ...]:
    # As the demo reads it: the file's characters in order, newlines removed.
    chars = tuple(text.replace("\r", "").replace("\n", ""))
    if not chars:
        raise Misconfigured(f"the char list (setting {CHARLIST_SETTING}) is empty")
    return chars


@functools.lru_cache(maxsize=64)
def _allowed_mask(charlist: Tuple[str, ...], allowed: str) -> Tuple[np.ndarray, List[str]]:
    mask, missing = ctc.allowed_mask(charlist, allowed)
    mask.setflags(write=False)
    return mask, missing


def _scores(outputs: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """The [T, C] view of the model's [T, 1, C] output (no copy)."""
    if name not in outputs:
        raise BadModelOutput(f"the model answered without output {name!r}")
    out = np.asarray(outputs[name])
    if out.ndim == 3 and out.shape[1] == 1:
        out = out.reshape(out.shape[0], out.shape[2])
    elif out.ndim != 2:
        raise BadModelOutput(f"output {name!r} has shape {list(out.shape)}; expected [T, 1, classes]")
    if out.shape[0] == 0 or out.shape[1] < 2:
        raise BadModelOutput(f"output {name!r} has shape {list(out.shape)}; expected [T, 1, classes]")
    if not np.issubdtype(out.dtype, np.floating):
        raise BadModelOutput(f"output {name!r} has type {out.dtype}; expected floating point scores")
    return out


# ---- rendering -----------------------------------------------------------------------------------

# Fonts with Japanese glyphs, first found wins: the setting, the PyPI font package in
# requirements.txt, another PyPI Noto CJK package, then common Debian font packages.
_SYSTEM_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKjp-Regular.otf",
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
    "/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf",
    "/usr/share/fonts/truetype/takao-gothic/TakaoPGothic.ttf",
)


def _package_font(module: str, filename: str) -> Optional[str]:
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / filename
        if path.is_file():
            return str(path)
    return None


@functools.lru_cache(maxsize=1)
def japanese_font_path() -> Optional[str]:
    """Path of a font with Japanese glyphs, or None (rendering then falls back to boxes)."""
    configured = config.side_file_location(FONT_SETTING)
    candidates: List[Optional[str]] = [configured or None,
                                       _package_font("pylopdf_fonts_cjk", "NotoSansJP-Regular.otf"),
                                       _package_font("noto_cjk_sans_jp_regular", "NotoSansCJKjp-Regular.otf")]
    candidates += list(_SYSTEM_FONTS)
    for path in candidates:
        if path and os.path.isfile(path):
            return path
    log.warning("no font with Japanese glyphs found: rendered text falls back to boxes "
                "(pip install pylopdf-fonts-cjk, or set %s)", FONT_SETTING)
    return None


@functools.lru_cache(maxsize=16)
def _font(size: int) -> Any:
    from PIL import ImageFont

    path = japanese_font_path()
    if path is None:
        return None
    try:
        return ImageFont.truetype(path, size)
    except OSError:
        log.warning("font %s could not be loaded", path)
        return None


_LINE_COLOURS = ((0, 0, 230), (0, 150, 0), (200, 80, 0), (160, 0, 160), (0, 140, 200))


def render_result(image: np.ndarray, result: HandwritingResult, in_place: bool = False) -> np.ndarray:
    """The picture, with the split lines framed, and the recognised text in a panel under it
    (the frames drawn on ``image`` itself with ``in_place``, when it is contiguous)."""
    from PIL import Image, ImageDraw, ImageFont

    picture = image if in_place and image.flags.c_contiguous else np.ascontiguousarray(image).copy()
    h, w = picture.shape[:2]
    thick = max(1, int(round(min(h, w) / FRAME_DIVISOR)))
    if result.split:
        for i, line in enumerate(result.lines):
            x, y, bw, bh = line.box
            cv2.rectangle(picture, (x, y), (x + bw - 1, y + bh - 1), _LINE_COLOURS[i % len(_LINE_COLOURS)],
                          thick)
    texts = [line.text for line in result.lines] or [""]
    texts = [t if t else "(no text recognised)" for t in texts]
    panel_w = max(w, 320)
    size = int(np.clip(panel_w / FONT_DIVISOR, *FONT_SIZE_RANGE))
    font = _font(size)
    if font is not None:
        longest = max(font.getlength(t) for t in texts)
        if longest > panel_w - 2 * size // 2:
            size = max(10, int(size * (panel_w - size) / longest))
            font = _font(size)
    note = None
    if font is None:
        note = "No Japanese font installed: characters are shown as boxes (text is in the JSON answer)."
        font = ImageFont.load_default()
    pad = size // 2
    line_h = int(size * 1.4)
    panel_h = pad * 2 + line_h * len(texts) + (line_h if note else 0)
    panel = Image.new("RGB", (panel_w, panel_h), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    y = pad
    if note:
        draw.text((pad, y), note, fill=(160, 0, 0), font=font)
        y += line_h
    for i, text in enumerate(texts):
        colour = _LINE_COLOURS[i % len(_LINE_COLOURS)][::-1] if result.split else (0, 0, 0)
        if note is None:
            draw.text((pad, y), text, fill=colour, font=font)
        else:
            step = max(8, size)
            for j, ch in enumerate(text):
                x0 = pad + j * step
                if ch.isascii() and ch.isprintable():
                    draw.text((x0, y), ch, fill=colour, font=font)
                else:
                    draw.rectangle((x0, y, x0 + step - 3, y + step - 3), outline=colour)
        y += line_h
    canvas = np.full((h + panel_h, panel_w, 3), 255, np.uint8)
    canvas[:h, :w] = picture
    canvas[h:, :] = np.asarray(panel)[:, :, ::-1]
    return canvas
