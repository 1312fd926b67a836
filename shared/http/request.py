"""Request parsing: one image and its options from any of the three request forms.

- JSON ``{"image": "<base64 or data: URL>", ...options}``;
- ``multipart/form-data`` with a file field ``image`` (the web frontend) and options as fields
  (or ``application/x-www-form-urlencoded`` with a base64 ``image`` field);
- a raw image body (``image/*`` or ``application/octet-stream``), options in the query string.

Query-string options apply to every form; options in the body win. Every failure is a 4xx from
``shared.errors``.

Strictness (README "Requests"): a ``data:`` URL must be base64 and may not say it holds
something else than an image: ``image/*``, ``application/octet-stream`` or no type at all are
accepted (``FileReader.readAsDataURL`` writes ``data:;base64,`` or the octet-stream type for a
file whose type the browser does not know; the bytes are sniffed anyway), any other type
(``data:text/html;base64,...``) is 415. Base64 may leave out its trailing padding (URL-safe
encoders do) but may not carry more than completes its last group (400). Client text echoed in
an error (a Content-Type, a data: URL's type) is cut to ``ECHO_CHARS`` characters.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Dict, Tuple

import azure.functions as func
from werkzeug.http import parse_options_header

from shared.errors import (BadRequest, InvalidBase64, InvalidJSON, MissingImage, PayloadTooLarge,
                           UnsupportedMediaType)

_JSON_TYPES = ("application/json", "text/json")
_RAW_TYPES = ("application/octet-stream",)
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)
#: media types a data: URL may declare besides image/* (or none: a browser's unknown file type)
_DATA_URL_TYPES = ("application/octet-stream",)
#: most characters of client text an error message repeats (answer and log)
ECHO_CHARS = 64
_WS = re.compile(rb"\s+")
#: most fields a form may carry (the app reads one image and a few options); more is refused before
#: any parsing, so a body of a million pairs costs a byte count, not a parse (ASP.NET's limit is 1024)
MAX_FORM_FIELDS = 1000


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
    if ctype in _FORM_TYPES:
        return _parse_form(req, body, ctype, options, max_body_bytes)
    if ctype.startswith("image/") or ctype in _RAW_TYPES or not ctype:
        if not body:
            raise MissingImage("the request body is empty; send an image")
        return body, options
    raise UnsupportedMediaType(
        f"content type {shown(ctype)!r} is not accepted; send application/json, multipart/form-data, "
        "image/* or application/octet-stream")


def shown(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` as an error message may repeat it: at most ``limit`` characters, then "..."."""
    return text if len(text) <= limit else text[:limit] + "..."


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


def _form_fields(req: func.HttpRequest, body: bytes, ctype: str) -> int:
    """How many fields a form body holds, at most (a byte count: no parsing)."""
    if ctype == "application/x-www-form-urlencoded":
        return body.count(b"&") + 1
    boundary = parse_options_header(req.headers.get("Content-Type") or "")[1].get("boundary", "")
    return body.count(b"--" + boundary.encode("latin-1", "replace")) if boundary else 0


def _parse_form(req: func.HttpRequest, body: bytes, ctype: str, options: Dict[str, Any],
                max_body_bytes: int) -> Tuple[bytes, Dict[str, Any]]:
    fields = _form_fields(req, body, ctype)
    if fields > MAX_FORM_FIELDS:
        raise PayloadTooLarge(f"the form has more than {MAX_FORM_FIELDS} fields")
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
        mime = (match.group("mime") or "").lower()
        if mime and not (mime.startswith("image/") or mime in _DATA_URL_TYPES):
            raise UnsupportedMediaType(f"the data: URL declares {shown(mime)!r}, not an image; "
                                       "send data:image/...;base64,...")
        text = text[match.end():]
    elif text[:5].lower() == "data:":
        raise InvalidBase64("the data: URL is malformed; send data:image/...;base64,...")
    raw = _WS.sub(b"", text.encode("ascii", "replace"))
    if not raw:
        raise MissingImage("'image' is empty")
    if len(raw) * 3 // 4 > max_body_bytes:
        raise PayloadTooLarge(f"the image is larger than {max_body_bytes} bytes")
    raw = raw.replace(b"-", b"+").replace(b"_", b"/")  # accept the URL-safe alphabet too
    data = raw.rstrip(b"=")
    if len(raw) - len(data) > -len(data) % 4:
        raise InvalidBase64("'image' has more base64 padding than its last group needs")
    raw = data + b"=" * (-len(data) % 4)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBase64("'image' is not valid base64") from None
