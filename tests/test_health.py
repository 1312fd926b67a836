"""GET /api/health: 200 when the four configured models are ready, 503 (with Retry-After) when one
is missing or its server is down or stalled, fast, cached for HEALTH_CACHE_SECONDS, 405 for
other methods; through ``main(req)`` and over HTTP through the local Functions host."""
from __future__ import annotations

import json
import time
import types
from pathlib import Path

import azure.functions as func
import pytest

import HttpTriggerHealth
from emulators.ovms.launcher import free_port, start_server
from shared import catalog, health, serving
from shared.serving.grpc_common import READINESS_DEADLINE_S
from tests.fixtures.functions_host import start_functions_host
from tests.test_openapi import (SERVED, body_validator, four_model_env, generated_repo, request,
                                server_config, write_charlist)

NAMES = tuple(e.function for e in catalog.ENDPOINTS)

#: The probe must answer a server that is down or stalled after its own short timeout, never after
#: the inference deadline (INFERENCE_S here). Measured with two busy loops on the 2 cores (Intel
#: Xeon, 30 probes each): down 0.52 to 0.55 s (connect timeout 0.5 s), stalled 1.02 to 1.04 s
#: (readiness deadline 1 s), stalled over HTTP 1.02 to 1.04 s. Each bound is its timeout plus
#: SLACK_S (27x the worst overhead measured), and stays 4x under the inference deadline.
SLACK_S = 1.5
CONNECT_S, INFERENCE_S = 0.5, 10.0


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A model server with all four models and one without the detection model."""
    root = tmp_path_factory.mktemp("health")
    models = generated_repo(root / "models")
    charlist = write_charlist(root / "chars.txt")
    three = tuple(n for n in models if n != SERVED["OBJECTDETECTION"])
    full = start_server(["--config_path", str(server_config(root, models))], timeout=120)
    try:
        partial = start_server(["--config_path", str(server_config(root, models, three))], timeout=120)
    except BaseException:
        full.stop()
        raise
    yield {"full": full, "partial": partial, "charlist": charlist, "root": root}
    partial.stop()
    full.stop()


@pytest.fixture
def settings(monkeypatch, servers):
    """``settings(port, **extra)``: point every endpoint at a server, forget cached answers and adapters."""
    def apply(port: int, **extra: str) -> None:
        for k, v in four_model_env(port, servers["charlist"], **extra).items():
            monkeypatch.setenv(k, v)
        health.reset()
        serving.reset()

    yield apply
    health.reset()
    serving.reset()


def _get(method: str = "GET") -> func.HttpResponse:
    req = func.HttpRequest(method=method, url="http://localhost/api/health", headers={}, params={}, body=b"")
    return HttpTriggerHealth.main(req)


def _timed_get(method: str = "GET"):
    t = time.perf_counter()
    resp = _get(method)
    return resp, time.perf_counter() - t


def _body(resp: func.HttpResponse) -> dict:
    data = json.loads(resp.get_body())
    if resp.status_code in (200, 503):
        body_validator("/api/health", "get", resp.status_code).validate(data)
    return data


def test_all_ready_is_200(settings, servers):
    settings(servers["full"].port)
    resp = _get()
    body = _body(resp)
    assert resp.status_code == 200, body
    assert body["status"] == "ok" and body["app"]["alive"] is True
    assert set(body["models"]) == set(NAMES)
    for endpoint in catalog.ENDPOINTS:
        m = body["models"][endpoint.function]
        assert (m["name"], m["ready"], m["state"]) == (SERVED[endpoint.prefix], True, "AVAILABLE"), m
        assert m["version"] == "1"
    assert resp.headers.get("Cache-Control") == "no-store" and "Retry-After" not in resp.headers


def test_reports_the_version_that_serves(settings, servers):
    settings(servers["full"].port)
    body = _body(_get())
    assert [body["models"][n]["version"] for n in NAMES] == ["1"] * 4


def test_one_model_missing_is_503(settings, servers):
    settings(servers["partial"].port)
    resp = _get()
    body = _body(resp)
    assert resp.status_code == 503 and body["status"] == "degraded"
    assert resp.headers.get("Retry-After", "").isdigit()
    assert not body["models"]["HttpTriggerObjectDetection"]["ready"]
    assert body["models"]["HttpTriggerObjectDetection"]["state"] != "AVAILABLE"
    assert all(body["models"][n]["ready"] for n in NAMES[:3])
    # fast: the model server's own answer, not a readiness deadline that ran out
    assert body["models"]["HttpTriggerObjectDetection"]["state"] == "NOT_FOUND"


def test_server_down_is_503_fast(settings):
    settings(free_port(), OVMS_CONNECT_TIMEOUT_SECONDS=str(CONNECT_S), OVMS_TIMEOUT_SECONDS=str(INFERENCE_S))
    resp, elapsed = _timed_get()  # nothing listens there
    body = _body(resp)
    assert resp.status_code == 503
    # every model failed on the connect timeout (not on a call that waited for its deadline)
    assert {m["state"] for m in body["models"].values()} == {"UNREACHABLE"}, body
    assert elapsed < CONNECT_S + SLACK_S, f"health took {elapsed:.2f} s with the model server down"


def test_one_server_down_is_503(settings, servers):
    settings(servers["full"].port, HANDWRITTEN_PORT=str(free_port()))
    resp = _get()
    body = _body(resp)
    assert resp.status_code == 503
    assert [n for n in NAMES if not body["models"][n]["ready"]] == ["HttpTriggerHandwritten"]


def test_misconfigured_model_is_503_not_500(settings, servers):
    settings(servers["full"].port, COLORIZATION_PORT="not-a-port")
    resp = _get()
    assert resp.status_code == 503
    assert _body(resp)["models"]["HttpTriggerColorization"]["state"] == "MISCONFIGURED"


def test_answer_is_cached_for_health_cache_seconds(settings, servers, monkeypatch):
    """Health's clock is a fake one here (a loaded machine cannot age the cache behind the test's
    back) and its readiness checks are counted."""
    clock = [1000.0]
    monkeypatch.setattr(health, "time", types.SimpleNamespace(
        monotonic=lambda: clock[0], time=time.time, strftime=time.strftime, gmtime=time.gmtime))
    checked = []
    model_status = health._model_status
    monkeypatch.setattr(health, "_model_status", lambda prefix: checked.append(prefix) or model_status(prefix))
    monkeypatch.setenv("HEALTH_CACHE_SECONDS", "1.5")
    settings(servers["full"].port)
    first = _get()
    assert first.status_code == 200 and len(checked) == len(NAMES)
    # the model server "goes away" (settings now point at nothing): the cached answer is served
    for k, v in four_model_env(free_port(), servers["charlist"]).items():
        monkeypatch.setenv(k, v)
    serving.reset()
    clock[0] += 1.4
    again = _get()
    assert again.status_code == 200 and _body(again)["checked_at"] == _body(first)["checked_at"]
    assert len(checked) == len(NAMES), "a cached answer must not contact the model servers"
    clock[0] += 0.2  # 1.6 s after the first answer
    assert _get().status_code == 503, "the cache outlived HEALTH_CACHE_SECONDS"
    assert len(checked) == 2 * len(NAMES)


def test_stalled_server_answers_before_the_inference_deadline(settings, servers):
    """A server that accepts connections but answers nothing (SIGSTOP) must not hold the probe for
    the inference deadline (10 s here): the readiness call has its own short deadline."""
    settings(servers["full"].port, OVMS_TIMEOUT_SECONDS=str(INFERENCE_S))
    assert _get().status_code == 200  # channels connected, then the server stalls
    health.reset()
    servers["full"].pause()
    try:
        resp, elapsed = _timed_get()
    finally:
        servers["full"].resume()
    models = _body(resp)["models"].values()
    assert resp.status_code == 503 and {m["state"] for m in models} == {"TIMEOUT"}
    # the readiness deadline ran out, not the inference deadline
    assert all(m["message"].endswith(f"within {READINESS_DEADLINE_S:g} s") for m in models), models
    assert elapsed < READINESS_DEADLINE_S + SLACK_S, f"health took {elapsed:.2f} s against a stalled server"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_are_405(method):
    resp = _get(method)
    assert resp.status_code == 405
    body = json.loads(resp.get_body())
    body_validator("/api/health", "post", 405).validate(body)
    assert resp.headers.get("Allow") == "GET, HEAD"


def test_over_http(servers):
    env = four_model_env(servers["full"].port, servers["charlist"], HEALTH_CACHE_SECONDS="0.01",
                         OVMS_TIMEOUT_SECONDS=str(INFERENCE_S))
    host = start_functions_host(env=env, log_dir=Path(servers["root"]), timeout=90)
    try:
        status, ctype, data, headers = request(host.url("/api/health"), method="GET")
        assert status == 200 and ctype.startswith("application/json"), data[:300]
        assert json.loads(data)["status"] == "ok"
        status, _, data, _ = request(host.url("/api/health"), method="HEAD")
        assert status == 200 and data == b""
        status, _, data, headers = request(host.url("/api/health"), b"{}", "application/json", method="POST")
        assert status == 405 and json.loads(data)["error"]["code"] == "method_not_allowed"
        time.sleep(0.05)  # past HEALTH_CACHE_SECONDS: the next probe sees the stall
        servers["full"].pause()
        try:
            t = time.perf_counter()
            status, _, data, headers = request(host.url("/api/health"), method="GET")
            elapsed = time.perf_counter() - t
        finally:
            servers["full"].resume()
        assert status == 503 and headers.get("Retry-After"), data[:300]
        models = json.loads(data)["models"].values()
        assert all(m["message"].endswith(f"within {READINESS_DEADLINE_S:g} s") for m in models), data[:600]
        assert elapsed < READINESS_DEADLINE_S + SLACK_S, f"health took {elapsed:.2f} s against a stalled server"
    finally:
        host.stop()
