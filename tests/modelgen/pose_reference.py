"""Test oracle: a plain, loop-based re-implementation of Open Model Zoo's OpenPose decoder.

Written independently of ``shared.tasks.pose`` (and slow on purpose: one Python step per peak,
per candidate pair and per pose) from the algorithm of OMZ's
``demos/common/python/model_zoo/model_api/models/open_pose.py`` (``OpenPose`` +
``OpenPoseDecoder``), which openvino-model-api 0.4.x no longer ships. The heatmap NMS uses an
OpenVINO MaxPool (3x3, stride 1, pad 1), i.e. the layer the reference adds to the graph.

Returns people in the reference's order, each ``(keypoints, score)`` where ``keypoints`` is a
list of 18 ``(x, y, score)`` in heatmap cells or None.
"""
from __future__ import annotations

from functools import lru_cache
from typing import List, Optional, Tuple

import numpy as np

from tests.precision import compile_f32

SKELETON = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
            (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17))
PAF_IDS = (12, 20, 14, 16, 22, 24, 0, 2, 4, 6, 8, 10, 28, 30, 34, 32, 36, 18, 26)

Person = Tuple[List[Optional[Tuple[float, float, float]]], float]


@lru_cache(maxsize=8)
def _pool_model(c: int, h: int, w: int):
    import openvino as ov
    import openvino.opset8 as ops

    param = ops.parameter([1, c, h, w], np.float32, name="heat")
    pool = ops.max_pool(param, strides=[1, 1], dilations=[1, 1], pads_begin=[1, 1],
                        pads_end=[1, 1], kernel_shape=[3, 3])
    model = ov.Model([pool.output(0)], [param], "pool")
    return compile_f32(model)  # bf16 on AMX CPUs would round the heatmap before the comparison


def openvino_max_pool(heat: np.ndarray) -> np.ndarray:
    """[C,H,W] -> 3x3 max-pooled [C,H,W] computed by OpenVINO's MaxPool."""
    c, h, w = heat.shape
    compiled = _pool_model(c, h, w)
    return np.asarray(compiled(heat[None].astype(np.float32))[0])[0]


def reference_decode(heatmaps: np.ndarray, pafs: np.ndarray, threshold: float = 0.1,
                     max_points: int = 100) -> List[Person]:
    """The reference algorithm on one image's [19,H,W] heatmaps and [38,H,W] PAFs."""
    heat = np.asarray(heatmaps[:18], dtype=np.float32)
    pafs = np.asarray(pafs, dtype=np.float32)
    _, h, w = heat.shape
    pooled = openvino_max_pool(heat)
    nms = heat * (heat == pooled)

    # Candidates per type: best max_points of the NMS map, then the threshold.
    points: List[List[Tuple[float, float, float, int]]] = []  # (x, y, score, id)
    next_id = 0
    for k in range(18):
        flat = nms[k].ravel()
        best = np.argsort(-flat, kind="stable")[:max_points]
        found = []
        for i in best:
            score = float(flat[i])
            if not score > threshold:
                continue
            y, x = divmod(int(i), w)
            fx, fy = np.float32(x), np.float32(y)
            if 0 < x < w - 1 and 0 < y < h - 1:
                fx += np.float32(0.25) * np.float32(np.sign(heat[k, y, x + 1] - heat[k, y, x - 1]))
                fy += np.float32(0.25) * np.float32(np.sign(heat[k, y + 1, x] - heat[k, y - 1, x]))
            fx = min(max(fx + np.float32(0.5), 0), w - 1)
            fy = min(max(fy + np.float32(0.5), 0), h - 1)
            found.append((np.float32(fx), np.float32(fy), np.float32(heat[k, y, x]), next_id))
            next_id += 1
        points.append(found)
    by_id = {p[3]: p for kind in points for p in kind}

    poses: List[list] = []  # each: [slot ids (18, -1 = none), score, count]
    step = np.float32(1 / 9)
    grid = np.arange(10, dtype=np.float32)
    for (ka, kb), ch in zip(SKELETON, PAF_IDS):
        cand = []
        for j, pb in enumerate(points[kb]):
            for i, pa in enumerate(points[ka]):
                v = np.array([pb[0] - pa[0], pb[1] - pa[1]], dtype=np.float32)
                sample = (step * v)[None, :] * grid[:, None] + np.array(pa[:2], np.float32)
                sample = sample.round().astype(np.int32)
                fld = np.stack([pafs[ch][sample[:, 1], sample[:, 0]],
                                pafs[ch + 1][sample[:, 1], sample[:, 0]]], axis=-1)
                u = v / (np.linalg.norm(v) + 1e-6)
                align = fld[:, 0] * u[0] + fld[:, 1] * u[1]
                good = align > 0.05
                n_good = int(good.sum())
                mean = float((align * good).sum()) / (n_good + 1e-6)
                if mean > 0 and n_good / 10 > 0.8:
                    cand.append((mean, pa[3], pb[3]))
        # Connections NMS: best first (ties: later candidate first), endpoints used once.
        order = np.argsort([c[0] for c in cand], kind="stable")[::-1]
        used_a, used_b, conns = set(), set(), []
        for t in order:
            s, a, b = cand[t]
            if a not in used_a and b not in used_b:
                conns.append((a, b, s))
                used_a.add(a)
                used_b.add(b)
        for a, b, s in conns:
            ia = next((j for j, p in enumerate(poses) if p[0][ka] == a), -1)
            ib = next((j for j, p in enumerate(poses) if p[0][kb] == b), -1)
            if ia < 0 and ib < 0:
                slots = [-1] * 18
                slots[ka], slots[kb] = a, b
                poses.append([slots, float(by_id[a][2]) + float(by_id[b][2]) + s, 2])
            elif ia >= 0 and ib >= 0 and ia != ib:
                pa_, pb_ = poses[ia], poses[ib]
                if all(x < 0 or y < 0 or x == y for x, y in zip(pa_[0], pb_[0])):
                    pa_[0] = [x if x >= 0 else y for x, y in zip(pa_[0], pb_[0])]
                    pa_[1] += pb_[1] + s
                    pa_[2] += pb_[2]
                    del poses[ib]
            elif ia >= 0 and ib >= 0:
                poses[ia][1] += s
            elif ia >= 0:
                p = poses[ia]
                if p[0][kb] < 0:
                    p[1] += float(by_id[b][2])
                p[0][kb] = b
                p[1] += s
                p[2] += 1
            else:
                p = poses[ib]
                if p[0][ka] < 0:
                    p[1] += float(by_id[a][2])
                p[0][ka] = a
                p[1] += s
                p[2] += 1

    people: List[Person] = []
    for slots, score, count in poses:
        if count < 3:
            continue
        kps = [None if i < 0 else (float(by_id[i][0]), float(by_id[i][1]), float(by_id[i][2]))
               for i in slots]
        people.append((kps, score * max(0, count - 1)))
    return people
