"""The OVaaS web frontend's exact requests (tests/frontend_requests.py), replayed through a Functions
host (the ``frontend_host`` fixture) against the four compatibility routes:

- pose and detection answer ``image/jpeg`` that decodes to the input's size;
- colorization answers one JPEG with two panels side by side (the grey original, the colorized);
- handwriting answers JSON ``{"count", "timecost", "text"}`` with the recognised text;
- a CORS preflight from the frontend's origin succeeds, and every answer carries the CORS header
  the browser needs to read it;
- the ``HttpTrigger*`` routes answer the same request with today's JSON;
- errors: a model deadline is 408 ("Server Timeout" in the frontend), an unreachable model 500
  ("Server Error"), bad input a 4xx ("Request Error").
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from shared import catalog
from tests import frontend_requests as fe
from tests.fixtures.frontend import HAND_TEXT
from tests.httpclient import request

pytestmark = pytest.mark.needs_real_models


def _post(host, function: str, body: bytes, ctype: str):
    return request(host.url(f"/api/{function}"), body, headers=fe.headers(ctype))


def _cors_ok(resp) -> None:
    allowed = resp.headers.get("Access-Control-Allow-Origin")
    assert allowed in ("*", fe.FRONTEND_ORIGIN), f"no CORS header for {fe.FRONTEND_ORIGIN}: {allowed!r}"


@pytest.mark.parametrize("demo", ["pose", "detection"])
def test_pose_and_detection_answer_a_jpeg_of_the_inputs_size(frontend_host, demo):
    function, name = fe.DEMOS[demo]
    jpeg = fe.compressor_jpeg(fe.photo(name, upscale=2.0))  # 2400x1600 chosen, 2000x1333 sent
    sent = fe.jpeg_size(jpeg)
    assert max(sent) == fe.MAX_SIDE
    resp = _post(frontend_host, function, *fe.form(jpeg))
    assert resp.status == 200, resp.body[:300]
    assert resp.content_type.split(";")[0] == "image/jpeg"
    assert fe.jpeg_size(resp.body) == sent
    _cors_ok(resp)
    # something was drawn: the answer is not the input re-encoded
    answer = cv2.imdecode(np.frombuffer(resp.body, np.uint8), cv2.IMREAD_COLOR).astype(np.int16)
    original = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(np.int16)
    assert (np.abs(answer - original).max(axis=2) > 100).mean() > 0.001


def test_colorization_answers_two_panels_side_by_side(frontend_host):
    function, name = fe.DEMOS["colorization"]
    jpeg = fe.compressor_jpeg(fe.photo(name))
    width, height = fe.jpeg_size(jpeg)
    resp = _post(frontend_host, function, *fe.form(jpeg))
    assert resp.status == 200, resp.body[:300]
    assert resp.content_type.split(";")[0] == "image/jpeg"
    _cors_ok(resp)
    picture = cv2.imdecode(np.frombuffer(resp.body, np.uint8), cv2.IMREAD_COLOR)
    h, w = picture.shape[:2]
    assert w % 2 == 0 and abs(w / 2 / h - width / height) < 0.02, "two panels of the input's aspect ratio"
    left, right = picture[:, : w // 2].astype(np.int16), picture[:, w // 2:].astype(np.int16)
    # label rows excluded: "Original" / "Colorized" are drawn in red in the top-left corners
    chroma = lambda p: np.abs(p[h // 4:, :, 2] - p[h // 4:, :, 0]).mean()  # noqa: E731
    assert chroma(left) < 8, "the left panel is the grey original"
    assert chroma(right) > 20, "the right panel is colorized"
    red = lambda p: ((p[: h // 5, : w // 4, 2] > 180) & (p[: h // 5, : w // 4, 1] < 80)).sum()  # noqa: E731
    assert red(left) > 20 and red(right) > 20, "both panels are labelled"


def test_handwriting_answers_json_with_text(frontend_host):
    canvas = fe.handwriting_canvas()
    assert canvas.shape[:2] == (fe.CANVAS_H, fe.CANVAS_W)
    resp = _post(frontend_host, "handwritten", *fe.form(fe.canvas_jpeg(canvas), "handwritten.jpg"))
    assert resp.status == 200, resp.body[:300]
    assert resp.content_type.split(";")[0] == "application/json"
    _cors_ok(resp)
    data = json.loads(resp.body)
    assert set(data) == {"count", "timecost", "text"}
    assert data["text"] == HAND_TEXT and data["count"] == len(HAND_TEXT)
    assert isinstance(data["timecost"], float) and 0 < data["timecost"] < 10


def test_cors_preflight_from_another_origin_succeeds(frontend_host):
    for e in catalog.ENDPOINTS:
        resp = request(frontend_host.url(f"/api/{e.compat_function}"), method="OPTIONS", headers={
            "Origin": fe.FRONTEND_ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert 200 <= resp.status < 300, (e.compat_function, resp.status)
        _cors_ok(resp)
        assert "POST" in resp.headers.get("Access-Control-Allow-Methods", "")
        assert "content-type" in resp.headers.get("Access-Control-Allow-Headers", "").lower()


def test_the_httptrigger_routes_keep_todays_json(frontend_host):
    jpeg = fe.compressor_jpeg(fe.photo("people1.jpeg"))
    for e in catalog.ENDPOINTS:
        resp = _post(frontend_host, e.function, *fe.form(jpeg))
        assert resp.status == 200, (e.function, resp.body[:300])
        assert resp.content_type.split(";")[0] == "application/json"
        data = json.loads(resp.body)
        assert {"model", "image", "timing_ms"} <= set(data), e.function


@pytest.mark.parametrize("body,ctype,status", [
    (b"", None, 400),                                    # the form without its file: "Request Error"
    (b"not a picture", "image/jpeg", 415),
])
def test_bad_input_is_a_request_error(frontend_host, body, ctype, status):
    if ctype is None:
        payload = (f"--{fe.BOUNDARY}\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n"
                   f"--{fe.BOUNDARY}--\r\n").encode()
        resp = _post(frontend_host, "humanpose", payload, f"multipart/form-data; boundary={fe.BOUNDARY}")
    else:
        resp = _post(frontend_host, "humanpose", *fe.form(body))
    assert resp.status == status and json.loads(resp.body)["error"]["code"]
    _cors_ok(resp)


@pytest.fixture(scope="module")
def faulty_host(frontend_settings, app_host_factory):
    """The same app with a 1 ms model deadline for pose and nothing listening for detection."""
    from emulators.ovms.launcher import free_port

    host = app_host_factory({**frontend_settings, "HUMANPOSE_TIMEOUT_SECONDS": "0.001",
                             "OBJECTDETECTION_PORT": str(free_port())})
    try:
        yield host
    finally:
        host.stop()


def test_backend_faults_get_the_statuses_the_frontend_reads(faulty_host):
    jpeg = fe.compressor_jpeg(fe.photo("people1.jpeg"))
    expected = {"humanpose": (408, "model_timeout"), "objectdetection": (500, "model_unavailable"),
                "HttpTriggerHumanPose": (504, "model_timeout"),
                "HttpTriggerObjectDetection": (503, "model_unavailable")}
    for function, (status, code) in expected.items():
        resp = _post(faulty_host, function, *fe.form(jpeg))
        assert (resp.status, json.loads(resp.body)["error"]["code"]) == (status, code), function
        _cors_ok(resp)
