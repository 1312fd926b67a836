"""Floors of the local stand-in stack: the least time an endpoint can spend outside its unavoidable work.

    .venv/bin/python bench/bench_floors.py [--only pose detection] [--iters 60] [--out FILE]

Per endpoint, side by side and interleaved in one run: the *unavoidable work* (bare cv2.imdecode +
resize + in-process OpenVINO inference, as bench/run_all.py does it); the *gRPC floor*, a round
trip of the endpoint's input and output sizes through a trivial Python grpcio server (generic
handler, identity serializers, fixed reply) in a child process, from a plain channel; and the *host
floor*, a POST of the endpoint's picture to the local Functions host (emulators/functions_host)
serving a temporary function that only busy-waits as long as the unavoidable work and answers a
padded JSON of the endpoint's answer size: HTTP wall time minus the function's own time. The gRPC
round trip is timed right after an untimed run of the unavoidable work, as in the real path: after
~10 ms of other work it costs more than back to back (a trivial call: 0.55 ms back to back, 1.3 ms
after a 20 ms gap on the 2-core dev machine; the floor server idles ~1 x unavoidable between
calls, less than the model server does between one client's requests). The host call alternates
with the unavoidable work, as run_all.py alternates its HTTP calls, so the host idles as long
between calls. With zero work of our own, the best reachable ratio (HTTP / unavoidable) is then
(unavoidable + floors) / unavoidable, and the budget left for our own work under the target ratio
is target x unavoidable - unavoidable - floors (negative: unreachable).
The last columns do the same for the model server alone, as bench/bench_ovms.py measures it (calls
back to back, goal <= 1.15): (in-process inference + the gRPC floor back to back) / inference.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.run_all import ENDPOINTS, Endpoint, locate, served_copy, unavoidable_work  # noqa: E402

TARGETS = {"pose": 1.30, "detection": 1.40}  # the ratio targets (not endpoint facts); others: none
#: JSON answer size the floor function pads to: detection's answer on people1.jpeg (pose's is ~8.6 kB:
#: a smaller default only lowers the floor, so the reachable ratio printed is never too pessimistic)
ANSWER_BYTES = 1100
MAX_MESSAGE = 256 * 1024 * 1024
GRPC_OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]
SERVICE, METHOD = "floor.Floor", "Reply"
FUNCTION = "HttpTriggerFloor"
FUNCTION_JSON = {"scriptFile": "__init__.py", "bindings": [
    {"authLevel": "anonymous", "type": "httpTrigger", "direction": "in", "name": "req", "methods": ["post"]},
    {"type": "http", "direction": "out", "name": "$return"}]}
FUNCTION_PY = '''"""Does nothing but wait busy_ms (query) and answer a JSON padded to size bytes (bench_floors)."""
import json
import time

import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    t0 = time.perf_counter()
    req.get_body()
    end = t0 + float(req.params.get("busy_ms", "0")) / 1000.0
    while time.perf_counter() < end:
        pass
    body = json.dumps({"ms": (time.perf_counter() - t0) * 1000.0, "pad": ""})
    body = body[:-2] + "x" * max(0, int(req.params.get("size", "0")) - len(body)) + body[-2:]
    return func.HttpResponse(body, mimetype="application/json")
'''


def serve_grpc(port: int, reply_bytes: int) -> None:
    """Child process: a trivial grpcio server whose one method answers ``reply_bytes`` bytes."""
    reply = bytes(reply_bytes)
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(lambda request, context: reply)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    if not server.add_insecure_port(f"127.0.0.1:{port}"):
        raise SystemExit(f"cannot bind 127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def io_bytes(xml: Path) -> Tuple[int, int]:
    """(input, output) bytes of one request to the compiled model, in its declared element types."""
    compiled = common.inprocess_model(xml)

    def size(port) -> int:
        if port.get_partial_shape().is_dynamic:
            raise SystemExit(f"{xml.name}: {port.get_any_name()} has a dynamic shape "
                             f"{port.get_partial_shape()}: no fixed payload size")
        return math.prod(int(d) for d in port.shape) * port.get_element_type().size

    return sum(size(p) for p in compiled.inputs), sum(size(p) for p in compiled.outputs)


def start_grpc_floor(reply_bytes: int, timeout: float = 30.0) -> Tuple[common.Process, grpc.Channel]:
    """Start the trivial server in a child process; (process, open channel once it is ready)."""
    port = common.free_port()
    proc = common._spawn([str(Path(__file__).resolve()), "--serve-grpc", str(port), str(reply_bytes)],
                         port, common._child_env(), "floor-grpc")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS)
    deadline = time.monotonic() + timeout
    while True:
        try:
            grpc.channel_ready_future(channel).result(timeout=0.5)
            return proc, channel
        except grpc.FutureTimeoutError:
            if proc.proc.poll() is not None or time.monotonic() > deadline:
                channel.close()
                proc.stop()
                raise RuntimeError(f"floor gRPC server not ready; see {proc.log}")


def write_app(root: Path) -> None:
    """The temporary function app of the host floor."""
    (root / FUNCTION).mkdir(parents=True)
    (root / "host.json").write_text(json.dumps({"version": "2.0"}))
    (root / FUNCTION / "function.json").write_text(json.dumps(FUNCTION_JSON))
    (root / FUNCTION / "__init__.py").write_text(FUNCTION_PY)


def measure(ep: Endpoint, xml: Path, host_port: int, answer_bytes: int,
            iters: int) -> Tuple[int, int, Dict[str, List[float]]]:
    """(input bytes, output bytes, ms samples of the unavoidable work, gRPC floor, host floor, the gRPC
    floor back to back and the in-process inference part of the unavoidable work)."""
    data = (common.IMAGES / ep.image).read_bytes()
    ctype = "image/png" if ep.image.endswith(".png") else "image/jpeg"
    in_bytes, out_bytes = io_bytes(xml)
    make = unavoidable_work(xml, data)
    work = make()
    parts: Dict[str, List[float]] = {}
    timed_work = make(parts)  # records decode, resize and inference separately
    busy_ms = common.median(common.time_ms(work, 5, warmup=2))  # the host waits as long as for a real request
    server, channel = start_grpc_floor(out_bytes)
    client = common.KeepAliveClient(host_port)
    try:
        stub = channel.unary_unary(f"/{SERVICE}/{METHOD}", request_serializer=None, response_deserializer=None)
        payload = bytes(in_bytes)
        if len(stub(payload)) != out_bytes:
            raise RuntimeError("floor gRPC server answered the wrong size")

        def grpc_floor() -> float:
            work()  # untimed: the round trip follows decode + resize + inference, as in the real path
            return common.elapsed_ms(lambda: stub(payload))

        def host_floor() -> float:
            t = time.perf_counter()
            status, body = client.post(f"/api/{FUNCTION}?busy_ms={busy_ms:.3f}&size={answer_bytes}", data, ctype)
            wall = (time.perf_counter() - t) * 1000.0
            if status != 200 or len(body) < answer_bytes:
                raise RuntimeError(f"floor function: HTTP {status}, {len(body)} bytes: {body[:200]!r}")
            return wall - json.loads(body)["ms"]

        def grpc_back_to_back() -> float:
            stub(payload)  # untimed: the server is awake, as in a model-server-only benchmark loop
            return common.elapsed_ms(lambda: stub(payload))

        # The host call alternates with the unavoidable work only, as bench/run_all.py alternates
        # its HTTP calls (the host idles as long between calls); the gRPC calls in a second loop.
        samples = common.interleaved_samples({"unavoidable": lambda: common.elapsed_ms(timed_work),
                                              "host": host_floor}, iters)
        samples["inference"] = parts["inference"][-iters:]
        samples.update(common.interleaved_samples({"grpc": grpc_floor, "grpc_b2b": grpc_back_to_back}, iters))
    finally:
        client.close()
        channel.close()
        server.stop()
    return in_bytes, out_bytes, samples


def row(label: str, in_bytes: int, out_bytes: int, answer_bytes: int, samples: Dict[str, List[float]]) -> List[str]:
    """One table row: medians, floor ratio, target and budget."""
    u, g, h, b, i = (common.median(samples[k]) for k in ("unavoidable", "grpc", "host", "grpc_b2b", "inference"))
    target = TARGETS.get(label)
    return [label, f"{u:.2f}", f"{g:.2f}", f"{in_bytes / 1000:.0f} kB in / {out_bytes / 1000:.1f} kB out",
            f"{h:.2f}", str(answer_bytes), f"{g + h:.2f}", f"{(u + g + h) / u:.3f}",
            f"{target:.2f}" if target else "-", f"{target * u - u - g - h:.2f}" if target else "-",
            f"{i:.2f}", f"{b:.2f}", f"{(i + b) / i:.3f}"]


HEADER = ["endpoint", "unavoidable ms", "gRPC floor ms", "gRPC payload", "host floor ms", "answer bytes",
          "floors ms", "floor ratio", "target", "budget ms", "inference ms", "gRPC back to back ms",
          "model server floor ratio"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=[e.label for e in ENDPOINTS], default=["pose", "detection"])
    ap.add_argument("--iters", type=int, default=60, help="interleaved samples of each measurement")
    ap.add_argument("--answer-bytes", nargs="+", default=[], metavar="LABEL=N",
                    help=f"JSON answer size per endpoint (default {ANSWER_BYTES} for each)")
    ap.add_argument("--out", type=Path, default=None, help="also write the table as markdown (not bench/RESULTS.md)")
    ap.add_argument("--serve-grpc", nargs=2, type=int, metavar=("PORT", "REPLY_BYTES"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_grpc:
        serve_grpc(*args.serve_grpc)
        return 0
    if args.out and args.out.resolve() == (ROOT / "bench" / "RESULTS.md").resolve():
        raise SystemExit("bench/RESULTS.md belongs to bench/run_all.py: choose another --out")
    sizes = {k: int(v) for k, v in (a.split("=", 1) for a in args.answer_bytes)}
    endpoints = [e for e in ENDPOINTS if e.label in args.only]
    workdir = Path(tempfile.mkdtemp(prefix="bench-floors-"))
    lines = [common.machine(), common.precision_line()]
    print(*lines, sep="\n", flush=True)
    host, rows = None, []
    try:
        located = {ep.label: served_copy(locate(ep), ep, workdir / "models") for ep in endpoints}
        write_app(workdir / "app")
        host = common.start_functions_host({"PYTHONPATH": f"{workdir / 'app'}{os.pathsep}{ROOT}"},
                                           root=workdir / "app")
        for ep in endpoints:
            print(f"{ep.label}: {ep.model} on {ep.image} ...", flush=True)
            answer = sizes.get(ep.label, ANSWER_BYTES)
            in_bytes, out_bytes, samples = measure(ep, located[ep.label][1], host.port, answer, args.iters)
            rows.append(row(ep.label, in_bytes, out_bytes, answer, samples))
    finally:
        if host:
            host.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    title = (f"Floors (medians of {args.iters} interleaved samples; floor ratio = (unavoidable + floors) / "
             "unavoidable; budget = target x unavoidable - unavoidable - floors)")
    common.print_table(title, rows, HEADER)
    if args.out:
        md = [f"# {title}", "", *lines, "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        args.out.write_text("\n".join(md + ["| " + " | ".join(r) + " |" for r in rows]) + "\n", encoding="utf-8")
        print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
