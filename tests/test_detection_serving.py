"""Object detection through the local model server and over HTTP (the local Functions host).

- Generated detectors of both output forms (and an NHWC one) give exact answers, in-process through
  the gRPC adapter and over HTTP.
- The three real detectors in ../shared/models-real, one model server, the endpoint pointed at each
  by settings only (``OBJECTDETECTION_MODEL_NAME``), answer over HTTP what Intel's
  ``openvino-model-api`` SSD wrapper answers in-process on the same photos: same labels, boxes
  within 1 px, scores within 1e-3. Both sides are pinned to f32 (OpenVINO computes in bf16 on CPUs
  with AMX otherwise), and a test reads the precision back from each side.
- At the device's default precision (bf16 on AMX) the same comparison holds within the wider
  tolerance measured by bench/bench_precision.py.
- Bad input gets a 4xx JSON answer.
"""
from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import pytest

from emulators.ovms.launcher import start_server, write_config
from scripts.tooling.modelsearch import PROJECT_ROOT, find_model, model_xml
from shared import config, serving
from shared.timings import Timings
from shared.tasks.detection import DetectionTask
from tests import modelgen
from tests.fixtures.functions_host import start_functions_host
from tests.precision import F32, compiled_precision, device_default_precision, served_precision
from tests.realmodels import real_model
from tests.settings import endpoint_env
from tests.httpclient import request

IMAGES = PROJECT_ROOT.parent / "shared" / "images"
PHOTOS = ("people1.jpeg", "people2.jpeg", "people3.jpeg", "people4.jpeg", "baseball.jpg")
REAL = ("person-detection-0200", "person-vehicle-bike-detection-2000", "person-detection-retail-0013")

# generated models: what they return and what the endpoint must answer for a 640x480 image
SSD_ROWS = [[0, 1, 0.875, 0.125, 0.25, 0.5, 0.75],
            [0, 0, 0.625, 0.5, 0.5, 1.25, 1.0],   # clipped at the right edge
            [0, 2, 0.25, 0.0, 0.0, 0.5, 0.5]]     # below the default threshold
BOXES = np.array([[16, 32, 128, 224, 0.75],        # input pixels of a 256x256 input
                  [0, 0, 64, 64, 0.9375],
                  [0, 0, 0, 0, 0.0]], np.float32)
BOXES_LABELS = np.array([3, 1, 0], np.int64)
W, H = 640, 480
AT_DEFAULT = "-default"  # served-name suffix of the real detectors compiled at the device's default precision


def _expected_ssd() -> List[dict]:
    return [
        {"label": "person", "label_id": 1, "confidence": 0.875, "points": [80.0, 120.0, 320.0, 360.0],
         "type": "rectangle"},
        {"label": "vehicle", "label_id": 0, "confidence": 0.625, "points": [320.0, 240.0, 640.0, 480.0],
         "type": "rectangle"},
    ]


def _expected_boxes() -> List[dict]:
    return [
        {"label": "1", "label_id": 1, "confidence": 0.9375, "points": [0.0, 0.0, 160.0, 120.0],
         "type": "rectangle"},
        {"label": "3", "label_id": 3, "confidence": 0.75, "points": [40.0, 60.0, 320.0, 420.0],
         "type": "rectangle"},
    ]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Tuple[Path, Dict[str, Path]]:
    root = tmp_path_factory.mktemp("detection-models")
    models: Dict[str, Path] = {
        "ssd-gen": modelgen.write_version(root / "ssd-gen", 1, modelgen.ssd_model, SSD_ROWS,
                                          input_name="data", hw=(320, 544)),
        "boxes-gen": modelgen.write_version(root / "boxes-gen", 1, modelgen.boxes_labels_model,
                                            BOXES, BOXES_LABELS),
        "nhwc-gen": modelgen.write_version(
            root / "nhwc-gen", 1, modelgen.constant_model, {"input": (1, 120, 160, 3)},
            {"detection_out": modelgen.ssd_rows(SSD_ROWS, 10)}),
    }
    return root, models


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    """One model server with the generated detectors and whichever real detectors are present."""
    root, models = repo
    entries = [{"name": n, "base_path": str(p), "plugin_config": F32} for n, p in models.items()]
    entries += [{"name": n, "base_path": str(find_model(n)), "plugin_config": F32} for n in REAL if find_model(n)]
    # the same detectors at OpenVINO's default precision, as a real OVMS runs them unless told otherwise
    entries += [{"name": f"{n}{AT_DEFAULT}", "base_path": str(find_model(n))} for n in REAL if find_model(n)]
    cfg = write_config(tmp_path_factory.mktemp("ovms") / "config.json", entries)
    srv = start_server(["--config_path", str(cfg)], timeout=120)
    yield srv
    srv.stop()


