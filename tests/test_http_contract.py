"""shared.http: the three request forms, content negotiation and every error path.

A small task ('probe') and an in-memory adapter stand in for a model, so these tests check the
contract itself; the real tasks are exercised through it in their own tests.
"""
from __future__ import annotations

import base64
import io
import json
import logging
from dataclasses import dataclass

import azure.functions as func
import cv2
import numpy as np
import pytest
from PIL import Image

from shared import catalog, http, serving, tasks
from shared.errors import ModelTimeout, ModelUnavailable
from shared.options import opt_float
from shared.serving.base import InferenceAdapter, ModelMetadata, ModelStatus, TensorInfo
from shared.tasks.base import Task

PROBE = catalog.Endpoint(task="probe", task_class=f"{__name__}:ProbeTask", function="HttpTriggerProbe",
                         compat_function="probe", prefix="PROBE", model_name="probe-model",
                         omz_model="probe-model", sample_images=("people1.jpeg",))


@dataclass(frozen=True)
class ProbeResult:
    mean_bgr: tuple
    scale: float

    def to_dict(self) -> dict:
        return {"mean_bgr": [float(v) for v in self.mean_bgr], "scale": self.scale}


class ProbeTask(Task):
    name = "probe"

    def parse_options(self, raw):
        return opt_float(raw, "scale", 1.0, 0.0, 10.0)

    def bind(self, meta):
        return meta.only_input().name

    def preprocess(self, image, meta, options):
        return {"x": image.reshape(-1, 3).mean(axis=0).astype(np.float32)}, None

    def postprocess(self, outputs, context, meta, options):
        return ProbeResult(tuple(outputs["y"].tolist()), options)

    def render(self, image, result, options):
        return np.full_like(image, 7)


class MemoryAdapter(InferenceAdapter):
    def __init__(self):
        self.fail = None

    def metadata(self):
        return ModelMetadata("probe-model", "3", {"x": TensorInfo("x", (3,), "float32")},
                             {"y": TensorInfo("y", (3,), "float32")})

    def status(self):
        return ModelStatus("probe-model", "3", True, "AVAILABLE")

    def infer(self, inputs):
        if self.fail:
            raise self.fail
        return {"y": inputs["x"]}


@pytest.fixture
def adapter(monkeypatch):
    a = MemoryAdapter()
    monkeypatch.setattr(catalog, "ENDPOINTS", catalog.ENDPOINTS + (PROBE,))
    monkeypatch.setattr(serving, "get_adapter", lambda settings: a)
    tasks._instances.pop("probe", None)
    yield a
    tasks._instances.pop("probe", None)


def png(color=(10, 20, 30), size=(6, 4)) -> bytes:
    img = np.zeros((size[1], size[0], 3), np.uint8)
    img[:] = color
    return cv2.imencode(".png", img)[1].tobytes()


def call(method="POST", body=b"", headers=None, params=None):
    req = func.HttpRequest(method, "http://localhost/api/probe", headers=headers or {}, params=params or {},
                           body=body)
    resp = http.handle(req, "probe")
    data = resp.get_body()
    if resp.mimetype == "application/json":
        data = json.loads(data)
    return resp, data


def as_json(payload) -> dict:
    return {"body": json.dumps(payload).encode(), "headers": {"Content-Type": "application/json"}}


def multipart(fields: dict, files: dict, boundary="----ovaasBoundary7MA4YWxk") -> dict:
    parts = []
    for k, v in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for k, (filename, data, ctype) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{filename}"\r\n'
                     f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return {"body": body, "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}"}}


def assert_error(resp, data, status, code):
    assert resp.status_code == status, data
    assert resp.mimetype == "application/json"
    assert set(data) == {"error"} and set(data["error"]) == {"code", "message"}
    assert data["error"]["code"] == code
    assert "Traceback" not in data["error"]["message"]


# ---- the three request forms ------------------------------------------------------------------

