"""The one request/response contract every endpoint shares, and the only place that catches.

``handle`` orchestrates one request: parse it (``shared.http.request``), validate the options,
decode the image, run the task against its model server (metadata fetched once), and answer
(``shared.http.response``): JSON by default, the rendered picture when asked. Every error is
``{"error": {"code", "message"}}`` with the status its class declares, logged here once.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Dict, Optional, Tuple

import azure.functions as func

from shared import catalog, config
from shared.errors import InternalError, MethodNotAllowed, OvaasError
from shared.http.request import parse_request
from shared.http.response import (Answer, error_response, json_response, negotiate, picture_response,
                                  server_timing, timing_block)
from shared.logs import get_logger, invocation
from shared.timings import Timings

__all__ = ["handle", "error_response", "json_response"]

log = get_logger("http")
request_log = logging.getLogger("ovaas.request")

ALLOWED_METHODS = ("POST",)
# Options the HTTP layer itself reads (not passed to tasks).
HTTP_OPTIONS = ("render", "format", "image")


def handle(req: func.HttpRequest, task_name: str,
           context: Optional[func.Context] = None) -> func.HttpResponse:
    """Serve one request for task ``task_name``: parse, decode, run, answer; never raise."""
    start = time.perf_counter()
    invocation_id = getattr(context, "invocation_id", None) or str(uuid.uuid4())
    function_name = getattr(context, "function_name", None) or task_name
    timings = Timings()
    model_label = ""
    with invocation(invocation_id):
        try:
            response, model_label = _serve(req, task_name, timings, start)
        except OvaasError as exc:  # the one place a failure is logged
            response = error_response(exc)
            level = logging.WARNING if exc.status >= 500 else logging.INFO
            log.log(level, "%s %s %d %s: %s", function_name, req.method, exc.status, exc.code, exc.message)
        except Exception:  # a true bug: log the traceback, never send it
            log.exception("%s failed with an unexpected error", function_name)
            response = error_response(InternalError(
                f"internal error; quote invocation id {invocation_id} when reporting it"))
    total_ms = (time.perf_counter() - start) * 1000.0
    response.headers["x-invocation-id"] = invocation_id
    _log_request(invocation_id, function_name, model_label, response.status_code, timings, total_ms)
    return response


def _serve(req: func.HttpRequest, task_name: str, timings: Timings,
           start: float) -> Tuple[func.HttpResponse, str]:
    if req.method not in ALLOWED_METHODS:
        raise MethodNotAllowed(req.method, ALLOWED_METHODS)
    limits = config.limits()
    image_bytes, raw_options = parse_request(req, limits.max_body_bytes)
    answer = negotiate(req, raw_options)

    from shared import imaging, serving  # numpy/cv2/Pillow/gRPC: imported on the first request only
    from shared.tasks import get_task

    task = get_task(task_name)
    options = task.parse_options({k: v for k, v in raw_options.items() if k not in HTTP_OPTIONS})
    with timings.stage("decode"):  # a bad option was a 400 before any decoding
        decoded = imaging.decode(image_bytes, limits)
    adapter = serving.get_adapter(config.model_settings(catalog.by_task(task_name).prefix))
    meta = adapter.metadata()
    result = task.run(decoded.pixels, adapter, options, timings, meta=meta)
    label = f"{meta.name}:{meta.version}"
    if answer.picture:
        return _picture(task, decoded.pixels, result, options, answer, timings, start, label), label
    with timings.stage("encode"):
        payload: Dict[str, Any] = dict(result.to_dict())
    payload["model"] = {"name": meta.name, "version": meta.version}
    payload["image"] = {"width": decoded.width, "height": decoded.height}
    timings.add("total", (time.perf_counter() - start) * 1000.0)
    payload["timing_ms"] = timing_block(timings.to_dict())
    return json_response(payload, 200, {"Server-Timing": server_timing(payload["timing_ms"])}), label


def _picture(task: Any, pixels: Any, result: Any, options: Any, answer: Answer, timings: Timings,
             start: float, label: str) -> func.HttpResponse:
    """The rendered picture, with the timings in Server-Timing."""
    from shared import imaging

    with timings.stage("render"):
        picture = task.render(pixels, result, options)
    with timings.stage("encode"):
        body = imaging.encode(picture, answer.format)
    timings.add("total", (time.perf_counter() - start) * 1000.0)
    return picture_response(body, answer.format, {"Server-Timing": server_timing(timings.to_dict()),
                                                  "x-model": label})


def _log_request(invocation_id: str, function_name: str, model: str, status: int,
                 timings: Timings, total_ms: float) -> None:
    record = {"invocation_id": invocation_id, "function": function_name, "model": model,
              "status": status, "ms": {**{k: round(v, 1) for k, v in timings.to_dict().items()
                                          if k != "total"}, "total": round(total_ms, 1)}}
    request_log.info(json.dumps(record, separators=(",", ":")))
