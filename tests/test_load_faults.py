"""Load and faults through the local Functions host (loopback only, bounded in count and time).

One model server serving a small generated SSD detector (person-detection-retail-0013's I/O,
constant answer: inference costs next to nothing, so the app's own overhead is what is loaded),
one host pointed at it with a 1 s inference deadline. In order:

1. 200 generated malformed requests -> all 4xx JSON errors, zero 5xx, the host alive and serving;
2. 500 requests at 8 concurrent keep-alive clients -> zero errors, host RSS stable;
3. model server stalled (SIGSTOP) -> 504 at the 1 s deadline, then 200 again after SIGCONT;
4. model server killed mid-load -> 503 within 1 s each, then full recovery once it is restarted on
   the same port, with no restart of the app.

Time bounds are kept only where the bound is the behaviour (3: the 504 comes at the deadline; 4: the
503 comes from the connect timeout, not a wait), each beside the structural proof (the error code
and message). Measured with two busy loops on the 2 cores (Intel Xeon, 12 runs of this module):
504s 1.007 to 1.028 s after the request (48 requests; bounds 0.9 to 2.0 s); 503s after the kill at
most 0.548 s (~160 requests, connect timeout 0.5 s; bound 1.0 s); a 200 again 0.009 to 0.018 s
after SIGCONT and 0.015 to 0.023 s after the restart (ceilings 10 s); RSS growth 0.13 to 0.84 MB.
"""
from __future__ import annotations

import base64
import http.client
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np
import psutil
import pytest

from emulators.ovms.launcher import write_config
from tests import modelgen
from tests.fixtures.functions_host import running_stack
from tests.settings import endpoint_env
from tests.test_openapi import body_validator, png_header_claiming

PATH = "/api/HttpTriggerObjectDetection"
MODEL = "object-detection"
DEADLINE_S = 1.0
CONNECT_S = 0.5
FAST_503_S = 1.0  # measured worst 0.548 s (module docstring)
ROWS = [[0, 1, 0.8, 0.5, 0.5, 0.9, 0.9]]

# Memory: RSS of the host process after a warm-up of 200 requests (every code path imported, thread
# pool and gRPC buffers grown, the malloc arenas of the 8 worker threads populated), then after the
# other 300. Measured here: RSS steps by ~10 MB during the first ~200 requests, then stays flat
# within 1 MB over 1000 more (with two busy loops on the 2 cores: +0.13 to +0.84 MB, 12 runs).
# The load image is a 640x480 noise JPEG (~360 KB; ~900 KB of pixels, ~2 MB input tensor), so
# leaking any per-request buffer would add >= 300 x 360 KB = 105 MB over the measured window;
# 24 MB separates "leaks something per request" from allocator steps.
RSS_GROWTH_LIMIT_MB = 24.0
WARMUP, MEASURED = 200, 300


def _jpeg(h: int = 120, w: int = 160, seed: int = 0) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


IMAGE = _jpeg()
LOAD_IMAGE = _jpeg(480, 640, seed=3)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    base = root / "detect"
    modelgen.write_version(base, 1, modelgen.ssd_model, ROWS, input_name="data", hw=(320, 544))
    cfg = write_config(root / "config.json", [{"name": MODEL, "base_path": str(base)}])

    def env(port: int) -> Dict[str, str]:
        return endpoint_env("OBJECTDETECTION", port, MODEL, OBJECTDETECTION_LABELS_PATH="",
                            OBJECTDETECTION_TIMEOUT_SECONDS=str(DEADLINE_S),
                            OVMS_CONNECT_TIMEOUT_SECONDS=str(CONNECT_S))
    with running_stack(cfg, env, root, timeout=90) as (server, host):
        yield {"server": server, "host": host, "proc": psutil.Process(host.proc.pid)}


