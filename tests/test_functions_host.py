"""The local Functions host against tiny function apps written here (not the real endpoints;
only the app's own body limit is tested with the real app, ``app_host``).

Every test that takes ``host1``/``host2`` runs twice: once with the host's in-house invocation
path and once with Microsoft's Python worker (``host_mode``), both behind the same HTTP front.
"""
from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import re
import socket
import string
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulators.functions_host.discovery import apply_settings, compile_route
from emulators.functions_host.front import FrontLimits
from emulators.functions_host.server import BodyLimit, app_body_limit
from scripts.tooling.modelsearch import PROJECT_ROOT
from shared import config as app_config
from tests.fixtures.functions_host import start_functions_host
from tests.httpclient import hang_up_mid_body, read_answer, request, upload_until_answered

HTTP_OUT = {"type": "http", "direction": "out", "name": "$return"}


def _trigger(methods=("get", "post"), auth="function", route=None, name="req") -> dict:
    t = {"authLevel": auth, "type": "httpTrigger", "direction": "in", "name": name,
         "methods": list(methods)}
    if route:
        t["route"] = route
    return t


def _function(root: Path, name: str, code: str, bindings: list, **extra) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "function.json").write_text(json.dumps({"scriptFile": "__init__.py", "bindings": bindings,
                                                 **extra}))
    (d / "__init__.py").write_text(code)


ECHO = '''
import hashlib, json, os
import azure.functions as func
from shared import helper

def main(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    body = req.get_body()
    if req.params.get("raw"):
        return func.HttpResponse(body, mimetype="application/octet-stream")
    env = {k: os.environ.get(k) for k in req.params.get("env", "").split(",") if k}
    return func.HttpResponse(json.dumps({
        "method": req.method, "url": req.url, "params": dict(req.params),
        "route_params": dict(req.route_params), "x_custom": req.headers.get("x-custom"),
        "x_multi": req.headers.get("x-multi"),
        "len": len(body), "sha256": hashlib.sha256(body).hexdigest(), "env": env,
        "helper": helper(),
        "is_request": isinstance(req, func.HttpRequest), "context_type": type(context).__name__,
        "invocation_id": context.invocation_id, "function_name": context.function_name,
        "function_directory": context.function_directory,
        "trace_parent": context.trace_context.trace_parent,
        "trace_state": context.trace_context.trace_state,
        "retry": [context.retry_context.retry_count, context.retry_context.max_retry_count],
        "tls_invocation_id": getattr(context.thread_local_storage, "invocation_id", None),
    }), mimetype="application/json")
'''

SLOW = '''
import json, threading, time
import azure.functions as func

MEET = threading.Barrier(2, timeout=15)

def main(req: func.HttpRequest) -> func.HttpResponse:
    start = time.time()
    if req.params.get("meet"):  # returns once a second call is inside too (else fails after 15 s)
        MEET.wait()
    else:
        time.sleep(float(req.params.get("s", "1")))
    return func.HttpResponse(json.dumps([start, time.time()]))
'''

BOOM = '''
import azure.functions as func

def main(req: func.HttpRequest) -> func.HttpResponse:
    raise ValueError("secret-detail-in-traceback")
'''

PRODUCTS = '''
import json
import azure.functions as func

def main(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(dict(req.route_params)), status_code=202,
                             headers={"X-From": "products"}, mimetype="application/json")
'''

OUT_BINDING = '''
import azure.functions as func

def main(request: func.HttpRequest, res: func.Out[func.HttpResponse]) -> None:
    res.set(func.HttpResponse("via out binding", status_code=201))
'''

ASYNC_FN = '''
import asyncio
import azure.functions as func

async def main(req: func.HttpRequest) -> str:
    await asyncio.sleep(0)
    return "async says " + req.params.get("who", "?")
'''

COOKIES = '''
import azure.functions as func

def main(req: func.HttpRequest) -> func.HttpResponse:
    resp = func.HttpResponse("with a cookie", headers={"X-One": "1"})
    resp.headers["Set-Cookie"] = ("sid=abc; Expires=Thu, 01 Jan 2037 00:00:00 GMT; Max-Age=60; "
                                  "Domain=example.test; Path=/api; Secure; HttpOnly; SameSite=Lax")
    return resp
'''

REFUSED_RETURNS = '''
import azure.functions as func

def main(req: func.HttpRequest):
    kind = req.params.get("kind")
    if kind == "bytes":
        return b"raw bytes are not an HTTP response"
    if kind == "int":
        return 42
    return None
'''

NO_RETURN_BINDING = '''
import azure.functions as func

def main(req: func.HttpRequest):
    return "a value, but function.json has no $return"
'''

BROKEN = '''
import module_that_does_not_exist  # noqa
def main(req):
    return "never"
'''


