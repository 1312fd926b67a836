"""Pose estimation through the local model server (gRPC) and over HTTP through the Functions host.

* A generated model (tests/modelgen ``pose_model``) returns synthetic heatmaps/PAFs with known
  people, so the endpoint's keypoints are checked exactly in original-image pixels.
* The real human-pose-estimation-0001 serves the photos in ../shared/images: every person found,
  keypoints on bodies (cross-checked against person-detection-retail-0013 boxes, run in process),
  and the HTTP answer equals the reference decoder (tests/modelgen/pose_reference.py) run on an
  in-process inference of the same model.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import cv2
import numpy as np
import pytest

from emulators.ovms.launcher import write_config
from scripts.tooling.modelsearch import find_model
from shared import config, serving
from shared.timings import Timings
from shared.tasks.pose import KEYPOINT_NAMES, PoseOptions, PoseTask
from tests import modelgen
from tests.fixtures.functions_host import running_stack
from tests.httpclient import request
from tests.modelgen.pose_reference import reference_decode
from tests.modelgen.pose_synth import draw, person
from tests.precision import F32, compile_f32, compiled_precision, served_precision
from tests.realmodels import real_model
from tests.settings import endpoint_env

pytestmark = pytest.mark.slow

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"
PHOTOS = ("people1.jpeg", "people2.jpeg", "people3.jpeg", "people4.jpeg", "baseball.jpg")
SYNTH_PEOPLE = [person(8, 6), person(30, 6, drop=[6, 7])]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Model server (generated + real pose model) and a Functions host pointed at it."""
    root = tmp_path_factory.mktemp("pose-models")
    heat, pafs = draw(SYNTH_PEOPLE)
    synth = root / "pose-synth"
    modelgen.write_version(synth, 1, modelgen.pose_model, heat[None], pafs[None])
    models = [{"name": "pose-synth", "base_path": str(synth), "plugin_config": F32}]
    real = find_model("human-pose-estimation-0001")
    if real is not None:
        models.append({"name": "human-pose-estimation", "base_path": str(real), "plugin_config": F32})
    with running_stack(write_config(root / "config.json", models),
                       lambda port: settings_env(port, "human-pose-estimation"), root) as (server, host):
        yield server, host


def settings_env(port: int, model: str) -> Dict[str, str]:
    return endpoint_env("HUMANPOSE", port, model)


def post(url: str, body: bytes, content_type: str = "image/jpeg",
         headers: Optional[Dict[str, str]] = None) -> Tuple[int, str, bytes]:
    return request(url, body, content_type=content_type, headers=headers)[:3]


def endpoint(host, query: str = "") -> str:
    return host.url("/api/HttpTriggerHumanPose") + (f"?{query}" if query else "")


# ---- generated model: exact answers through gRPC ---------------------------------------------------

@pytest.mark.parametrize("api", ["kserve", "tfs"])
@pytest.mark.parametrize("hw", [(800, 1200), (601, 333)])
def test_generated_model_through_the_server(stack, api, hw):
    server, _ = stack
    env = settings_env(server.port, "pose-synth")
    env["OVMS_API"] = api
    adapter = serving.get_adapter(config.model_settings("HUMANPOSE", env))
    task = PoseTask()
    h, w = hw
    result = task.run(np.zeros((h, w, 3), np.uint8), adapter, PoseOptions(), Timings())
    assert len(result.people) == 2
    # cell c -> (c + 0.5) * 8 * original / resized
    rw = round(w * 256 / h)
    sx, sy = 8 * w / rw, 8 * h / 256
    for joints in SYNTH_PEOPLE:
        neck_x = min((joints[1][0] + 0.5) * sx, w - 1)
        (found,) = [p for p in result.people if p.keypoints[1].x == pytest.approx(neck_x)]
        for k in range(18):
            kp = found.keypoints[k]
            if k not in joints:
                assert kp is None
                continue
            assert kp.x == pytest.approx(min((joints[k][0] + 0.5) * sx, w - 1), abs=1e-3)
            assert kp.y == pytest.approx(min((joints[k][1] + 0.5) * sy, h - 1), abs=1e-3)
            assert kp.score == pytest.approx(0.9, abs=1e-6)


# ---- real model over HTTP ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def in_process():
    """In-process OpenVINO runs of the real pose model and person-detection-retail-0013."""
    import openvino as ov

    core = ov.Core()
    pose = compile_f32(next(real_model("human-pose-estimation-0001").glob("*/*.xml")), core)
    det = compile_f32(next(real_model("person-detection-retail-0013").glob("*/*.xml")), core)

    def run_pose(inputs):
        return {o.get_any_name(): np.asarray(v) for o, v in pose(inputs).items()}

    def persons(image, conf=0.5):
        h, w = image.shape[:2]
        blob = cv2.resize(image, (544, 320)).transpose(2, 0, 1)[None].astype(np.float32)
        rows = np.asarray(next(iter(det(blob).values())))[0, 0]
        rows = rows[(rows[:, 0] >= 0) & (rows[:, 1] == 1) & (rows[:, 2] > conf)]
        return rows[:, 3:7] * [w, h, w, h]
    return run_pose, persons, compiled_precision(pose)


