"""Function keys on the API: the HttpTrigger* routes and the CVAT route take ``authLevel: function``,
the web frontend's four compatibility routes and /api/health stay anonymous (README "Function keys"
says why). The local host checks keys only with ``--enforce-keys`` (as Azure does: the
``x-functions-key`` header or ``?code=``), and says at startup whether it checks them; by default it
does not, as Core Tools does not. Both invocation modes, Microsoft's worker included, with the
project's own function.json files.

The calls are GETs: every route of this app takes all methods and the app answers a GET with its
own JSON 405, so a 405 ``method_not_allowed`` proves the call passed the key check and reached the
function without needing a model server; the host's refusal is a 401 ``unauthorized``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from scripts.tooling.azurite import free_port
from shared import catalog
from tests.fixtures.functions_host import start_functions_host
from tests.httpclient import request

ROOT = Path(__file__).resolve().parent.parent
KEY = "test-key-Zq8vW1"

#: route -> why it is keyed or open
API_ROUTES = [f"/api/{e.function}" for e in catalog.ENDPOINTS]
FRONTEND_ROUTES = [f"/api/{e.compat_function}" for e in catalog.ENDPOINTS]
KEYED = API_ROUTES + ["/api/cvat/detector"]
OPEN = FRONTEND_ROUTES + ["/api/health"]


def _function_folders() -> Dict[str, str]:
    """function folder -> authLevel, read from each function.json."""
    out = {}
    for path in sorted(ROOT.glob("*/function.json")):
        bindings = json.loads(path.read_text())["bindings"]
        [trigger] = [b for b in bindings if b["type"] == "httpTrigger"]
        out[path.parent.name] = trigger.get("authLevel", "function")
    return out


def test_the_api_routes_take_keys_and_the_frontends_do_not():
    levels = _function_folders()
    for e in catalog.ENDPOINTS:
        assert levels[e.function] == "function", e.function
        assert levels[e.compat_function] == "anonymous", e.compat_function
    assert levels["CvatDetector"] == "function"
    assert levels["HttpTriggerHealth"] == "anonymous"
    assert set(levels) == {e.function for e in catalog.ENDPOINTS} | {e.compat_function for e in catalog.ENDPOINTS} \
        | {"CvatDetector", "HttpTriggerHealth"}


def _env() -> Dict[str, str]:
    """Model servers on a port nothing listens on: health answers without a model server."""
    port = str(free_port())
    env = {f"{e.prefix}_IPADDRESS": "127.0.0.1" for e in catalog.ENDPOINTS}
    env.update({f"{e.prefix}_PORT": port for e in catalog.ENDPOINTS})
    return env


def _get(host, path: str, headers=None) -> Tuple[int, str]:
    r = request(host.url(path), None, method="GET", headers=headers or {}, timeout=30)
    try:
        code = json.loads(r.body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = ""
    return r.status, code


@pytest.fixture(scope="module", params=("worker", "in-house"))
def hosts(request, tmp_path_factory):
    """(default host, host with --enforce-keys and FUNCTIONS_HOST_FUNCTION_KEY, host with
    --enforce-keys and a key of its own) in one invocation mode."""
    mode = request.param
    tmp = tmp_path_factory.mktemp(f"keys-{mode}")
    started: List = []
    try:
        started.append(start_functions_host(env=_env(), log_dir=tmp, mode=mode, timeout=60))
        started.append(start_functions_host(env={**_env(), "FUNCTIONS_HOST_FUNCTION_KEY": KEY}, log_dir=tmp,
                                            args=["--enforce-keys"], mode=mode, timeout=60))
        started.append(start_functions_host(env={**_env(), "FUNCTIONS_HOST_FUNCTION_KEY": ""}, log_dir=tmp,
                                            args=["--enforce-keys"], mode=mode, timeout=60))
        assert [h.mode for h in started] == [mode] * 3
        yield tuple(started)
    finally:
        for h in started:
            h.stop()


def test_with_enforce_keys_the_api_needs_the_key_and_the_frontend_does_not(hosts):
    _, enforcing, _ = hosts
    for path in KEYED:
        assert _get(enforcing, path) == (401, "unauthorized"), path
        assert _get(enforcing, path, {"x-functions-key": "wrong"}) == (401, "unauthorized"), path
        assert _get(enforcing, f"{path}?code=wrong") == (401, "unauthorized"), path
        assert _get(enforcing, path, {"x-functions-key": KEY}) == (405, "method_not_allowed"), path
        assert _get(enforcing, f"{path}?code={KEY}") == (405, "method_not_allowed"), path
    for path in FRONTEND_ROUTES:
        assert _get(enforcing, path) == (405, "method_not_allowed"), path
    status, _ = _get(enforcing, "/api/health")
    assert status in (200, 503)
    out = enforcing.output()
    assert "Function keys are enforced" in out and KEY not in out  # a key it was given is not printed


def test_a_key_made_by_the_host_is_printed_and_is_the_one_it_checks(hosts):
    _, _, own = hosts
    m = own.wait_for_output(r"Function key \(made for this run[^)]*\): (\S+)")
    key = re.search(r"Function key \(made for this run[^)]*\): (\S+)", m).group(1)
    assert len(key) >= 32
    assert _get(own, API_ROUTES[0]) == (401, "unauthorized")
    assert _get(own, API_ROUTES[0], {"x-functions-key": key}) == (405, "method_not_allowed")


def test_by_default_no_route_needs_a_key_and_the_host_says_so(hosts):
    default, _, _ = hosts
    for path in KEYED + FRONTEND_ROUTES:
        assert _get(default, path)[0] == 405, path
        assert _get(default, path, {"x-functions-key": "anything"})[0] == 405, path
    assert _get(default, "/api/health")[0] in (200, 503)
    assert "Function keys are not checked locally (as with Core Tools)" in default.output()


def test_request_http_shows_where_the_key_goes():
    text = (ROOT / "request.http").read_text()
    assert re.search(r"^@key\s*=\s*$", text, re.M), "request.http declares an empty @key (local)"
    api_requests = re.findall(r"^(?:POST|GET) \{\{host\}\}/(HttpTrigger\w+|cvat/detector)[^\n]*\n((?:[^\n]+\n)*)",
                              text, re.M)
    assert api_requests
    for route, headers in api_requests:
        if route == "HttpTriggerHealth":
            continue
        assert "x-functions-key: {{key}}" in headers, route


def test_openapi_says_which_operations_take_a_key():
    import yaml

    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    schemes = spec["components"]["securitySchemes"]
    assert (schemes["functionKey"]["in"], schemes["functionKey"]["name"]) == ("header", "x-functions-key")
    assert (schemes["functionCode"]["in"], schemes["functionCode"]["name"]) == ("query", "code")
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            keyed = bool(op.get("security"))
            assert keyed == (path in KEYED), (path, method)
            if keyed:
                assert op["security"] == [{"functionKey": []}, {"functionCode": []}], path
    assert "security" not in spec  # no global requirement: the frontend's routes stay open
