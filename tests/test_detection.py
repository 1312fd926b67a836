"""shared.tasks.detection on plain arrays: options, output-form detection, preprocessing against an
independent bilinear reference, exact post-processing of both output forms, labels, render."""
from __future__ import annotations

import json

import numpy as np
import pytest

from shared import resources
from shared.errors import BadModelOutput, InvalidOption, ModelUnavailable
from shared.serving.base import ModelMetadata, TensorInfo
from shared.tasks import detection as det
from shared.tasks.detection import DetectionOptions, DetectionTask


def _meta(inputs, outputs, name="m") -> ModelMetadata:
    return ModelMetadata(
        name=name, version="1",
        inputs={n: TensorInfo(n, tuple(s), d) for n, s, d in inputs},
        outputs={n: TensorInfo(n, tuple(s), d) for n, s, d in outputs})


SSD_META = _meta([("image", (1, 3, 256, 256), "float32")],
                 [("detection_out", (1, 1, 200, 7), "float32")])
RETAIL_META = _meta([("data", (1, 3, 320, 544), "float32")],
                    [("detection_out", (1, 1, 200, 7), "float32")])
BOXES_META = _meta([("image", (1, 3, 256, 256), "float32")],
                   [("boxes", (-1, 5), "float32"), ("labels", (-1,), "int64")])


@pytest.fixture
def task(monkeypatch) -> DetectionTask:
    monkeypatch.delenv(det.LABELS_SETTING, raising=False)
    resources.clear_cache()
    return DetectionTask()


def _ssd(rows, num=20) -> np.ndarray:
    out = np.zeros((1, 1, num, 7), np.float32)
    out[0, 0, :len(rows)] = rows
    if len(rows) < num:
        out[0, 0, len(rows), 0] = -1
    return out


# ---- options --------------------------------------------------------------------------------------

def test_options_defaults_and_strings(task):
    assert task.parse_options({}) == DetectionOptions(0.5, None)
    assert task.parse_options({"threshold": "0.25", "max_detections": "3"}) == DetectionOptions(0.25, 3)
    assert task.parse_options({"threshold": 0, "max_detections": 1}) == DetectionOptions(0.0, 1)


@pytest.mark.parametrize("raw", [{"threshold": "abc"}, {"threshold": 1.5}, {"threshold": -0.1},
                                 {"threshold": True}, {"threshold": "nan"}, {"max_detections": 0},
                                 {"max_detections": "2.5"}, {"max_detections": "many"},
                                 {"max_detections": -1}])
def test_options_invalid(task, raw):
    with pytest.raises(InvalidOption):
        task.parse_options(raw)


# ---- model metadata -------------------------------------------------------------------------------

def test_output_form_from_names_and_shapes():
    assert det.output_spec(SSD_META) == det.OutputSpec(det.FORM_SSD, "detection_out")
    other = _meta([("x", (1, 3, 8, 8), "float32")], [("DetectionOutput", (1, 1, -1, 7), "float32")])
    assert det.output_spec(other).detections == "DetectionOutput"
    by_shape = _meta([("x", (1, 3, 8, 8), "float32")], [("out_1", (1, 1, 100, 7), "float32")])
    assert det.output_spec(by_shape) == det.OutputSpec(det.FORM_SSD, "out_1")
    assert det.output_spec(BOXES_META) == det.OutputSpec(det.FORM_BOXES, "boxes", "labels")
    no_labels = _meta([("x", (1, 3, 8, 8), "float32")], [("dets", (100, 5), "float32")])
    assert det.output_spec(no_labels) == det.OutputSpec(det.FORM_BOXES, "dets", None)


@pytest.mark.parametrize("outputs", [
    [("Mconv7_stage2_L1", (1, 38, 32, 57), "float32")],
    [("output", (186, 1, 4442), "float32")],
    [],
])
def test_output_form_refuses_non_detectors(outputs):
    with pytest.raises(BadModelOutput, match="SSD-style"):
        det.output_spec(_meta([("x", (1, 3, 8, 8), "float32")], outputs))


def test_input_spec_layouts():
    assert det.input_spec(RETAIL_META) == det.InputSpec("data", 320, 544, False)
    nhwc = _meta([("in", (1, 300, 400, 3), "float32")], [("detection_out", (1, 1, 10, 7), "float32")])
    assert det.input_spec(nhwc) == det.InputSpec("in", 300, 400, True)


@pytest.mark.parametrize("inputs", [
    [("image", (1, 3, -1, -1), "float32")],
    [("image", (1, 1, 96, 2000), "float32")],
    [("image", (3, 256, 256), "float32")],
    [("a", (1, 3, 8, 8), "float32"), ("b", (1, 3), "float32")],
])
def test_input_spec_refuses(inputs):
    with pytest.raises(BadModelOutput):
        det.input_spec(_meta(inputs, [("detection_out", (1, 1, 10, 7), "float32")]))


