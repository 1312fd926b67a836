"""PoseTask unit tests: exact answers on synthetic heatmaps/PAFs, preprocessing geometry, options,
bad model output, and agreement with an independent loop-based re-implementation of OMZ's
reference OpenPose decoder (tests/modelgen/pose_reference.py) on synthetic, random and real
model outputs."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from shared import catalog
from shared.errors import BadModelOutput, InvalidOption
from shared.serving.base import ModelMetadata, TensorInfo
from shared.tasks import get_task
from shared.tasks.pose import (KEYPOINT_NAMES, PoseContext, PoseOptions, PoseTask, decode,
                               find_peaks, greedy_matching, max_pool3x3, resize_keep_aspect,
                               to_result)
from tests.modelgen.pose_reference import openvino_max_pool, reference_decode
from tests.modelgen.pose_synth import SKELETON, draw, person

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"
META = ModelMetadata("human-pose-estimation", "1",
                     {"data": TensorInfo("data", (1, 3, 256, 456), "float32")},
                     {"Mconv7_stage2_L1": TensorInfo("Mconv7_stage2_L1", (1, 38, 32, 57), "float32"),
                      "Mconv7_stage2_L2": TensorInfo("Mconv7_stage2_L2", (1, 19, 32, 57), "float32")})


def assert_same_as_reference(heat, pafs, threshold=0.1):
    """Our decoder and the oracle: same people in the same order, identical keypoints."""
    ours = decode(heat, pafs, threshold)
    ref = reference_decode(heat, pafs, threshold)
    assert len(ours) == len(ref)
    for p, (kps, score) in enumerate(ref):
        for k in range(18):
            if kps[k] is None:
                assert not ours.found[p, k], (p, k)
            else:
                assert ours.found[p, k], (p, k)
                assert ours.xy[p, k, 0] == pytest.approx(kps[k][0], abs=1e-6)
                assert ours.xy[p, k, 1] == pytest.approx(kps[k][1], abs=1e-6)
                assert ours.kp_scores[p, k] == pytest.approx(kps[k][2], abs=1e-6)
        assert ours.scores[p] == pytest.approx(score, rel=1e-4)
    return ours


def expected_cells(joints):
    return {k: (x + 0.5, y + 0.5) for k, (x, y) in joints.items()}


def check_person(decoded, p, joints, peak=0.9):
    exp = expected_cells(joints)
    for k in range(18):
        if k in exp:
            assert decoded.found[p, k], KEYPOINT_NAMES[k]
            assert tuple(decoded.xy[p, k]) == pytest.approx(exp[k], abs=1e-6)
            assert decoded.kp_scores[p, k] == pytest.approx(peak, abs=1e-6)
        else:
            assert not decoded.found[p, k], KEYPOINT_NAMES[k]


def match(decoded, people):
    """Index of the decoded person for each drawn person, by neck position."""
    out = []
    for joints in people:
        nx = joints[1][0] + 0.5
        hits = [p for p in range(len(decoded)) if decoded.found[p, 1] and decoded.xy[p, 1, 0] == nx]
        assert len(hits) == 1
        out.append(hits[0])
    return out


# ---- exact answers on synthetic maps -----------------------------------------------------------

def test_no_people_on_empty_maps():
    heat, pafs = draw([])
    d = decode(heat, pafs)
    assert len(d) == 0 and d.xy.shape == (0, 18, 2)
    assert_same_as_reference(heat, pafs)


def test_one_person_exact():
    joints = person(20, 6)
    heat, pafs = draw([joints])
    d = assert_same_as_reference(heat, pafs)
    assert len(d) == 1
    check_person(d, 0, joints)
    # 18 keypoints at 0.9; 19 connections of alignment ~1 (the 2 redundant limbs only add score).
    assert d.scores[0] == pytest.approx((18 * 0.9 + 19 * 1.0) * 17, rel=1e-5)


def test_many_people_exact():
    people = [person(5 + 11 * i, 6) for i in range(5)]
    heat, pafs = draw(people)
    d = assert_same_as_reference(heat, pafs)
    assert len(d) == 5
    for joints, p in zip(people, match(d, people)):
        check_person(d, p, joints)


def test_touching_people_are_kept_apart():
    # 10 cells apart: A's left wrist and B's right wrist share a cell, shoulders 4 cells apart,
    # hips 6. (Closer, the collinear neck-shoulder limbs become ambiguous for OpenPose itself.)
    people = [person(10, 6), person(20, 6), person(30, 6)]
    heat, pafs = draw(people)
    d = assert_same_as_reference(heat, pafs)
    assert len(d) == 3
    for joints, p in zip(people, match(d, people)):
        check_person(d, p, joints)


def test_missing_keypoints_and_limbs():
    no_left_arm = person(8, 6, drop=[6, 7])
    no_legs = person(30, 4, drop=[9, 10, 12, 13])
    broken = person(45, 6)
    # Person 2's right forearm has no PAF: the wrist is found on the heatmap but not attached.
    people = [no_left_arm, no_legs, broken]
    heat, pafs = draw(people, skip_limbs={2: [SKELETON.index((3, 4))]})
    d = assert_same_as_reference(heat, pafs)
    assert len(d) == 3
    pa, pb, pc = match(d, people)
    check_person(d, pa, no_left_arm)
    check_person(d, pb, no_legs)
    check_person(d, pc, {k: v for k, v in broken.items() if k != 4})


def test_fewer_than_three_parts_dropped_three_kept():
    two = {1: (10, 10), 2: (7, 10)}  # neck + shoulder: one limb, 2 parts
    three = {1: (30, 10), 2: (27, 10), 5: (33, 10)}
    lone = {0: (50, 20)}
    heat, pafs = draw([two, three, lone])
    d = assert_same_as_reference(heat, pafs)
    assert len(d) == 1
    check_person(d, 0, three)


def test_subpixel_refinement_and_border():
    heat, pafs = draw([])
    from tests.modelgen.pose_synth import add_blob
    add_blob(heat, 0, 10.3, 20.0)   # right neighbour higher: +0.25 in x only
    add_blob(heat, 1, 30.0, 19.6)   # upper neighbour higher: -0.25 in y
    add_blob(heat, 2, 0.0, 0.0)     # corner: no refinement; +0.5 delta
    add_blob(heat, 3, 56.0, 31.0)   # far corner: +0.5 clipped back to the map
    peaks = find_peaks(heat[:18], 0.1)
    got = {int(k): (float(x), float(y)) for k, x, y in zip(peaks.kind, peaks.x, peaks.y)}
    assert got[0] == (10.75, 20.5)
    assert got[1] == (30.5, 20.25)  # row 20, -0.25 towards row 19, +0.5
    assert got[2] == (0.5, 0.5)
    assert got[3] == (56.0, 31.0)


def test_threshold_is_strict_peak_value():
    heat, pafs = draw([person(20, 6)], peak=0.3)
    assert len(decode(heat, pafs, 0.29)) == 1
    assert len(decode(heat, pafs, 0.3)) == 0


def test_upside_down_person():
    joints = person(20, 26, flip_y=True)
    heat, pafs = draw([joints])
    d = assert_same_as_reference(heat, pafs)
    assert len(d) == 1
    check_person(d, 0, joints)


def test_person_at_padded_edge_maps_to_image_pixels():
    # A portrait 300x600 image: resized to 128x256, valid heatmap columns 0..15 of 57.
    task = PoseTask()
    inputs, ctx = task.preprocess(np.zeros((600, 300, 3), np.uint8), META, PoseOptions())
    assert (ctx.resized_w, ctx.resized_h) == (128, 256)
    joints = person(10, 6)  # right wrist/ankle columns 5..15: up to the padding
    heat, pafs = draw([joints])
    result = task.postprocess({"Mconv7_stage2_L2": heat[None], "Mconv7_stage2_L1": pafs[None]},
                              ctx, META, PoseOptions())
    assert len(result.people) == 1
    sx, sy = 8 * 300 / 128, 8 * 600 / 256
    for k, (x, y) in joints.items():
        kp = result.people[0].keypoints[k]
        assert kp.x == pytest.approx(min((x + 0.5) * sx, 299), abs=1e-4)
        assert kp.y == pytest.approx((y + 0.5) * sy, abs=1e-4)
    # A keypoint detected inside the padding is clipped to the image.
    far = person(14, 6)
    heat, pafs = draw([far])
    result = task.postprocess({"Mconv7_stage2_L2": heat[None], "Mconv7_stage2_L1": pafs[None]},
                              ctx, META, PoseOptions())
    kp = result.people[0].keypoints[KEYPOINT_NAMES.index("l_wrist")]
    assert kp.x == 299


# ---- pieces ----------------------------------------------------------------------------------

def test_max_pool_matches_openvino():
    rng = np.random.default_rng(1)
    maps = rng.random((18, 7, 11), dtype=np.float32)
    maps[:, 2:4, 2:4] = 0.5  # plateaus
    assert np.array_equal(max_pool3x3(maps), openvino_max_pool(maps))


def test_peaks_capped_at_100_best_per_type():
    heat = np.zeros((18, 32, 57), np.float32)
    rng = np.random.default_rng(2)
    heat[0, ::2, ::2] = rng.uniform(0.2, 1.0, size=heat[0, ::2, ::2].shape)  # 464 isolated peaks
    heat[1, 5, 5] = 0.5
    peaks = find_peaks(heat, 0.1)
    k0 = peaks.score[peaks.of_type(0)]
    assert k0.size == 100
    assert np.all(np.diff(k0) <= 0)
    assert k0.min() == np.sort(heat[0].ravel())[-100]
    assert peaks.score[peaks.of_type(1)].tolist() == [0.5]


def _sequential_greedy(a, b, s):
    order = np.argsort(s, kind="stable")[::-1]
    ua, ub, kept = set(), set(), []
    for t in order:
        if a[t] not in ua and b[t] not in ub:
            kept.append(t)
            ua.add(a[t])
            ub.add(b[t])
    return kept


@pytest.mark.parametrize("seed", range(30))
def test_greedy_matching_equals_sequential_greedy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    a = rng.integers(0, 8, n)
    b = rng.integers(0, 8, n)
    s = rng.choice([0.3, 0.5, 0.7, 0.9], n) if seed % 2 else rng.random(n)  # ties on odd seeds
    assert greedy_matching(a, b, s).tolist() == _sequential_greedy(a, b, s)


@pytest.mark.parametrize("seed", range(6))
def test_random_maps_match_reference(seed):
    """Smooth random heatmaps and near-uniform PAFs: many peaks and candidates, merges, overwrites."""
    rng = np.random.default_rng(100 + seed)
    h, w = 18, 24
    heat = cv2.GaussianBlur(rng.random((19, h, w)).astype(np.float32).transpose(1, 2, 0), (0, 0), 1.2)
    heat = (heat.transpose(2, 0, 1) - 0.3) * 3
    direction = rng.normal(size=(19, 2))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    pafs = np.repeat(direction.reshape(38, 1, 1), h * w, axis=1).reshape(38, h, w)
    pafs = (pafs + rng.normal(scale=0.3, size=pafs.shape)).astype(np.float32)
    d = assert_same_as_reference(heat.astype(np.float32), pafs, threshold=0.1)
    assert len(d) > 0


# ---- the real model, in process, against the oracle ---------------------------------------------

@pytest.fixture(scope="module")
def real_model():
    from tests.precision import compile_f32
    from tests.realmodels import real_model

    base = real_model("human-pose-estimation-0001")

    compiled = compile_f32(next(base.glob("*/*.xml")))

    def infer(inputs):
        res = compiled(inputs)
        return {o.get_any_name(): np.asarray(v) for o, v in res.items()}
    return infer


def _variants():
    out = []
    for name in ("people1.jpeg", "people2.jpeg", "people3.jpeg", "people4.jpeg", "baseball.jpg"):
        out.append((name, None))
    out += [("people1.jpeg", "rot90"), ("baseball.jpg", "flip"), ("people3.jpeg", "crop_odd"),
            ("people2.jpeg", "wide")]
    return out


def _load(name, how):
    img = cv2.imread(str(IMAGES / name))
    if img is None:
        pytest.skip(f"needs_real_models: image {name} missing")
    if how == "rot90":
        img = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    elif how == "flip":
        img = img[:, ::-1]
    elif how == "crop_odd":
        img = img[37:700, 101:1077]
    elif how == "wide":
        img = np.concatenate([img, img], axis=1)  # 2400x800: scaled to fit the width
    return np.ascontiguousarray(img)


@pytest.mark.parametrize("name,how", _variants())
def test_real_model_output_matches_reference(real_model, name, how):
    img = _load(name, how)
    task = PoseTask()
    inputs, ctx = task.preprocess(img, META, PoseOptions())
    out = real_model(inputs)
    heat, pafs = out["Mconv7_stage2_L2"][0], out["Mconv7_stage2_L1"][0]
    d = assert_same_as_reference(heat, pafs)
    assert len(d) >= 1
    result = task.postprocess(out, ctx, META, PoseOptions())
    assert len(result.people) == len(d)
    for person_ in result.people:
        for kp in person_.keypoints:
            if kp is not None:
                assert 0 <= kp.x <= img.shape[1] - 1 and 0 <= kp.y <= img.shape[0] - 1


def test_real_preprocess_equals_demo_pixels():
    img = cv2.imread(str(IMAGES / "baseball.jpg"))
    if img is None:
        pytest.skip("needs_real_models: baseball.jpg")
    inputs, ctx = PoseTask().preprocess(img, META, PoseOptions())
    scale = 256 / img.shape[0]
    demo = cv2.resize(img, None, fx=scale, fy=scale)
    demo = np.pad(demo, ((0, 0), (0, 456 - demo.shape[1]), (0, 0)))
    assert np.array_equal(inputs["data"][0], demo.transpose(2, 0, 1).astype(np.float32))
    assert (ctx.resized_w, ctx.resized_h) == (383, 256)


# ---- preprocessing geometry ------------------------------------------------------------------

@pytest.mark.parametrize("h,w,exp", [
    (800, 1200, (256, 384)), (1200, 800, (256, 171)), (333, 517, (256, 397)),
    (517, 333, (256, 165)), (1, 1, (256, 256)), (20, 5000, (2, 456)), (256, 456, (256, 456)),
    (100, 179, (255, 456)), (5000, 3, (256, 1)), (1, 100000, (1, 456)),
])
def test_preprocess_sizes(h, w, exp):
    img = np.full((h, w, 3), 200, np.uint8)
    inputs, ctx = PoseTask().preprocess(img, META, PoseOptions())
    blob = inputs["data"]
    assert blob.shape == (1, 3, 256, 456) and blob.dtype == np.float32
    assert (ctx.resized_h, ctx.resized_w) == exp
    assert np.all(blob[0, :, :exp[0], :exp[1]] == 200)
    assert np.all(blob[0, :, exp[0]:, :] == 0) and np.all(blob[0, :, :, exp[1]:] == 0)


def test_preprocess_keeps_bgr_order_and_values():
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30
    inputs, _ = PoseTask().preprocess(img, META, PoseOptions())
    assert inputs["data"][0, :, 0, 0].tolist() == [10.0, 20.0, 30.0]


def test_preprocess_reads_input_size_from_metadata():
    meta = ModelMetadata("m", "1", {"img": TensorInfo("img", (1, 3, 128, 200), "float32")}, {})
    inputs, ctx = PoseTask().preprocess(np.zeros((100, 100, 3), np.uint8), meta, PoseOptions())
    assert inputs["img"].shape == (1, 3, 128, 200) and (ctx.input_h, ctx.input_w) == (128, 200)


@pytest.mark.parametrize("shape", [(1, 3, -1, -1), (1, 1, 256, 456), (3, 256, 456)])
def test_preprocess_rejects_unusable_input(shape):
    meta = ModelMetadata("m", "1", {"data": TensorInfo("data", shape, "float32")}, {})
    with pytest.raises(BadModelOutput):
        PoseTask().preprocess(np.zeros((10, 10, 3), np.uint8), meta, PoseOptions())


def test_resize_scales_too_wide_images_to_fit():
    out = resize_keep_aspect(np.zeros((100, 1000, 3), np.uint8), 256, 456)
    assert out.shape[:2] == (46, 456)


# ---- options, outputs, result, render -----------------------------------------------------------

def test_options():
    t = get_task("pose")
    assert isinstance(t, PoseTask) and catalog.by_task(t.name).prefix == "HUMANPOSE"
    assert t.parse_options({}).threshold == 0.1
    assert t.parse_options({"threshold": "0.25"}).threshold == 0.25
    for bad in ("x", -0.1, 1.5, True, "nan"):
        with pytest.raises(InvalidOption):
            t.parse_options({"threshold": bad})


def _ctx():
    return PoseContext(1200, 800, 384, 256, 456, 256)


@pytest.mark.parametrize("outputs", [
    {},
    {"Mconv7_stage2_L2": np.zeros((1, 19, 32, 57), np.float32)},
    {"Mconv7_stage2_L2": np.zeros((1, 19, 32, 57), np.float32),
     "Mconv7_stage2_L1": np.zeros((1, 38, 32, 56), np.float32)},
    {"Mconv7_stage2_L2": np.zeros((1, 17, 32, 57), np.float32),
     "Mconv7_stage2_L1": np.zeros((1, 34, 32, 57), np.float32)},
    {"Mconv7_stage2_L2": np.zeros((2, 19, 32, 57), np.float32),
     "Mconv7_stage2_L1": np.zeros((2, 38, 32, 57), np.float32)},
    {"Mconv7_stage2_L2": np.full((1, 19, 32, 57), np.nan, np.float32),
     "Mconv7_stage2_L1": np.zeros((1, 38, 32, 57), np.float32)},
    {"a": np.zeros((1, 19, 32), np.float32), "b": np.zeros((1, 38, 32), np.float32)},
])
def test_bad_model_output(outputs):
    with pytest.raises(BadModelOutput):
        PoseTask().postprocess(outputs, _ctx(), META, PoseOptions())


def test_outputs_found_by_shape_when_renamed():
    heat, pafs = draw([person(20, 6)])
    res = PoseTask().postprocess({"x": pafs[None], "y": heat[None]}, _ctx(), META, PoseOptions())
    assert len(res.people) == 1


def test_read_only_outputs_decode_like_writable_ones():
    """Adapters hand out read-only buffers (np.frombuffer): decoding must neither write to them
    nor answer differently from writable copies."""
    heat, pafs = draw([person(20, 6), person(40, 6, drop=[9, 10])])
    writable = PoseTask().postprocess({"Mconv7_stage2_L2": heat[None].copy(), "Mconv7_stage2_L1": pafs[None].copy()},
                                      _ctx(), META, PoseOptions())
    heat.setflags(write=False)
    pafs.setflags(write=False)
    read_only = PoseTask().postprocess({"Mconv7_stage2_L2": heat[None], "Mconv7_stage2_L1": pafs[None]},
                                       _ctx(), META, PoseOptions())
    assert len(read_only.people) == 2
    assert read_only.to_dict() == writable.to_dict()


def test_json_shape_and_order():
    people = [person(8, 6, drop=[6, 7, 9, 10, 12, 13]), person(30, 6)]
    heat, pafs = draw(people)
    res = to_result(decode(heat, pafs), _ctx(), 32, 57)
    data = json.loads(json.dumps(res.to_dict()))
    assert list(data) == ["people"] and len(data["people"]) == 2
    first, second = data["people"]
    assert first["score"] >= second["score"]
    assert list(first["keypoints"]) == list(KEYPOINT_NAMES)
    assert second["keypoints"]["l_wrist"] is None
    nose = first["keypoints"]["nose"]
    # cell (30, 3) -> (30.5, 3.5) * 8 * 1200/384 = (762.5, 87.5)
    assert (nose["x"], nose["y"], nose["score"]) == (762.5, 87.5, 0.9)


def test_render_draws_on_a_copy():
    img = np.full((256, 384, 3), 255, np.uint8)
    heat, pafs = draw([person(20, 6)])
    res = to_result(decode(heat, pafs), PoseContext(384, 256, 384, 256, 456, 256), 32, 57)
    out = PoseTask().render(img, res, PoseOptions())
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.all(img == 255)
    assert (out != 255).any(axis=2).sum() > 500
    empty = PoseTask().render(img, to_result(decode(*draw([])), _ctx(), 32, 57), PoseOptions())
    assert np.array_equal(empty, img)