@pytest.fixture(scope="module", autouse=True)
def _close_adapters():
    yield
    serving.reset()  # the adapters of this module point at its model server


@pytest.fixture(scope="module")
def labels_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    path.write_text("vehicle\nperson\nbike\n", encoding="utf-8")
    return path


def _env(port: int, model: str, labels: Optional[Path] = None) -> Dict[str, str]:
    return endpoint_env("OBJECTDETECTION", port, model, OBJECTDETECTION_LABELS_PATH=str(labels) if labels else "")


def _image(h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _jpeg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img)[1].tobytes()


def _post(url: str, body: bytes, ctype: str = "image/jpeg", method: str = "POST",
          headers: Optional[Dict[str, str]] = None) -> Tuple[int, str, bytes]:
    return request(url, body, method=method, content_type=ctype, headers=headers)[:3]


# ---- generated models in-process through the gRPC adapter ---------------------------------------

@pytest.mark.parametrize("model,expected,labels,api", [
    ("ssd-gen", _expected_ssd, True, "kserve"), ("boxes-gen", _expected_boxes, False, "kserve"),
    ("nhwc-gen", _expected_ssd, True, "kserve"), ("ssd-gen", _expected_ssd, True, "tfs"),
    ("boxes-gen", _expected_boxes, False, "tfs")])
def test_generated_models_through_the_adapter(server, labels_file, monkeypatch, model, expected, labels, api):
    env = {**_env(server.port, model, labels_file if labels else None), "OVMS_API": api}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    task = DetectionTask()
    adapter = serving.get_adapter(config.model_settings("OBJECTDETECTION"))
    result = task.run(_image(), adapter, task.parse_options({}), Timings())
    assert result.to_dict() == {"detections": expected()}


# ---- HTTP: generated models, bad input --------------------------------------------------------------

@pytest.fixture(scope="module")
def hosts(server, labels_file, tmp_path_factory):
    """Functions hosts started side by side: generated SSD and boxes models, and each real detector."""
    log_dir = tmp_path_factory.mktemp("hosts")
    plans = {"ssd-gen": labels_file, "boxes-gen": None}
    plans.update({n: (labels_file if n == "person-vehicle-bike-detection-2000" else None)
                  for n in REAL if find_model(n)})
    with ThreadPoolExecutor(len(plans)) as pool:
        futures = {n: pool.submit(start_functions_host, env=_env(server.port, n, lab), log_dir=log_dir,
                                  timeout=90) for n, lab in plans.items()}
        started = {n: f.result() for n, f in futures.items()}
    yield started
    for h in started.values():
        h.stop()


def _detect_url(host, query: str = "") -> str:
    return host.url("/api/HttpTriggerObjectDetection") + (f"?{query}" if query else "")


def test_http_generated_ssd_exact(hosts):
    status, ctype, body = _post(_detect_url(hosts["ssd-gen"]), _jpeg(_image()))
    assert status == 200 and ctype.startswith("application/json"), body[:300]
    data = json.loads(body)
    assert data["detections"] == _expected_ssd()
    assert data["model"] == {"name": "ssd-gen", "version": "1"}
    assert data["image"] == {"width": W, "height": H}
    # options in the query string and in a JSON body
    status, _, body = _post(_detect_url(hosts["ssd-gen"], "threshold=0.2&max_detections=2"), _jpeg(_image()))
    assert [d["label_id"] for d in json.loads(body)["detections"]] == [1, 0]
    payload = json.dumps({"image": base64.b64encode(_jpeg(_image())).decode(), "threshold": 0.2}).encode()
    status, _, body = _post(_detect_url(hosts["ssd-gen"]), payload, "application/json")
    assert status == 200
    assert [d["confidence"] for d in json.loads(body)["detections"]] == [0.875, 0.625, 0.25]


def test_http_generated_boxes_exact(hosts):
    status, _, body = _post(_detect_url(hosts["boxes-gen"]), _jpeg(_image()))
    assert status == 200, body[:300]
    assert json.loads(body)["detections"] == _expected_boxes()


def test_http_render(hosts):
    img = np.full((H, W, 3), 200, np.uint8)
    status, ctype, body = _post(_detect_url(hosts["ssd-gen"], "render=true&format=png"), _jpeg(img))
    assert status == 200 and ctype == "image/png"
    pic = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert pic.shape == (H, W, 3)
    assert np.any(pic[120:360, 80] != pic[5, 5])   # left edge of the person box is drawn
    assert np.abs(pic[200:300, 150:250].astype(int) - img[200:300, 150:250]).max() <= 8  # inside untouched


