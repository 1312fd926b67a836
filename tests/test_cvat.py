"""CVAT auto-annotation: ``POST /api/cvat/detector`` and the nuclio function (serverless/).

- The function.yaml files are generated from models/labels/ and in sync with them (CVAT's
  annotations: name, type detector, framework openvino, spec = the labels as [{"id", "name"}]).
- For the three real detectors (one model server, each served under its Open Model Zoo name), on the
  shared photos, CVAT's exact request (``{"image": "<base64 JPEG>", "threshold": <float>}``) gets the
  bare list of ``{"label", "points", "type", "confidence"}`` from both the HTTP route and the nuclio
  handler (called with nuclio-sdk's Event and Context), with the same boxes, confidences and labels
  as the detection endpoint's JSON; ``threshold`` is honoured; labels come from the labels file.
- The staged deployment folder runs on its own (no project on the path).
"""
from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List

import pytest
import yaml

from emulators.ovms.launcher import start_server, write_config
from scripts.tooling import cvat
from scripts.tooling.modelsearch import PROJECT_ROOT
from shared import serving
from tests.frontend_requests import IMAGES
from tests.httpclient import request
from tests.realmodels import real_model
from tests.settings import endpoint_env
from tests.test_detection_serving import PHOTOS, REAL

LABELS = PROJECT_ROOT / "models" / "labels"
SHAPE_KEYS = {"label", "points", "type", "confidence"}


def _label_file_names(model: str) -> Dict[int, str]:
    """The labels file read independently of the app: line i names label id i."""
    lines = (LABELS / f"{model}.txt").read_text(encoding="utf-8").splitlines()
    return {i: line.strip() for i, line in enumerate(lines) if line.strip()}


# ---- function.yaml ----------------------------------------------------------------------------

def test_function_yaml_files_are_generated_and_in_sync():
    assert cvat.detectors() == sorted(REAL)
    assert cvat.generate(check=True) == [], "run: python -m scripts.tooling.cvat generate"
    assert sorted(p.parent.name for p in (PROJECT_ROOT / "serverless").glob("*/function.yaml")) == sorted(REAL)


@pytest.mark.parametrize("model", REAL)
def test_function_yaml_has_what_cvat_reads(model):
    doc = yaml.safe_load((PROJECT_ROOT / "serverless" / model / "function.yaml").read_text(encoding="utf-8"))
    notes = doc["metadata"]["annotations"]
    assert notes["type"] == "detector" and notes["framework"] == "openvino" and model in notes["name"]
    spec = json.loads(notes["spec"])
    assert spec == [{"id": i, "name": n} for i, n in sorted(_label_file_names(model).items())]
    assert len({s["name"] for s in spec}) == len(spec)
    assert doc["spec"]["handler"] == "main:handler" and doc["spec"]["runtime"].startswith("python:")
    env = {e["name"]: e["value"] for e in doc["spec"]["env"]}
    assert env["OBJECTDETECTION_MODEL_NAME"] == model
    assert env["OBJECTDETECTION_LABELS_PATH"] == cvat.LABELS_IN_IMAGE
    assert {"OBJECTDETECTION_IPADDRESS", "OBJECTDETECTION_PORT", "OVMS_API"} <= set(env)
    install = doc["spec"]["build"]["directives"]["preCopy"][0]["value"]
    assert all(f"'{r}'" in install for r in cvat.requirements())


def test_generate_check_notices_a_stale_file(tmp_path, monkeypatch):
    monkeypatch.setattr(cvat, "FUNCTIONS_DIR", tmp_path)
    assert len(cvat.generate(check=True)) == len(REAL)  # missing
    assert len(cvat.generate()) == len(REAL) and cvat.generate(check=True) == []
    path = tmp_path / REAL[0] / "function.yaml"
    path.write_text(path.read_text().replace('"person"', '"people"'))
    assert cvat.generate(check=True) == [path]
    assert cvat.main(["generate", "--check"]) == 1


def test_duplicate_labels_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(cvat, "LABELS_DIR", tmp_path)
    (tmp_path / "dup.txt").write_text("person\ncar\nperson\n")
    with pytest.raises(ValueError, match="duplicate"):
        cvat.function_yaml("dup")


# ---- real detectors: HTTP route, nuclio handler, detection endpoint ---------------------------

