"""The one request orchestration every route shares, and the only place that catches.

``handle`` orchestrates one request: parse it (``shared.http.request``), choose the answer
(the route's ``Contract``, ``shared.http.contract``), validate the options, decode the image, run
the task against its model server (metadata fetched once), and answer (``shared.http.response``).
Under the default contract (``OVAAS``) that is JSON, or the rendered picture when asked; the
compatibility routes answer the original OVaaS contract (``ORIGINAL``) and CVAT's route a bare
list of shapes (``CVAT``). Every error is ``{"error": {"code", "message"}}`` with the status the
contract gives its class, logged here once.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from typing import Any, Dict, Optional, Tuple

import azure.functions as func

from shared import catalog, config
from shared.errors import InternalError, MethodNotAllowed, OvaasError
from shared.http.contract import CVAT, ORIGINAL, OVAAS, Contract
from shared.http.request import parse_request
from shared.http.response import (Answer, error_response, json_response, picture_response,
                                  server_timing, timing_block)
from shared.logs import get_logger, invocation
from shared.timings import Timings

__all__ = ["handle", "error_response", "json_response", "Contract", "OVAAS", "ORIGINAL", "CVAT"]

log = get_logger("http")
request_log = logging.getLogger("ovaas.request")

ALLOWED_METHODS = ("POST",)


def handle(req: func.HttpRequest, task_name: str, context: Optional[func.Context] = None,
           contract: Contract = OVAAS) -> func.HttpResponse:
    """Serve one request for task ``task_name`` under ``contract``: parse, decode, run, answer;
    never raise."""
    start = time.perf_counter()
    invocation_id = getattr(context, "invocation_id", None) or str(uuid.uuid4())
    function_name = getattr(context, "function_name", None) or task_name
    timings = Timings()
    model_label = ""
    with invocation(invocation_id):
        try:
            response, model_label = _serve(req, task_name, timings, start, contract)
        except OvaasError as exc:  # the one place a failure is logged
            response = error_response(exc, contract.status_of(exc))
            level = logging.WARNING if exc.status >= 500 else logging.INFO
            log.log(level, "%s %s %d %s: %s", function_name, req.method, response.status_code, exc.code,
                    exc.message)
        except Exception:  # a true bug: log the traceback, never send it
            log.exception("%s failed with an unexpected error", function_name)
            bug = InternalError(f"internal error; quote invocation id {invocation_id} when reporting it")
            response = error_response(bug, contract.status_of(bug))
    total_ms = (time.perf_counter() - start) * 1000.0
    response.headers["x-invocation-id"] = invocation_id
    _log_request(invocation_id, function_name, model_label, response.status_code, timings, total_ms)
    return response


def _serve(req: func.HttpRequest, task_name: str, timings: Timings, start: float,
           contract: Contract) -> Tuple[func.HttpResponse, str]:
    if req.method not in ALLOWED_METHODS:
        raise MethodNotAllowed(req.method, ALLOWED_METHODS)
    limits = config.limits()
    image_bytes, raw_options = parse_request(req, limits.max_body_bytes)
    endpoint = catalog.by_task(task_name)
    answer = contract.negotiate(req, raw_options, endpoint)

    from shared import budget, imaging  # numpy/cv2/Pillow: imported on the first request only
    from shared.allocator import keep_large_buffers
    from shared.tasks import get_task

    keep_large_buffers()  # once per process: each request's megabyte buffers are reused, not re-mapped

    task = get_task(task_name)
    task_options = dict(answer.defaults)
    task_options.update((k, v) for k, v in raw_options.items() if k not in contract.http_options)
    options = task.parse_options(task_options)
    with contextlib.ExitStack() as held:  # the request's memory, reserved until its answer is built
        def admit(width: int, height: int) -> None:
            pixels = width * height
            held.enter_context(budget.get().reserve(
                endpoint.memory.peak_bytes(pixels) + len(image_bytes), pixels))

        with timings.stage("decode"):  # a bad option was a 400 before any decoding
            held_picture = [imaging.decode(image_bytes, limits, admit)]
        return _answer(task, held_picture, options, answer, endpoint, timings, start)


def _answer(task: Any, held_picture: list, options: Any, answer: Answer, endpoint: catalog.Endpoint,
            timings: Timings, start: float) -> Tuple[func.HttpResponse, str]:
    """Run the task on the decoded picture and build the answer (under the request's reservation).
    ``held_picture`` holds the only other reference to it: taken here, so the JSON answer's body
    is built once the picture (and the result drawn over it) are gone."""
    from shared import serving

    decoded = held_picture.pop()
    adapter = serving.get_adapter(config.model_settings(endpoint.prefix))
    meta = adapter.metadata()
    result = task.run_owned(decoded.pixels, adapter, options, timings, meta=meta)
    label = f"{meta.name}:{meta.version}"
    if answer.kind == Answer.PICTURE:
        return _picture(task, decoded.pixels, result, options, answer, timings, start, label), label
    if answer.kind == Answer.ORIGINAL:  # the original OVaaS JSON: timecost is the inference in s
        body = result.to_original_dict(timings.to_dict().get("inference", 0.0) / 1000.0)
        return json_response(body, 200, _timing_headers(timings, start, label)), label
    if answer.kind == Answer.SHAPES:
        return json_response(result.to_shapes(), 200, _timing_headers(timings, start, label)), label
    size = {"width": decoded.width, "height": decoded.height}
    del decoded  # the result is now the picture's only holder: to_answer may let go of it
    with timings.stage("encode"):  # to_answer: to_dict as the result's last use (colorization)
        payload: Dict[str, Any] = dict(getattr(result, "to_answer", result.to_dict)())
    del result
    payload["model"] = {"name": meta.name, "version": meta.version}
    payload["image"] = size
    timings.add("total", (time.perf_counter() - start) * 1000.0)
    payload["timing_ms"] = timing_block(timings.to_dict())
    return json_response(payload, 200, {"Server-Timing": server_timing(payload["timing_ms"])}), label


def _timing_headers(timings: Timings, start: float, label: str) -> Dict[str, str]:
    """Server-Timing (the stages and the total so far) and x-model, for answers without timing_ms."""
    timings.add("total", (time.perf_counter() - start) * 1000.0)
    return {"Server-Timing": server_timing(timings.to_dict()), "x-model": label}


def _picture(task: Any, pixels: Any, result: Any, options: Any, answer: Answer, timings: Timings,
             start: float, label: str) -> func.HttpResponse:
    """The rendered picture, with the timings in Server-Timing."""
    from shared import imaging

    with timings.stage("render"):
        picture = task.render_owned(pixels, result, options)  # the request's own picture
    with timings.stage("encode"):
        body = imaging.encode(picture, answer.format)
    return picture_response(body, answer.format, _timing_headers(timings, start, label))


def _log_request(invocation_id: str, function_name: str, model: str, status: int,
                 timings: Timings, total_ms: float) -> None:
    if not request_log.isEnabledFor(logging.INFO):  # the record is built only when it is written
        return
    record = {"invocation_id": invocation_id, "function": function_name, "model": model,
              "status": status, "ms": {**{k: round(v, 1) for k, v in timings.to_dict().items()
                                          if k != "total"}, "total": round(total_ms, 1)}}
    request_log.info(json.dumps(record, separators=(",", ":")))
