"""The answer policies a route can follow: the same orchestration (``shared.http.handle``), three
contracts.

- ``OVAAS`` (the ``HttpTrigger*`` routes): JSON by default; the rendered picture when asked
  (``render=true``, ``format=jpeg|png``, or an ``Accept`` that prefers a picture). Each error
  class answers its own status.
- ``ORIGINAL`` (``/api/humanpose``, ``/api/handwritten``, ``/api/colorization``,
  ``/api/objectdetection``): what the original OVaaS backend answered, so the OVaaS web frontend
  works unchanged. By default a JPEG of the rendered result (colorization: the original and the
  colorized picture side by side, labelled), or for handwriting ``{"count", "timecost", "text"}``
  (the catalog's ``original_answer``/``original_options``). A client gets this app's JSON instead
  with ``format=json`` (query, form field or JSON body), or with an ``Accept`` header that gives
  ``application/json`` a strictly higher quality than the original answer's media type: axios's
  ``application/json, text/plain, */*`` gives both 1, so it keeps the picture;
  ``Accept: application/json`` or ``application/json, */*;q=0.8`` get JSON. ``render=true`` or an
  ``Accept`` preferring a picture gets handwriting's rendered picture. Error statuses follow what
  the frontend shows: a model deadline is 408 ("Server Timeout"), every other backend fault 500
  ("Server Error"), a client error keeps its 4xx ("Request Error").
- ``CVAT`` (``/api/cvat/detector``): CVAT's serverless detector contract. The body is JSON
  ``{"image": "<base64>", "threshold": <number, optional>}``; the answer is always the bare list
  ``[{"label", "points", "type", "confidence"}]`` (the result's ``to_shapes()``). Errors keep their
  status (CVAT passes it on to its user).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Tuple

import azure.functions as func
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from shared import catalog
from shared.errors import ModelTimeout, OvaasError
from shared.formats import MIME_TYPES
from shared.http.response import JSON, Answer, negotiate
from shared.options import opt_bool, opt_choice

#: the status the frontend reads as "Server Timeout" (and what the original backend answered on a
#: gRPC deadline)
ORIGINAL_TIMEOUT_STATUS = 408
#: the status the frontend reads as "Server Error"
ORIGINAL_SERVER_ERROR_STATUS = 500


@dataclass(frozen=True)
class Contract:
    """How a route answers: the form of a successful answer, and the status of each error."""

    name: str
    negotiate: Callable[[func.HttpRequest, Mapping[str, Any], catalog.Endpoint], Answer]
    status_of: Callable[[OvaasError], int]
    #: request fields the HTTP layer reads itself (never passed to the task)
    http_options: Tuple[str, ...] = ("render", "format", "image")


def _own_status(exc: OvaasError) -> int:
    return exc.status


def _ovaas_answer(req: func.HttpRequest, options: Mapping[str, Any],
                  endpoint: catalog.Endpoint) -> Answer:
    return negotiate(req, options)


def _original_answer(req: func.HttpRequest, options: Mapping[str, Any],
                     endpoint: catalog.Endpoint) -> Answer:
    """The original answer unless JSON (or, for handwriting, a picture) is explicitly asked for."""
    fmt = opt_choice(options, "format", "", ("json", "jpeg", "jpg", "png"))
    render = opt_bool(options, "render", False)
    accept = parse_accept_header(req.headers.get("Accept"), MIMEAccept)
    picture_fmt = "png" if fmt == "png" or (not fmt and _prefers(accept, MIME_TYPES["png"],
                                                                  MIME_TYPES["jpeg"])) else "jpeg"
    picture = Answer(Answer.PICTURE, picture_fmt, defaults=endpoint.original_options)
    if fmt == "json":
        return Answer(Answer.JSON)
    if render or fmt in ("jpeg", "jpg", "png"):
        return picture
    if endpoint.original_answer == catalog.ORIGINAL_JSON:
        if _prefers(accept, MIME_TYPES["jpeg"], JSON) or _prefers(accept, MIME_TYPES["png"], JSON):
            return picture
        return Answer(Answer.ORIGINAL)
    if _prefers(accept, JSON, MIME_TYPES[picture_fmt]):
        return Answer(Answer.JSON)
    return picture


def _prefers(accept: MIMEAccept, this: str, that: str) -> bool:
    """True when the Accept header gives ``this`` a strictly higher quality than ``that``."""
    return bool(accept) and accept.quality(this) > accept.quality(that)


def _original_status(exc: OvaasError) -> int:
    """408 for a model deadline, 500 for any other backend fault, a client error unchanged."""
    if isinstance(exc, ModelTimeout):
        return ORIGINAL_TIMEOUT_STATUS
    if exc.status >= 500:
        return ORIGINAL_SERVER_ERROR_STATUS
    return exc.status


def _cvat_answer(req: func.HttpRequest, options: Mapping[str, Any],
                 endpoint: catalog.Endpoint) -> Answer:
    return Answer(Answer.SHAPES)


OVAAS = Contract("ovaas", _ovaas_answer, _own_status)
ORIGINAL = Contract("original", _original_answer, _original_status)
CVAT = Contract("cvat", _cvat_answer, _own_status, http_options=("image",))