def _env(port: int, model: str) -> Dict[str, str]:
    return endpoint_env("OBJECTDETECTION", port, model, OBJECTDETECTION_LABELS_PATH=str(LABELS / f"{model}.txt"))


@pytest.fixture(scope="module")
def detectors(tmp_path_factory, app_host_factory):
    """One model server with the three real detectors; a Functions host per detector."""
    bases = {n: real_model(n) for n in REAL}
    root = tmp_path_factory.mktemp("cvat")
    cfg = write_config(root / "config.json", [{"name": n, "base_path": str(b)} for n, b in bases.items()])
    server = start_server(["--config_path", str(cfg)], timeout=120, log_path=root / "ovms.log")
    try:
        with ThreadPoolExecutor(len(REAL)) as pool:
            futures = {n: pool.submit(app_host_factory, _env(server.port, n)) for n in REAL}
            hosts = {n: f.result() for n, f in futures.items()}
        yield server, hosts
    finally:
        for h in locals().get("hosts", {}).values():
            h.stop()
        server.stop()
        serving.reset()


def _cvat_body(photo: str, threshold=None) -> bytes:
    """CVAT's lambda manager payload: the frame as base64 JPEG, threshold only when set."""
    payload = {"image": base64.b64encode((IMAGES / photo).read_bytes()).decode("ascii")}
    if threshold is not None:
        payload["threshold"] = threshold
    return json.dumps(payload).encode()


def _http_cvat(host, photo: str, threshold=None) -> list:
    resp = request(host.url("/api/cvat/detector"), _cvat_body(photo, threshold), content_type="application/json")
    assert resp.status == 200, resp.body[:300]
    assert resp.content_type.split(";")[0] == "application/json"
    return json.loads(resp.body)


def _endpoint(host, photo: str, threshold=None) -> List[dict]:
    query = f"?threshold={threshold}" if threshold is not None else ""
    resp = request(host.url("/api/HttpTriggerObjectDetection" + query), (IMAGES / photo).read_bytes(),
                   content_type="image/jpeg")
    assert resp.status == 200, resp.body[:300]
    return json.loads(resp.body)["detections"]


def _nuclio_event(body: bytes):
    """The event as nuclio's Python wrapper builds it from the processor's (msgpack) message: an
    application/json body arrives parsed."""
    from nuclio_sdk import Event, EventDeserializerKinds

    message = {"body": body, "content_type": "application/json", "headers": {},
               "trigger": {"kind": "http", "name": "myHttpTrigger"}, "fields": {}, "id": "1",
               "method": "POST", "path": "/", "size": len(body), "timestamp": 0, "url": "http://cvat/",
               "shard_id": 0, "num_shards": 1, "type": "", "type_version": "", "version": ""}
    event = Event.deserialize(message, kind=EventDeserializerKinds.msgpack)
    assert isinstance(event.body, dict)
    return event


@pytest.fixture
def nuclio(monkeypatch):
    """``(model, port) -> call(body) -> (status, answer)`` through serverless/main.py."""
    from nuclio_sdk import Context, Logger

    from serverless import main

    def bind(model: str, port: int):
        for k, v in _env(port, model).items():
            monkeypatch.setenv(k, v)
        context = Context(logger=Logger(logging.DEBUG, "test"))
        main.init_context(context)
        assert context.user_data.task is not None

        def call(body: bytes):
            resp = main.handler(context, _nuclio_event(body))
            assert resp.content_type == "application/json"
            return resp.status_code, json.loads(resp.body)
        return call
    return bind


def _as_shapes(detections: List[dict]) -> List[dict]:
    return [{"label": d["label"], "points": d["points"], "type": d["type"], "confidence": d["confidence"]}
            for d in detections]


@pytest.mark.parametrize("model", REAL)
def test_cvat_route_and_nuclio_handler_match_the_detection_endpoint(detectors, nuclio, model):
    server, hosts = detectors
    host = hosts[model]
    call = nuclio(model, server.port)
    names = set(_label_file_names(model).values())
    found = 0
    for photo in PHOTOS:
        expected = _as_shapes(_endpoint(host, photo))
        over_http = _http_cvat(host, photo)
        status, from_nuclio = call(_cvat_body(photo))
        assert status == 200
        for answer in (over_http, from_nuclio):
            assert isinstance(answer, list) and all(set(s) == SHAPE_KEYS for s in answer), photo
            assert answer == expected, f"{model} {photo}"
        assert all(s["type"] == "rectangle" and len(s["points"]) == 4 and isinstance(s["confidence"], float)
                   for s in over_http)
        assert {s["label"] for s in over_http} <= names, "labels come from the labels file"
        found += len(over_http)
    assert found >= 3, f"{model} found {found} objects on the shared photos"


