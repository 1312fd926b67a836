"""The two modes of the local Functions host answer alike, for every function folder of this app.

One model server with the four generated stand-ins (``generated_repo`` of tests/test_openapi.py)
and two pairs of hosts of this app: in each pair, one host runs the in-house invocation path (in
this interpreter) and one runs Microsoft's Python worker (azure-functions-runtime-v1 on Python 3.13,
from .venv313). The "ok" pair is pointed at the served models; the "broken" pair's settings give
503 (unknown model, nothing listening) and 502 (the wrong model for the task).

Every request below goes to both hosts of a pair with the same invocation id (the
``x-test-invocation-id`` header the test hosts honour), and any difference fails:

* the status;
* every header except ``Date`` and ``Server`` (the moment, and aiohttp's and Python's versions),
  names compared case-insensitively and in any order (the worker sends headers in a protobuf map,
  which has none), ``x-invocation-id`` included;
  and ``Server-Timing`` with its ``dur=`` numbers masked (wall-clock stage times; the metric
  names are compared);
* the body byte for byte, except clock readings in JSON answers: the values of ``timing_ms``
  (the same stage times), and the health report's ``uptime_s`` and ``checked_at``; their keys are
  compared, their values are not, and Content-Length is then left out too; likewise the original
  handwriting answer's ``timecost`` (seconds of inference).

The requests: every request form, picture answer and client error of each model endpoint, health
and what the host front refuses by itself, the web frontend's requests on the original routes
(/api/humanpose, ...), and CVAT's on /api/cvat/detector.
"""
from __future__ import annotations

import base64
import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, NamedTuple, Optional, Tuple

import cv2
import numpy as np
import pytest

from emulators.ovms.launcher import start_server
from shared import catalog
from tests.fixtures.functions_host import INVOCATION_ID_HEADER, start_functions_host
from tests.httpclient import request as http_request
from tests.frontend_requests import AXIOS_ACCEPT
from tests.frontend_requests import form as frontend_form
from tests.test_openapi import (COLOR, DETECT, ENDPOINTS, HAND, POSE, _multipart, broken_env, four_model_env,
                                generated_repo, make_image, server_config, write_charlist)

pytestmark = pytest.mark.slow

VOLATILE_HEADERS = {"date", "server"}
HEALTH = "/api/health"


class Req(NamedTuple):
    method: str
    path: str
    body: Optional[bytes] = None
    headers: Dict[str, str] = {}


def _json(payload: dict) -> Tuple[bytes, Dict[str, str]]:
    return json.dumps(payload).encode(), {"Content-Type": "application/json"}


BAD_OPTION = {POSE: "threshold=abc", HAND: "lines=sideways", COLOR: "quality=best",
              DETECT: "max_detections=0"}
GOOD_OPTION = {POSE: ("threshold", "0.3"), HAND: ("lines", "single"), COLOR: ("compare", "true"),
               DETECT: ("threshold", "0.3")}


def endpoint_cases() -> Dict[str, Req]:
    """Every request form, picture answers and client error of each model endpoint."""
    jpeg, png = make_image(), make_image(fmt=".png")
    cases: Dict[str, Req] = {}
    for path in ENDPOINTS:
        name = path.rsplit("HttpTrigger", 1)[-1]
        key, value = GOOD_OPTION[path]
        b64 = base64.b64encode(jpeg).decode()
        form, form_type = _multipart(jpeg, {key: value})
        cases.update({
            f"{name}-raw-jpeg": Req("POST", path, jpeg, {"Content-Type": "image/jpeg"}),
            f"{name}-raw-png-query-option": Req("POST", f"{path}?{key}={value}", png,
                                                {"Content-Type": "image/png"}),
            f"{name}-multipart": Req("POST", path, form, {"Content-Type": form_type}),
            f"{name}-json-base64": Req("POST", path, *_json({"image": b64, key: value})),
            f"{name}-json-data-url": Req("POST", path,
                                         *_json({"image": f"data:image/jpeg;base64,{b64}"})),
            f"{name}-accept-png": Req("POST", path, jpeg, {"Content-Type": "image/jpeg",
                                                           "Accept": "image/png"}),
            f"{name}-render-jpeg": Req("POST", f"{path}?render=true&format=jpeg", png,
                                       {"Content-Type": "image/png"}),
            f"{name}-not-an-image": Req("POST", path, b"\xff\xd8 not a jpeg at all",
                                        {"Content-Type": "image/jpeg"}),
            f"{name}-empty-body": Req("POST", path, b"", {"Content-Type": "image/jpeg"}),
            f"{name}-bad-option": Req("POST", f"{path}?{BAD_OPTION[path]}", jpeg,
                                      {"Content-Type": "image/jpeg"}),
            f"{name}-bad-base64": Req("POST", path, *_json({"image": "@@@"})),
            f"{name}-invalid-json": Req("POST", path, b'{"image": ', {"Content-Type": "application/json"}),
            f"{name}-unsupported-type": Req("POST", path, b"hello", {"Content-Type": "text/plain"}),
            f"{name}-form-without-image": Req("POST", path, b"a=1&b=2",
                                              {"Content-Type": "application/x-www-form-urlencoded"}),
            f"{name}-get-405": Req("GET", path),
            f"{name}-put-405": Req("PUT", path, jpeg, {"Content-Type": "image/jpeg"}),
            f"{name}-head-405": Req("HEAD", path),
            f"{name}-gzip-encoded-garbage": Req("POST", path, b"not gzip",
                                                {"Content-Type": "image/jpeg",
                                                 "Content-Encoding": "gzip"}),
        })
    return cases