@pytest.mark.parametrize("query,body,ctype,method,status,code", [
    ("", b"not an image at all", "image/jpeg", "POST", 415, "invalid_image"),
    ("", b"", "image/jpeg", "POST", 400, "missing_image"),
    ("threshold=abc", None, "image/jpeg", "POST", 400, "invalid_option"),
    ("threshold=2", None, "image/jpeg", "POST", 400, "invalid_option"),
    ("max_detections=0", None, "image/jpeg", "POST", 400, "invalid_option"),
    ("", b'{"image": "@@@"}', "application/json", "POST", 400, "invalid_base64"),
    ("", b'{"image": ', "application/json", "POST", 400, "invalid_json"),
    ("", None, "image/jpeg", "GET", 405, "method_not_allowed"),
])
def test_http_bad_input_is_4xx_json(hosts, query, body, ctype, method, status, code):
    data = _jpeg(_image(32, 32)) if body is None else body
    got, got_type, answer = _post(_detect_url(hosts["ssd-gen"], query), data, ctype, method)
    assert got == status and got_type.startswith("application/json"), answer[:300]
    assert json.loads(answer)["error"]["code"] == code


# ---- HTTP: real detectors vs Intel's model_api SSD wrapper --------------------------------------------

def _oracle_model(name: str, plugin: Dict[str, str], threshold: float = 0.5):
    """(model_api's SSD wrapper compiled with ``plugin``, the precision it computes in)."""
    from model_api.adapters import OpenvinoAdapter, create_core
    from model_api.models import SSD

    adapter = OpenvinoAdapter(create_core(), str(model_xml(name)), device="CPU", plugin_config=dict(plugin))
    model = SSD(adapter, {"resize_type": "standard", "reverse_input_channels": False,
                          "mean_values": [], "scale_values": [], "confidence_threshold": threshold},
                preload=True)
    assert model.params.resize_type == "standard" and not model.params.reverse_input_channels
    return model, compiled_precision(adapter.compiled_model)


def _oracle(name: str, images: Dict[str, np.ndarray], threshold: float = 0.5):
    """model_api's SSD wrapper in-process at f32: stretch resize ("standard"), BGR, no mean/scale —
    what these models' documentation prescribes."""
    model, _ = _oracle_model(name, F32, threshold)
    return {key: _boxes(model(img)) for key, img in images.items()}


