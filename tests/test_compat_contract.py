"""The compatibility contracts of shared.http (in process, a probe task behind an in-memory adapter):

- ORIGINAL (``/api/humanpose`` ...): the original OVaaS answer by default (a JPEG, or the original
  JSON for a JSON endpoint), this app's JSON only on an explicit opt-in (``format=json``, or an
  Accept preferring application/json strictly over the original media type), and the error
  statuses the web frontend shows the right message for;
- CVAT (``/api/cvat/detector``): always the bare list of shapes, errors with their own status;
- the function folders: each catalog endpoint has its compatibility folder, a function.json that
  points at the endpoint's own module, and a thin entry point.
"""
from __future__ import annotations

import base64
import importlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import azure.functions as func
import cv2
import numpy as np
import pytest

from shared import catalog, http, serving, tasks
from shared.errors import (BadModelOutput, InternalError, Misconfigured, ModelNotFound, ModelServerError,
                           ModelTimeout, ModelUnavailable, ModelUnreachable)
from shared.options import opt_bool
from tests.frontend_requests import AXIOS_ACCEPT
from tests.test_http_contract import MemoryAdapter, ProbeTask, multipart, png

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CompatResult:
    text: str
    wide: bool

    def to_dict(self) -> dict:
        return {"text": self.text, "wide": self.wide}

    def to_original_dict(self, timecost_s: float) -> dict:
        return {"count": len(self.text), "timecost": timecost_s, "text": self.text}

    def to_shapes(self) -> list:
        return [{"label": self.text, "points": [0, 0, 1, 1], "type": "rectangle", "confidence": 0.5}]


class CompatProbe(ProbeTask):
    """A probe whose picture is twice as wide with ``wide`` (as colorization's ``compare``)."""

    name = "compat-picture"

    def parse_options(self, raw):
        return opt_bool(raw, "wide", False)

    def postprocess(self, outputs, context, meta, options):
        return CompatResult("ab", options)

    def render(self, image, result, options):
        picture = np.full_like(image, 7)
        return np.hstack([picture, picture]) if result.wide else picture


class CompatJsonProbe(CompatProbe):
    name = "compat-json"


def _endpoint(task: str, answer: str, options=()) -> catalog.Endpoint:
    return catalog.Endpoint(task=task, task_class=f"{__name__}:{'CompatJsonProbe' if answer == 'json' else 'CompatProbe'}",
                            function=f"HttpTrigger{task}", compat_function=task, prefix="PROBE",
                            model_name="probe-model", omz_model="probe-model", sample_images=("people1.jpeg",),
                            original_answer=answer, original_options=options)


PICTURE_EP = _endpoint("compat-picture", catalog.ORIGINAL_PICTURE, (("wide", "true"),))
JSON_EP = _endpoint("compat-json", catalog.ORIGINAL_JSON)


@pytest.fixture
def adapter(monkeypatch):
    a = MemoryAdapter()
    monkeypatch.setattr(catalog, "ENDPOINTS", catalog.ENDPOINTS + (PICTURE_EP, JSON_EP))
    monkeypatch.setattr(serving, "get_adapter", lambda settings: a)
    for ep in (PICTURE_EP, JSON_EP):
        tasks._instances.pop(ep.task, None)
    yield a
    for ep in (PICTURE_EP, JSON_EP):
        tasks._instances.pop(ep.task, None)


def call(task, contract, body=None, headers=None, params=None, method="POST"):
    """POST the frontend's request (multipart, field image, image.jpg, image/jpeg) unless told."""
    if body is None:
        form = multipart({}, {"image": ("image.jpg", cv2.imencode(".jpg", np.zeros((4, 6, 3), np.uint8))[1]
                                        .tobytes(), "image/jpeg")})
        body, headers = form["body"], {**form["headers"], **(headers or {})}
    req = func.HttpRequest(method, f"http://localhost/api/{task}", headers=headers or {}, params=params or {},
                           body=body)
    resp = http.handle(req, task, None, contract)
    data = resp.get_body()
    if resp.mimetype == "application/json":
        data = json.loads(data)
    return resp, data