def _app1(root: Path) -> Path:
    root.mkdir()
    (root / "host.json").write_text(json.dumps({"version": "2.0"}))
    (root / "local.settings.json").write_text(json.dumps({
        "IsEncrypted": False,
        "Values": {"FUNCTIONS_WORKER_RUNTIME": "python", "FROM_SETTINGS": "from-settings",
                   "OVERRIDDEN": "from-settings", "EMPTY_SETTING": ""},
        "Host": {"CORS": "*", "LocalHttpPort": 1}}))  # --port wins over LocalHttpPort
    (root / "shared").mkdir()
    (root / "shared" / "__init__.py").write_text("def helper():\n    return 'shared-ok'\n")
    _function(root, "Echo", ECHO, [_trigger(), HTTP_OUT])
    _function(root, "Slow", SLOW, [_trigger(("get",), "anonymous"), HTTP_OUT])
    _function(root, "Boom", BOOM, [_trigger(("get",), "anonymous"), HTTP_OUT])
    _function(root, "Products", PRODUCTS,
              [_trigger(("get",), "anonymous", "products/{category:alpha}/{id:int?}"), HTTP_OUT])
    _function(root, "OutBinding", OUT_BINDING,
              [_trigger(("get",), "anonymous", name="request"),
               {"type": "http", "direction": "out", "name": "res"}])
    _function(root, "AsyncFn", ASYNC_FN, [_trigger(("get",), "admin"), HTTP_OUT])
    _function(root, "Broken", BROKEN, [_trigger(("get",), "anonymous"), HTTP_OUT])
    _function(root, "Cookies", COOKIES, [_trigger(("get",), "anonymous"), HTTP_OUT])
    _function(root, "RefusedReturns", REFUSED_RETURNS, [_trigger(("get",), "anonymous"), HTTP_OUT])
    _function(root, "NoReturnBinding", NO_RETURN_BINDING, [_trigger(("get",), "anonymous")])
    _function(root, "TimerOnly", "def main(timer):\n    pass\n",
              [{"type": "timerTrigger", "direction": "in", "name": "timer",
                "schedule": "0 */5 * * * *"}])
    return root


def _app2(root: Path) -> Path:
    root.mkdir()
    (root / "host.json").write_text(json.dumps({"version": "2.0",
                                                "extensions": {"http": {"routePrefix": ""}}}))
    (root / "local.settings.json").write_text(json.dumps({
        "Values": {"FUNCTIONS_WORKER_RUNTIME": "python"},
        "Host": {"CORS": "http://allowed.example", "CORSCredentials": True}}))
    _function(root, "Nap", SLOW, [_trigger(("get",), "anonymous"), HTTP_OUT])
    _function(root, "Hello", '''
import azure.functions as func
def main(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello " + req.route_params["name"] + " " + str(len(req.get_body())))
''', [_trigger(("get", "post"), "function", "hello/{name}"), HTTP_OUT])
    return root


@pytest.fixture(scope="module")
def host1(tmp_path_factory, host_mode):
    tmp = tmp_path_factory.mktemp(f"app1-{host_mode}")
    root = _app1(tmp / "app")
    handle = start_functions_host(root, env={"OVERRIDDEN": "from-real-env"}, log_dir=tmp,
                                  mode=host_mode)
    assert handle.mode == host_mode
    handle.root = root
    yield handle
    assert handle.stop() == 0, handle.output()  # SIGTERM: clean exit


#: host2's short limits, so the timeout tests take a second, not Kestrel's 30 s
SHORT_TIMEOUTS = {"FUNCTIONS_HOST_HEADERS_TIMEOUT": "1", "FUNCTIONS_HOST_KEEPALIVE_TIMEOUT": "1",
                  "FUNCTIONS_HOST_BODY_GRACE": "1", "FUNCTIONS_HOST_MIN_BODY_RATE": "1000"}


@pytest.fixture(scope="module")
def host2(tmp_path_factory, host_mode):
    tmp = tmp_path_factory.mktemp(f"app2-{host_mode}")
    root = _app2(tmp / "app")
    handle = start_functions_host(root, env={"FUNCTIONS_HOST_MAX_BODY_BYTES": "1000",
                                             "PYTHON_THREADPOOL_THREAD_COUNT": "1",
                                             **SHORT_TIMEOUTS},
                                  log_dir=tmp, args=["--require-keys"], mode=host_mode)
    yield handle
    handle.stop()


def call(url: str, method: str = "GET", body: Optional[bytes] = None,
         headers: Optional[Dict[str, str]] = None) -> Tuple[int, Any, bytes]:
    r = request(url, body, method=method, headers=headers, timeout=20)
    return r.status, r.headers, r.body


# --- startup --------------------------------------------------------------------------------

