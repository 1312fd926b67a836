"""Synthetic OpenPose outputs with known answers: Gaussian keypoint blobs and unit-vector PAF bands.

A person is a dict ``keypoint type -> (x, y)`` in heatmap cells. A blob centred on an integer
cell peaks there with value ``peak``, so the decoder must report it at ``(x + 0.5, y + 0.5)``
(the reference's cell-centre delta) with score ``peak``. Each limb whose two keypoints are
present gets a unit vector from its first to its second keypoint in its PAF channels, on every
cell within ``band`` cells of the segment, so every sample the decoder takes lands on the field.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from tests.modelgen.pose_reference import PAF_IDS, SKELETON

Joints = Dict[int, Tuple[float, float]]

# A standing person, neck at (0, 0), about 23 cells tall and 10 wide.
TEMPLATE: Joints = {
    0: (0, -3), 1: (0, 0), 2: (-3, 0), 3: (-4, 4), 4: (-5, 8), 5: (3, 0), 6: (4, 4), 7: (5, 8),
    8: (-2, 9), 9: (-2, 14), 10: (-2, 19), 11: (2, 9), 12: (2, 14), 13: (2, 19),
    14: (-1, -4), 15: (1, -4), 16: (-2, -3), 17: (2, -3),
}


def person(neck_x: int, neck_y: int, drop: Iterable[int] = (), flip_y: bool = False) -> Joints:
    """The template at ``(neck_x, neck_y)`` without the ``drop`` keypoints (upside down if asked)."""
    drop = set(drop)
    sign = -1 if flip_y else 1
    return {k: (neck_x + dx, neck_y + sign * dy) for k, (dx, dy) in TEMPLATE.items() if k not in drop}


def blank(h: int = 32, w: int = 57) -> Tuple[np.ndarray, np.ndarray]:
    """Empty [19,H,W] heatmaps (background channel 1) and [38,H,W] PAFs."""
    heat = np.zeros((19, h, w), np.float32)
    heat[18] = 1.0
    return heat, np.zeros((38, h, w), np.float32)


def add_blob(heat: np.ndarray, kind: int, x: float, y: float, peak: float = 0.9,
             sigma: float = 1.0) -> None:
    """Max-combine a Gaussian blob into channel ``kind``."""
    _, h, w = heat.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    blob = peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    np.maximum(heat[kind], blob.astype(np.float32), out=heat[kind])
    heat[18] = np.minimum(heat[18], 1.0 - heat[kind])


def add_limb(pafs: np.ndarray, limb: int, a: Tuple[float, float], b: Tuple[float, float],
             band: float = 1.5) -> None:
    """Write the unit vector a->b into limb ``limb``'s PAF channels near the segment a-b."""
    _, h, w = pafs.shape
    ax, ay = a
    bx, by = b
    v = np.array([bx - ax, by - ay], np.float64)
    length = float(np.hypot(*v))
    if length == 0:
        return
    u = v / length
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    t = np.clip(((xx - ax) * u[0] + (yy - ay) * u[1]) / length, 0, 1)
    dist = np.hypot(xx - (ax + t * v[0]), yy - (ay + t * v[1]))
    near = dist <= band
    c = PAF_IDS[limb]
    pafs[c][near] = u[0]
    pafs[c + 1][near] = u[1]


def draw(people: Sequence[Joints], h: int = 32, w: int = 57, peak: float = 0.9,
         skip_limbs: Optional[Dict[int, Iterable[int]]] = None
         ) -> Tuple[np.ndarray, np.ndarray]:
    """Heatmaps and PAFs for ``people``; ``skip_limbs[i]`` lists limb indices not drawn for person i.

    Pass integer coordinates for peaks exactly on a cell (no sub-pixel refinement).
    """
    heat, pafs = blank(h, w)
    for i, joints in enumerate(people):
        for k, (x, y) in joints.items():
            add_blob(heat, k, x, y, peak)
        skipped = set((skip_limbs or {}).get(i, ()))
        for li, (ka, kb) in enumerate(SKELETON):
            if li in skipped or ka not in joints or kb not in joints:
                continue
            add_limb(pafs, li, joints[ka], joints[kb])
    return heat, pafs