def host_cases() -> Dict[str, Req]:
    """The health function and what the host front answers by itself."""
    return {
        "health-get": Req("GET", HEALTH),
        "health-head": Req("HEAD", HEALTH),
        "health-post": Req("POST", HEALTH, b"{}", {"Content-Type": "application/json"}),
        "no-such-route": Req("GET", "/api/NoSuchFunction"),
        "dotdot-path": Req("POST", "/api/x/%2e%2e/HttpTriggerHumanPose", b""),
        "too-many-form-fields": Req("POST", POSE, b"&".join(b"k%d=v" % i for i in range(2000)),
                                    {"Content-Type": "application/x-www-form-urlencoded"}),
        "cors-preflight": Req("OPTIONS", POSE, None, {"Origin": "http://web.example",
                                                      "Access-Control-Request-Method": "POST"}),
    }


def compat_cases() -> Dict[str, Req]:
    """The web frontend's requests on the original routes, and CVAT's on its route."""
    jpeg = make_image()
    axios = {"Accept": AXIOS_ACCEPT}
    form, form_type = frontend_form(jpeg)  # the web frontend's own multipart request
    cases: Dict[str, Req] = {}
    for e in catalog.ENDPOINTS:
        path = f"/api/{e.compat_function}"
        cases.update({
            f"original-{e.compat_function}-frontend": Req("POST", path, form, {"Content-Type": form_type, **axios}),
            f"original-{e.compat_function}-format-json": Req("POST", f"{path}?format=json", jpeg,
                                                             {"Content-Type": "image/jpeg"}),
            f"original-{e.compat_function}-accept-json": Req("POST", path, jpeg, {"Content-Type": "image/jpeg",
                                                                                 "Accept": "application/json"}),
            f"original-{e.compat_function}-not-an-image": Req("POST", path, b"\xff\xd8 nope",
                                                              {"Content-Type": "image/jpeg", **axios}),
            f"original-{e.compat_function}-get-405": Req("GET", path),
        })
    b64 = base64.b64encode(jpeg).decode()
    cases.update({
        "cvat-detector": Req("POST", CVAT, *_json({"image": b64, "threshold": 0.3})),
        "cvat-default-threshold": Req("POST", CVAT, *_json({"image": b64})),
        "cvat-bad-base64": Req("POST", CVAT, *_json({"image": "@@@"})),
        "cvat-no-image": Req("POST", CVAT, *_json({"threshold": 0.5})),
        "cvat-bad-threshold": Req("POST", CVAT, *_json({"image": b64, "threshold": "high"})),
    })
    return cases


CVAT = "/api/cvat/detector"
CASES = {**endpoint_cases(), **host_cases(), **compat_cases()}
#: what the "broken" pair is asked: 503 for pose (nothing listening) and detection (unknown model),
#: 502 for colorization (served the detection model), and the health report of all that
BROKEN_CASES = {"pose-503": Req("POST", POSE, make_image(), {"Content-Type": "image/jpeg"}),
                "detection-503": Req("POST", DETECT, make_image(), {"Content-Type": "image/jpeg"}),
                "colorization-502": Req("POST", COLOR, make_image(), {"Content-Type": "image/jpeg"}),
                "original-humanpose-500": Req("POST", "/api/humanpose", make_image(), {"Content-Type": "image/jpeg"}),
                "original-colorization-500": Req("POST", "/api/colorization", make_image(),
                                                 {"Content-Type": "image/jpeg"}),
                "cvat-503": Req("POST", CVAT, *_json({"image": base64.b64encode(make_image()).decode()})),
                "health-503": Req("GET", HEALTH)}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """{"ok": (in-house host, worker host), "broken": (...)} around one model server."""
    root = tmp_path_factory.mktemp("host-modes")
    models = generated_repo(root / "models")
    charlist = write_charlist(root / "chars.txt")
    server = start_server(["--config_path", str(server_config(root, models))], timeout=120)
    envs = {"ok": four_model_env(server.port, charlist), "broken": broken_env(server.port, charlist)}
    plan = [(which, mode) for which in envs for mode in ("in-house", "worker")]
    started: Dict[Tuple[str, str], object] = {}
    try:
        with ThreadPoolExecutor(len(plan)) as pool:
            futures = {key: pool.submit(start_functions_host, env=envs[key[0]], log_dir=root,
                                        timeout=120, mode=key[1]) for key in plan}
            for key, f in futures.items():
                if f.exception() is None:
                    started[key] = f.result()
            for f in futures.values():
                f.result()  # raise the first start failure (or skip)
        assert {h.mode for h in started.values()} == {"in-house", "worker"}
        yield {which: (started[(which, "in-house")], started[(which, "worker")]) for which in envs}
    finally:
        for h in started.values():
            h.stop()
        server.stop()


