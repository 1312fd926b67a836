"""The local Functions host against tiny function apps written here (not the real endpoints)."""
from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest

from emulators.functions_host.discovery import apply_settings, compile_route
from scripts.tooling.modelsearch import PROJECT_ROOT
from tests.fixtures.functions_host import start_functions_host
from tests.httpclient import request

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
        "len": len(body), "sha256": hashlib.sha256(body).hexdigest(), "env": env,
        "helper": helper(),
        "is_request": isinstance(req, func.HttpRequest), "is_context": isinstance(context, func.Context),
        "invocation_id": context.invocation_id, "function_name": context.function_name,
        "function_directory": context.function_directory,
        "trace_parent": context.trace_context.trace_parent,
        "trace_state": context.trace_context.trace_state,
        "retry": [context.retry_context.retry_count, context.retry_context.max_retry_count],
        "tls_invocation_id": getattr(context.thread_local_storage, "invocation_id", None),
    }), mimetype="application/json")
'''

SLOW = '''
import json, time
import azure.functions as func

def main(req: func.HttpRequest) -> func.HttpResponse:
    start = time.time()
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
    _function(root, "Hello", '''
import azure.functions as func
def main(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello " + req.route_params["name"] + " " + str(len(req.get_body())))
''', [_trigger(("get", "post"), "function", "hello/{name}"), HTTP_OUT])
    return root


@pytest.fixture(scope="module")
def host1(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app1")
    root = _app1(tmp / "app")
    handle = start_functions_host(root, env={"OVERRIDDEN": "from-real-env"}, log_dir=tmp)
    handle.root = root
    yield handle
    assert handle.stop() == 0, handle.output()  # SIGTERM: clean exit


@pytest.fixture(scope="module")
def host2(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app2")
    root = _app2(tmp / "app")
    handle = start_functions_host(root, env={"FUNCTIONS_HOST_MAX_BODY_BYTES": "1000"},
                                  log_dir=tmp, args=["--require-keys"])
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
    assert "Broken" in out and "ModuleNotFoundError" in out


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
    assert data["is_request"] and data["is_context"] and data["helper"] == "shared-ok"
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
    results = []

    def one():
        results.append(json.loads(call(host1.url("/api/Slow?s=1"))[2]))

    started = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert len(results) == 2
    (s1, e1), (s2, e2) = results
    assert max(s1, s2) < min(e1, e2), "the two requests did not overlap"
    assert elapsed < 1.9


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


def test_exception_is_500_without_traceback(host1):
    status, _, raw = call(host1.url("/api/Boom"))
    assert status == 500
    assert b"secret-detail" not in raw and b"Traceback" not in raw
    time.sleep(0.2)
    out = host1.output()
    assert "secret-detail-in-traceback" in out  # logged
    assert re.search(r"Executed 'Functions\.Boom' \(Failed, Id=[0-9a-f-]+, Duration=\d+ms\)", out)


def test_broken_import_is_500_and_others_still_work(host1):
    assert call(host1.url("/api/Broken"))[0] == 500
    assert call(host1.url("/api/Echo"))[0] == 200


def test_out_binding_and_request_log_line(host1):
    status, _, raw = call(host1.url("/api/OutBinding"))
    assert (status, raw) == (201, b"via out binding")
    time.sleep(0.2)
    assert re.search(r"\[\d{4}-\d\d-\d\dT[\d:.]+Z\] Executed 'Functions\.OutBinding' "
                     r"\(Succeeded, Id=[0-9a-f-]+, Duration=\d+ms\) GET /api/OutBinding -> 201",
                     host1.output())


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