@pytest.mark.parametrize("model", REAL)
def test_threshold_is_honoured(detectors, nuclio, model):
    server, hosts = detectors
    call = nuclio(model, server.port)
    photo = "people1.jpeg"
    low, default, high = (_http_cvat(hosts[model], photo, t) for t in (0.2, None, 0.8))
    assert default == _http_cvat(hosts[model], photo, 0.5)  # CVAT omits the threshold: 0.5
    assert len(low) >= len(default) >= len(high) and len(low) > len(high)
    for answer, t in ((low, 0.2), (default, 0.5), (high, 0.8)):
        assert all(s["confidence"] > t for s in answer)
        assert answer == [s for s in low if s["confidence"] > t]
    assert call(_cvat_body(photo, 0.8)) == (200, high)
    assert _http_cvat(hosts[model], photo, "0.8") == high  # a string threshold is read as a number


def test_cvat_errors(detectors, nuclio):
    server, hosts = detectors
    model = "person-detection-retail-0013"
    call = nuclio(model, server.port)
    for body, status, code in ((b'{"image": "!!not base64!!"}', 400, "invalid_base64"),
                               (b'{"threshold": 0.5}', 400, "missing_image"),
                               (_cvat_body("people1.jpeg", 7), 400, "invalid_option"),
                               (json.dumps({"image": base64.b64encode(b"text").decode()}).encode(), 415,
                                "invalid_image")):
        resp = request(hosts[model].url("/api/cvat/detector"), body, content_type="application/json")
        assert (resp.status, json.loads(resp.body)["error"]["code"]) == (status, code)
        got_status, answer = call(body)
        assert (got_status, answer["error"]["code"]) == (status, code)


# ---- the staged deployment folder ----------------------------------------------------------------

def test_staged_folder_runs_on_its_own(detectors, tmp_path):
    """`stage` lays out main.py, function.yaml, labels.txt and shared/; the handler runs from there
    with nothing but the folder on its path (as nuclio runs /opt/nuclio), labels at the path the
    function.yaml names (rewritten here to the staged file)."""
    server, hosts = detectors
    model = "person-vehicle-bike-detection-2000"
    out = cvat.stage(model, tmp_path / "fn")
    assert {p.name for p in out.iterdir()} == {"main.py", "function.yaml", "labels.txt", "shared"}
    assert not list(out.rglob("__pycache__")) and (out / "shared" / "tasks" / "detection.py").is_file()
    assert (out / "labels.txt").read_text() == (LABELS / f"{model}.txt").read_text()
    body = tmp_path / "body.json"
    body.write_bytes(_cvat_body("people2.jpeg"))
    script = tmp_path / "run.py"
    script.write_text(
        "import json, logging, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from nuclio_sdk import Context, Event, Logger\n"
        "import main, shared\n"
        "assert main.__file__.startswith(sys.argv[1]) and shared.__file__.startswith(sys.argv[1])\n"
        "ctx = Context(logger=Logger(logging.INFO, 'staged'))\n"
        "main.init_context(ctx)\n"
        "event = Event(body=json.load(open(sys.argv[2])), content_type='application/json', method='POST')\n"
        "resp = main.handler(ctx, event)\n"
        "sys.stdout.write(json.dumps({'status': resp.status_code, 'body': json.loads(resp.body)}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("OBJECTDETECTION_")}
    env.update({**_env(server.port, model), "OBJECTDETECTION_LABELS_PATH": str(out / "labels.txt")})
    # -I: no PYTHONPATH, no user site, not the current folder: only the staged folder and the packages
    proc = subprocess.run([sys.executable, "-I", str(script), str(out), str(body)], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result == {"status": 200, "body": _http_cvat(hosts[model], "people2.jpeg")}
    assert result["body"], "the detector found nothing on people2.jpeg"
