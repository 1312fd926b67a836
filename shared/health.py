"""Health: the app's own liveness plus each configured model's readiness on its model server.

200 when every model is ready, 503 (with ``Retry-After``) otherwise. Readiness checks run in
parallel, each bounded by the connect timeout and a short deadline (never an inference
deadline), and the answer is cached for ``HEALTH_CACHE_SECONDS`` (default 5) per worker so a
busy probe cannot load the model servers.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Optional, Tuple

import azure.functions as func

from shared import catalog, config
from shared.errors import MethodNotAllowed, OvaasError
from shared.http.response import error_response, json_response
from shared.logs import get_logger

log = get_logger("health")

#: Retry-After of a 503 health answer: about when the cached answer is checked again
RETRY_AFTER_S = 5

_cache: Optional[Tuple[float, int, Dict[str, Any]]] = None
_lock = threading.Lock()
_started = time.time()


def _model_status(prefix: str) -> Dict[str, Any]:
    try:
        settings = config.model_settings(prefix)
    except config.SettingsError as exc:
        return {"name": None, "version": None, "ready": False, "state": "MISCONFIGURED", "message": exc.message}
    from shared import serving

    try:
        status = serving.get_adapter(settings).status()
    except OvaasError as exc:  # status() should not raise; be safe anyway
        return {"name": settings.model_name, "version": None, "ready": False, "state": "UNAVAILABLE",
                "message": exc.message}
    out = status.to_dict()
    out["api"] = settings.api
    return out


def check(max_age_s: Optional[float] = None) -> Tuple[int, Dict[str, Any]]:
    """(HTTP status, body) of the health check, from the cache when fresh enough."""
    global _cache
    if max_age_s is None:
        max_age_s = config.health_cache_seconds()
    now = time.monotonic()
    cached = _cache
    if cached is not None and now - cached[0] < max_age_s:
        return cached[1], cached[2]
    with _lock:
        cached = _cache
        if cached is not None and time.monotonic() - cached[0] < max_age_s:
            return cached[1], cached[2]
        endpoints = catalog.ENDPOINTS
        with ThreadPoolExecutor(max_workers=len(endpoints)) as pool:
            results = dict(zip((e.function for e in endpoints), pool.map(_model_status, (e.prefix for e in endpoints))))
        ready = all(r["ready"] for r in results.values())
        body = {"status": "ok" if ready else "degraded",
                "app": {"alive": True, "uptime_s": round(time.time() - _started, 1)},
                "models": results,
                "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        status = 200 if ready else 503
        _cache = (time.monotonic(), status, body)
        return status, body


def handle(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/health."""
    if req.method not in ("GET", "HEAD"):
        return error_response(MethodNotAllowed(req.method, ("GET", "HEAD")))
    try:
        status, body = check()
    except Exception:  # a bug in the probe must still answer, as "not healthy"
        log.exception("health check failed")
        status, body = 503, {"status": "degraded", "app": {"alive": True}, "models": {}}
    headers = {"Cache-Control": "no-store"}
    if status != 200:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return json_response(body, status, headers)


def reset() -> None:
    """Forget the cached answer (tests)."""
    global _cache
    _cache = None
