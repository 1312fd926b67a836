"""Multi-person 2D pose estimation with human-pose-estimation-0001 (OpenPose, 18 keypoints).

Preprocessing follows Open Model Zoo's demo for this model: scale the image so its height is the
model's input height (both axes by the same factor, ``cv2.resize(fx=s, fy=s)`` so the pixels are
the ones the demo feeds), pad on the right with zeros to the input width, BGR, NCHW float32.
An image that would be wider than the input after that is scaled to fit the width instead (and
padded at the bottom), never cropped.

Postprocessing is the OpenPose grouping of OMZ's reference ``OpenPoseDecoder``, matched step by
step so the same model output gives the same people and keypoints:

1. peaks: a heatmap value equal to the maximum of its 3x3 neighbourhood (the reference adds a
   3x3/stride-1/pad-1 MaxPool to the graph; OVMS serves the model unchanged, so it is done here
   in numpy on the heatmaps at their native resolution) and above ``threshold``; at most 100 per
   keypoint type, best first;
2. quarter-cell refinement towards the higher neighbour (interior peaks only), then +0.5 cell
   (cell centre), clipped to the map;
3. every candidate limb (pair of keypoints of the limb's two types) scored along its PAF at 10
   evenly spaced samples: alignment > 0.05 at more than 80 % of them, mean positive alignment > 0;
4. per limb, a greedy one-to-one matching by descending score ("connections NMS");
5. greedy grouping of connections into people, limb by limb in the reference's order; people
   with fewer than 3 parts are dropped; score = (keypoint scores + connection scores) x
   max(0, parts - 1), as the reference computes it.

Everything per pixel, per peak and per candidate pair is vectorised; the only Python loops are
over the 19 limb types, over matching rounds, and over accepted connections (about one per
person per limb) in the grouping, whose order-dependent merges are inherently sequential.

The ``threshold`` option is the reference's confidence threshold: the minimum heatmap peak value
for a keypoint candidate (default 0.1, as OMZ's demo). Lower finds more (and weaker) keypoints.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import cv2
import numpy as np

from shared.errors import BadModelOutput
from shared.imaging import nchw_hw
from shared.logs import get_logger
from shared.options import opt_float
from shared.serving.base import ModelMetadata
from shared.tasks.base import Task

log = get_logger("tasks.pose")

KEYPOINT_NAMES: Tuple[str, ...] = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

# The 19 OpenPose limbs (keypoint type pairs) in the order the reference groups them, and the
# first of the two PAF channels (x, y) of each.
LIMBS: Tuple[Tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)
LIMB_PAF_CHANNELS: Tuple[int, ...] = (12, 20, 14, 16, 22, 24, 0, 2, 4, 6, 8, 10, 28, 30, 34, 32, 36, 18, 26)
_CHANNELS = np.array(LIMB_PAF_CHANNELS, dtype=np.intp)

PAF_OUTPUT = "Mconv7_stage2_L1"
HEATMAP_OUTPUT = "Mconv7_stage2_L2"

DEFAULT_THRESHOLD = 0.1
MAX_PEAKS = 100
POINTS_PER_LIMB = 10
MIN_PAF_ALIGNMENT = 0.05
MIN_SUCCESS_RATIO = 0.8
MIN_PARTS = 3
DELTA = 0.5

# Drawing: limb thickness and keypoint radius are the picture's longer side over these, limbs are
# blended over the picture with this opacity.
LIMB_THICKNESS_DIVISOR = 200
KEYPOINT_RADIUS_DIVISOR = 250
LIMB_OPACITY = 0.6


# ---- results ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Keypoint:
    """One keypoint in original-image pixels and its heatmap peak value."""

    x: float
    y: float
    score: float

    def to_dict(self) -> Dict[str, float]:
        return {"x": round(self.x, 2), "y": round(self.y, 2), "score": round(self.score, 4)}


@dataclass(frozen=True)
class Person:
    """One person: pose score and the 18 keypoints in ``KEYPOINT_NAMES`` order (None = not found)."""

    score: float
    keypoints: Tuple[Optional[Keypoint], ...]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "keypoints": {name: (kp.to_dict() if kp is not None else None)
                          for name, kp in zip(KEYPOINT_NAMES, self.keypoints)},
        }


@dataclass(frozen=True)
class PoseResult:
    """Everyone found, best pose score first."""

    people: Tuple[Person, ...]

    def to_dict(self) -> Dict[str, Any]:
        return {"people": [p.to_dict() for p in self.people]}


@dataclass(frozen=True)
class PoseOptions:
    """``threshold``: minimum heatmap peak value for a keypoint candidate (0..1)."""

    threshold: float = DEFAULT_THRESHOLD


@dataclass(frozen=True)
class PoseContext:
    """Geometry of one preprocessed image: original and resized sizes, model input size."""

    image_w: int
    image_h: int
    resized_w: int
    resized_h: int
    input_w: int
    input_h: int


@dataclass(frozen=True)
class DecodedPoses:
    """Decoder output in heatmap cells: ``xy`` [P,18,2], ``kp_scores`` [P,18] (0 = absent),
    ``found`` [P,18] bool, ``scores`` [P]; people in the reference's order."""

    xy: np.ndarray
    kp_scores: np.ndarray
    found: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


