"""Response building: content negotiation, JSON and picture answers, timing headers.

Answers are JSON by default: the task's result plus ``model``, ``image`` and ``timing_ms``.
``Accept: image/jpeg|image/png`` (preferred over JSON, as werkzeug's ``MIMEAccept.best_match``
ranks them) or ``render=true`` returns the rendered picture instead; ``format=png|jpeg`` chooses
its encoding when ``Accept`` does not. Every error is ``{"error": {"code", "message"}}`` with the
status its class declares.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple

import azure.functions as func
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from shared.errors import OvaasError
from shared.formats import MIME_TYPES, Base64Text
from shared.options import opt_bool, opt_choice

JSON = "application/json"
_OFFERS = [JSON, MIME_TYPES["jpeg"], MIME_TYPES["png"]]  # JSON first: it wins ties and */*
#: the stages every JSON answer's ``timing_ms`` lists, in this order (others follow as they ran)
TIMING_STAGES = ("decode", "preprocess", "inference", "postprocess", "total")


@dataclass(frozen=True)
class Answer:
    """What the client gets: JSON (the result with ``model``, ``image``, ``timing_ms``), the
    rendered picture (in ``format``), the original OVaaS JSON (``to_original_dict``) or CVAT's
    bare list of shapes (``to_shapes``). ``defaults`` are option defaults this answer implies."""

    JSON: ClassVar[str] = "json"
    PICTURE: ClassVar[str] = "picture"
    ORIGINAL: ClassVar[str] = "original"
    SHAPES: ClassVar[str] = "shapes"

    kind: str
    format: str = "jpeg"  # of a picture: "jpeg" | "png"
    defaults: Tuple[Tuple[str, str], ...] = ()


def negotiate(req: func.HttpRequest, options: Mapping[str, Any]) -> Answer:
    """The answer's form, from ``render``/``format`` and the ``Accept`` header."""
    fmt = opt_choice(options, "format", "", ("jpeg", "jpg", "png"))
    fmt = "jpeg" if fmt == "jpg" else fmt
    best = parse_accept_header(req.headers.get("Accept"), MIMEAccept).best_match(_OFFERS, default=JSON)
    by_accept = best != JSON
    if not fmt:
        fmt = "png" if best == MIME_TYPES["png"] else "jpeg"
    picture = opt_bool(options, "render", False) or by_accept
    return Answer(Answer.PICTURE if picture else Answer.JSON, fmt)


def json_response(payload: Any, status: int = 200,
                  headers: Optional[Mapping[str, str]] = None) -> func.HttpResponse:
    """A JSON HttpResponse (compact, UTF-8, non-ASCII kept readable). ``Base64Text`` values are
    written into the body as JSON strings without a str copy (the one large copy is the body)."""
    large: List[bytes] = []
    token = f"\x00{uuid.uuid4().hex}\x00"  # stands for each Base64Text while the rest is serialized

    def placeholder(value: Any) -> Any:
        if isinstance(value, Base64Text):
            large.append(value.data)
            return token
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                      default=placeholder)
    if not large:
        body = text.encode("utf-8")
    else:
        parts = text.split(json.dumps(token))
        pieces: List[bytes] = [parts[0].encode("utf-8")]
        for data, part in zip(large, parts[1:]):
            pieces += [b'"', data, b'"', part.encode("utf-8")]
        del large
        body = b"".join(pieces)
    return func.HttpResponse(body=body, status_code=status,
                             mimetype=JSON, charset="utf-8", headers=dict(headers or {}))



def picture_response(body: bytes, fmt: str, headers: Optional[Mapping[str, str]] = None) -> func.HttpResponse:
    """A JPEG or PNG HttpResponse."""
    return func.HttpResponse(body=body, status_code=200, mimetype=MIME_TYPES[fmt], headers=dict(headers or {}))


def error_response(exc: OvaasError, status: Optional[int] = None) -> func.HttpResponse:
    """The JSON error answer of ``exc``, with its status (or ``status``, a contract's choice) and
    headers (Allow, Retry-After)."""
    return json_response(exc.to_dict(), exc.status if status is None else status, exc.headers)


def timing_block(ms: Mapping[str, float]) -> Dict[str, float]:
    """``timing_ms``: the standard stages first (0 when a stage did not run), then the others."""
    block = {k: round(float(ms.get(k, 0.0)), 3) for k in TIMING_STAGES}
    for k, v in ms.items():
        block.setdefault(k, round(float(v), 3))
    return block


def server_timing(ms: Mapping[str, float]) -> str:
    """A Server-Timing header value (``decode;dur=1.9, ...``)."""
    return ", ".join(f"{k};dur={v:.1f}" for k, v in ms.items())