# ---- preprocessing ----------------------------------------------------------------------------------

def _bilinear_reference(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize in float64, written independently of OpenCV."""
    src_h, src_w = img.shape[:2]

    def axis(n_out, n_in):
        x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        x = np.clip(x, 0, n_in - 1)
        lo = np.floor(x).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, x - lo

    y0, y1, fy = axis(h, src_h)
    x0, x1, fx = axis(w, src_w)
    a = img.astype(np.float64)
    top = a[y0][:, x0] * (1 - fx)[None, :, None] + a[y0][:, x1] * fx[None, :, None]
    bot = a[y1][:, x0] * (1 - fx)[None, :, None] + a[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bot * fy[:, None, None]


@pytest.mark.parametrize("full_float_limit", [det.FULL_FLOAT_LIMIT, 0])  # both resize paths
def test_preprocess_nchw_bgr_matches_bilinear_reference(task, monkeypatch, full_float_limit):
    monkeypatch.setattr(det, "FULL_FLOAT_LIMIT", full_float_limit)
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (250, 433, 3), dtype=np.uint8)
    img[..., 0] = 10  # blue channel constant: BGR order must be kept
    inputs, ctx = task.preprocess(img, RETAIL_META, task.parse_options({}))
    blob = inputs["data"]
    assert list(inputs) == ["data"] and blob.shape == (1, 3, 320, 544) and blob.dtype == np.float32
    assert np.all(blob[0, 0] == 10)
    ref = _bilinear_reference(img, 320, 544).transpose(2, 0, 1)[None]
    assert np.abs(blob - ref).max() <= 0.5 + 1e-3  # rounded to whole levels
    assert np.all(blob == np.round(blob))
    assert ctx[:2] == (250, 433)


@pytest.mark.parametrize("full_float_limit", [det.FULL_FLOAT_LIMIT, 0])
def test_preprocess_exact_2x_downscale_is_block_mean(task, monkeypatch, full_float_limit):
    monkeypatch.setattr(det, "FULL_FLOAT_LIMIT", full_float_limit)
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    inputs, _ = task.preprocess(img, SSD_META, task.parse_options({}))
    blocks = img.reshape(256, 2, 256, 2, 3).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_array_equal(inputs["image"][0], np.rint(blocks).transpose(2, 0, 1))


def test_resize_paths_match_reference_when_upscaling_and_squeezing(monkeypatch):
    img = np.random.default_rng(4).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for limit in (det.FULL_FLOAT_LIMIT, 0):
        monkeypatch.setattr(det, "FULL_FLOAT_LIMIT", limit)
        for h, w in ((80, 120), (20, 100), (37, 10)):
            out = det.resize_input(img, h, w)
            assert out.shape == (h, w, 3) and np.all(out == np.round(out))
            assert np.abs(out - _bilinear_reference(img, h, w)).max() <= 0.5 + 1e-3


def test_preprocess_nhwc_and_same_size(task):
    meta = _meta([("in", (1, 40, 60, 3), "float32")], [("detection_out", (1, 1, 10, 7), "float32")])
    img = np.random.default_rng(3).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    inputs, _ = task.preprocess(img, meta, task.parse_options({}))
    np.testing.assert_array_equal(inputs["in"], img[None].astype(np.float32))


def test_preprocess_refuses_a_non_detector_before_inference(task):
    pose = _meta([("data", (1, 3, 256, 456), "float32")], [("Mconv7_stage2_L1", (1, 38, 32, 57), "float32")])
    with pytest.raises(BadModelOutput):
        task.preprocess(np.zeros((10, 10, 3), np.uint8), pose, task.parse_options({}))


# ---- post-processing: detection_out ------------------------------------------------------------------

def _post(task, outputs, meta, image_hw, spec=None, **opts):
    h, w = image_hw
    spec = spec or det.input_spec(meta)
    return task.postprocess(outputs, (h, w, spec), meta, task.parse_options(opts))


def test_ssd_exact_answer(task):
    rows = [
        [0, 1, 0.70, 0.10, 0.20, 0.50, 0.75],
        [0, 0, 0.95, -0.05, 0.50, 0.25, 1.20],  # clipped to the image
        [0, 2, 0.40, 0.00, 0.00, 0.50, 0.50],  # below the threshold
        [0, 1, 0.50, 0.00, 0.00, 0.50, 0.50],  # equal to the threshold: dropped (strictly above)
    ]
    out = _ssd(rows)
    out[0, 0, 6] = [0, 3, 0.99, 0.1, 0.1, 0.2, 0.2]  # after the image_id -1 terminator: padding
    res = _post(task, {"detection_out": out}, SSD_META, (480, 640))
    assert res.to_dict() == {"detections": [
        {"label": "0", "label_id": 0, "confidence": pytest.approx(0.95, abs=1e-6),
         "points": [0.0, 240.0, 160.0, 480.0], "type": "rectangle"},
        {"label": "1", "label_id": 1, "confidence": pytest.approx(0.70, abs=1e-6),
         "points": [64.0, 96.0, 320.0, 360.0], "type": "rectangle"},
    ]}
    json.dumps(res.to_dict(), allow_nan=False)  # plain numbers only
    assert all(type(v) is float for d in res.to_dict()["detections"] for v in d["points"])
    assert type(res.detections[0].label_id) is int


def test_ssd_threshold_and_max_detections(task):
    rows = [[0, 0, s, 0.1, 0.1, 0.2, 0.2] for s in (0.3, 0.9, 0.6, 0.8)]
    res = _post(task, {"detection_out": _ssd(rows)}, SSD_META, (100, 100), threshold=0.2)
    assert [d.confidence for d in res.detections] == pytest.approx([0.9, 0.8, 0.6, 0.3])
    res = _post(task, {"detection_out": _ssd(rows)}, SSD_META, (100, 100), threshold=0.2, max_detections=2)
    assert [d.confidence for d in res.detections] == pytest.approx([0.9, 0.8])
    assert _post(task, {"detection_out": _ssd(rows)}, SSD_META, (100, 100), threshold=0.95).detections == ()


def test_ssd_drops_non_finite_and_empty_boxes(task):
    rows = [[0, 0, 0.9, np.nan, 0.1, 0.2, 0.2],
            [0, 0, 0.8, 1.2, 0.1, 1.5, 0.2],   # wholly right of the image: empty after clipping
            [0, 0, 0.7, 0.3, 0.3, 0.2, 0.4],   # x_max < x_min
            [0, np.inf, 0.9, 0.1, 0.1, 0.2, 0.2],
            [0, 4, 0.6, 0.1, 0.1, 0.2, 0.2]]
    res = _post(task, {"detection_out": _ssd(rows)}, SSD_META, (10, 10))
    assert [(d.label_id, d.points) for d in res.detections] == [(4, (1.0, 1.0, 2.0, 2.0))]


def test_ssd_without_terminator_uses_every_row(task):
    rows = np.array([[0, 0, 0.9, 0.1, 0.1, 0.2, 0.2]] * 5, np.float32).reshape(1, 1, 5, 7)
    assert len(_post(task, {"detection_out": rows}, SSD_META, (10, 10)).detections) == 5


@pytest.mark.parametrize("outputs", [
    {},
    {"other": np.zeros((1, 1, 5, 7), np.float32)},
    {"detection_out": np.zeros((1, 1, 5, 6), np.float32)},
    {"detection_out": np.zeros((7,), np.float32)},
])
def test_ssd_bad_outputs(task, outputs):
    with pytest.raises(BadModelOutput):
        _post(task, outputs, SSD_META, (10, 10))


def test_read_only_outputs_are_decoded_and_clipped(task):
    """Adapters hand out read-only buffers (np.frombuffer): boxes are clipped on a copy."""
    out = _ssd([[0, 0, 0.9, -0.5, 0.1, 1.5, 0.2], [0, 1, 0.8, 0.2, 0.3, 0.4, 0.6]])
    out.setflags(write=False)
    res = _post(task, {"detection_out": out}, SSD_META, (10, 20))  # 20 wide, 10 high
    assert [d.to_dict() for d in res.detections] == [
        {"label": "0", "label_id": 0, "confidence": pytest.approx(0.9), "points": [0.0, 1.0, 20.0, 2.0],
         "type": "rectangle"},
        {"label": "1", "label_id": 1, "confidence": pytest.approx(0.8), "points": [4.0, 3.0, 8.0, 6.0],
         "type": "rectangle"},
    ]


# ---- post-processing: boxes + labels --------------------------------------------------------------

def test_boxes_form_exact_answer(task):
    boxes = np.array([[10, 20, 110, 220, 0.8],     # input pixels (256x256)
                      [0, 0, 300, 128, 0.9],       # x beyond the input: clipped
                      [5, 5, 6, 6, 0.1],           # below the threshold
                      [0, 0, 0, 0, 0.0]], np.float32)  # zero padding
    labels = np.array([2, 0, 1, 0], np.int64)
    res = _post(task, {"boxes": boxes, "labels": labels}, BOXES_META, (384, 512))
    # image 512x384 over input 256x256: x * 2, y * 1.5
    assert res.to_dict()["detections"] == [
        {"label": "0", "label_id": 0, "confidence": pytest.approx(0.9, abs=1e-6),
         "points": [0.0, 0.0, 512.0, 192.0], "type": "rectangle"},
        {"label": "2", "label_id": 2, "confidence": pytest.approx(0.8, abs=1e-6),
         "points": [20.0, 30.0, 220.0, 330.0], "type": "rectangle"},
    ]


def test_boxes_form_batched_and_without_labels(task):
    meta = _meta([("image", (1, 3, 100, 200), "float32")], [("boxes", (1, -1, 5), "float32")])
    boxes = np.array([[[20, 10, 40, 30, 0.7]]], np.float32)
    res = _post(task, {"boxes": boxes}, meta, (50, 100))
    assert [(d.label, d.label_id, d.points) for d in res.detections] == [("0", 0, (10.0, 5.0, 20.0, 15.0))]


def test_boxes_form_bad_outputs(task):
    with pytest.raises(BadModelOutput, match="labels"):
        _post(task, {"boxes": np.zeros((3, 5), np.float32), "labels": np.zeros(2, np.int64)},
              BOXES_META, (10, 10))
    with pytest.raises(BadModelOutput):
        _post(task, {"boxes": np.zeros((3, 4), np.float32), "labels": np.zeros(3, np.int64)},
              BOXES_META, (10, 10))
    with pytest.raises(BadModelOutput):
        _post(task, {"labels": np.zeros(3, np.int64)}, BOXES_META, (10, 10))


# ---- labels -----------------------------------------------------------------------------------------

def test_parse_labels_formats():
    assert det.parse_labels("vehicle\nperson\n\nbike\n") == {0: "vehicle", 1: "person", 3: "bike"}
    assert det.parse_labels("\ufeffa\r\nb\r\n".lstrip("\ufeff")) == {0: "a", 1: "b"}
    assert det.parse_labels('{"1": "person", "7": " car "}') == {1: "person", 7: "car"}
    assert det.parse_labels('["background", "person"]') == {0: "background", 1: "person"}
    with pytest.raises(ValueError):
        det.parse_labels('{"person": 1}')
    with pytest.raises(ValueError):
        det.parse_labels("{not json")


@pytest.mark.parametrize("content", ["vehicle\nperson\nbike\n", '{"0": "vehicle", "1": "person", "2": "bike"}'])
def test_labels_file_names_detections(task, tmp_path, monkeypatch, content):
    path = tmp_path / "labels.txt"
    path.write_text(content, encoding="utf-8")
    monkeypatch.setenv(det.LABELS_SETTING, str(path))
    rows = [[0, 1, 0.9, 0.1, 0.1, 0.2, 0.2], [0, 2, 0.8, 0.1, 0.1, 0.2, 0.2], [0, 5, 0.7, 0.1, 0.1, 0.2, 0.2]]
    res = _post(task, {"detection_out": _ssd(rows)}, SSD_META, (10, 10))
    assert [(d.label, d.label_id) for d in res.detections] == [("person", 1), ("bike", 2), ("5", 5)]


def test_labels_file_missing_or_invalid_is_503(task, tmp_path, monkeypatch):
    monkeypatch.setenv(det.LABELS_SETTING, str(tmp_path / "nope.txt"))
    rows = [[0, 1, 0.9, 0.1, 0.1, 0.2, 0.2]]
    with pytest.raises(ModelUnavailable, match=det.LABELS_SETTING):
        _post(task, {"detection_out": _ssd(rows)}, SSD_META, (10, 10))
    bad = tmp_path / "bad.json"
    bad.write_text("{oops", encoding="utf-8")
    monkeypatch.setenv(det.LABELS_SETTING, str(bad))
    with pytest.raises(ModelUnavailable, match="invalid"):
        _post(task, {"detection_out": _ssd(rows)}, SSD_META, (10, 10))


# ---- render -----------------------------------------------------------------------------------------

def test_render_draws_boxes_without_touching_the_input(task):
    img = np.full((200, 300, 3), 128, np.uint8)
    rows = [[0, 0, 0.9, 0.2, 0.3, 0.6, 0.8]]
    res = _post(task, {"detection_out": _ssd(rows)}, SSD_META, (200, 300))
    out = task.render(img, res, task.parse_options({}))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.all(img == 128)
    x1, y1, x2, y2 = (int(v) for v in res.detections[0].points)
    assert np.any(out[y1:y2, x1] != 128) and np.any(out[y2 - 1, x1:x2] != 128)  # left and bottom edges
    assert np.all(out[y1 + 5:y2 - 5, x1 + 5:x2 - 5] == 128)  # the inside is left alone
    empty = task.render(img, det.DetectionResult(()), task.parse_options({}))
    np.testing.assert_array_equal(empty, img)