# ---- decoder ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Peaks:
    """Keypoint candidates, grouped by type (``kind`` ascending), best score first in a type.
    ``x``/``y`` are refined cell coordinates (+0.5 delta) as float32."""

    kind: np.ndarray
    x: np.ndarray
    y: np.ndarray
    score: np.ndarray
    starts: np.ndarray  # [K+1] offsets of each type's block

    def of_type(self, k: int) -> slice:
        return slice(int(self.starts[k]), int(self.starts[k + 1]))


def max_pool3x3(maps: np.ndarray) -> np.ndarray:
    """3x3, stride 1 max over [C,H,W] maps; the border is padded with -inf (MaxPool's padding)."""
    c, h, w = maps.shape
    padded = np.full((c, h + 2, w + 2), -np.inf, dtype=maps.dtype)
    padded[:, 1:-1, 1:-1] = maps
    rows = np.maximum(np.maximum(padded[:, :, :-2], padded[:, :, 1:-1]), padded[:, :, 2:])
    return np.maximum(np.maximum(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])


def find_peaks(heatmaps: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
               max_peaks: int = MAX_PEAKS, delta: float = DELTA) -> Peaks:
    """Local maxima (3x3) above ``threshold`` in [K,H,W] heatmaps, refined and offset by ``delta``."""
    k_count, h, w = heatmaps.shape
    is_peak = (heatmaps == max_pool3x3(heatmaps)) & (heatmaps > threshold)
    kind, y, x = np.nonzero(is_peak)
    score = heatmaps[kind, y, x]
    # Best first within each type; equal scores keep raster order.
    order = np.lexsort((-score, kind))
    kind, y, x, score = kind[order], y[order], x[order], score[order]
    counts = np.bincount(kind, minlength=k_count)
    starts = np.concatenate(([0], np.cumsum(counts)))
    rank = np.arange(kind.size) - starts[kind]
    if kind.size and counts.max() > max_peaks:
        keep = rank < max_peaks
        kind, y, x, score = kind[keep], y[keep], x[keep], score[keep]
        counts = np.minimum(counts, max_peaks)
        starts = np.concatenate(([0], np.cumsum(counts)))

    # Quarter-cell step towards the higher neighbour, for peaks not on the map's border.
    inner = (x > 0) & (x < w - 1) & (y > 0) & (y < h - 1)
    xl, xr = np.clip(x - 1, 0, w - 1), np.clip(x + 1, 0, w - 1)
    yu, yd = np.clip(y - 1, 0, h - 1), np.clip(y + 1, 0, h - 1)
    dx = np.sign(heatmaps[kind, y, xr] - heatmaps[kind, y, xl]).astype(np.float32) * np.float32(0.25)
    dy = np.sign(heatmaps[kind, yd, x] - heatmaps[kind, yu, x]).astype(np.float32) * np.float32(0.25)
    fx = x.astype(np.float32) + np.where(inner, dx, np.float32(0))
    fy = y.astype(np.float32) + np.where(inner, dy, np.float32(0))
    fx = np.clip(fx, 0, w - 1)
    fy = np.clip(fy, 0, h - 1)
    if delta > 0:
        fx = np.clip(fx + np.float32(delta), 0, w - 1).astype(np.float32)
        fy = np.clip(fy + np.float32(delta), 0, h - 1).astype(np.float32)
    return Peaks(kind, fx, fy, score.astype(np.float32), starts)


