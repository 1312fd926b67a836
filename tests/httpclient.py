"""The one small HTTP client the tests use against the local Functions host (loopback only)."""
from __future__ import annotations

import urllib.error
import urllib.request
from typing import Dict, Mapping, NamedTuple, Optional


class Response(NamedTuple):
    status: int
    content_type: str
    body: bytes
    headers: Mapping[str, str]


def request(url: str, body: Optional[bytes] = None, *, method: str = "POST",
            content_type: Optional[str] = None, headers: Optional[Dict[str, str]] = None,
            timeout: float = 60) -> Response:
    """Send one request; 4xx/5xx answers are returned, not raised. GET/HEAD send no body."""
    hdrs = dict(headers or {})
    if content_type:
        hdrs["Content-Type"] = content_type
    data = None if method in ("GET", "HEAD") else body
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Response(r.status, r.headers.get("Content-Type", ""), r.read(), r.headers)
    except urllib.error.HTTPError as err:
        return Response(err.code, err.headers.get("Content-Type", ""), err.read(), err.headers)