def _inside(x, y, box, margin=0.1):
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    return x0 - mx <= x <= x1 + mx and y0 - my <= y <= y1 + my


def test_oracle_and_server_compute_in_f32(stack, in_process):
    """The comparison below is only tight because both sides run at f32 (bf16 on AMX otherwise)."""
    server, _ = stack
    real_model("human-pose-estimation-0001")
    assert served_precision(server, "human-pose-estimation") == "f32"
    assert in_process[2] == "f32"


@pytest.mark.parametrize("photo", PHOTOS)
def test_real_photos_over_http(stack, in_process, photo):
    _, host = stack
    run_pose, persons, _ = in_process
    data = (IMAGES / photo).read_bytes()
    status, ctype, body = post(endpoint(host), data)
    assert status == 200, body[:300]
    answer = json.loads(body)
    people = answer["people"]
    image = cv2.imread(str(IMAGES / photo))

    # Same people and keypoints as the reference decoder on an in-process inference.
    task = PoseTask()
    inputs, ctx = task.preprocess(image, _meta(), PoseOptions())
    out = run_pose(inputs)
    ref = reference_decode(out["Mconv7_stage2_L2"][0], out["Mconv7_stage2_L1"][0])
    assert len(people) == len(ref)
    sx, sy = 8 * ctx.image_w / ctx.resized_w, 8 * ctx.image_h / ctx.resized_h
    ref_sets = sorted(ref, key=lambda r: -r[1])
    for got, (kps, score) in zip(people, ref_sets):
        assert got["score"] == pytest.approx(score, rel=1e-3)
        for k, name in enumerate(KEYPOINT_NAMES):
            if kps[k] is None:
                assert got["keypoints"][name] is None
            else:
                g = got["keypoints"][name]
                assert abs(g["x"] - min(kps[k][0] * sx, ctx.image_w - 1)) <= 1.0
                assert abs(g["y"] - min(kps[k][1] * sy, ctx.image_h - 1)) <= 1.0

    # Every person the detector finds has a pose whose head is in the box and whose keypoints are
    # mostly in it (occluded people: the box stops where the visible body does, the pose not).
    boxes = persons(image)  # none on the close-ups people3/4: counts are checked below
    for box in boxes:
        ok = False
        for p in people:
            kps = [kp for kp in p["keypoints"].values() if kp]
            head = p["keypoints"]["neck"] or p["keypoints"]["nose"]
            share = sum(_inside(kp["x"], kp["y"], box) for kp in kps) / len(kps)
            ok |= head is not None and _inside(head["x"], head["y"], box, 0.0) and share >= 0.5
        assert ok, (photo, box.tolist())


def _meta():
    from shared.serving.base import ModelMetadata, TensorInfo

    return ModelMetadata("human-pose-estimation", "1",
                         {"data": TensorInfo("data", (1, 3, 256, 456), "float32")}, {})


def test_people_counts(stack):
    _, host = stack
    real_model("human-pose-estimation-0001")
    counts = {}
    for photo in PHOTOS:
        status, _, body = post(endpoint(host), (IMAGES / photo).read_bytes())
        assert status == 200
        counts[photo] = len(json.loads(body)["people"])
    assert counts["people2.jpeg"] == 2 and counts["people3.jpeg"] == 3 and counts["people4.jpeg"] == 2
    assert counts["people1.jpeg"] >= 10 and counts["baseball.jpg"] >= 5


def test_render_and_json_forms(stack):
    _, host = stack
    real_model("human-pose-estimation-0001")
    data = (IMAGES / "people2.jpeg").read_bytes()
    status, ctype, body = post(endpoint(host, "render=true"), data)
    assert status == 200 and ctype.startswith("image/jpeg")
    picture = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imread(str(IMAGES / "people2.jpeg"))
    assert picture.shape == original.shape
    assert np.abs(picture.astype(int) - original).max() > 100  # skeletons drawn
    payload = json.dumps({"image": base64.b64encode(data).decode(), "threshold": 0.5}).encode()
    status, _, body = post(endpoint(host), payload, "application/json")
    assert status == 200
    strict = json.loads(body)
    assert all(kp is None or kp["score"] > 0.5
               for p in strict["people"] for kp in p["keypoints"].values())
    assert strict["model"]["name"] == "human-pose-estimation"


@pytest.mark.parametrize("query,body,ctype,status", [
    ("threshold=abc", None, "image/jpeg", 400),
    ("threshold=2", None, "image/jpeg", 400),
    ("", b"", "image/jpeg", 400),
    ("", b"not an image", "image/jpeg", 415),
    ("", b"\xff\xd8\xff\xe0" + b"\0" * 50, "image/jpeg", 415),
    ("", b"{", "application/json", 400),
])
def test_bad_input_is_4xx_json(stack, query, body, ctype, status):
    _, host = stack
    data = (IMAGES / "baseball.jpg").read_bytes() if body is None else body
    got, rtype, raw = post(endpoint(host, query), data, ctype)
    assert 400 <= got < 500 and got == status, raw[:200]
    assert rtype.startswith("application/json") and "error" in json.loads(raw)