def test_banner_prints_function_urls_like_func_start(host1):
    out = host1.output()
    assert f"Echo: [GET,POST] http://localhost:{host1.port}/api/Echo" in out
    assert f"Products: [GET] http://localhost:{host1.port}/api/products/{{category:alpha}}/{{id:int?}}" in out
    assert "TimerOnly" not in out  # not an HTTP trigger
    assert "Broken" in out and "module_that_does_not_exist" in out
    assert ("Microsoft's Python worker (azure-functions-runtime-v1 1.2.0" in out) == \
        (host1.mode == "worker")


# --- request objects and context ------------------------------------------------------------

def test_binary_body_query_params_and_headers_reach_the_function(host1):
    body = bytes(range(256)) * 1000
    status, headers, raw = call(host1.url("/api/Echo?a=1&b=two&code=anything"), "POST", body,
                                {"X-Custom": "yes", "Content-Type": "application/octet-stream"})
    assert status == 200, raw
    assert headers["Content-Type"].startswith("application/json")
    data = json.loads(raw)
    assert data["method"] == "POST"
    assert data["params"] == {"a": "1", "b": "two", "code": "anything"}
    assert data["url"] == host1.url("/api/Echo?a=1&b=two&code=anything")
    assert data["x_custom"] == "yes"
    assert data["len"] == len(body) and data["sha256"] == hashlib.sha256(body).hexdigest()
    assert data["is_request"] and data["context_type"] == "Context" and data["helper"] == "shared-ok"
    # binary round trip, byte for byte
    status, headers, raw = call(host1.url("/api/Echo?raw=1"), "POST", body)
    assert status == 200 and raw == body
    assert headers["Content-Type"] == "application/octet-stream"


