"""The function folders: thin modules, cheap to import, and the shape Core Tools expects."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared import catalog

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = {e.function: e.task for e in catalog.ENDPOINTS}
HEAVY = ["numpy", "cv2", "PIL", "grpc", "tritonclient", "ovmsclient", "openvino", "tensorflow",
         "azure.storage.blob"]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_json(name):
    spec = json.loads((ROOT / name / "function.json").read_text())
    trigger = [b for b in spec["bindings"] if b["type"] == "httpTrigger"]
    out = [b for b in spec["bindings"] if b["type"] == "http"]
    assert len(trigger) == 1 and trigger[0]["direction"] == "in" and trigger[0]["name"] == "req"
    assert "post" in trigger[0]["methods"]
    assert out and out[0]["name"] == "$return"
    assert spec["scriptFile"] == "__init__.py"


@pytest.mark.parametrize("name,task", FUNCTIONS.items())
def test_main_hands_the_request_to_its_task(name, task, monkeypatch):
    """What the worker calls: ``main(req, context)`` (names as function.json binds them) passes the
    request and context to shared.http.handle with its own task, and returns its answer."""
    import importlib
    import inspect

    import azure.functions as func

    module = importlib.import_module(name)
    params = list(inspect.signature(module.main).parameters)
    spec = json.loads((ROOT / name / "function.json").read_text())
    trigger = next(b for b in spec["bindings"] if b["type"] == "httpTrigger")
    assert params == [trigger["name"], "context"]
    calls = []
    answer = func.HttpResponse(b"sentinel", status_code=299)
    monkeypatch.setattr(module, "handle", lambda *a: calls.append(a) or answer)
    req = func.HttpRequest("POST", "/api/x", body=b"")
    ctx = object()
    assert module.main(req, ctx) is answer
    assert calls == [(req, task, ctx)]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_import_pulls_in_no_heavy_module(name):
    """Cold start: the heavy modules are imported on the first request, not at import."""
    probe = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import {name}; "
             f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_host_json_and_settings():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    assert host["extensions"]["http"]["routePrefix"] == "api"
    values = json.loads((ROOT / "local.settings.json").read_text())["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    for endpoint in catalog.ENDPOINTS:
        assert values[f"{endpoint.prefix}_MODEL_NAME"] == endpoint.model_name
        assert values[f"{endpoint.prefix}_IPADDRESS"] and values[f"{endpoint.prefix}_PORT"].isdigit()


def test_requirements_hold_only_what_the_app_imports():
    lines = [l.split("#")[0].strip().lower() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    names = [l for l in lines if l]
    for banned in ("tensorflow", "openvino", "pytest"):
        assert not any(banned in n for n in names)
    for needed in ("azure-functions", "ovmsclient", "tritonclient[grpc]", "numpy", "opencv-python-headless", "pillow"):
        assert any(n.startswith(needed) for n in names)