class Answer(NamedTuple):
    status: int
    headers: List[Tuple[str, str]]
    body: bytes


def ask(host, req: Req, invocation_id: str) -> Answer:
    headers = {**req.headers, INVOCATION_ID_HEADER: invocation_id}
    r = http_request(host.url(req.path), req.body, method=req.method, headers=headers, timeout=60)
    return Answer(r.status, [(k.lower(), v) for k, v in r.headers.items()], r.body)


CLOCK_READINGS = {"uptime_s", "checked_at", "timecost"}


def _without_timings(value):
    if isinstance(value, dict):
        return {k: ({t: "<ms>" for t in v} if k == "timing_ms" and isinstance(v, dict)
                    else "<clock>" if k in CLOCK_READINGS else _without_timings(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def comparable(answer: Answer) -> Tuple[int, List[Tuple[str, str]], object]:
    """What must be equal between the two modes (see the module docstring)."""
    headers = [(k, re.sub(r"dur=[0-9.]+", "dur=<ms>", v) if k == "server-timing" else v)
               for k, v in answer.headers if k not in VOLATILE_HEADERS]
    body: object = answer.body
    ctype = dict(headers).get("content-type", "")
    if ctype.startswith("application/json") and answer.body:
        data = json.loads(answer.body)
        normalized = _without_timings(data)
        if normalized != data:
            body = normalized
            headers = [(k, v) for k, v in headers if k != "content-length"]
    return answer.status, sorted(headers), body


def assert_same(pair, req: Req) -> Answer:
    """Send ``req`` to both hosts of ``pair``; assert equal answers; return the in-house one."""
    invocation_id = str(uuid.uuid4())
    inhouse, worker = (ask(h, req, invocation_id) for h in pair)
    a, b = comparable(inhouse), comparable(worker)
    assert a[0] == b[0], f"status: in-house {a[0]}, worker {b[0]}"
    assert a[1] == b[1], f"headers differ:\n in-house {a[1]}\n worker   {b[1]}"
    assert a[2] == b[2], f"bodies differ:\n in-house {inhouse.body[:300]!r}\n worker   {worker.body[:300]!r}"
    for answer in (inhouse, worker):
        ids = [v for k, v in answer.headers if k == "x-invocation-id"]
        assert ids in ([], [invocation_id])
    return inhouse


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_answer_in_both_modes(pairs, case):
    answer = assert_same(pairs["ok"], CASES[case])
    assert answer.status < 500, answer.body[:300]
    if case.endswith(("-raw-jpeg", "-multipart", "-json-base64", "-json-data-url")):
        assert answer.status == 200, answer.body[:300]
    if CASES[case].path in ENDPOINTS and CASES[case].method in ("POST", "PUT"):
        assert ("x-invocation-id" in dict(answer.headers)) == (answer.status != 413)


@pytest.mark.parametrize("case", sorted(BROKEN_CASES))
def test_same_server_errors_in_both_modes(pairs, case):
    answer = assert_same(pairs["broken"], BROKEN_CASES[case])
    # the original routes answer every backend fault 500 ("Server Error" in the web frontend)
    assert answer.status in ((500,) if case.startswith("original-") else (502, 503)), answer.body[:300]


def test_every_function_folder_was_compared():
    from emulators.functions_host.discovery import discover
    from scripts.tooling.modelsearch import PROJECT_ROOT

    routes = {spec.url_path("api").lower() for spec in discover(PROJECT_ROOT)}
    asked = {c.path.split("?")[0].lower() for c in CASES.values()}
    assert routes <= asked, f"not compared: {routes - asked}"


def test_worker_passes_binary_bodies_intact(pairs):
    """A PNG goes in as raw bytes and comes back rendered with nothing drawn on it (threshold
    above every detection): the same pixels, exactly, through the worker; a body sent as a
    string would not even decode."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    png = cv2.imencode(".png", pixels)[1].tobytes()
    assert b"\x00" in png and any(b > 0x7F for b in png)  # not text
    req = Req("POST", f"{DETECT}?threshold=0.99&render=true&format=png", png,
              {"Content-Type": "application/octet-stream"})
    inhouse, worker = pairs["ok"]
    answer = ask(worker, req, str(uuid.uuid4()))
    assert answer.status == 200 and dict(answer.headers)["content-type"] == "image/png", answer.body[:200]
    back = cv2.imdecode(np.frombuffer(answer.body, np.uint8), cv2.IMREAD_UNCHANGED)
    assert back.shape == pixels.shape and np.array_equal(back, pixels)
    assert_same(pairs["ok"], req)