def test_context_fields(host1):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    _, _, raw1 = call(host1.url("/api/Echo"), headers={
        "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "tracestate": "k=v"})
    _, _, raw2 = call(host1.url("/api/Echo"))
    c1, c2 = json.loads(raw1), json.loads(raw2)
    uuid_re = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    assert uuid_re.match(c1["invocation_id"]) and c1["invocation_id"] != c2["invocation_id"]
    assert c1["tls_invocation_id"] == c1["invocation_id"]
    assert c1["function_name"] == "Echo"
    assert Path(c1["function_directory"]) == host1.root.resolve() / "Echo"
    assert c1["trace_parent"].split("-")[1] == trace_id and c1["trace_state"] == "k=v"
    assert re.match(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$", c2["trace_parent"])
    assert c1["retry"] == [0, 0]


# --- routing, methods, auth -----------------------------------------------------------------

def test_route_templates_and_prefix(host1):
    status, headers, raw = call(host1.url("/api/products/shoes/42"))
    assert status == 202 and json.loads(raw) == {"category": "shoes", "id": "42"}
    assert headers["X-From"] == "products"
    assert json.loads(call(host1.url("/api/products/shoes"))[2]) == {"category": "shoes"}
    assert call(host1.url("/api/products/shoes/notanint"))[0] == 404
    assert call(host1.url("/api/products/123/4"))[0] == 404  # alpha constraint
    assert call(host1.url("/api/ECHO"))[0] == 200  # routes are case-insensitive
    assert call(host1.url("/api/Nope"))[0] == 404
    assert call(host1.url("/api/TimerOnly"))[0] == 404
    assert call(host1.url("/Echo"))[0] == 404  # prefix is required


def test_empty_route_prefix(host2):
    status, _, raw = call(host2.url("/hello/bob?code=k"))
    assert (status, raw) == (200, b"hello bob 0")
    assert call(host2.url("/api/hello/bob?code=k"))[0] == 404


def test_method_not_in_methods_is_405_with_json(host1):
    status, headers, raw = call(host1.url("/api/Echo"), "PUT", b"x")
    assert status == 405
    assert headers["Allow"] == "GET, POST"
    err = json.loads(raw)["error"]
    assert err["code"] == "method_not_allowed" and "PUT" in err["message"]


def test_auth_levels_accept_any_key_locally(host1):
    assert call(host1.url("/api/Echo"))[0] == 200  # function level, no key: Core Tools accepts
    assert call(host1.url("/api/Echo?code=whatever"))[0] == 200
    status, _, raw = call(host1.url("/api/AsyncFn?who=admin"), headers={"x-functions-key": "k"})
    assert (status, raw) == (200, b"async says admin")


def test_require_keys_option(host2):
    status, _, raw = call(host2.url("/hello/bob"))
    assert status == 401 and json.loads(raw)["error"]["code"] == "unauthorized"
    assert call(host2.url("/hello/bob"), headers={"x-functions-key": "any"})[0] == 200
    assert call(host2.url("/hello/bob?code=any"))[0] == 200


# --- settings -------------------------------------------------------------------------------

def test_local_settings_values_become_environment(host1):
    names = "FROM_SETTINGS,OVERRIDDEN,EMPTY_SETTING,AZURE_FUNCTIONS_ENVIRONMENT"
    env = json.loads(call(host1.url(f"/api/Echo?env={names}"))[2])["env"]
    assert env == {"FROM_SETTINGS": "from-settings", "OVERRIDDEN": "from-real-env",
                   "EMPTY_SETTING": "", "AZURE_FUNCTIONS_ENVIRONMENT": "Development"}
    assert "Skipping 'OVERRIDDEN' from local settings" in host1.output()


def test_apply_settings_rules():
    environ = {"SET": "real", "BLANK": ""}
    warnings = apply_settings({"SET": "s", "BLANK": "b", "NEW": "n", "EMPTY": "", "NULL": None,
                               "": "x"}, environ)
    assert environ == {"SET": "real", "BLANK": "b", "NEW": "n", "EMPTY": ""}
    assert len(warnings) == 3


# --- CORS -----------------------------------------------------------------------------------

def test_cors_wildcard(host1):
    status, headers, _ = call(host1.url("/api/Echo"), "OPTIONS", headers={
        "Origin": "http://web.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-custom"})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "POST"
    assert headers["Access-Control-Allow-Headers"] == "content-type,x-custom"
    status, headers, _ = call(host1.url("/api/Echo"), headers={"Origin": "http://web.example"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Origin" not in call(host1.url("/api/Echo"))[1]


def test_cors_specific_origin_with_credentials(host2):
    status, headers, _ = call(host2.url("/hello/x"), "OPTIONS", headers={
        "Origin": "http://allowed.example", "Access-Control-Request-Method": "GET"})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "http://allowed.example"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    status, headers, _ = call(host2.url("/hello/x?code=k"), headers={"Origin": "http://evil.example"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    status, headers, _ = call(host2.url("/hello/x?code=k"), headers={"Origin": "http://allowed.example"})
    assert headers["Access-Control-Allow-Origin"] == "http://allowed.example"


# --- concurrency, limits, failures ----------------------------------------------------------

def test_sync_functions_run_concurrently(host1):
    """Each call waits inside the function until the other one is inside too (a barrier): both
    are answered only when the host runs them at the same time."""
    results = []

    def one():
        results.append(call(host1.url("/api/Slow?meet=1")))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r[0] for r in results] == [200, 200], "the two requests did not overlap"
    (s1, e1), (s2, e2) = (json.loads(r[2]) for r in results)
    assert max(s1, s2) < min(e1, e2)


def test_expect_100_continue_is_answered_before_the_body(host1):
    """curl sends ``Expect: 100-continue`` for bodies over 1 MB and waits for the interim answer."""
    body = b"z" * 5000
    with socket.create_connection(("127.0.0.1", host1.port), timeout=10) as s:
        s.sendall(b"POST /api/Echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        assert s.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    status, _, answer = parse_answer(raw)
    assert status == 200 and json.loads(answer)["len"] == len(body)


def test_thread_pool_size_is_honoured(host2):
    """PYTHON_THREADPOOL_THREAD_COUNT=1 (host2): two sync calls at once run one after the other."""
    results = []

    def one():
        results.append(json.loads(call(host2.url("/nap?s=0.5"))[2]))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (s1, e1), (s2, e2) = sorted(results)
    assert s2 >= e1, "the two calls overlapped with a one-thread pool"


def test_declared_body_over_limit_is_413(host1):
    conn = http.client.HTTPConnection("127.0.0.1", host1.port, timeout=10)
    conn.putrequest("POST", "/api/Echo")
    conn.putheader("Content-Length", str(100 * 1024 * 1024 + 1))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413
    assert json.loads(resp.read())["error"]["code"] == "request_entity_too_large"
    conn.close()


def test_streamed_body_over_limit_is_413(host2):
    def chunks():
        for _ in range(4):
            yield b"x" * 500

    conn = http.client.HTTPConnection("127.0.0.1", host2.port, timeout=10)
    conn.request("POST", "/hello/big?code=k", body=chunks(), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    assert conn.getresponse().status == 413
    conn.close()
    assert call(host2.url("/hello/small?code=k"), "POST", b"y" * 900)[2] == b"hello small 900"


def test_exception_is_an_empty_500_as_the_real_host_maps_it(host1):
    """A function that raises: the worker reports a failed invocation, the host answers 500 with
    no body and no content type; the exception and its stack trace go to the log only."""
    invocation_id = "0b5d6a2e-1111-4c3b-9a3e-5f4b2f8e7d61"
    since = host1.mark()
    status, headers, raw = call(host1.url("/api/Boom"), headers={"x-test-invocation-id": invocation_id})
    assert (status, raw) == (500, b"")
    assert headers["Content-Length"] == "0" and "Content-Type" not in headers
    host1.wait_for_output(r"Executed 'Functions\.Boom' \(Failed, Id=" + invocation_id +
                          r", Duration=\d+ms\)", since)
    host1.wait_for_output(r"secret-detail-in-traceback", since)  # logged, with the stack
    host1.wait_for_output(r"Traceback", since)


@pytest.mark.parametrize("query", ["kind=bytes", "kind=int", "kind=none"])
def test_return_values_the_http_binding_refuses_are_500(host1, query):
    """bytes, an int, or None for a ``$return`` http binding: the worker cannot encode them."""
    assert call(host1.url(f"/api/RefusedReturns?{query}"))[:3:2] == (500, b"")


def test_value_returned_without_a_return_binding_is_500(host1):
    assert call(host1.url("/api/NoReturnBinding"))[:3:2] == (500, b"")


def test_cookies_become_set_cookie_headers(host1):
    status, headers, raw = call(host1.url("/api/Cookies"))
    assert (status, raw) == (200, b"with a cookie")
    assert headers["X-One"] == "1"
    assert headers.get_all("Set-Cookie") == [
        "sid=abc; expires=Thu, 01 Jan 2037 00:00:00 GMT; max-age=60; domain=example.test; "
        "path=/api; secure; samesite=lax; httponly"]


def test_repeated_headers_reach_the_function_joined(host1):
    conn = http.client.HTTPConnection("127.0.0.1", host1.port, timeout=10)
    conn.putrequest("GET", "/api/Echo")
    conn.putheader("X-Multi", "a")
    conn.putheader("X-Multi", "b")
    conn.endheaders()
    data = json.loads(conn.getresponse().read())
    conn.close()
    assert data["x_multi"] == "a,b"


def test_broken_import_is_500_and_others_still_work(host1):
    assert call(host1.url("/api/Broken"))[0] == 500
    assert call(host1.url("/api/Echo"))[0] == 200


def test_out_binding_and_request_log_line(host1):
    since = host1.mark()
    status, _, raw = call(host1.url("/api/OutBinding"))
    assert (status, raw) == (201, b"via out binding")
    host1.wait_for_output(r"\[\d{4}-\d\d-\d\dT[\d:.]+Z\] Executed 'Functions\.OutBinding' "
                          r"\(Succeeded, Id=[0-9a-f-]+, Duration=\d+ms\) GET /api/OutBinding -> 201", since)


# --- what the host refuses: the JSON error shape, limits, timeouts ---------------------------

def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> Tuple[bytes, bool]:
    """Send raw bytes; return everything answered and whether the host closed the connection
    (False when it was still open after ``timeout`` seconds)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return out, False
            if not chunk:
                return out, True
            out += chunk
        return out, False


def parse_answer(raw: bytes) -> Tuple[int, Dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def assert_json_error(raw: bytes, status: int, code: str, head: bool = False) -> Dict[str, str]:
    got, headers, body = parse_answer(raw)
    assert got == status, raw[:300]
    assert headers["content-type"].startswith("application/json"), raw[:300]
    if head:  # HEAD: the same headers, no body (RFC 9110)
        assert body == b"" and int(headers["content-length"]) > 0
    else:
        err = json.loads(body)["error"]
        assert err["code"] == code and set(err) == {"code", "message"}
    return headers


REQUEST_END = b"Host: x\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("request_bytes,status,code", [
    pytest.param(b"GET /api/Echo?image=" + b"A" * 9000 + b" HTTP/1.1\r\n" + REQUEST_END,
                 414, "uri_too_long", id="url-over-8KB"),
    pytest.param(b"GET /api/Echo HTTP/1.1\r\nX-Big: " + b"a" * 40000 + b"\r\n" + REQUEST_END,
                 431, "request_header_fields_too_large", id="header-over-32KB"),
    pytest.param(b"GET /api/Echo HTTP/1.1\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 8000)
                                                          for i in range(5)) + REQUEST_END,
                 431, "request_header_fields_too_large", id="headers-over-32KB-in-all"),
    pytest.param(b"GET /api/Echo HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150))
                 + REQUEST_END, 431, "request_header_fields_too_large", id="over-100-headers"),
    pytest.param(b"FOO /api/Echo HTTP/1.1\r\n" + REQUEST_END, 400, "bad_request", id="unknown-method"),
    pytest.param(b"GET /api/Echo HTTP/7.0\r\n" + REQUEST_END, 400, "bad_request", id="bad-version"),
    pytest.param(b"GET /api/Echo%00 HTTP/1.1\r\n" + REQUEST_END, 400, "bad_request", id="nul-in-path"),
    pytest.param(b"GET /api/Ec%0aho HTTP/1.1\r\n" + REQUEST_END, 400, "bad_request", id="newline-in-path"),
    pytest.param(b"GET /api/../api/Echo HTTP/1.1\r\n" + REQUEST_END, 400, "bad_request", id="dotdot"),
    pytest.param(b"GET /api/x/%2e%2e/Echo HTTP/1.1\r\n" + REQUEST_END, 400, "bad_request",
                 id="encoded-dotdot"),
    pytest.param(b"GET /api/NoSuchFunction HTTP/1.1\r\n" + REQUEST_END, 404, "not_found", id="no-route"),
    pytest.param(b"GET /api/Echo HTTP/1.1\r\nHost: exa mple:99999\r\nConnection: close\r\n\r\n", 400,
                 "bad_request", id="invalid-host"),
    pytest.param(b"GET /api/Echo HTTP/1.1\r\nX-Bytes: \xff\xfe\r\n" + REQUEST_END, 400, "bad_request",
                 id="non-ascii-header-value"),
    pytest.param(b"PUT /api/Echo HTTP/1.1\r\nContent-Length: 0\r\n" + REQUEST_END, 405,
                 "method_not_allowed", id="method-not-in-methods"),
    pytest.param(b"POST /api/Echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n" + REQUEST_END[:-2]
                 + b"\r\nzz\r\nnot hex\r\n", 400, "bad_request", id="bad-chunked-framing"),
])
def test_refusals_use_the_json_error_shape(host1, request_bytes, status, code):
    raw, _ = raw_exchange(host1.port, request_bytes)
    assert_json_error(raw, status, code)
    assert b"AAAA" not in raw  # never echoes the request back


def test_head_refusals_have_the_json_headers(host1):
    raw, _ = raw_exchange(host1.port, b"HEAD /api/Echo HTTP/1.1\r\n" + REQUEST_END)
    headers = assert_json_error(raw, 405, "method_not_allowed", head=True)
    assert headers["allow"] == "GET, POST"
    raw, _ = raw_exchange(host1.port, b"HEAD /api/NoSuchFunction HTTP/1.1\r\n" + REQUEST_END)
    assert_json_error(raw, 404, "not_found", head=True)


def test_content_encoding_is_passed_on_not_decoded(host1):
    """``Content-Encoding: gzip`` on a body that is not gzip: Kestrel hands the body over as sent
    (it does not decompress requests), so the function sees it and answers; never an empty 500."""
    status, _, raw = call(host1.url("/api/Echo"), "POST", b"hello",
                          {"Content-Encoding": "gzip", "Content-Type": "image/jpeg"})
    assert status == 200, raw
    assert json.loads(raw)["sha256"] == hashlib.sha256(b"hello").hexdigest()


@pytest.mark.parametrize("kind", ["urlencoded", "multipart"])
def test_forms_with_too_many_fields_are_refused_before_the_function(host1, kind):
    """15 MB of 1.5 M urlencoded pairs (or 300,000 multipart parts) would keep the app's form
    parser busy for seconds: the host counts the fields (ASP.NET Core's limit, 1024) first."""
    if kind == "urlencoded":
        body = b"&".join(b"k%d=v" % i for i in range(1_500_000))
        ctype = "application/x-www-form-urlencoded"
    else:
        part = b'--XyZ\r\nContent-Disposition: form-data; name="k"\r\n\r\nv\r\n'
        body = part * 300_000 + b"--XyZ--\r\n"
        ctype = "multipart/form-data; boundary=XyZ"
    since = host1.mark()
    status, headers, raw = call(host1.url(f"/api/Echo?form={kind}"), "POST", body,
                                {"Content-Type": ctype})
    assert status == 413 and headers["Content-Type"].startswith("application/json"), raw[:300]
    assert json.loads(raw)["error"]["code"] == "request_entity_too_large"
    host1.wait_for_output(r"Request POST /api/Echo -> 413 \(no function executed\)", since)
    # a form at the limit still reaches the function
    small = b"&".join(b"k%d=v" % i for i in range(1024))
    status, _, raw = call(host1.url("/api/Echo"), "POST", small,
                          {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and json.loads(raw)["len"] == len(small)


def test_access_log_never_records_the_query_string(host1):
    secret = "iVBORw0KGgoSECRETIMAGEDATA"
    since = host1.mark()
    assert call(host1.url(f"/api/Echo?image={secret}&threshold=0.5"))[0] == 200
    assert call(host1.url(f"/api/NoSuchFunction?image={secret}"))[0] == 404
    host1.wait_for_output(r"GET /api/Echo -> 200", since)
    host1.wait_for_output(r"GET /api/NoSuchFunction -> 404", since)  # both lines are written
    out = host1.output()
    assert secret not in out and "threshold=0.5" not in out


def test_slow_headers_get_408_and_the_connection_closed(host2):
    """Headers still incomplete after the headers timeout (1 s here, Kestrel's 30 s by default)."""
    raw, closed = raw_exchange(host2.port, b"GET /hello/x?code=k HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                               timeout=10)
    assert closed, "the host kept a slow-header connection open"
    assert_json_error(raw, 408, "request_timeout")


def test_slow_body_gets_408_and_the_connection_closed(host2):
    """A body slower than the minimum data rate after the grace period (1000 B/s after 1 s here)."""
    raw, closed = raw_exchange(host2.port, b"POST /hello/x?code=k HTTP/1.1\r\nHost: x\r\n"
                                           b"Content-Length: 900\r\n\r\n" + b"y" * 10, timeout=10)
    assert closed, "the host kept a slow-body connection open"
    assert_json_error(raw, 408, "request_timeout")


def test_idle_connections_are_closed(host2):
    raw, closed = raw_exchange(host2.port, b"", timeout=10)  # connects and says nothing
    assert closed and raw == b""
    # kept alive after a request, then idle
    raw, closed = raw_exchange(host2.port, b"GET /hello/x?code=k HTTP/1.1\r\nHost: x\r\n\r\n",
                               timeout=10)
    assert closed and parse_answer(raw)[0] == 200


# --- a client that hangs up mid-body; bodies over the app's own limit (issue 22) --------------

#: a 5,839-byte "JPEG" declared as 6,839 bytes, as the client of issue 22 sent it
SHORT_BODY = b"\xff\xd8\xff\xe0" + bytes(5835)
SHORT_HEAD = (b"POST /api/Echo HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
              b"Content-Length: 6839\r\n")


@pytest.mark.parametrize("how,expect", [("shutdown", False), ("close", False), ("reset", True)])
def test_a_client_hanging_up_mid_body_is_dropped_quietly(host1, how, expect):
    """The client sends 5,839 of 6,839 declared bytes, then closes its sending side, closes, or
    resets. The host closes the connection without an answer (Kestrel: "unexpected end of request
    content", the connection closed), logs one line: no traceback, no 500; and serves the next
    request. (The reset waits for 100 Continue, so the host is reading the body when it comes.)"""
    since = host1.mark()
    head = SHORT_HEAD + (b"Expect: 100-continue\r\n" if expect else b"") + b"\r\n"
    assert hang_up_mid_body(host1.port, head, SHORT_BODY, how) == b""
    log = host1.wait_for_output(r"Request POST /api/Echo: the client closed the connection after "
                                r"(\d+) of 6839 body bytes \(not answered\)", since)
    if how != "reset":  # an RST may discard what the host had not read yet
        assert "after 5839 of 6839 body bytes" in log
    status, _, raw = call(host1.url("/api/Echo"), "POST", b"next")
    assert status == 200 and json.loads(raw)["len"] == 4
    log = host1.output()[since:]
    assert "Traceback" not in log and "Host error" not in log and "-> 500" not in log, log


#: the real app's own body limit, set through its setting (MAX_BODY_BYTES; default 20 MiB)
APP_LIMIT = 8 << 20


@pytest.fixture(scope="module")
def app_host(tmp_path_factory, host_mode):
    """The real app, MAX_BODY_BYTES=8 MiB. No model server: nothing here reaches one."""
    tmp = tmp_path_factory.mktemp(f"app-limit-{host_mode}")
    handle = start_functions_host(PROJECT_ROOT, env={"MAX_BODY_BYTES": str(APP_LIMIT)},
                                  log_dir=tmp, mode=host_mode)
    yield handle
    handle.stop()


def test_the_host_takes_the_apps_body_limit_from_the_app(monkeypatch, tmp_path):
    """One number: the app's ``shared.config.limits().max_body_bytes`` and its 413 code."""
    monkeypatch.delenv("MAX_BODY_BYTES", raising=False)
    assert app_body_limit(PROJECT_ROOT) == BodyLimit(app_config.limits().max_body_bytes,
                                                     "payload_too_large", 413)
    monkeypatch.setenv("MAX_BODY_BYTES", "12345")
    assert app_body_limit(PROJECT_ROOT) == BodyLimit(12345, "payload_too_large", 413)
    monkeypatch.setenv("MAX_BODY_BYTES", "lots")  # malformed: the app answers 503 naming it
    assert app_body_limit(PROJECT_ROOT) is None
    assert app_body_limit(tmp_path) is None  # an app without such a module: the host's own limit


def test_a_declared_body_over_the_apps_limit_is_refused_unread(app_host):
    """Only the head is sent, with ``Expect: 100-continue``: the 413 comes anyway, in the app's
    error shape and code, with no 100 Continue first, so the host never waited for the body."""
    assert re.search(rf"Request bodies over {APP_LIMIT} bytes are refused before they are read "
                     r"\(the app's limit\)", app_host.output())
    with socket.create_connection(("127.0.0.1", app_host.port), timeout=30) as s:
        s.sendall(b"POST /api/HttpTriggerHumanPose HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"image/jpeg\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
                  % (APP_LIMIT + 1))
        raw = read_answer(s)
    headers = assert_json_error(raw, 413, "payload_too_large")
    assert headers["connection"] == "close"
    assert f"the limit is {APP_LIMIT}" in json.loads(parse_answer(raw)[2])["error"]["message"]
    # a body at the limit still reaches the app (which finds it is not a picture)
    status, _, raw = call(app_host.url("/api/HttpTriggerHumanPose"), "POST", bytes(APP_LIMIT),
                          {"Content-Type": "image/jpeg"})
    assert status == 415 and json.loads(raw)["error"]["code"] == "invalid_image", raw[:300]


def test_a_chunked_body_over_the_apps_limit_is_refused_soon_after_it(app_host):
    """A client ready to send 5x the limit, chunked, sending until the host answers: 413 once the
    limit is passed, long before the whole body, and the host's memory grows by about the limit
    (what it buffers for the function), not by the body."""
    piece = bytes(256 << 10)
    frames = itertools.chain(itertools.repeat(b"%x\r\n%s\r\n" % (len(piece), piece),
                                              5 * APP_LIMIT // len(piece)), [b"0\r\n\r\n"])
    before = app_host.memory("VmRSS")
    app_host.reset_peak_memory()
    raw, handed = upload_until_answered(
        app_host.port, b"POST /api/HttpTriggerObjectDetection HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n", frames)
    growth = app_host.memory("VmHWM") - before
    assert_json_error(raw, 413, "payload_too_large")
    assert APP_LIMIT < handed < 5 * APP_LIMIT, handed
    assert growth < 2 * APP_LIMIT, f"the host grew by {growth / 2 ** 20:.0f} MiB"
    status, _, _ = call(app_host.url("/admin/host/status"))
    assert status == 200


_TOKEN = st.text(alphabet=string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1,
                 max_size=12)
_PATH = st.lists(st.one_of(st.sampled_from(["api", "Echo", "ECHO", "..", ".", "%00", "%2e%2e",
                                            "%ff", "%", "products", "shoes", "42", ""]),
                           st.text(alphabet=string.printable.strip() + "\u00e9", max_size=8)),
                 max_size=5)
_HEADER = st.tuples(_TOKEN, st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b))


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.one_of(st.sampled_from(["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "PATCH"]),
                        _TOKEN),
       path=_PATH, query=st.text(max_size=20), headers=st.lists(_HEADER, max_size=6),
       body=st.binary(max_size=64))
def test_fuzzed_requests_never_get_a_500_or_a_plain_text_refusal(host1, method, path, query,
                                                                 headers, body):
    target = ("/" + "/".join(path)).encode("utf-8", "replace").replace(b" ", b"%20")
    if query:
        target += b"?" + query.encode("utf-8").replace(b" ", b"+").replace(b"#", b"%23")
    head = b"".join(k.encode() + b": " + v + b"\r\n" for k, v in headers
                    if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                         "host", "expect"))
    request_bytes = (method.encode() + b" " + target + b" HTTP/1.1\r\nHost: x\r\n" + head +
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    raw, closed = raw_exchange(host1.port, request_bytes, timeout=20)
    assert closed and raw, f"no answer to {request_bytes[:200]!r}"
    status, got_headers, answer = parse_answer(raw)
    assert status < 500, (request_bytes[:200], raw[:300])
    if status >= 400:
        assert got_headers.get("content-type", "").startswith("application/json"), raw[:300]
        if method != "HEAD" and answer:
            assert set(json.loads(answer)["error"]) == {"code", "message"}


def test_limits_come_from_options_and_environment():
    limits = FrontLimits.from_env({"FUNCTIONS_HOST_HEADERS_TIMEOUT": "2.5",
                                   "FUNCTIONS_HOST_MAX_FORM_FIELDS": "10"}, body_grace=3)
    assert (limits.headers_timeout, limits.max_form_fields, limits.body_grace) == (2.5, 10, 3.0)
    assert (limits.keepalive_timeout, limits.min_body_rate) == (130.0, 240.0)  # Kestrel's
    with pytest.raises(ValueError, match="FUNCTIONS_HOST_KEEPALIVE_TIMEOUT"):
        FrontLimits.from_env({"FUNCTIONS_HOST_KEEPALIVE_TIMEOUT": "soon"})


# --- unit: route templates ------------------------------------------------------------------

@pytest.mark.parametrize("template,path,expected", [
    ("api/Echo", "api/echo", {}),
    ("api/items/{id:int}", "api/items/7", {"id": "7"}),
    ("api/items/{id:int}", "api/items/x", None),
    ("api/items/{id?}", "api/items", {}),
    ("api/files/{*rest}", "api/files/a/b/c.txt", {"rest": "a/b/c.txt"}),
    ("api/v/{name=def}", "api/v", {"name": "def"}),
    ("{name}", "", None),
])
def test_compile_route(template, path, expected):
    assert compile_route(template).match(path) == expected


# --- process behaviour ----------------------------------------------------------------------

def test_port_in_use_is_a_clear_error(tmp_path):
    root = _app2(tmp_path / "app")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "emulators.functions_host", "--root",
                               str(root), "--port", str(port)], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert f"Port {port} is unavailable" in proc.stderr
    assert "Traceback" not in proc.stderr