class Client:
    """One kept-alive HTTP/1.1 connection; reconnects when the host closed it."""

    def __init__(self, port: int, timeout: float = 30) -> None:
        self.port, self.timeout = port, timeout
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def send(self, body: Optional[bytes], ctype: Optional[str], path: str = PATH,
             method: str = "POST") -> Tuple[int, str, bytes]:
        headers = {"Content-Type": ctype} if ctype else {}
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                return r.status, r.getheader("Content-Type", ""), r.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def _alive_and_serving(stack) -> None:
    assert stack["host"].proc.poll() is None, "the functions host died"
    c = Client(stack["host"].port)
    try:
        status, _, body = c.send(IMAGE, "image/jpeg")
    finally:
        c.close()
    assert status == 200, body[:300]
    assert json.loads(body)["detections"][0]["label_id"] == 1


# ---- 1. malformed requests ---------------------------------------------------------------------

def malformed_requests(n: int = 200, seed: int = 2024) -> List[Tuple[str, Optional[bytes], Optional[str], str]]:
    """``n`` malformed requests (kind, body, content type, query), generated with a seeded RNG."""
    rng = random.Random(seed)
    jpeg = _jpeg(96, 128, seed=1)
    png = cv2.imencode(".png", np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8))[1].tobytes()
    good_b64 = base64.b64encode(jpeg).decode()

    def truncated():
        # cut inside the pixel data (a PNG cut only inside its trailing IEND chunk still holds every pixel)
        data = rng.choice([jpeg, png])
        return "truncated", data[:rng.randrange(1, len(data) - 16)], rng.choice(["image/jpeg", "image/png",
                                                                               "application/octet-stream"]), ""

    def bad_base64():
        junk = "".join(rng.choice("!@#$%^&*()<>?,.:;ab01\u00e9\u3042") for _ in range(rng.randrange(1, 200)))
        value = rng.choice([junk, good_b64[:rng.randrange(1, 50)] + "!" + good_b64[50:],
                            "data:image/jpeg," + good_b64[:100], "data:image/png;base64,%%%"])
        return "bad_base64", json.dumps({"image": value}).encode(), "application/json", ""

    def huge():
        w, h = rng.choice([(60000, 60000), (17000, 10), (10, 200000), (30000, 30000), (2 ** 31 - 1, 2)])
        body = png_header_claiming(w, h)
        if rng.random() < 0.5:
            return "huge", body, "image/png", ""
        return "huge", json.dumps({"image": base64.b64encode(body).decode()}).encode(), "application/json", ""

    def wrong_json_types():
        image = rng.choice([123, 1.5, None, True, [good_b64], {"data": good_b64}, ""])
        bodies = [{"image": image}, {"image": good_b64, "threshold": rng.choice(["abc", [1], {}, -1, 2, True])},
                  {"image": good_b64, "max_detections": rng.choice([0, -5, 1.5, "many", [3]])},
                  {"image": good_b64, "render": rng.choice(["maybe", 3, [True]])},
                  {"image": good_b64, "format": rng.choice(["gif", 1, ["png"]])},
                  [good_b64], "just a string", 42, None, {}]
        raw = json.dumps(rng.choice(bodies)).encode()
        if rng.random() < 0.2:  # or not JSON at all
            raw = raw[:rng.randrange(1, max(2, len(raw)))] + b"\xff{"
        return "wrong_json", raw, rng.choice(["application/json", "text/json"]), ""

    def wrong_content_type():
        ctype = rng.choice(["text/plain", "application/xml", "video/mp4", "text/html; charset=utf-8",
                            "application/pdf", "audio/wav"])
        body = rng.choice([jpeg, b"hello", bytes(rng.randrange(256) for _ in range(64))])
        return "wrong_content_type", body, ctype, ""

    def empty():
        ctype = rng.choice(["image/jpeg", "application/json", "application/octet-stream", None,
                            "multipart/form-data; boundary=x", "image/png"])
        return "empty", b"", ctype, ""

    def random_bytes():
        return "random_bytes", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000))), \
            rng.choice(["image/jpeg", "image/png", "application/octet-stream", "image/webp"]), ""

    def bad_multipart():
        b = "BOUNDARY"
        body = rng.choice([
            f"--{b}\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--{b}--\r\n".encode(),
            f"--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n".encode()
            + jpeg[:100] + f"\r\n--{b}--\r\n".encode(),
            f"--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n\r\n--{b}--\r\n".encode(),
            b"--not-the-boundary\r\ngarbage",
        ])
        return "bad_multipart", body, f"multipart/form-data; boundary={b}", ""

    def bad_query():
        q = rng.choice(["threshold=abc", "threshold=2", "max_detections=0", "render=perhaps", "format=gif",
                        "threshold=nan", "threshold=inf", "max_detections=1e9"])
        return "bad_query", jpeg, "image/jpeg", "?" + q

    makers = [truncated, bad_base64, huge, wrong_json_types, wrong_content_type, empty, random_bytes,
              bad_multipart, bad_query]
    return [makers[i % len(makers)]() for i in range(n)]