def limb_candidates(peaks: Peaks) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (limb, a, b) candidate pair of all limbs, limb by limb, each limb's pairs in the
    reference's order (b-major: for each b, every a). a and b are peak ids."""
    limbs, a_ids, b_ids = [], [], []
    for li, (ka, kb) in enumerate(LIMBS):
        sa, sb = peaks.of_type(ka), peaks.of_type(kb)
        n, m = sa.stop - sa.start, sb.stop - sb.start
        if n and m:
            limbs.append(np.full(n * m, li, dtype=np.intp))
            a_ids.append(np.tile(np.arange(sa.start, sa.stop, dtype=np.intp), m))
            b_ids.append(np.repeat(np.arange(sb.start, sb.stop, dtype=np.intp), n))
    if not limbs:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty, empty
    return np.concatenate(limbs), np.concatenate(a_ids), np.concatenate(b_ids)


def score_candidates(pafs: np.ndarray, channels: np.ndarray, ax: np.ndarray, ay: np.ndarray,
                     bx: np.ndarray, by: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Score candidate limbs (a -> b) along their PAF channels ``channels``/``channels+1``:
    (valid mask, mean alignment), for all candidates of all limbs at once.

    float32 arithmetic in the reference's order, so sample points round alike.
    """
    a = np.stack((ax, ay), axis=-1)  # [P,2]
    vec = np.stack((bx, by), axis=-1) - a  # [P,2]
    steps = np.float32(1.0 / (POINTS_PER_LIMB - 1)) * vec
    t = np.arange(POINTS_PER_LIMB, dtype=np.float32)[:, None]  # [10,1]
    pts = steps[:, None, :] * t + a[:, None, :]  # [P,10,2]
    pts = pts.round().astype(np.intp)
    px, py = pts[..., 0], pts[..., 1]
    ch = channels[:, None]
    field_x = pafs[ch, py, px]
    field_y = pafs[ch + 1, py, px]
    norm = np.linalg.norm(vec, ord=2, axis=-1, keepdims=True)
    unit = vec / (norm + 1e-6)
    align = field_x * unit[:, 0:1] + field_y * unit[:, 1:2]  # [P,10]
    ok = align > MIN_PAF_ALIGNMENT
    ok_count = ok.sum(-1)
    mean = (align * ok).sum(-1) / (ok_count + 1e-6)
    success = ok_count / POINTS_PER_LIMB
    return (mean > 0) & (success > MIN_SUCCESS_RATIO), mean


def greedy_matching(a_idx: np.ndarray, b_idx: np.ndarray, scores: np.ndarray
                    ) -> np.ndarray:
    """Indices of the connections a greedy pass keeps, best first.

    Same result as walking the candidates by descending score and keeping each whose endpoints
    are both still free (equal scores: later candidate first, as the reference's reversed
    ascending sort). Done in rounds: every candidate that is the best remaining one at both of
    its endpoints is kept, then the endpoints' other candidates are dropped.
    """
    if scores.size == 0:
        return np.empty(0, dtype=np.intp)
    order = np.argsort(scores, kind="stable")[::-1]
    rank = np.empty(scores.size, dtype=np.intp)
    rank[order] = np.arange(scores.size)
    na = int(a_idx.max()) + 1
    nb = int(b_idx.max()) + 1
    alive = np.ones(scores.size, dtype=bool)
    kept: List[np.ndarray] = []
    big = scores.size
    while alive.any():
        live = np.nonzero(alive)[0]
        best_a = np.full(na, big, dtype=np.intp)
        best_b = np.full(nb, big, dtype=np.intp)
        np.minimum.at(best_a, a_idx[live], rank[live])
        np.minimum.at(best_b, b_idx[live], rank[live])
        chosen = live[(best_a[a_idx[live]] == rank[live]) & (best_b[b_idx[live]] == rank[live])]
        kept.append(chosen)
        used_a = np.zeros(na, dtype=bool)
        used_b = np.zeros(nb, dtype=bool)
        used_a[a_idx[chosen]] = True
        used_b[b_idx[chosen]] = True
        alive &= ~(used_a[a_idx] | used_b[b_idx])
    result = np.concatenate(kept)
    return result[np.argsort(rank[result])]


def decode(heatmaps: np.ndarray, pafs: np.ndarray, threshold: float = DEFAULT_THRESHOLD
           ) -> DecodedPoses:
    """OpenPose decoding of one image's [>=19,H,W] heatmaps and [>=38,H,W] PAFs (heatmap cells)."""
    heat = np.asarray(heatmaps[:NUM_KEYPOINTS], dtype=np.float32)
    pafs = np.asarray(pafs, dtype=np.float32)
    peaks = find_peaks(heat, threshold)
    total = peaks.kind.size

    # Pose table: one row per pose, keypoint id per type (-1 = none); kept in creation order.
    slots: List[List[int]] = []
    pose_score: List[float] = []
    pose_count: List[int] = []
    alive: List[bool] = []
    owner = [-1] * total  # keypoint id -> pose row holding it
    kp_score = peaks.score.tolist()

    # All limbs' candidates scored, then matched, in one vectorised pass each; matching is per
    # limb (endpoint keys carry the limb), so it equals running it limb by limb.
    limb, a_all, b_all = limb_candidates(peaks)
    valid, mean = score_candidates(pafs, _CHANNELS[limb], peaks.x[a_all], peaks.y[a_all],
                                   peaks.x[b_all], peaks.y[b_all])
    limb, a_all, b_all, mean = limb[valid], a_all[valid], b_all[valid], mean[valid]
    keep = greedy_matching(limb * total + a_all, limb * total + b_all, mean)
    keep = keep[np.argsort(limb[keep], kind="stable")]  # limb by limb, best first within a limb
    conns = zip(limb[keep].tolist(), a_all[keep].tolist(), b_all[keep].tolist(), mean[keep].tolist())
    for li, a, b, s in conns:
        ka, kb = LIMBS[li]
        pa, pb = owner[a], owner[b]
        if pa < 0 and pb < 0:
            row = [-1] * NUM_KEYPOINTS
            row[ka], row[kb] = a, b
            owner[a] = owner[b] = len(slots)
            slots.append(row)
            pose_score.append(kp_score[a] + kp_score[b] + s)
            pose_count.append(2)
            alive.append(True)
        elif pa >= 0 and pb >= 0:
            if pa == pb:
                pose_score[pa] += s
                continue
            ra, rb = slots[pa], slots[pb]
            if any(i >= 0 and j >= 0 for i, j in zip(ra, rb)):
                continue  # overlapping poses are not merged
            for k, j in enumerate(rb):
                if j >= 0:
                    ra[k] = j
                    owner[j] = pa
            pose_score[pa] += pose_score[pb] + s
            pose_count[pa] += pose_count[pb]
            alive[pb] = False
        else:
            p, new, kind = (pa, b, kb) if pa >= 0 else (pb, a, ka)
            row = slots[p]
            old = row[kind]
            if old < 0:
                pose_score[p] += kp_score[new]
            else:
                owner[old] = -1  # replaced, as the reference does
            row[kind] = new
            owner[new] = p
            pose_score[p] += s
            pose_count[p] += 1

    rows = [i for i in range(len(slots)) if alive[i] and pose_count[i] >= MIN_PARTS]
    if not rows:
        return DecodedPoses(np.zeros((0, NUM_KEYPOINTS, 2), np.float32),
                            np.zeros((0, NUM_KEYPOINTS), np.float32),
                            np.zeros((0, NUM_KEYPOINTS), bool), np.zeros(0, np.float32))
    ids = np.array([slots[i] for i in rows], dtype=np.intp)  # [P,18]
    found = ids >= 0
    safe = np.where(found, ids, 0)
    xy = np.where(found[..., None], np.stack((peaks.x[safe], peaks.y[safe]), axis=-1), 0)
    kps = np.where(found, peaks.score[safe], 0)
    counts = np.array([pose_count[i] for i in rows], dtype=np.float32)
    scores = np.array([pose_score[i] for i in rows], dtype=np.float32) * np.maximum(0, counts - 1)
    return DecodedPoses(xy.astype(np.float32), kps.astype(np.float32), found, scores)


# ---- the task --------------------------------------------------------------------------------

def _colour(i: int) -> Tuple[int, int, int]:
    hue = int(180 * i / len(LIMBS))
    bgr = cv2.cvtColor(np.uint8([[[hue, 230, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


_LIMB_COLOURS = tuple(_colour(i) for i in range(len(LIMBS)))
# Drawn limbs: all but the two redundant ear-shoulder links.
_DRAWN_LIMBS = tuple(i for i, limb in enumerate(LIMBS) if limb not in ((2, 16), (5, 17)))


@dataclass(frozen=True)
class PoseModel:
    """The pose model's image input, from its metadata."""

    input_name: str
    height: int
    width: int


class PoseTask(Task[PoseModel]):
    """human-pose-estimation-0001: people with 18 named keypoints each."""

    name = "pose"

    def parse_options(self, raw: Mapping[str, Any]) -> PoseOptions:
        return PoseOptions(threshold=opt_float(raw, "threshold", DEFAULT_THRESHOLD, 0.0, 1.0))

    def bind(self, meta: ModelMetadata) -> PoseModel:
        """The single [1,3,H,W] BGR input (502 for anything else)."""
        info = meta.only_input()
        try:
            in_h, in_w = nchw_hw(info.shape)
        except ValueError as exc:
            raise BadModelOutput(f"model {meta.name!r}: {exc}") from None
        if info.shape[1] != 3:
            raise BadModelOutput(f"model {meta.name!r} expects {info.shape[1]} channels; "
                                 "this endpoint feeds 3 (BGR)")
        return PoseModel(info.name, in_h, in_w)

    def preprocess(self, image: np.ndarray, meta: ModelMetadata, options: Any
                   ) -> Tuple[Dict[str, np.ndarray], PoseContext]:
        """Keep aspect, height -> input height (or width -> input width if too wide), pad with 0."""
        model = self.bound(meta)
        in_h, in_w = model.height, model.width
        resized = resize_keep_aspect(image, in_h, in_w)
        rh, rw = resized.shape[:2]
        blob = np.zeros((1, 3, in_h, in_w), dtype=np.float32)
        blob[0, :, :rh, :rw] = resized.transpose(2, 0, 1)
        ctx = PoseContext(image.shape[1], image.shape[0], rw, rh, in_w, in_h)
        return {model.input_name: blob}, ctx

    def postprocess(self, outputs: Mapping[str, np.ndarray], context: PoseContext,
                    meta: ModelMetadata, options: Any) -> PoseResult:
        opts = options if isinstance(options, PoseOptions) else PoseOptions()
        heatmaps, pafs = split_outputs(outputs)
        decoded = decode(heatmaps[0], pafs[0], opts.threshold)
        log.debug("pose: %d people at threshold %g", len(decoded), opts.threshold)
        return to_result(decoded, context, heatmaps.shape[2], heatmaps.shape[3])

    def render_owned(self, image: np.ndarray, result: PoseResult, options: Any) -> np.ndarray:
        """``render`` drawn on the request's own picture (no full-size copy)."""
        return self.render(image, result, options, in_place=True)

    def render(self, image: np.ndarray, result: PoseResult, options: Any, in_place: bool = False) -> np.ndarray:
        """Skeletons (limbs blended at 60 %) and keypoint dots over the input image (on a copy; on
        ``image`` itself with ``in_place``, when it is contiguous)."""
        canvas = image if in_place and image.flags.c_contiguous else np.ascontiguousarray(image).copy()
        if not result.people:
            return canvas
        side = max(canvas.shape[:2])
        thick = max(2, int(round(side / LIMB_THICKNESS_DIVISOR)))
        radius = max(2, int(round(side / KEYPOINT_RADIUS_DIVISOR)))
        limbs = canvas.copy()
        for person in result.people:
            pts = [None if kp is None else (int(round(kp.x)), int(round(kp.y)))
                   for kp in person.keypoints]
            for li in _DRAWN_LIMBS:
                ka, kb = LIMBS[li]
                if pts[ka] is not None and pts[kb] is not None:
                    cv2.line(limbs, pts[ka], pts[kb], _LIMB_COLOURS[li], thick, cv2.LINE_AA)
        cv2.addWeighted(canvas, 1.0 - LIMB_OPACITY, limbs, LIMB_OPACITY, 0, dst=canvas)
        for person in result.people:
            for k, kp in enumerate(person.keypoints):
                if kp is not None:
                    centre = (int(round(kp.x)), int(round(kp.y)))
                    cv2.circle(canvas, centre, radius, _LIMB_COLOURS[k % len(LIMBS)], -1, cv2.LINE_AA)
        return canvas


def resize_keep_aspect(image: np.ndarray, in_h: int, in_w: int) -> np.ndarray:
    """Scale by in_h / height (by in_w / width when that would be too wide), as the OMZ demo's
    ``cv2.resize(fx=s, fy=s)`` does, so the resampled pixels match the demo's exactly."""
    h, w = image.shape[:2]
    scale = in_h / h
    if int(round(w * scale)) > in_w:
        scale = in_w / w
    new_w, new_h = int(round(w * scale)), int(round(h * scale))
    if 1 <= new_w <= in_w and 1 <= new_h <= in_h:
        out = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        if out.shape[0] <= in_h and out.shape[1] <= in_w:
            return out
    # Degenerate shapes (a 1-pixel-high strip...) or rounding at the limit: explicit size.
    size = (min(max(1, new_w), in_w), min(max(1, new_h), in_h))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def split_outputs(outputs: Mapping[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """(heatmaps [1,19,H,W], pafs [1,38,H,W]) by name, else by shape; BadModelOutput otherwise."""
    if HEATMAP_OUTPUT in outputs and PAF_OUTPUT in outputs:
        heat, paf = outputs[HEATMAP_OUTPUT], outputs[PAF_OUTPUT]
    else:
        maps = [np.asarray(v) for v in outputs.values() if np.ndim(v) == 4]
        pair = [(h, p) for h in maps for p in maps if h is not p and p.shape[1] == 2 * h.shape[1]]
        if len(maps) != 2 or len(pair) != 1:
            raise BadModelOutput("the pose model must return heatmaps [1,19,H,W] and PAFs "
                                 f"[1,38,H,W]; got outputs {sorted(outputs)}")
        heat, paf = pair[0]
    heat, paf = np.asarray(heat), np.asarray(paf)
    if (heat.ndim != 4 or paf.ndim != 4 or heat.shape[0] != 1 or paf.shape[0] != 1
            or heat.shape[1] != NUM_KEYPOINTS + 1 or paf.shape[1] != 2 * (NUM_KEYPOINTS + 1)
            or heat.shape[2:] != paf.shape[2:] or heat.shape[2] < 1 or heat.shape[3] < 1):
        raise BadModelOutput(f"pose outputs have shapes {list(heat.shape)} and {list(paf.shape)}; "
                             f"expected [1,{NUM_KEYPOINTS + 1},H,W] and [1,{2 * (NUM_KEYPOINTS + 1)},H,W]")
    if not (np.isfinite(heat).all() and np.isfinite(paf).all()):
        raise BadModelOutput("the pose model returned non-finite values")
    return heat, paf


def to_result(decoded: DecodedPoses, ctx: PoseContext, map_h: int, map_w: int) -> PoseResult:
    """Heatmap cells -> original-image pixels (as the reference: cell x stride x original/resized),
    clipped to the image; people sorted by score, best first."""
    sx = (ctx.input_w / map_w) * (ctx.image_w / ctx.resized_w)
    sy = (ctx.input_h / map_h) * (ctx.image_h / ctx.resized_h)
    xs = np.clip(decoded.xy[..., 0].astype(np.float64) * sx, 0, ctx.image_w - 1)
    ys = np.clip(decoded.xy[..., 1].astype(np.float64) * sy, 0, ctx.image_h - 1)
    order = np.argsort(-decoded.scores, kind="stable")
    # plain Python numbers, row by row (indexing numpy element by element costs more than the rest)
    rows = zip(xs[order].tolist(), ys[order].tolist(), decoded.kp_scores[order].astype(np.float64).tolist(),
               decoded.found[order].tolist(), decoded.scores[order].astype(np.float64).tolist())
    people = tuple(Person(score, tuple(Keypoint(x, y, s) if f else None for x, y, s, f in zip(px, py, ps, pf)))
                   for px, py, ps, pf, score in rows)
    return PoseResult(people)
