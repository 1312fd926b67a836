"""What the host hands a worker for one HTTP call, what comes back, and the two ways to run it.

The HTTP front (server.py) turns an incoming request into an :class:`HttpInvocation` (the fields
of the Functions RPC message ``RpcHttp`` the real host sends) and turns an :class:`HttpResult`
back into HTTP. Between them sits an :class:`Invoker`:

* ``worker`` (worker.py): Microsoft's Python worker, PyPI ``azure-functions-runtime-v1``, driven
  in-process through its request handlers (Python >= 3.13 only);
* ``in-house`` (inhouse.py): this project's own binding code, for Python < 3.13.
"""
from __future__ import annotations

import abc
import email.utils
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, List, Optional, Tuple

from emulators.functions_host.discovery import FunctionSpec

MODES = ("worker", "in-house")


@dataclass(frozen=True)
class HttpInvocation:
    """One call of an HTTP-triggered function, as the host sends it to the worker."""

    invocation_id: str
    method: str
    url: str
    headers: Dict[str, str]  # names lower-cased; repeated headers joined with ","
    query: Dict[str, str]  # repeated parameters joined with ","
    route_params: Dict[str, str]
    body: bytes
    trace_parent: str
    trace_state: str


@dataclass
class HttpResult:
    """What the function answered: status, headers (in order, repeats allowed) and body bytes."""

    status: int
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class InvocationFailed(Exception):
    """The function raised, returned something the binding cannot send, or failed to load.

    The host answers an empty 500 (as the real host does); ``detail`` (the exception and its stack
    trace) goes to the log only.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


@dataclass
class LoadOutcome:
    """A function of the app after loading: the spec and the load error, if any."""

    spec: FunctionSpec
    error: Optional[str] = None


class Invoker(abc.ABC):
    """Loads an app's functions once and invokes them."""

    mode: str = ""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for the banner: which mode, which worker, which Python."""

    @abc.abstractmethod
    async def load(self, specs: List[FunctionSpec]) -> List[LoadOutcome]:
        """Load every function (once per process)."""

    @abc.abstractmethod
    async def invoke(self, spec: FunctionSpec, inv: HttpInvocation) -> HttpResult:
        """Run one invocation; raise :class:`InvocationFailed` when it fails."""

    async def close(self) -> None:
        """Release the worker's threads."""


# --- turning a function's HTTP output into HTTP, the same for both modes -------------------

def text_result(text: str) -> HttpResult:
    """A function that returned a ``str`` for its HTTP output: 200 text/plain."""
    return HttpResult(200, [("Content-Type", "text/plain; charset=utf-8")], text.encode("utf-8"))


def http_result(status_code: str, headers: Dict[str, str], body: bytes,
                cookies: List[str]) -> HttpResult:
    """An ``HttpResponse`` output (status as the string the binding sends, ``""`` meaning 200)."""
    try:
        status = int(status_code) if status_code else 200
    except ValueError as exc:
        raise InvocationFailed(f"invalid HTTP status code {status_code!r}") from exc
    if not 100 <= status <= 599:
        raise InvocationFailed(f"invalid HTTP status code {status}")
    out = [(name, value) for name, value in headers.items()]
    out += [("Set-Cookie", c) for c in cookies]
    return HttpResult(status, out, body)


def render_set_cookie(name: str, value: str, *, domain: Optional[str] = None,
                      path: Optional[str] = None, expires: Optional[datetime] = None,
                      max_age: Optional[float] = None, secure: bool = False,
                      http_only: bool = False, same_site: Optional[str] = None) -> str:
    """A ``Set-Cookie`` value in the attribute order ASP.NET Core writes (SetCookieHeaderValue)."""
    parts = [f"{name}={value}"]
    if expires is not None:
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=timezone.utc)
        parts.append("expires=" + email.utils.format_datetime(expires.astimezone(timezone.utc),
                                                               usegmt=True))
    if max_age is not None:
        parts.append(f"max-age={int(max_age)}")
    if domain:
        parts.append(f"domain={domain}")
    if path:
        parts.append(f"path={path}")
    if secure:
        parts.append("secure")
    if same_site in ("lax", "strict", "none"):
        parts.append(f"samesite={same_site}")
    if http_only:
        parts.append("httponly")
    return "; ".join(parts)


def parse_cookie_expires(text: str) -> Optional[datetime]:
    """A cookie's ``expires`` attribute, in the one format the worker accepts (else a failure)."""
    if not text:
        return None
    try:
        return datetime.strptime(text, "%a, %d %b %Y %H:%M:%S GMT")
    except (ValueError, OverflowError) as exc:
        raise InvocationFailed(f"cannot parse the cookie's expires value {text!r}") from exc


def parse_cookie_max_age(text: str) -> Optional[float]:
    """A cookie's ``max-age`` attribute as the worker reads it (else a failure)."""
    if text == "" or text is None:
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise InvocationFailed(f"cannot parse the cookie's max-age value {text!r}") from exc
