"""CVAT's auto-annotation detector as a nuclio function, over the app's detection pipeline.

CVAT's lambda manager invokes a ``detector`` function with ``{"image": "<base64>", "threshold":
<float, optional>}`` and reads back a bare JSON list of ``{"label", "points", "type",
"confidence"}``. This handler answers exactly what ``POST /api/cvat/detector`` answers: it hands the
event to ``shared.http.handle`` under the ``CVAT`` contract (the same parsing, decoding, detection
task, labels file and errors), against the OpenVINO Model Server named by the function's
environment: ``OBJECTDETECTION_IPADDRESS``, ``OBJECTDETECTION_PORT``, ``OBJECTDETECTION_MODEL_NAME``,
``OBJECTDETECTION_LABELS_PATH`` and ``OVMS_API`` (as for the Function App; README "Using from CVAT").

``function.yaml`` files (``serverless/<detector>/``) are generated from ``models/labels/`` by
``python -m scripts.tooling.cvat generate``; ``python -m scripts.tooling.cvat stage`` lays out the
folder ``nuctl deploy`` builds (this file as ``main.py``, ``shared/``, the labels, function.yaml).
"""
from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from shared import catalog, config, serving
from shared.http import CVAT, handle
from shared.tasks import get_task

TASK = "detection"


def init_context(context: Any) -> None:
    """Once per worker: check the settings (a malformed one fails the deployment, naming it), bind
    the detection task and the model server's channel. The model server is not contacted here, so
    the function can start before it."""
    settings = config.model_settings(catalog.by_task(TASK).prefix)
    context.user_data.task = get_task(TASK)
    context.user_data.adapter = serving.get_adapter(settings)
    context.logger.info_with("ovaas detector ready", model=settings.model_name, address=settings.address)


def _body(event: Any) -> bytes:
    """The event body as bytes (nuclio hands JSON bodies over already parsed)."""
    body = event.body
    if isinstance(body, (dict, list)):
        return json.dumps(body).encode("utf-8")
    if isinstance(body, str):
        return body.encode("utf-8")
    return bytes(body or b"")


def handler(context: Any, event: Any) -> Any:
    """One CVAT call: the bare list of shapes, or ``{"error": {"code", "message"}}`` with its status."""
    headers = {str(k): str(v) for k, v in (event.headers or {}).items()}
    headers["Content-Type"] = event.content_type or headers.get("Content-Type") or "application/json"
    req = func.HttpRequest(event.method or "POST", event.url or "http://nuclio/", headers=headers,
                           params={}, body=_body(event))
    resp = handle(req, TASK, None, CVAT)
    return context.Response(body=resp.get_body(), headers={k: v for k, v in resp.headers.items()
                                                           if k.lower() != "content-type"},
                            content_type=resp.mimetype, status_code=resp.status_code)
