"""Request logs over HTTP: the host's output has exactly one structured ``ovaas.request`` line per
request (invocation id, function, model, status, per-stage ms), and never image data (the base64 of
what was sent or answered) or the storage connection string / its AccountKey, on success and on
error paths (a side file on unreachable storage, bad base64, wrong method)."""
from __future__ import annotations

import base64
import logging
import json
import re

import pytest

from tests.fixtures.functions_host import running_stack
from tests.test_openapi import (COLOR, DETECT, HAND, POSE, four_model_env, generated_repo, make_image,
                                request, server_config, write_charlist)

ACCOUNT_KEY = base64.b64encode(b"not-a-real-key-but-secret-all-the-same-0123456789").decode()
# Malformed on purpose (no endpoint/protocol the SDK accepts): the storage client fails at once with
# the connection string in hand (an unreachable endpoint would cost ~20 s of SDK retries per request).
CONNECTION = f"AccountName=ovaaslogtest;AccountKey={ACCOUNT_KEY};BlobEndpoint"
LINE = re.compile(r"(\{\"invocation_id\".*\})\s*$")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    root = tmp_path_factory.mktemp("logging")
    models = generated_repo(root / "models")
    charlist = write_charlist(root / "chars.txt")

    # handwriting reads its char list from "storage" that is not there: its requests take the
    # side-file error path with the connection string in hand
    def env(port: int):
        return four_model_env(port, charlist, HANDWRITTEN_CHARLIST_PATH="az://ovms/handwritten/chars.txt",
                              AZURE_STORAGE_CONNECTION_STRING=CONNECTION, AzureWebJobsStorage=CONNECTION)
    with running_stack(server_config(root, models), env, root, timeout=90) as (_, h):
        yield h


def _requests():
    images = {n: make_image(100 + 10 * i, 140 + 10 * i) for i, n in enumerate((POSE, HAND, COLOR, DETECT))}
    b64 = {n: base64.b64encode(img).decode() for n, img in images.items()}
    plan = []
    for path in (POSE, HAND, COLOR, DETECT):
        plan.append((path, "POST", json.dumps({"image": b64[path]}).encode(), "application/json"))
        plan.append((path, "POST", images[path], "image/jpeg"))
    plan.append((DETECT, "POST", json.dumps({"image": "%%" + b64[DETECT][:300]}).encode(), "application/json"))
    plan.append((DETECT, "GET", None, None))
    plan.append((COLOR, "POST", json.dumps({"image": b64[COLOR], "render": "maybe"}).encode(), "application/json"))
    return plan, b64


def _log_records(output: str):
    return [json.loads(m.group(1)) for line in output.splitlines() if (m := LINE.search(line))]