def decoded(body: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


# ---- ORIGINAL: the answer's form ----------------------------------------------------------------

@pytest.mark.parametrize("accept", [AXIOS_ACCEPT, None, "*/*", "image/*", "text/html,*/*;q=0.8",
                                    "application/json;q=0.5, */*"])
def test_original_picture_endpoint_answers_a_jpeg_by_default(adapter, accept):
    """The frontend's request (axios's Accept) gets the picture, with the original's option
    defaults applied (here: twice as wide, as colorization's side-by-side)."""
    resp, body = call(PICTURE_EP.task, http.ORIGINAL, headers={"Accept": accept} if accept else {})
    assert resp.status_code == 200 and resp.mimetype == "image/jpeg"
    assert decoded(body).shape == (4, 12, 3)


@pytest.mark.parametrize("how", [{"headers": {"Accept": "application/json"}},
                                 {"headers": {"Accept": "application/json, */*;q=0.8"}},
                                 {"headers": {"Accept": "application/json, image/*;q=0.5"}},
                                 {"params": {"format": "json"}},
                                 {"headers": {"Accept": AXIOS_ACCEPT}, "params": {"format": "JSON"}}])
def test_original_picture_endpoint_gives_json_on_explicit_opt_in(adapter, how):
    resp, data = call(PICTURE_EP.task, http.ORIGINAL, **how)
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert data["text"] == "ab" and data["wide"] is False  # the original's defaults are not applied
    assert data["model"] == {"name": "probe-model", "version": "3"} and "timing_ms" in data


def test_original_picture_format_and_png(adapter):
    resp, body = call(PICTURE_EP.task, http.ORIGINAL, params={"format": "png"})
    assert resp.mimetype == "image/png" and decoded(body).shape == (4, 12, 3)
    resp, body = call(PICTURE_EP.task, http.ORIGINAL, headers={"Accept": "image/png, */*;q=0.5"})
    assert resp.mimetype == "image/png"
    resp, body = call(PICTURE_EP.task, http.ORIGINAL, params={"wide": "false"})
    assert resp.mimetype == "image/jpeg" and decoded(body).shape == (4, 6, 3)  # the client's option wins


@pytest.mark.parametrize("accept", [AXIOS_ACCEPT, None, "application/json", "*/*"])
def test_original_json_endpoint_answers_count_timecost_text(adapter, accept):
    resp, data = call(JSON_EP.task, http.ORIGINAL, headers={"Accept": accept} if accept else {})
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert set(data) == {"count", "timecost", "text"}
    assert data["text"] == "ab" and data["count"] == 2
    assert isinstance(data["timecost"], float) and data["timecost"] >= 0
    assert "inference" in resp.headers["Server-Timing"]


def test_original_json_endpoint_full_json_and_picture_on_request(adapter):
    resp, data = call(JSON_EP.task, http.ORIGINAL, params={"format": "json"})
    assert set(data) >= {"text", "model", "image", "timing_ms"} and "count" not in data
    for how in ({"params": {"render": "true"}}, {"headers": {"Accept": "image/jpeg"}}):
        resp, body = call(JSON_EP.task, http.ORIGINAL, **how)
        assert resp.mimetype == "image/jpeg" and decoded(body).shape == (4, 6, 3)


def test_original_bad_option_is_still_400(adapter):
    resp, data = call(PICTURE_EP.task, http.ORIGINAL, params={"format": "gif"})
    assert resp.status_code == 400 and data["error"]["code"] == "invalid_option"


# ---- ORIGINAL: error statuses the frontend reads ------------------------------------------------

@pytest.mark.parametrize("exc,status", [
    (ModelTimeout("deadline"), 408),                      # "Server Timeout"
    (ModelUnavailable("down"), 500),                      # "Server Error"
    (ModelUnreachable("nothing listening"), 500),
    (ModelNotFound("no such model"), 500),
    (Misconfigured("setting X is wrong"), 500),
    (BadModelOutput("wrong model"), 500),
    (ModelServerError("rejected"), 500),
    (InternalError("bug"), 500),
    (RuntimeError("a true bug"), 500),
])
def test_original_backend_faults_get_the_frontends_statuses(adapter, exc, status):
    adapter.fail = exc
    resp, data = call(PICTURE_EP.task, http.ORIGINAL, headers={"Accept": AXIOS_ACCEPT})
    assert resp.status_code == status
    assert resp.mimetype == "application/json" and set(data["error"]) == {"code", "message"}
    if isinstance(exc, ModelUnavailable):
        assert resp.headers["Retry-After"].isdigit()
    # the app's own routes keep their statuses
    adapter.fail = exc
    own, _ = call(PICTURE_EP.task, http.OVAAS)
    assert own.status_code == getattr(exc, "status", 500)


@pytest.mark.parametrize("kwargs,status", [
    ({"body": b"", "headers": {"Content-Type": "image/jpeg"}}, 400),
    ({"body": b"hello", "headers": {"Content-Type": "image/jpeg"}}, 415),
    ({"body": b"hello", "headers": {"Content-Type": "text/plain"}}, 415),
    ({"method": "GET", "body": b""}, 405),
])
def test_original_client_errors_keep_their_4xx(adapter, kwargs, status):
    resp, data = call(PICTURE_EP.task, http.ORIGINAL, **kwargs)
    assert resp.status_code == status and "error" in data


# ---- CVAT ---------------------------------------------------------------------------------------

def test_cvat_answers_the_bare_list_whatever_is_asked(adapter):
    body = json.dumps({"image": base64.b64encode(png()).decode(), "threshold": 0.3,
                       "render": True, "format": "png"}).encode()
    for accept in ("application/json", "*/*", "image/png"):
        resp, data = call(PICTURE_EP.task, http.CVAT, body=body,
                          headers={"Content-Type": "application/json", "Accept": accept})
        assert resp.status_code == 200 and resp.mimetype == "application/json"
        assert data == [{"label": "ab", "points": [0, 0, 1, 1], "type": "rectangle", "confidence": 0.5}]


def test_cvat_errors_keep_their_status(adapter):
    adapter.fail = ModelTimeout("deadline")
    body = json.dumps({"image": base64.b64encode(png()).decode()}).encode()
    resp, data = call(PICTURE_EP.task, http.CVAT, body=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 504 and data["error"]["code"] == "model_timeout"
    adapter.fail = None
    resp, data = call(PICTURE_EP.task, http.CVAT, body=b'{"image": "!!"}',
                      headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and data["error"]["code"] == "invalid_base64"


# ---- the function folders -----------------------------------------------------------------------

def _trigger(spec: dict) -> dict:
    return next(b for b in spec["bindings"] if b["type"] == "httpTrigger")


@pytest.mark.parametrize("endpoint", catalog.ENDPOINTS, ids=lambda e: e.compat_function)
def test_compat_folder_points_at_the_endpoints_module(endpoint, monkeypatch):
    """``/api/<compat_function>`` (no route: the folder's name, as the original backend had it) runs
    ``compat`` of the endpoint's own module, which hands the request to its task under ORIGINAL."""
    spec = json.loads((ROOT / endpoint.compat_function / "function.json").read_text())
    own = json.loads((ROOT / endpoint.function / "function.json").read_text())
    assert "route" not in _trigger(spec)
    assert (ROOT / endpoint.compat_function / spec["scriptFile"]).resolve() == \
        (ROOT / endpoint.function / "__init__.py").resolve()
    assert spec["entryPoint"] == "compat"
    # same methods and output; the frontend's route is anonymous (it cannot hold a key), the API's
    # takes a function key (tests/test_function_keys.py)
    assert _trigger(spec)["authLevel"] == "anonymous" and _trigger(own)["authLevel"] == "function"
    assert [{k: v for k, v in b.items() if k != "authLevel"} for b in spec["bindings"]] == \
        [{k: v for k, v in b.items() if k != "authLevel"} for b in own["bindings"]]
    module = importlib.import_module(endpoint.function)
    assert list(inspect.signature(module.compat).parameters) == [_trigger(spec)["name"], "context"]
    calls = []
    monkeypatch.setattr(module, "handle", lambda *a: calls.append(a) or "answer")
    req, ctx = func.HttpRequest("POST", "/api/x", body=b""), object()
    assert module.compat(req, ctx) == "answer"
    assert calls == [(req, endpoint.task, ctx, http.ORIGINAL)]


def test_cvat_folder(monkeypatch):
    spec = json.loads((ROOT / "CvatDetector" / "function.json").read_text())
    detection = catalog.by_task("detection")
    assert _trigger(spec)["route"] == "cvat/detector" and "post" in _trigger(spec)["methods"]
    assert (ROOT / "CvatDetector" / spec["scriptFile"]).resolve() == \
        (ROOT / detection.function / "__init__.py").resolve()
    module = importlib.import_module(detection.function)
    calls = []
    monkeypatch.setattr(module, "handle", lambda *a: calls.append(a) or "answer")
    req, ctx = func.HttpRequest("POST", "/api/cvat/detector", body=b""), object()
    assert getattr(module, spec["entryPoint"])(req, ctx) == "answer"
    assert calls == [(req, "detection", ctx, http.CVAT)]


def test_the_local_host_routes_the_compat_folders():
    """The local host honours scriptFile/entryPoint: the routes and the functions they run."""
    from emulators.functions_host.discovery import discover

    found = {s.url_path("api"): (s.script_file, s.entry_point) for s in discover(ROOT)}
    for e in catalog.ENDPOINTS:
        assert found[f"/api/{e.compat_function}"] == ((ROOT / e.function / "__init__.py").resolve(), "compat")
        assert found[f"/api/{e.function}"] == ((ROOT / e.function / "__init__.py").resolve(), "main")
    assert found["/api/cvat/detector"][1] == "cvat"