def test_malformed_requests_are_4xx_json(stack):
    cases = malformed_requests(200)
    validators = {s: body_validator(PATH, "post", s) for s in (400, 413, 415)}
    lock = threading.Lock()
    failures: List[str] = []
    kinds: Dict[str, int] = {}

    def run(chunk):
        client = Client(stack["host"].port)
        try:
            for kind, body, ctype, query in chunk:
                status, rtype, data = client.send(body, ctype, PATH + query)
                problem = None
                if not 400 <= status < 500:
                    problem = f"status {status}"
                elif not rtype.startswith("application/json"):
                    problem = f"content type {rtype!r}"
                else:
                    answer = json.loads(data)
                    if status not in validators or not validators[status].is_valid(answer):
                        problem = f"{status} body not as declared: {answer}"
                with lock:
                    kinds[kind] = kinds.get(kind, 0) + 1
                    if problem:
                        failures.append(f"{kind} ({ctype}, {len(body or b'')} B{query}): {problem}: {data[:200]!r}")
        finally:
            client.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(run, [cases[i::4] for i in range(4)]))
    assert sum(kinds.values()) == 200 and len(kinds) == 9
    assert not failures, f"{len(failures)} malformed requests not answered 4xx JSON:\n" + "\n".join(failures[:10])
    _alive_and_serving(stack)


# ---- 2. load -------------------------------------------------------------------------------------

def _first_200_within(port: int, seconds: float) -> int:
    """Send requests until one is answered 200 or ``seconds`` pass; the last status."""
    deadline = time.monotonic() + seconds
    while True:
        c = Client(port)
        status = c.send(IMAGE, "image/jpeg")[0]
        c.close()
        if status == 200 or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def _load(port: int, total: int, clients: int, image: bytes = IMAGE) -> Tuple[Dict[int, int], float]:
    """``total`` POSTs spread over ``clients`` kept-alive connections; (status counts, seconds)."""
    counts: Dict[int, int] = {}
    lock = threading.Lock()
    remaining = [total]

    def worker():
        c = Client(port)
        try:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                try:
                    status, _, _ = c.send(image, "image/jpeg")
                except OSError:
                    status = -1
                with lock:
                    counts[status] = counts.get(status, 0) + 1
        finally:
            c.close()

    t = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return counts, time.perf_counter() - t


def test_500_requests_at_8_clients_no_errors_stable_memory(stack):
    port, proc = stack["host"].port, stack["proc"]
    warm, _ = _load(port, WARMUP, 8, LOAD_IMAGE)
    rss_warm = proc.memory_info().rss / 2 ** 20
    rest, seconds = _load(port, MEASURED, 8, LOAD_IMAGE)
    rss_end = proc.memory_info().rss / 2 ** 20
    counts = {s: warm.get(s, 0) + rest.get(s, 0) for s in set(warm) | set(rest)}
    assert counts == {200: WARMUP + MEASURED}, f"statuses {counts}"
    growth = rss_end - rss_warm
    print(f"\n{MEASURED} requests in {seconds:.1f} s ({MEASURED / seconds:.0f}/s); "
          f"host RSS {rss_warm:.1f} -> {rss_end:.1f} MB")
    assert growth < RSS_GROWTH_LIMIT_MB, f"host RSS grew {growth:.1f} MB over {MEASURED} requests after warm-up"