def test_one_structured_line_per_request_and_no_image_data_or_secrets(host):
    plan, b64 = _requests()
    before = len(_log_records(host.output()))
    since = host.mark()
    answers = []
    for path, method, body, ctype in plan:
        status, _, data, headers = request(host.url(path), body, ctype, method=method)
        answers.append((path, status, data, headers.get("x-invocation-id")))
    for *_, invocation_id in answers:  # each request's line is written (measured: all there at once)
        host.wait_for_output(r'\{"invocation_id": ?"' + re.escape(invocation_id or "(none)") + '"', since)
    output = host.output()
    records = _log_records(output)[before:]

    statuses = [a[1] for a in answers]
    assert statuses.count(200) == 6 and statuses.count(503) == 2, statuses  # handwriting: no char list
    assert statuses.count(400) == 2 and statuses.count(405) == 1, statuses
    ids = [a[3] for a in answers]
    assert all(ids) and len(set(ids)) == len(ids)
    by_id = {}
    for r in records:
        by_id.setdefault(r["invocation_id"], []).append(r)
    assert set(by_id) == set(ids), "log lines and requests differ"
    assert all(len(v) == 1 for v in by_id.values()), "more than one request line for an invocation"
    for path, status, data, inv in answers:
        r = by_id[inv][0]
        assert r["function"] == path.rsplit("/", 1)[1]
        assert r["status"] == status
        assert isinstance(r["ms"], dict) and r["ms"]["total"] >= 0
        assert all(isinstance(v, (int, float)) for v in r["ms"].values())
        if status == 200:
            assert r["model"].endswith(":1") and r["model"].split(":")[0]
            assert {"decode", "preprocess", "inference", "postprocess"} <= set(r["ms"]), r
            if path == COLOR:  # the answer carries a picture in base64: none of it in the log
                picture = json.loads(data)["colorized"]["data"]
                assert picture[100:160] not in output

    for path, image64 in b64.items():
        for start in (0, len(image64) // 2):
            assert image64[start:start + 48] not in output, f"image data of {path} in the host's output"
    assert ACCOUNT_KEY not in output and ACCOUNT_KEY[:16] not in output, "the storage AccountKey was logged"
    assert "AccountKey" not in output and CONNECTION not in output, "the connection string was logged"


# ---- the invocation id across the app and the model server ------------------------------------------

@pytest.mark.parametrize("api", ["kserve", "tfs"])
def test_invocation_id_reaches_the_model_server_and_a_failure_is_logged_once(tmp_path, caplog, monkeypatch,
                                                                            model_server, api):
    """The app sends its invocation id as x-request-id: the model server's log names it for the failed
    call, so both logs can be joined; the app logs the failure once, with the id, in the ovaas.* tree."""
    import azure.functions as func

    from shared import http, serving

    server = model_server(config=server_config(tmp_path, generated_repo(tmp_path / "models")), timeout=120)
    env = {"OBJECTDETECTION_IPADDRESS": "127.0.0.1", "OBJECTDETECTION_PORT": str(server.port),
           "OBJECTDETECTION_MODEL_NAME": "no-such-model", "OVMS_API": api}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    try:
        class Ctx:
            invocation_id = f"join-me-{api}-7f3a"
            function_name = "HttpTriggerObjectDetection"

        req = func.HttpRequest("POST", "/api/HttpTriggerObjectDetection", body=make_image(64, 64),
                               headers={"Content-Type": "image/jpeg"})
        with caplog.at_level(logging.DEBUG, logger="ovaas"):
            resp = http.handle(req, "detection", Ctx())
        assert resp.status_code == 503 and json.loads(resp.get_body())["error"]["code"] == "model_not_found"
        mine = [r for r in caplog.records if r.name.startswith("ovaas.") and r.name != "ovaas.request"
                and r.levelno >= logging.WARNING]
        assert len(mine) == 1, [r.getMessage() for r in mine]  # logged once, not by the adapter and again here
        assert mine[0].name == "ovaas.http" and "[join-me-" in mine[0].getMessage()
        assert mine[0].invocation_id == Ctx.invocation_id
        server.wait_for_log(f"request {Ctx.invocation_id} -> ")  # an event: the server's own line
        assert re.search(rf"request {Ctx.invocation_id} -> NOT_FOUND", server.log_text()), server.log_text()[-800:]
    finally:
        serving.reset()


def test_adapter_lines_carry_the_invocation_id(caplog):
    """What an adapter logs inside a request (here: the metadata it read) names the invocation."""
    from shared import logs

    log = logs.get_logger("serving.kserve")
    with caplog.at_level(logging.INFO, logger="ovaas"), logs.invocation("inv-42"):
        log.info("metadata of %s", "m")
    with caplog.at_level(logging.INFO, logger="ovaas"):
        log.info("outside")
    first, second = caplog.records[-2:]
    assert first.name == "ovaas.serving.kserve" and first.getMessage() == "[inv-42] metadata of m"
    assert first.invocation_id == "inv-42" and second.getMessage() == "[-] outside"
    assert logs.request_metadata() is None
    with logs.invocation("inv-43"):
        assert logs.request_metadata() == (("x-request-id", "inv-43"),)
