"""Bench: oversized uploads against the local Functions host (issue 22), run by hand.

    .venv/bin/python bench/bench_uploads.py [--root PATH] [--uploads 4] [--mb 100] [--chunked]
    .venv313/bin/python bench/bench_uploads.py ...   # the same with the worker-backed host

One model server (a generated SSD detector with a constant answer) and one local Functions host
started from ``--root`` (default: this checkout; point it at ``git archive`` of an older commit to
measure "before"). A normal client posts a 640x480 JPEG back to back on a kept-alive connection;
meanwhile ``--uploads`` clients each upload ``--mb`` MB at once (``Content-Length`` declared, or
``--chunked``), each sending until the host answers (or the whole body is sent), then reading the
answer. Printed:

- each upload's answer and how many body bytes the client had handed to its socket when the
  answer came (an upper bound on what the host read: the kernel buffers hold the rest);
- the host's peak RSS growth during the uploads (Linux ``/proc/<pid>/clear_refs`` resets the
  high-water mark first, ``VmHWM`` after, against ``VmRSS`` before);
- the normal client's median and worst latency, quiet and during the uploads.

The machine may be shared: rerun when noisy.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import select
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import KeepAliveClient, machine, model_env, start_functions_host, start_model_server  # noqa: E402
from tests import modelgen  # noqa: E402

PATH = "/api/HttpTriggerObjectDetection"
MODEL = "object-detection"
NORMAL = cv2.imencode(".jpg", np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8))[1].tobytes()
PIECE = 1 << 20


def _status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/{pid}/status")


def _reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def upload(port: int, size: int, chunked: bool) -> Tuple[str, int, float]:
    """Upload ``size`` bytes until the host answers: (status and error code, body bytes handed to
    the socket by then, seconds)."""
    started = time.perf_counter()
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
    piece = os.urandom(PIECE)
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=300) as s:
        s.sendall(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                  + framing + b"\r\nConnection: close\r\n\r\n")
        pending = b""
        try:
            while True:
                want_write = sent < size or pending
                readable, writable, _ = select.select([s], [s] if want_write else [], [], 300)
                if readable:
                    break
                if not writable:
                    continue
                if not pending:
                    n = min(PIECE, size - sent)
                    data = piece[:n]
                    pending = (b"%x\r\n" % n + data + b"\r\n") if chunked else data
                    if chunked and sent + n >= size:
                        pending += b"0\r\n\r\n"
                    sent += n
                pending = pending[s.send(pending):]
        except OSError:
            pass  # the host closed the connection while this client was still sending
        accepted = sent - len(pending)
        try:  # the whole answer (the host may keep the connection open a while after it)
            while chunk := s.recv(65536):
                answer += chunk
                head, sep, body = answer.partition(b"\r\n\r\n")
                length = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if sep and length and len(body) >= length[0]:
                    break
        except OSError:
            pass
    seconds = time.perf_counter() - started
    if not answer:
        return "no answer", accepted, seconds
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1].decode()
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = ""
    return f"{status} {code}".strip(), accepted, seconds


def normal_latencies(port: int, stop: threading.Event, out: List[float], count: int = 0) -> None:
    """Post the normal JPEG back to back (``count`` times, or until ``stop``); milliseconds."""
    client = KeepAliveClient(port)
    try:
        while not stop.is_set() and (count == 0 or len(out) < count):
            t = time.perf_counter()
            status, _ = client.post(PATH, NORMAL)
            if status != 200:
                raise RuntimeError(f"normal request answered {status}")
            out.append((time.perf_counter() - t) * 1000.0)
    except (OSError, http.client.HTTPException) as exc:
        print(f"normal client failed: {exc}")
    finally:
        client.close()


def run(port: int, pid: int, uploads: int, size: int, chunked: bool) -> None:
    quiet: List[float] = []
    normal_latencies(port, threading.Event(), [], count=5)  # warm-up: imports, model metadata
    normal_latencies(port, threading.Event(), quiet, count=30)
    base = _status(pid, "VmRSS")
    _reset_peak(pid)
    stop = threading.Event()
    loaded: List[float] = []
    normal = threading.Thread(target=normal_latencies, args=(port, stop, loaded))
    results: List[Tuple[str, int, float]] = []
    clients = [threading.Thread(target=lambda: results.append(upload(port, size, chunked)))
               for _ in range(uploads)]
    normal.start()
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    stop.set()
    normal.join()
    growth = (_status(pid, "VmHWM") - base) / 2 ** 20
    kind = "chunked" if chunked else "Content-Length"
    print(f"\n{uploads} uploads of {size / 1e6:.0f} MB at once ({kind})")
    for answer, accepted, seconds in results:
        print(f"  answer {answer:28s} after {accepted / 1e6:7.1f} MB handed to the socket, {seconds:6.2f} s")
    print(f"host peak RSS growth: {growth:+.0f} MB (VmRSS before: {base / 2 ** 20:.0f} MB)")
    print(f"normal request: quiet median {statistics.median(quiet):.1f} ms (max {max(quiet):.1f}); "
          f"during the uploads median {statistics.median(loaded):.1f} ms (max {max(loaded):.1f}, "
          f"n={len(loaded)})" if loaded else "normal request: none completed during the uploads")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=ROOT, help="app folder to serve (default: this checkout)")
    p.add_argument("--uploads", type=int, default=4)
    p.add_argument("--mb", type=float, default=100.0, help="size of each upload in MB (10^6 bytes)")
    p.add_argument("--chunked", action="store_true", help="send the uploads chunked")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-uploads-"))
    base = work / "detect"
    modelgen.write_version(base, 1, modelgen.ssd_model, [[0, 1, 0.8, 0.5, 0.5, 0.9, 0.9]],
                           input_name="data", hw=(320, 544))
    server = start_model_server({MODEL: base})
    host = None
    try:
        env = model_env("OBJECTDETECTION", server.port, MODEL, extra={"OBJECTDETECTION_LABELS_PATH": ""})
        host = start_functions_host(env, timeout=90, root=args.root.resolve())
        print(f"{machine()}; app {args.root.resolve()}; load average {os.getloadavg()[0]:.1f}")
        run(host.port, host.proc.pid, args.uploads, int(args.mb * 1e6), args.chunked)
    finally:
        if host is not None:
            host.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
