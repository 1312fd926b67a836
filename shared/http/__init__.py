"""The one request/response contract every endpoint shares, and the only place that catches.

Requests carry one image, three ways:
- JSON ``{"image": "<base64 or data: URL>", ...options}``;
- ``multipart/form-data`` with a file field ``image`` (the web frontend) and options as fields;
- a raw image body (``image/*`` or ``application/octet-stream``), options in the query string.
Query-string options apply to every form; options in the body win.

Answers are JSON by default: the task's result plus ``model``, ``image`` and ``timing_ms``.
``Accept: image/jpeg|image/png`` or ``render=true`` returns the rendered picture instead
(``format=png|jpeg`` chooses its encoding when ``Accept`` does not).
Every error is ``{"error": {"code", "message"}}`` with the status its class declares.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
import uuid
from typing import Any, Dict, Mapping, Optional, Tuple

import azure.functions as func

from shared import config
from shared.errors import (BadRequest, InternalError, InvalidBase64, InvalidJSON,
                           MethodNotAllowed, MissingImage, OvaasError, PayloadTooLarge,
                           UnsupportedMediaType)

log = logging.getLogger("ovaas")
request_log = logging.getLogger("ovaas.request")

ALLOWED_METHODS = ("POST",)
_JSON_TYPES = ("application/json", "text/json")
_RAW_TYPES = ("application/octet-stream",)
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)
_WS = re.compile(rb"\s+")
# Options the HTTP layer itself reads (not passed to tasks).
_HTTP_OPTIONS = ("render", "format", "image")


def handle(req: func.HttpRequest, task_name: str,
           context: Optional[func.Context] = None) -> func.HttpResponse:
    """Serve one request for task ``task_name``: parse, decode, run, answer; never raise."""
    start = time.perf_counter()
    invocation_id = getattr(context, "invocation_id", None) or str(uuid.uuid4())
    function_name = getattr(context, "function_name", None) or task_name
    from shared.tasks.base import Timings  # imports numpy: on the first request only

    timings = Timings()
    model_label = ""
    try:
        response, model_label = _serve(req, task_name, timings)
    except OvaasError as exc:
        response = error_response(exc)
        level = logging.WARNING if exc.status >= 500 else logging.INFO
        log.log(level, "[%s] %s %s: %s", invocation_id, function_name, exc.code, exc.message)
    except Exception:  # a true bug: log the traceback, never send it
        log.exception("[%s] %s failed with an unexpected error", invocation_id, function_name)
        response = error_response(InternalError(
            f"internal error; quote invocation id {invocation_id} when reporting it"))
    total_ms = (time.perf_counter() - start) * 1000.0
    response.headers["x-invocation-id"] = invocation_id
    _log_request(invocation_id, function_name, model_label, response.status_code, timings, total_ms)
    return response


def _serve(req: func.HttpRequest, task_name: str, timings: Any) -> Tuple[func.HttpResponse, str]:
    start = time.perf_counter()
    if req.method not in ALLOWED_METHODS:
        raise MethodNotAllowed(req.method, ALLOWED_METHODS)
    try:
        limits = config.limits()
    except config.SettingsError as exc:
        raise InternalError(f"server misconfigured: {exc}") from None

    image_bytes, raw_options = parse_request(req, limits.max_body_bytes)
    as_image, image_format = wants_image(req, raw_options)

    from shared import imaging  # numpy/cv2/Pillow: imported on the first request only
    from shared import serving
    from shared.tasks import get_task

    task = get_task(task_name)
    task_options = {k: v for k, v in raw_options.items() if k not in _HTTP_OPTIONS}
    options = task.parse_options(task_options)  # a bad option is a 400 before any decoding
    with timings.stage("decode"):
        decoded = imaging.decode(image_bytes, limits)
    try:
        settings = config.model_settings(task.settings_prefix)
    except config.SettingsError as exc:
        raise InternalError(f"server misconfigured: {exc}") from None
    adapter = serving.get_adapter(settings)
    result = task.run(decoded.pixels, adapter, options, timings)
    meta = adapter.metadata()
    model = {"name": meta.name, "version": meta.version}
    label = f"{meta.name}:{meta.version}"

    if as_image:
        with timings.stage("render"):
            picture = task.render(decoded.pixels, result, options)
            body = imaging.encode(picture, image_format)
        timings.add("total", (time.perf_counter() - start) * 1000.0)
        headers = {"Server-Timing": _server_timing(timings.to_dict()),
                   "x-model": label}
        return func.HttpResponse(body=body, status_code=200, mimetype=imaging.MIME_TYPES[image_format],
                                 headers=headers), label

    payload: Dict[str, Any] = dict(result.to_dict())
    payload["model"] = model
    payload["image"] = {"width": decoded.width, "height": decoded.height}
    timings.add("total", (time.perf_counter() - start) * 1000.0)
    payload["timing_ms"] = _timing_block(timings.to_dict())
    return json_response(payload, 200, {"Server-Timing": _server_timing(payload["timing_ms"])}), label


# ---- request parsing --------------------------------------------------------------------------

def media_type(req: func.HttpRequest) -> str:
    """The request's media type, lower-case, without parameters ("" when absent)."""
    return (req.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()


def parse_request(req: func.HttpRequest, max_body_bytes: int) -> Tuple[bytes, Dict[str, Any]]:
    """(image bytes, options) from any of the three request forms; 4xx errors otherwise."""
    body = req.get_body() or b""
    if len(body) > max_body_bytes:
        raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {max_body_bytes}")
    options: Dict[str, Any] = {k: v for k, v in req.params.items()}
    ctype = media_type(req)
    if ctype in _JSON_TYPES or (not ctype and body[:1] in (b"{", b"[")):
        data = _parse_json(body)
        image = data.pop("image", None)
        options.update(data)
        return decode_image_field(image, max_body_bytes), options
    if ctype == "multipart/form-data" or ctype == "application/x-www-form-urlencoded":
        return _parse_form(req, options, max_body_bytes)
    if ctype.startswith("image/") or ctype in _RAW_TYPES or not ctype:
        if not body:
            raise MissingImage("the request body is empty; send an image")
        return body, options
    raise UnsupportedMediaType(
        f"content type {ctype!r} is not accepted; send application/json, multipart/form-data, "
        "image/* or application/octet-stream")


def _parse_json(body: bytes) -> Dict[str, Any]:
    if not body:
        raise MissingImage("the request body is empty; send {\"image\": \"<base64>\"}")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidJSON("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidJSON("the JSON body must be an object like {\"image\": \"<base64>\"}")
    return data


def _parse_form(req: func.HttpRequest, options: Dict[str, Any],
                max_body_bytes: int) -> Tuple[bytes, Dict[str, Any]]:
    try:
        form, files = req.form, req.files
    except Exception:  # werkzeug raises several types on broken multipart bodies
        raise BadRequest("the form body could not be parsed") from None
    for key in form.keys():
        options[key] = form.get(key)
    upload = files.get("image") if files else None
    if upload is not None:
        data = upload.read()
        if not data:
            raise MissingImage("the file field 'image' is empty")
        options.pop("image", None)
        return data, options
    if "image" in options:  # base64 in a plain field
        return decode_image_field(options.pop("image"), max_body_bytes), options
    raise MissingImage("the form has no file field 'image'")


def decode_image_field(value: Any, max_body_bytes: int) -> bytes:
    """Bytes of a base64 string or ``data:`` URL; 400 when missing or malformed."""
    if value is None:
        raise MissingImage("the request has no 'image' field")
    if not isinstance(value, str):
        raise InvalidBase64("'image' must be a base64 string or a data: URL")
    text = value.strip()
    match = _DATA_URL.match(text)
    if match:
        if not match.group("b64"):
            raise InvalidBase64("only base64 data: URLs are accepted")
        text = text[match.end():]
    raw = _WS.sub(b"", text.encode("ascii", "replace"))
    if not raw:
        raise MissingImage("'image' is empty")
    if len(raw) * 3 // 4 > max_body_bytes:
        raise PayloadTooLarge(f"the image is larger than {max_body_bytes} bytes")
    raw = raw.replace(b"-", b"+").replace(b"_", b"/")  # accept the URL-safe alphabet too
    raw = raw.rstrip(b"=")
    raw += b"=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBase64("'image' is not valid base64") from None


def wants_image(req: func.HttpRequest, options: Mapping[str, Any]) -> Tuple[bool, str]:
    """(answer with a picture?, "jpeg" | "png") from ``render``/``format`` and ``Accept``."""
    from shared.tasks.base import opt_bool, opt_choice

    fmt = opt_choice(options, "format", "", ("jpeg", "jpg", "png"))
    fmt = "jpeg" if fmt == "jpg" else fmt
    accept = _parse_accept(req.headers.get("Accept") or "")
    q_json = max(accept.get("application/json", 0.0), accept.get("application/*", 0.0),
                 accept.get("*/*", 0.0) * 0.999)
    q_jpeg = max(accept.get("image/jpeg", 0.0), accept.get("image/*", 0.0) * 0.999)
    q_png = accept.get("image/png", 0.0)
    render = opt_bool(options, "render", False)
    by_accept = max(q_jpeg, q_png) > q_json
    if not fmt:
        fmt = "png" if by_accept and q_png > q_jpeg else "jpeg"
    return render or by_accept, fmt


def _parse_accept(header: str) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        if not fields[0]:
            continue
        q = 1.0
        for f in fields[1:]:
            if f.lower().startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        out[fields[0].lower()] = max(out.get(fields[0].lower(), 0.0), q)
    return out


# ---- responses ---------------------------------------------------------------------------------

def json_response(payload: Mapping[str, Any], status: int = 200,
                  headers: Optional[Mapping[str, str]] = None) -> func.HttpResponse:
    """A JSON HttpResponse (compact, UTF-8, non-ASCII kept readable)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return func.HttpResponse(body=body.encode("utf-8"), status_code=status,
                             mimetype="application/json", charset="utf-8",
                             headers=dict(headers or {}))


def error_response(exc: OvaasError) -> func.HttpResponse:
    """The JSON error answer of ``exc``, with its status and headers (Allow, Retry-After)."""
    return json_response(exc.to_dict(), exc.status, exc.headers)


def _timing_block(ms: Mapping[str, float]) -> Dict[str, float]:
    keys = ("decode", "preprocess", "inference", "postprocess", "total")
    block = {k: round(float(ms.get(k, 0.0)), 3) for k in keys}
    for k, v in ms.items():
        block.setdefault(k, round(float(v), 3))
    return block


def _server_timing(ms: Mapping[str, float]) -> str:
    return ", ".join(f"{k};dur={v:.1f}" for k, v in ms.items())


def _log_request(invocation_id: str, function_name: str, model: str, status: int,
                 timings: Any, total_ms: float) -> None:
    record = {"invocation_id": invocation_id, "function": function_name, "model": model,
              "status": status, "ms": {**{k: round(v, 1) for k, v in timings.to_dict().items()
                                          if k != "total"}, "total": round(total_ms, 1)}}
    request_log.info(json.dumps(record, separators=(",", ":")))