# ---- 3. stalled model server ----------------------------------------------------------------------

def test_stalled_model_server_gives_504_at_the_deadline_then_recovers(stack):
    _alive_and_serving(stack)
    server = stack["server"]
    server.pause()
    try:
        def one(_):
            c = Client(stack["host"].port)
            try:
                t = time.perf_counter()
                status, _, data = c.send(IMAGE, "image/jpeg")
                return status, time.perf_counter() - t, data
            finally:
                c.close()

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, range(4)))
    finally:
        server.resume()
    for status, elapsed, data in results:
        assert status == 504, data[:300]
        answer = json.loads(data)
        body_validator(PATH, "post", 504).validate(answer)
        assert answer["error"]["code"] == "model_timeout"
        assert answer["error"]["message"].endswith(f"did not answer within {DEADLINE_S:g} s"), answer
        assert DEADLINE_S * 0.9 <= elapsed <= DEADLINE_S + 1.0, f"504 after {elapsed:.2f} s (deadline {DEADLINE_S} s)"
    assert _first_200_within(stack["host"].port, 10) == 200  # recovery after SIGCONT
    counts, _ = _load(stack["host"].port, 20, 4)
    assert counts == {200: 20}


# ---- 4. model server killed mid-load ----------------------------------------------------------------

def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Return once ``condition()`` holds (``timeout`` only bounds a failure)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout:g} s"
        time.sleep(0.05)


def test_killed_model_server_gives_fast_503s_then_recovers_after_restart(stack):
    host_pid = stack["host"].proc.pid
    server = stack["server"]
    records: List[Tuple[float, float, int, bytes]] = []  # (start, end, status, body)
    lock = threading.Lock()
    stop = threading.Event()

    def answered(since: float = 0.0) -> List[Tuple[float, float, int, bytes]]:
        """The requests sent after ``since`` and answered so far."""
        with lock:
            return [r for r in records if r[0] > since]

    def worker():
        c = Client(stack["host"].port)
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                status, _, data = c.send(IMAGE, "image/jpeg")
                with lock:
                    records.append((t0, time.monotonic(), status, data))
        finally:
            c.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    try:
        _wait_for(lambda: len(answered()) >= 8, "8 answers before the kill")
        killed_at = time.monotonic()
        server.kill()  # SIGKILL, and the process reaped
        dead_at = time.monotonic()
        _wait_for(lambda: len(answered(dead_at)) >= 8, "8 answers after the kill")
    finally:
        stop.set()
        for th in threads:
            th.join(30)
    before = [r for r in records if r[1] < killed_at]
    after = answered(dead_at)
    assert before and all(r[2] == 200 for r in before)
    assert {r[2] for r in records} <= {200, 503}, f"statuses {sorted({r[2] for r in records})}"
    assert all(r[2] == 503 for r in after), f"{sum(r[2] != 503 for r in after)} non-503 after the kill"
    for _, _, _, data in after:  # 503 model_unavailable: failed fast, not at the deadline (504)
        answer = json.loads(data)
        body_validator(PATH, "post", 503).validate(answer)
        assert answer["error"]["code"] == "model_unavailable", answer
    slow = [round(r[1] - r[0], 2) for r in after if r[1] - r[0] > FAST_503_S]
    assert not slow, f"503s slower than {FAST_503_S} s: {slow}"

    server.restart(timeout=60)  # same arguments, same port; the app is not restarted
    status = _first_200_within(stack["host"].port, 10)
    assert status == 200, "no recovery within 10 s of the model server being ready again"
    counts, _ = _load(stack["host"].port, 40, 8)
    assert counts == {200: 40}
    assert stack["host"].proc.pid == host_pid and stack["host"].proc.poll() is None