def test_json_base64(adapter):
    resp, data = call(**as_json({"image": base64.b64encode(png()).decode(), "scale": 2}))
    assert resp.status_code == 200
    assert data["mean_bgr"] == [10.0, 20.0, 30.0] and data["scale"] == 2.0
    assert data["model"] == {"name": "probe-model", "version": "3"}
    assert data["image"] == {"width": 6, "height": 4}
    assert set(data["timing_ms"]) >= {"decode", "preprocess", "inference", "postprocess", "total"}
    assert all(isinstance(v, float) for v in data["timing_ms"].values())
    assert resp.headers.get("x-invocation-id")


@pytest.mark.parametrize("prefix", ["data:image/png;base64,", "data:;base64,", "DATA:image/png;name=a.png;base64,"])
def test_json_data_url(adapter, prefix):
    resp, data = call(**as_json({"image": prefix + base64.b64encode(png()).decode()}))
    assert resp.status_code == 200 and data["mean_bgr"] == [10.0, 20.0, 30.0]


def test_json_base64_with_newlines_urlsafe_and_no_padding(adapter):
    b64 = base64.urlsafe_b64encode(png((200, 250, 251))).decode().rstrip("=")
    wrapped = "\n".join(b64[i:i + 60] for i in range(0, len(b64), 60))
    resp, data = call(**as_json({"image": wrapped}))
    assert resp.status_code == 200 and data["mean_bgr"] == [200.0, 250.0, 251.0]


def test_multipart_file_and_fields(adapter):
    resp, data = call(**multipart({"scale": "3.5"}, {"image": ("a.png", png(), "image/png")}))
    assert resp.status_code == 200 and data["scale"] == 3.5 and data["mean_bgr"] == [10.0, 20.0, 30.0]


def test_multipart_base64_field(adapter):
    resp, data = call(**multipart({"image": base64.b64encode(png()).decode()}, {}))
    assert resp.status_code == 200


def test_raw_body_with_query_options(adapter):
    for ctype in ("image/png", "application/octet-stream", "image/jpeg"):
        resp, data = call(body=png(), headers={"Content-Type": ctype}, params={"scale": "4"})
        assert resp.status_code == 200 and data["scale"] == 4.0, ctype


def test_raw_body_without_content_type(adapter):
    resp, data = call(body=png())
    assert resp.status_code == 200


def test_body_options_override_query(adapter):
    resp, data = call(params={"scale": "4"}, **as_json({"image": base64.b64encode(png()).decode(), "scale": 5}))
    assert data["scale"] == 5.0


# ---- answers as pictures -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,mime", [
    ({"params": {"render": "true"}}, "image/jpeg"),
    ({"params": {"render": "1", "format": "png"}}, "image/png"),
    ({"headers": {"Accept": "image/png"}}, "image/png"),
    ({"headers": {"Accept": "image/jpeg"}}, "image/jpeg"),
    ({"headers": {"Accept": "image/*;q=0.9, application/json;q=0.5"}}, "image/jpeg"),
])
def test_rendered_picture(adapter, kwargs, mime):
    headers = {"Content-Type": "image/png", **kwargs.get("headers", {})}
    resp, body = call(body=png(), headers=headers, params=kwargs.get("params"))
    assert resp.status_code == 200 and resp.mimetype == mime
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (4, 6, 3) and abs(int(img[0, 0, 0]) - 7) <= 2  # the task's render
    assert "inference" in resp.headers.get("Server-Timing", "")


@pytest.mark.parametrize("accept", ["*/*", "application/json", "text/html,*/*;q=0.8", ""])
def test_json_is_the_default(adapter, accept):
    resp, data = call(body=png(), headers={"Content-Type": "image/png", "Accept": accept})
    assert resp.mimetype == "application/json" and "mean_bgr" in data


# ---- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405(adapter, method):
    resp, data = call(method, body=png())
    assert_error(resp, data, 405, "method_not_allowed")
    assert resp.headers["Allow"] == "POST"