def _boxes(r) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes, scores, labels) of a model_api detection result."""
    return (np.asarray(r.bboxes, np.float64).reshape(-1, 4), np.asarray(r.scores, np.float64),
            np.asarray(r.labels, np.int64))


def _compare(ours: List[dict], oracle, threshold: float = 0.5, where: str = "", box_px: float = 1.0,
             score: float = 1e-3) -> None:
    """Same detections as the oracle: boxes within ``box_px``, scores within ``score``, same labels.

    Each of our detections is paired with the nearest free oracle box of its label. A box left
    without a partner, on either side, must score within ``score`` of the threshold: there the
    other side may have dropped it. (Dropping near-threshold boxes on each side by its own score
    instead failed a pair that scored 0.521 and 0.5171 with a band of 0.02: one kept, one dropped.)
    """
    boxes, scores, labels = oracle
    near = lambda s: abs(s - threshold) <= score  # noqa: E731 - either side may drop these
    free = set(range(len(scores)))
    for d in sorted(ours, key=lambda d: -d["confidence"]):
        p = np.array(d["points"])
        mates = [i for i in free if labels[i] == d["label_id"]]
        j = min(mates, key=lambda i: np.abs(boxes[i] - p).max(), default=None)
        if j is None or np.abs(boxes[j] - p).max() > box_px:
            assert near(d["confidence"]), f"{where}: {d} has no partner in model_api's answer"
            continue
        free.remove(j)
        assert abs(d["confidence"] - scores[j]) <= score, f"{where}: {d['confidence']} vs {scores[j]}"
    unpaired = [(boxes[i].tolist(), float(scores[i])) for i in free if not near(scores[i])]
    assert not unpaired, f"{where}: model_api's detections without a partner in ours: {unpaired}"


def test_the_comparison_fails_on_what_it_must():
    """The control of ``_compare``: near-threshold boxes may be missing on either side, nothing else."""
    oracle = (np.array([[10, 10, 50, 90], [100, 10, 150, 90]], float), np.array([0.99, 0.5171]), np.array([1, 1]))
    det = lambda box, conf, label=1: {"points": box, "confidence": conf, "label_id": label}  # noqa: E731
    _compare([det([10, 10, 50, 90], 0.99), det([100, 10, 150, 90], 0.521)], oracle, score=2e-2)  # both paired
    _compare([det([10, 10, 50, 90], 0.99)], oracle, score=2e-2)  # ours dropped the near-threshold one
    for wrong in ([det([15, 10, 50, 90], 0.99)],                              # a box 5 px off
                  [det([10, 10, 50, 90], 0.90)],                              # a score 0.09 off
                  [det([10, 10, 50, 90], 0.99, label=2)],                     # another label
                  [det([10, 10, 50, 90], 0.99), det([300, 10, 350, 90], 0.8)]):  # one more box
        with pytest.raises(AssertionError):
            _compare(wrong, oracle, box_px=2.0, score=2e-2)


@pytest.mark.parametrize("name", REAL)
def test_http_real_detector_matches_model_api(hosts, name):
    real_model(name)
    photos = {p: (IMAGES / p).read_bytes() for p in PHOTOS}
    images = {p: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for p, b in photos.items()}
    oracle = _oracle(name, images)
    total = 0
    for p, data in photos.items():
        status, _, body = _post(_detect_url(hosts[name]), data)
        assert status == 200, body[:300]
        answer = json.loads(body)
        assert answer["model"]["name"] == name
        _compare(answer["detections"], oracle[p], where=f"{name} {p}")
        total += len(answer["detections"])
        if name == "person-vehicle-bike-detection-2000":  # labels file set for this one
            assert {d["label"] for d in answer["detections"]} <= {"vehicle", "person", "bike"}
        else:
            assert all(d["label"] == str(d["label_id"]) for d in answer["detections"])
    assert total >= 10  # the photos hold many people: a detector that finds nothing fails


def test_oracle_comparisons_run_at_f32(server):
    """The 1 px / 1e-3 comparison above is only that tight because both sides compute in f32: read
    back from the model server (its compiled model, as its load log reports it) and the oracle."""
    present = [n for n in REAL if find_model(n)]
    assert present, "needs_real_models: no real detector found"
    for name in present:
        assert served_precision(server, name) == "f32", name
        assert _oracle_model(name, F32)[1] == "f32", name
    for name in ("ssd-gen", "boxes-gen", "nhwc-gen"):  # the generated models are exact only at f32
        assert served_precision(server, name) == "f32", name


# Tolerances at the device's default precision, from bench/bench_precision.py on an Intel Xeon with
# AMX (amx_bf16, avx512_bf16; OpenVINO's default bf16), 7 photos x (as is, mirrored, centre crop),
# threshold 0.5, endpoint vs model_api each compiled at the default:
#   person-detection-0200               bf16: 51 detections, worst box 0.50 px, worst score 4.4e-7
#   person-vehicle-bike-detection-2000  bf16: 57 detections, worst box 0.50 px, worst score 4.9e-7
#   person-detection-retail-0013        bf16: 40 detections, worst box 1.37 px, worst score 1.39e-2
#   (the same three at f32: 0.50 px / 5.0e-7, 0.50 px / 4.9e-7, 0.53 px / 4.4e-4)
# The first two are INT8 models, which bf16 leaves alone. The bounds below are the worst bf16 figures
# with about 1.5x headroom. An AMD EPYC with avx512_bf16 but no AMX (family 25 model 17) defaults to
# bf16 as well: 0.50 / 4.7e-7, 0.50 / 5.0e-7, 1.19 px / 6.7e-3 there, no box unpaired.
DEFAULT_PRECISION_BOX_PX = 2.0
DEFAULT_PRECISION_SCORE = 2e-2


@pytest.mark.parametrize("name", REAL)
def test_real_detectors_at_device_default_precision(server, monkeypatch, name):
    real_model(name)
    served = f"{name}{AT_DEFAULT}"
    model, oracle_precision = _oracle_model(name, {})
    assert served_precision(server, served) == oracle_precision == device_default_precision()
    for k, v in _env(server.port, served).items():
        monkeypatch.setenv(k, v)
    task = DetectionTask()
    adapter = serving.get_adapter(config.model_settings("OBJECTDETECTION"))
    total = 0
    for photo in PHOTOS:
        img = cv2.imread(str(IMAGES / photo))
        for variant, pic in (("", img), (" mirrored", np.ascontiguousarray(img[:, ::-1]))):
            ours = task.run(pic, adapter, task.parse_options({}), Timings()).to_dict()["detections"]
            _compare(ours, _boxes(model(pic)), where=f"{served} ({oracle_precision}) {photo}{variant}",
                     box_px=DEFAULT_PRECISION_BOX_PX, score=DEFAULT_PRECISION_SCORE)
            total += len(ours)
    assert total >= 20
