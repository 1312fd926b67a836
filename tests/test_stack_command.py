"""The README's stack command, end to end: `bash scripts/stack.sh` brings up Azurite, uploads the
models, starts the model server (reading az://) and the functions host; every request in
request.http gets its answer; a second start finds the ports in use; Ctrl+C stops everything."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List, NamedTuple

import pytest

from scripts.tooling.azurite import find_binary, free_port, port_in_use
from scripts.tooling.modelsearch import find_model
from shared import catalog
from tests.httpclient import request
from tests.netutil import listening_ips

ROOT = Path(__file__).resolve().parent.parent
NEEDED = [e.omz_model for e in catalog.ENDPOINTS]


class HttpRequest(NamedTuple):
    title: str
    method: str
    url: str
    headers: Dict[str, str]
    body: bytes


def parse_request_http(text: str, base: Path, variables: Dict[str, str]) -> List[HttpRequest]:
    """The requests of a VS Code REST Client file: `### title`, `METHOD URL`, headers, blank line,
    body (`< path` includes a file, relative to the .http file)."""
    for line in text.splitlines():
        m = re.match(r"^@(\w+)\s*=\s*(.*)$", line.strip())
        if m:
            variables.setdefault(m.group(1), m.group(2).strip())
    out = []
    for block in re.split(r"^###", text, flags=re.M)[1:]:
        lines = block.split("\n")
        title, rest = lines[0].strip(), [l for l in lines[1:] if not l.startswith("#")]
        while rest and not rest[0].strip():
            rest.pop(0)
        method, url = rest[0].split(None, 1)
        url = re.sub(r"\{\{(\w+)\}\}", lambda m: variables[m.group(1)], url.strip())
        headers, i = {}, 1
        while i < len(rest) and rest[i].strip():
            k, v = rest[i].split(":", 1)
            headers[k.strip()] = re.sub(r"\{\{(\w+)\}\}", lambda m: variables[m.group(1)], v.strip())
            i += 1
        lines = rest[i + 1:]
        while lines and not lines[-1].strip():
            lines.pop()
        # Lines are joined with CRLF; `< path` stands for the file's bytes.
        body = b"\r\n".join((base / l[2:].strip()).read_bytes() if l.startswith("< ") else l.encode()
                             for l in lines)
        out.append(HttpRequest(title, method, url, headers, body))
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    missing = [m for m in NEEDED if find_model(m) is None]
    if missing:
        pytest.skip(f"needs_real_models: {', '.join(missing)} not found")
    if find_binary("azurite") is None:
        pytest.skip("needs_azurite: Azurite is not installed (run `bash scripts/bootstrap.sh`)")
    ports = {"--blob-port": free_port(), "--ovms-port": free_port(), "--http-port": free_port()}
    args = [a for kv in ports.items() for a in (kv[0], str(kv[1]))]
    log = tmp_path_factory.mktemp("stack") / "stack.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(["bash", "scripts/stack.sh", "--no-bootstrap", *args], cwd=ROOT,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while "[stack] running" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGTERM)
            pytest.fail(f"stack did not come up:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.5)
    yield proc, ports, args, log
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


def _send(req: HttpRequest):
    return request(req.url, req.body or None, method=req.method, headers=req.headers, timeout=120)[:3]


def test_every_request_in_request_http_is_answered(stack):
    proc, ports, _, log = stack
    requests = parse_request_http((ROOT / "request.http").read_text(encoding="utf-8"), ROOT,
                                  {"host": f"http://localhost:{ports['--http-port']}/api"})
    assert len(requests) >= 12
    functions = set()
    for req in requests:
        status, ctype, body = _send(req)
        bad = "bad request" in req.title.lower() or "wrong method" in req.title.lower()
        if bad:
            assert 400 <= status < 500 and json.loads(body)["error"]["code"], (req.title, status, body[:300])
            continue
        assert status == 200, (req.title, status, body[:300])
        functions.add(req.url.split("/api/")[1].split("?")[0])
        if "/api/cvat/" in req.url:  # CVAT's contract: a bare list of shapes
            assert ctype.startswith("application/json") and isinstance(json.loads(body), list), req.title
        elif ctype.startswith("application/json"):
            payload = json.loads(body)
            assert payload["model"]["version"] == "1" and payload["timing_ms"]["total"] > 0
        else:
            assert ctype.startswith("image/") and len(body) > 1000, (req.title, ctype)
    assert functions == {e.function for e in catalog.ENDPOINTS} | {"humanpose", "cvat/detector"}
    # the detector's labels file was uploaded beside it and read from az://
    status, _, body = _send(next(r for r in requests if "labelled boxes as JSON" in r.title))
    assert {d["label"] for d in json.loads(body)["detections"]} == {"person"}


def test_health_is_ready(stack):
    _, ports, _, _ = stack
    status, _, body = _send(HttpRequest("health", "GET", f"http://localhost:{ports['--http-port']}/api/health", {}, b""))
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_image_models_are_served_with_u8_inputs(stack):
    """The stack uploads the catalog's u8_input endpoints' models with u8 image inputs: the model
    server declares UINT8 for them (the others keep FP32), and the answers above were all 200."""
    import tritonclient.grpc as tg

    _, ports, _, log = stack
    client = tg.InferenceServerClient(f"127.0.0.1:{ports['--ovms-port']}")
    text = log.read_text(errors="replace")
    for e in catalog.ENDPOINTS:
        datatypes = {t.datatype for t in client.get_model_metadata(e.model_name).inputs}
        assert datatypes == ({"UINT8"} if e.u8_input else {"FP32"}), (e.model_name, datatypes)
        assert ("u8 image input" in next(l for l in text.splitlines() if f"[stack] {e.model_name}: " in l)) == e.u8_input
    client.close()


def test_the_output_says_which_host_mode_runs(stack):
    """The worker-backed host wherever bootstrap built .venv313 (CI's machines have a Python 3.13)."""
    from emulators.functions_host import worker

    _, ports, _, log = stack
    expected = "worker" if worker.worker_interpreter(ROOT) else "in-house"
    assert f"[stack] functions host mode: {expected} (" in log.read_text(errors="replace")
    status, _, body = _send(HttpRequest("status", "GET",
                                        f"http://localhost:{ports['--http-port']}/admin/host/status",
                                        {}, b""))
    assert status == 200 and json.loads(body)["mode"] == expected


def test_second_start_finds_ports_in_use(stack):
    _, ports, args, _ = stack
    out = subprocess.run(["bash", "scripts/stack.sh", "--no-bootstrap", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "in use" in out.stderr and str(ports["--http-port"]) in out.stderr


def test_model_server_listens_on_loopback_only(stack):
    """Issue 14 item 8: the stack's model server is not reachable from other machines."""
    import ipaddress
    import socket

    import psutil

    _, ports, _, _ = stack
    port = ports["--ovms-port"]
    listening = listening_ips(port)
    assert listening and all(ipaddress.ip_address(ip).is_loopback for ip in listening), listening
    others = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback]
    for ip in others:  # this machine's other addresses: nothing answers there
        with pytest.raises(OSError):
            socket.create_connection((ip, port), timeout=2).close()


def test_stack_output_hides_the_storage_key(stack):
    """Issue 14 item 9: the connection string is printed with its key redacted."""
    from scripts.tooling.azurite import ACCOUNT_KEY as DEVELOPMENT_ACCOUNT_KEY

    _, _, _, log = stack
    text = log.read_text(errors="replace")
    assert "Azurite: " in text and "AccountKey=***" in text
    assert DEVELOPMENT_ACCOUNT_KEY not in text


def test_ctrl_c_stops_everything(stack):
    proc, ports, _, log = stack
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    deadline = time.monotonic() + 20
    while any(port_in_use("127.0.0.1", p) for p in ports.values()):
        assert time.monotonic() < deadline, f"still listening: {ports}\n{log.read_text()[-2000:]}"
        time.sleep(0.2)
