"""The one small HTTP client the tests use against the local Functions host (loopback only)."""
from __future__ import annotations

import select
import socket
import struct
import urllib.error
import urllib.request
from typing import Dict, Iterable, Mapping, NamedTuple, Optional, Tuple


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


# --- raw-socket clients: what ordinary HTTP clients cannot do ---------------------------------

def read_answer(sock: socket.socket) -> bytes:
    """One whole HTTP answer (its head and ``Content-Length`` body; an interim 1xx answer is its
    head), or what came before the host closed the connection (b"" when it closed without
    answering). The socket's timeout bounds a failure only."""
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep and head[9:10] == b"1":  # "HTTP/1.1 1xx"
            return head + sep
        if sep:
            length = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                      if line.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                return data
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def hang_up_mid_body(port: int, head: bytes, body: bytes, how: str) -> bytes:
    """Send ``head`` and ``body`` (shorter than the head declares), then hang up: ``"shutdown"``
    (close the sending side only and read what the host answers until it closes), ``"close"`` or
    ``"reset"`` (an RST: SO_LINGER 0). With ``Expect: 100-continue`` in ``head`` the body goes
    only after the host's interim answer (it is reading the body then). Returns what the host
    answered (b"" after close/reset)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        if b"100-continue" in head.lower():  # the host is reading the body once it says so
            interim = read_answer(s)
            if not interim.startswith(b"HTTP/1.1 100 "):
                raise AssertionError(f"no 100 Continue: {interim[:200]!r}")
        s.sendall(body)
        if how == "shutdown":
            s.shutdown(socket.SHUT_WR)
            return read_answer(s)
        if how == "reset":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif how != "close":
            raise ValueError(how)
    return b""


def upload_until_answered(port: int, head: bytes, pieces: Iterable[bytes]) -> Tuple[bytes, int]:
    """Send ``head``, then ``pieces`` as long as the host has not answered; then read its answer.
    Returns (the answer, how many bytes of the pieces the client had handed to its socket when
    the answer came: what the host read, plus what the kernel buffers hold)."""
    handed = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(head)
        pending = b""
        source = iter(pieces)
        try:
            while True:
                if not pending:
                    pending = next(source, b"")
                    if not pending:
                        break  # all sent: wait for the answer
                readable, writable, _ = select.select([s], [s], [], 60)
                if readable:
                    break
                if writable:
                    sent = s.send(pending)
                    handed += sent
                    pending = pending[sent:]
        except (BrokenPipeError, ConnectionResetError):
            pass  # the host closed while this client was sending; its answer may be readable
        return read_answer(s), handed