@pytest.mark.parametrize("kwargs,status,code", [
    (as_json({"image": "!!!not base64!!!"}), 400, "invalid_base64"),
    (as_json({"image": "QUJD" + "*"}), 400, "invalid_base64"),
    (as_json({"image": 12345}), 400, "invalid_base64"),
    (as_json({"image": ["a"]}), 400, "invalid_base64"),
    (as_json({"image": "data:image/png,rawtext"}), 400, "invalid_base64"),
    (as_json({"image": ""}), 400, "missing_image"),
    (as_json({"picture": "QUJD"}), 400, "missing_image"),
    (as_json([1, 2, 3]), 400, "invalid_json"),
    (as_json("just a string"), 400, "invalid_json"),
    ({"body": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json"),
    ({"body": b"\xff\xfe\x00garbage", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json"),
    ({"body": b"", "headers": {"Content-Type": "application/json"}}, 400, "missing_image"),
    ({"body": b"", "headers": {"Content-Type": "image/png"}}, 400, "missing_image"),
    ({"body": b"", "headers": {}}, 400, "missing_image"),
    ({"body": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
    ({"body": b"hello", "headers": {"Content-Type": "image/png"}}, 415, "invalid_image"),
    ({"body": b"%PDF-1.7", "headers": {"Content-Type": "application/octet-stream"}}, 415, "invalid_image"),
    (as_json({"image": base64.b64encode(b"not an image at all").decode()}), 415, "invalid_image"),
    (as_json({"image": base64.b64encode(png()).decode(), "scale": "abc"}), 400, "invalid_option"),
    (as_json({"image": base64.b64encode(png()).decode(), "scale": 99}), 400, "invalid_option"),
    (as_json({"image": base64.b64encode(png()).decode(), "scale": True}), 400, "invalid_option"),
    (as_json({"image": base64.b64encode(png()).decode(), "render": "maybe"}), 400, "invalid_option"),
    (as_json({"image": base64.b64encode(png()).decode(), "format": "gif"}), 400, "invalid_option"),
])
def test_bad_requests_are_4xx_json(adapter, kwargs, status, code):
    resp, data = call(**kwargs)
    assert_error(resp, data, status, code)


def test_multipart_without_image(adapter):
    resp, data = call(**multipart({"scale": "1"}, {"other": ("a.png", png(), "image/png")}))
    assert_error(resp, data, 400, "missing_image")


def test_multipart_empty_file(adapter):
    resp, data = call(**multipart({}, {"image": ("a.png", b"", "image/png")}))
    assert_error(resp, data, 400, "missing_image")


def test_broken_multipart(adapter):
    resp, data = call(body=b"--x\r\nnonsense", headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert resp.status_code == 400


def test_truncated_image_is_415(adapter):
    jpg = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))[1].tobytes()
    resp, data = call(body=jpg[: len(jpg) // 2], headers={"Content-Type": "image/jpeg"})
    assert_error(resp, data, 415, "invalid_image")


def test_body_over_limit_is_413(adapter, monkeypatch):
    monkeypatch.setenv("MAX_BODY_BYTES", "1000")
    resp, data = call(body=b"\x00" * 1001, headers={"Content-Type": "image/png"})
    assert_error(resp, data, 413, "payload_too_large")
    big = base64.b64encode(b"\x00" * 2000).decode()
    resp, data = call(**as_json({"image": big}))
    assert resp.status_code == 413


def test_pixels_over_limit_is_413(adapter, monkeypatch):
    monkeypatch.setenv("MAX_IMAGE_PIXELS", "100")
    resp, data = call(body=png(size=(20, 20)), headers={"Content-Type": "image/png"})
    assert_error(resp, data, 413, "image_too_large")


@pytest.mark.parametrize("exc,status,code", [
    (ModelUnavailable("model 'probe' is unavailable"), 503, "model_unavailable"),
    (ModelTimeout("model 'probe' did not answer"), 504, "model_timeout"),
])
def test_backend_errors_keep_their_status(adapter, exc, status, code):
    adapter.fail = exc
    resp, data = call(body=png(), headers={"Content-Type": "image/png"})
    assert_error(resp, data, status, code)
    if status == 503:
        assert resp.headers["Retry-After"] == "1"


def test_bug_is_500_without_traceback(adapter, caplog):
    adapter.fail = ZeroDivisionError("secret internals")
    with caplog.at_level(logging.ERROR, logger="ovaas"):
        resp, data = call(body=png(), headers={"Content-Type": "image/png"})
    assert_error(resp, data, 500, "internal_error")
    assert "secret internals" not in data["error"]["message"]
    assert "ZeroDivisionError" in caplog.text  # the traceback goes to the log


@pytest.mark.parametrize("setting,value", [
    ("MAX_BODY_BYTES", "AccountKey=S3cr3tPastedHere=="),
    ("OVMS_TIMEOUT_SECONDS", "sk-live-S3cr3tPastedHere"),
    ("PROBE_PORT", "S3cr3tPastedHere"),
    ("OVMS_API", "S3cr3tPastedHere"),
    ("OVMS_CONNECT_TIMEOUT_SECONDS", "inf"),
])
def test_misconfigured_setting_is_503_naming_it_without_its_value(adapter, monkeypatch, caplog, setting, value):
    """A deployment fault, not a bug (503 + Retry-After, never 500), and a secret pasted into the
    wrong setting is shown neither to the caller nor in the log."""
    monkeypatch.setenv(setting, value)
    with caplog.at_level(logging.DEBUG):
        resp, data = call(body=png(), headers={"Content-Type": "image/png"})
    assert_error(resp, data, 503, "misconfigured")
    assert setting in data["error"]["message"] and resp.headers["Retry-After"] == "30"
    assert "S3cr3t" not in data["error"]["message"] and "S3cr3t" not in caplog.text
    assert setting in caplog.text


def test_one_structured_log_line_per_request_without_secrets(adapter, caplog, monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountKey=SECRETKEY123")
    image = png()
    with caplog.at_level(logging.INFO, logger="ovaas.request"):
        call(body=image, headers={"Content-Type": "image/png"})
        call("GET")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ovaas.request"]
    assert [l["status"] for l in lines] == [200, 405]
    assert lines[0]["function"] == "probe" and lines[0]["model"] == "probe-model:3"
    assert set(lines[0]["ms"]) >= {"decode", "inference", "total"} and lines[0]["invocation_id"]
    text = caplog.text
    assert "SECRETKEY123" not in text and base64.b64encode(image).decode()[:20] not in text


def test_invocation_id_comes_from_context(adapter):
    class Ctx:
        invocation_id = "abc-123"
        function_name = "HttpTriggerProbe"

    req = func.HttpRequest("POST", "http://x/api/p", headers={"Content-Type": "image/png"}, body=png())
    resp = http.handle(req, "probe", Ctx())
    assert resp.headers["x-invocation-id"] == "abc-123"


def test_pillow_formats_through_http(adapter):
    buf = io.BytesIO()
    Image.fromarray(np.full((5, 5, 3), (30, 20, 10), np.uint8)).save(buf, "WEBP", lossless=True)
    resp, data = call(body=buf.getvalue(), headers={"Content-Type": "image/webp"})
    assert resp.status_code == 200 and data["mean_bgr"] == [10.0, 20.0, 30.0]


@pytest.mark.parametrize("kind", ["urlencoded", "multipart"])
def test_a_form_with_too_many_fields_is_413_before_it_is_parsed(adapter, kind):
    """Azure's own host hands the whole body to the app: a million form fields cost a byte count
    here, not a werkzeug parse (which takes seconds), whatever host runs the app."""
    from shared.http import request as http_request

    parsed = []
    patch = pytest.MonkeyPatch()
    patch.setattr(func.HttpRequest, "_parse_form_data", lambda self: parsed.append(1))
    n = 200_000
    if kind == "urlencoded":
        body = b"&".join(b"k%d=v" % i for i in range(n))
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    else:
        part = b'--B\r\nContent-Disposition: form-data; name="k"\r\n\r\nv\r\n'
        body, headers = part * n + b"--B--\r\n", {"Content-Type": "multipart/form-data; boundary=B"}
    try:
        resp, data = call(body=body, headers=headers)
    finally:
        patch.undo()
    assert_error(resp, data, 413, "payload_too_large")
    assert f"more than {http_request.MAX_FORM_FIELDS} fields" in data["error"]["message"]
    assert parsed == []  # refused on a byte count: werkzeug never parsed the form
    # at the limit the form is parsed as before
    fields = {f"k{i}": "v" for i in range(http_request.MAX_FORM_FIELDS - 2)}
    resp, data = call(**multipart(fields, {"image": ("i.png", png(), "image/png")}))
    assert resp.status_code == 200, data


# ---- issue 25: what error answers repeat, and how strict data: URLs and padding are -------------

def test_unsupported_content_type_is_truncated_in_the_answer_and_the_log(adapter, caplog):
    ctype = "text/" + "x" * 8000
    with caplog.at_level(logging.INFO):
        resp, data = call(body=b"hello", headers={"Content-Type": ctype})
    assert_error(resp, data, 415, "unsupported_media_type")
    assert len(data["error"]["message"]) < 300 and "x" * 65 not in data["error"]["message"]
    assert "text/" + "x" * 59 in data["error"]["message"]  # the start is still shown
    logged = [r.getMessage() for r in caplog.records]
    assert logged and all("x" * 65 not in m for m in logged)
    resp, data = call(body=b"hello", headers={"Content-Type": "text/plain"})  # short: unchanged
    assert "'text/plain'" in data["error"]["message"]


@pytest.mark.parametrize("prefix", ["data:text/html;base64,", "data:application/pdf;base64,",
                                    "data:text/plain;charset=utf-8;base64,"])
def test_data_url_declaring_another_type_than_an_image_is_415(adapter, prefix):
    resp, data = call(**as_json({"image": prefix + base64.b64encode(png()).decode()}))
    assert_error(resp, data, 415, "unsupported_media_type")


@pytest.mark.parametrize("prefix", ["data:application/octet-stream;base64,", "data:image/webp;base64,"])
def test_data_url_of_unknown_or_other_image_type_is_sniffed(adapter, prefix):
    """Browsers label a file of unknown type octet-stream (or leave the type out: data:;base64,
    above); the bytes decide."""
    resp, data = call(**as_json({"image": prefix + base64.b64encode(png()).decode()}))
    assert resp.status_code == 200 and data["mean_bgr"] == [10.0, 20.0, 30.0]


@pytest.mark.parametrize("text", ["data:image/png,notbase64", "data:image/png;base64"])
def test_malformed_data_urls_are_400(adapter, text):
    resp, data = call(**as_json({"image": text}))
    assert_error(resp, data, 400, "invalid_base64")


def test_base64_with_more_padding_than_needed_is_400(adapter):
    b64 = base64.b64encode(png()).decode()
    assert call(**as_json({"image": b64}))[0].status_code == 200  # control: exact padding
    assert call(**as_json({"image": b64.rstrip("=")}))[0].status_code == 200  # none: accepted
    for extra in ("=", "==", "===="):
        resp, data = call(**as_json({"image": b64 + extra}))
        assert_error(resp, data, 400, "invalid_base64")


def test_base64_text_goes_into_the_json_body_as_a_string():
    """colorization's pictures: bytes written into the body, the same JSON as a str would give."""
    from shared.formats import Base64Text
    from shared.http.response import json_response

    data = base64.b64encode(png())
    payload = {"a": {"data": Base64Text(data), "n": 1}, "b": [Base64Text(b"QUJD"), "x\x00y"], "c": "é"}
    body = json_response(payload).get_body()
    plain = {"a": {"data": data.decode(), "n": 1}, "b": ["QUJD", "x\x00y"], "c": "é"}
    assert json.loads(body) == plain
    assert body == json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode()
