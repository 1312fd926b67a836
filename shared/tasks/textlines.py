"""Grayscale text-line geometry for line recognisers: polarity, ink mask, line splitting,
and the fixed-size model input of one line.

Everything here is pure numpy/OpenCV and independent of any model, so it is unit-tested on
arrays. Line splitting works on a reduced copy of the page (at most ``WORK_SIDE`` pixels a side):

1. *Ink*: the paper's brightness is estimated by a grey closing (which removes strokes thinner
   than the kernel) and smoothed; ink is what is clearly darker than the local paper
   (Otsu on the contrast map, never below ``MIN_CONTRAST``). Uneven lighting of phone photos
   and paper texture therefore do not become ink. Specks are removed by component area.
2. *Ruled lines*: long horizontal runs (a horizontal opening, after a small vertical dilation
   so slightly slanted rules stay connected) are removed from the mask before projecting.
3. *Skew*: the horizontal projection is taken along the shear angle (within +-``MAX_SKEW_DEG``)
   that makes it sharpest, so slightly slanted lines keep their gaps.
4. *Bands*: rows whose projection exceeds a small fraction of the typical line's peak form
   bands; bands thinner than a text line can be (a few stroke widths, or well under the median
   band) are strokes of a neighbouring line (the bars of 三, a dakuten) and are merged into the
   nearest band, so one line of text is never split; specks far from any line are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import cv2
import numpy as np

from shared.imaging import to_gray
from shared.logs import get_logger

log = get_logger("tasks.textlines")

WORK_SIDE = 1024  # longest side of the reduced copy used for analysis
MIN_CONTRAST = 40  # grey levels below the local paper brightness that count as ink, at least
MAX_SKEW_DEG = 5.0
SKEW_STEP_DEG = 0.5


@dataclass(frozen=True)
class LineBox:
    """One text line in original-image pixels: x0 <= x < x1, y0 <= y < y1."""

    x0: int
    y0: int
    x1: int
    y1: int


@dataclass(frozen=True)
class Layout:
    """What the page analysis found: the lines (top to bottom) and the ink polarity."""

    lines: Tuple[LineBox, ...]
    skew_deg: float
    stroke_width: float  # in original-image pixels (0 when there is no ink)


# ---- polarity and grayscale -------------------------------------------------------------------

def is_light_on_dark(gray: np.ndarray) -> bool:
    """True when the background is dark (chalkboard, inverted scan): the median of the border
    and of the whole picture, both dominated by background in text images, is below mid-grey."""
    h, w = gray.shape
    step = max(1, int(np.sqrt(h * w / 250_000)))  # subsample big pictures: a median needs few pixels
    sample = gray[::step, ::step]
    border = np.concatenate([gray[0, ::step], gray[-1, ::step], gray[::step, 0], gray[::step, -1]])
    return float(np.median(sample)) < 128 and float(np.median(border)) < 128


def dark_on_light(image: np.ndarray) -> Tuple[np.ndarray, bool]:
    """Grey with dark ink on light paper (what the model was trained on): (gray, inverted?)."""
    gray = to_gray(image)
    if is_light_on_dark(gray):
        return cv2.bitwise_not(gray), True
    return gray, False


# ---- model input --------------------------------------------------------------------------------

def line_input(gray: np.ndarray, height: int, width: int) -> Tuple[np.ndarray, float]:
    """One text line as the model wants it, as Open Model Zoo's handwriting demo prepares it:
    resized to ``height`` keeping the aspect ratio (INTER_AREA), then padded right and bottom by
    repeating the edge pixels up to ``height`` x ``width``. A line too long for ``width`` is
    scaled down further to fit (so it is never cropped). Returns (float32 HxW, scale)."""
    h, w = gray.shape[:2]
    scale = height / h
    if w * scale > width:
        scale = width / w
    new_w = min(width, max(1, int(round(w * scale))))
    new_h = min(height, max(1, int(round(h * scale))))
    if (new_w, new_h) != (w, h):
        resized = cv2.resize(gray, (new_w, new_h), interpolation=cv2.INTER_AREA)
    else:
        resized = gray
    out = np.empty((height, width), np.float32)
    out[:new_h, :new_w] = resized
    if new_w < width:
        out[:new_h, new_w:] = out[:new_h, new_w - 1:new_w]
    if new_h < height:
        out[new_h:, :] = out[new_h - 1:new_h, :]
    return out, scale


# ---- ink ------------------------------------------------------------------------------------------

def _reduce(gray: np.ndarray) -> Tuple[np.ndarray, float]:
    h, w = gray.shape
    scale = min(1.0, WORK_SIDE / max(h, w))
    if scale < 1.0:
        size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
        return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), scale
    return gray, 1.0


def paper_brightness(gray: np.ndarray) -> np.ndarray:
    """The local brightness of the paper under the ink: a grey closing (max then min filter)
    wider than any stroke, computed on a 4x smaller copy for speed, smoothed and enlarged."""
    h, w = gray.shape
    f = 4 if min(h, w) >= 64 else 1
    small = cv2.resize(gray, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA) if f > 1 else gray
    k = max(5, min(small.shape) // 12) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    paper = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REPLICATE)
    paper = cv2.blur(paper, (k, k))
    if f > 1:
        paper = cv2.resize(paper, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.maximum(paper, gray)


def ink_mask(gray: np.ndarray, without_rules: bool = False) -> np.ndarray:
    """Boolean mask of ink (dark strokes clearly darker than the local paper), specks removed.

    With ``without_rules``, long horizontal lines are removed first; they are looked for among
    *faint* marks too (half the ink contrast), so a printed rule whose darker stretches pass the
    ink threshold is removed whole rather than leaving dashes behind."""
    contrast = cv2.subtract(paper_brightness(gray), gray)
    faint = contrast >= MIN_CONTRAST // 2
    candidates = contrast[faint]
    if candidates.size < 16:
        return np.zeros_like(gray, dtype=bool)
    otsu, _ = cv2.threshold(candidates.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = (contrast > max(float(otsu), MIN_CONTRAST)).astype(np.uint8)
    if without_rules:
        kept = mask & (~rule_mask(faint)).astype(np.uint8)
        # long strokes with nothing else on the page are the writing itself (一, 三), not a rule
        if int(kept.sum()) >= 0.2 * int(mask.sum()):
            mask = kept
    return _remove_specks(mask).astype(bool)


def _remove_specks(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return mask
    area = stats[1:, cv2.CC_STAT_AREA]
    min_area = max(3, int(0.02 * np.percentile(area, 90)))
    keep = np.concatenate([[0], (area >= min_area).astype(np.uint8)])
    return keep[labels].astype(np.uint8)


def rule_mask(mask: np.ndarray) -> np.ndarray:
    """Where ``mask`` has horizontal runs across half the page or more (ruled paper, table borders)."""
    h, w = mask.shape
    length = max(25, w // 2)
    m8 = mask.astype(np.uint8)
    thick = cv2.dilate(m8, np.ones((3, 1), np.uint8))  # keeps a slightly slanted rule connected
    rules = cv2.morphologyEx(thick, cv2.MORPH_OPEN, np.ones((1, length), np.uint8))
    if not rules.any():
        return np.zeros_like(mask, dtype=bool)
    return cv2.dilate(rules, np.ones((3, 1), np.uint8)).astype(bool)


def stroke_width(mask: np.ndarray) -> float:
    """Typical stroke width of the ink: twice the area over the boundary length."""
    m8 = mask.astype(np.uint8)
    area = int(m8.sum())
    if area == 0:
        return 0.0
    inner = cv2.erode(m8, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    boundary = area - int(inner.sum())
    return max(1.0, 2.0 * area / max(boundary, 1))


# ---- lines -------------------------------------------------------------------------------------------

def _best_shear(ys: np.ndarray, xs: np.ndarray, height: int, width: int) -> float:
    """Angle (degrees) whose sheared row projection of the ink is sharpest (sum of squares)."""
    if ys.size == 0:
        return 0.0
    if ys.size > 20_000:  # a regular subsample keeps the profile's shape at a fraction of the cost
        step = ys.size // 20_000 + 1
        ys, xs = ys[::step], xs[::step]
    angles = np.arange(-MAX_SKEW_DEG, MAX_SKEW_DEG + 1e-9, SKEW_STEP_DEG)
    slopes = np.tan(np.deg2rad(angles))
    xc = xs.astype(np.float32) - width / 2.0
    pad = int(np.ceil(width * np.tan(np.deg2rad(MAX_SKEW_DEG)))) + 1
    rows = (ys[None, :].astype(np.float32) + np.float32(pad + 0.5)
            - slopes[:, None].astype(np.float32) * xc[None, :]).astype(np.int64)
    span = height + 2 * pad
    offsets = np.arange(len(angles), dtype=np.int64)[:, None] * span
    hist = np.bincount((rows + offsets).ravel(), minlength=span * len(angles)).reshape(len(angles), span)
    sharp = (hist.astype(np.float64) ** 2).sum(axis=1)
    best = int(np.argmax(sharp))
    # prefer 0 unless a slant is clearly sharper (noise must not rotate straight text)
    zero = int(np.argmin(np.abs(angles)))
    if sharp[best] < sharp[zero] * 1.02:
        best = zero
    return float(angles[best])


def _bands(profile: np.ndarray, stroke: float) -> List[Tuple[int, int]]:
    """Row bands [start, end) of the projection above a small fraction of the line peaks."""
    if profile.max(initial=0) <= 0:
        return []
    win = max(1, int(round(stroke)))
    smooth = np.convolve(profile.astype(np.float64), np.ones(win) / win, mode="same")
    peak = float(np.percentile(smooth[smooth > 0], 90))
    on = smooth > 0.08 * peak
    # gaps thinner than a stroke or so are not between lines: a removed rule crossing the
    # letters, or a pen lift; close them
    on = cv2.morphologyEx(on.astype(np.uint8)[:, None], cv2.MORPH_CLOSE,
                          np.ones((max(3, int(round(1.5 * stroke)) | 1), 1), np.uint8),
                          borderType=cv2.BORDER_CONSTANT, borderValue=0)[:, 0].astype(bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _merge_thin(bands: List[Tuple[int, int]], ink: List[float], stroke: float
                ) -> Tuple[List[Tuple[int, int]], List[float]]:
    """Merge bands too thin to be a line of text into their nearest neighbour (repeatedly)."""
    bands, ink = list(bands), list(ink)
    while len(bands) > 1:
        heights = np.array([b - a for a, b in bands], np.float64)
        min_h = max(3.5 * stroke, 0.4 * float(np.median(heights)))
        thin = np.flatnonzero(heights < min_h)
        if thin.size == 0:
            break
        i = int(thin[np.argmin(heights[thin])])
        gap_up = bands[i][0] - bands[i - 1][1] if i > 0 else np.inf
        gap_down = bands[i + 1][0] - bands[i][1] if i + 1 < len(bands) else np.inf
        j = i - 1 if gap_up <= gap_down else i + 1
        a, b = min(i, j), max(i, j)
        bands[a:b + 1] = [(bands[a][0], bands[b][1])]
        ink[a:b + 1] = [ink[a] + ink[b]]
    return bands, ink


def _text_columns(xs: np.ndarray, line_height: int) -> Tuple[int, int]:
    """[start, end) columns of a line's text: column runs of ink separated by gaps wider than
    the line is high are pieces; pieces with a negligible share of the ink (specks) are left out."""
    counts = np.bincount(xs)
    cols = np.flatnonzero(counts)
    breaks = np.flatnonzero(np.diff(cols) > max(1.5 * line_height, 8))
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [cols.size - 1]])
    csum = np.concatenate([[0], np.cumsum(counts[cols])])
    ink = csum[ends + 1] - csum[starts]
    keep = np.flatnonzero(ink >= 0.05 * ink.sum())
    return int(cols[starts[keep[0]]]), int(cols[ends[keep[-1]]]) + 1


def find_lines(gray: np.ndarray) -> Layout:
    """Split a dark-on-light page into text lines (top to bottom) by horizontal projection."""
    small, scale = _reduce(gray)
    mask = ink_mask(small, without_rules=True)
    if not mask.any():
        return Layout((), 0.0, 0.0)
    h, w = mask.shape
    stroke = stroke_width(mask)
    ys, xs = np.nonzero(mask)
    skew = _best_shear(ys, xs, h, w)
    slope = float(np.tan(np.deg2rad(skew)))
    rows = np.rint(ys - slope * (xs - w / 2.0)).astype(np.int64)
    lo = int(rows.min())
    rows -= lo
    profile = np.bincount(rows, minlength=int(rows.max()) + 1)
    bands = _bands(profile, stroke)
    ink = [float(profile[a:b].sum()) for a, b in bands]
    bands, ink = _merge_thin(bands, ink, stroke)
    # drop specks far from any text: bands with a tiny share of the ink
    keep = [i for i, v in enumerate(ink) if v >= 0.03 * max(ink)]
    bands = [bands[i] for i in keep]

    boxes: List[LineBox] = []
    H, W = gray.shape
    inv = 1.0 / scale
    for idx, (a, b) in enumerate(bands):
        sel = (rows >= a) & (rows < b)
        bx, by = xs[sel], ys[sel]
        # vertical margin: a share of the line height, never past the middle of the gap
        height = b - a
        margin = max(2.0, 0.15 * height)
        prev_end = bands[idx - 1][1] if idx > 0 else None
        next_start = bands[idx + 1][0] if idx + 1 < len(bands) else None
        top_m = margin if prev_end is None else min(margin, (a - prev_end) / 2.0)
        bot_m = margin if next_start is None else min(margin, (next_start - b) / 2.0)
        c0, c1 = _text_columns(bx, height)
        sel_x = (bx >= c0) & (bx < c1)
        by = by[sel_x]
        x0 = c0 - margin
        x1 = c1 + margin
        # the band is along the sheared rows; in image rows the line spans its ink's extent
        y0 = by.min() - top_m
        y1 = by.max() + 1 + bot_m
        boxes.append(LineBox(
            x0=int(max(0, np.floor(x0 * inv))), y0=int(max(0, np.floor(y0 * inv))),
            x1=int(min(W, np.ceil(x1 * inv))), y1=int(min(H, np.ceil(y1 * inv)))))
    log.debug("found %d text lines (skew %.1f deg, stroke %.1f px)", len(boxes), skew, stroke * inv)
    return Layout(tuple(boxes), skew, stroke * inv)
