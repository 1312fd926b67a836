"""The benchmark suite: every endpoint in one run, one table, written to bench/RESULTS.md.

    PYTHONPATH=. .venv/bin/python bench/run_all.py [--quick] [--out bench/RESULTS.md]

One model server serves the four models (pose and detection: the real Open Model Zoo models in
../shared/models-real; handwriting and colorization: ../shared/models-synthetic, the real
topologies with placeholder weights, so the same cost), located with scripts/tooling/modelsearch.py;
one local Functions host is pointed at it. Per endpoint, measured side by side in this run:

- latency: median and p95 of POSTing one picture over a kept-alive HTTP connection (JSON answer),
  interleaved with the *unavoidable work* done in this process on the same model and picture:
  a bare ``cv2.imdecode`` + resize to the model input + in-process OpenVINO inference (compiled as
  the model server compiles it: CPU, PERFORMANCE_HINT=LATENCY); their ratio, the overhead (HTTP
  median - unavoidable median) in ms and per stage (decode, preprocess, gRPC hop, postprocess,
  host), from the server's own ``timing_ms`` beside the timed parts of the unavoidable work;
- throughput at 1, 4 and 8 concurrent clients: HTTP requests/s vs the unavoidable work run by as
  many threads in this process (one infer request each), and their ratio;
- cold start: import time and memory of each function module in a fresh interpreter, and the cost
  of the first-use imports (``bench/bench_coldstart.py``'s ``measure``).

The machine is shared and small: numbers are noisy; compare ratios taken in the same run.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.bench_coldstart import FUNCTIONS, measure  # noqa: E402
from bench.bench_ovms import run_concurrent  # noqa: E402
from scripts.tooling.modelsearch import find_model, find_side_file, model_xml  # noqa: E402
from shared import catalog  # noqa: E402

CLIENTS = (1, 4, 8)


@dataclass(frozen=True)
class Endpoint:
    """One catalog endpoint as benchmarked: its route, settings, model, side file and picture."""

    entry: catalog.Endpoint

    @property
    def label(self) -> str:
        return self.entry.task

    @property
    def function(self) -> str:
        return self.entry.function

    @property
    def prefix(self) -> str:
        return self.entry.prefix

    @property
    def served(self) -> str:
        return self.entry.model_name

    @property
    def model(self) -> str:
        return self.entry.omz_model

    @property
    def image(self) -> str:
        return self.entry.sample_images[0]

    @property
    def path(self) -> str:
        return f"/api/{self.function}"

    @property
    def side(self) -> Optional[catalog.SideFile]:
        """The side file kept beside the model that the endpoint needs (char list, coefficients)."""
        return next((f for f in self.entry.side_files if f.filename and f.where == catalog.BESIDE_MODEL), None)


ENDPOINTS: Tuple[Endpoint, ...] = tuple(Endpoint(e) for e in catalog.ENDPOINTS)


@dataclass
class Result:
    """Everything measured for one endpoint."""

    endpoint: Endpoint
    model_path: str
    http_ms: List[float] = field(default_factory=list)
    unavoidable_ms: List[float] = field(default_factory=list)
    server_total_ms: List[float] = field(default_factory=list)
    http_rps: Dict[int, float] = field(default_factory=dict)
    inproc_rps: Dict[int, float] = field(default_factory=dict)
    server_stages: List[Dict[str, float]] = field(default_factory=list)  # the server's timing_ms per call
    parts_ms: Dict[str, List[float]] = field(default_factory=dict)  # unavoidable: decode, resize, infer

    def stage(self, name: str) -> float:
        """Median of one server stage (ms; 0 when it did not run)."""
        return common.median([t.get(name, 0.0) for t in self.server_stages])

    def part(self, name: str) -> float:
        """Median of one part of the unavoidable work (ms)."""
        return common.median(self.parts_ms[name])


def locate(ep: Endpoint) -> Tuple[Path, Path, Optional[Path]]:
    """(OVMS base path, .xml, side file) of an endpoint's model; SystemExit when missing."""
    base, xml = find_model(ep.model), model_xml(ep.model)
    fname = ep.side.filename if ep.side else None
    side = find_side_file(ep.model, fname) if fname else None
    if base is None or xml is None or (fname and side is None):
        raise SystemExit(f"needs_real_models: {ep.model}{' and ' + fname if fname else ''} "
                         "not found (models/, $OVAAS_MODELS_DIR, ../shared)")
    return base, xml, side


def served_copy(found: Tuple[Path, Path, Optional[Path]], ep: Endpoint,
                workdir: Path) -> Tuple[Path, Path, Optional[Path]]:
    """The model as the stack serves it: with u8 image inputs where the catalog says the endpoint
    feeds whole 8-bit levels (the in-process baseline then runs that same model)."""
    base, xml, side = found
    if not ep.entry.u8_input:
        return found
    from scripts.tooling.modelprep import u8_image_inputs

    u8_image_inputs(xml, workdir / ep.label / "1")
    return workdir / ep.label, workdir / ep.label / "1" / xml.name, side


def placeholder_weights(base: Path) -> bool:
    """True for the real topologies with placeholder weights (../shared/models-synthetic)."""
    return "models-synthetic" in base.parts


PARTS = ("decode", "resize", "inference")


def unavoidable_work(xml: Path, data: bytes) -> Callable[..., Callable[[], None]]:
    """A factory of calls doing the unavoidable work: a bare ``cv2.imdecode`` + resize to the model
    input + in-process inference (one infer request per call site, so threads do not share one).
    ``make(sink)`` records each part's milliseconds in ``sink`` (a dict of lists)."""
    import time

    import cv2
    import numpy as np

    compiled = common.inprocess_model(xml, "LATENCY")
    port = compiled.inputs[0]
    _, c, h, w = (int(d) for d in port.shape)
    flag = cv2.IMREAD_GRAYSCALE if c == 1 else cv2.IMREAD_COLOR
    buf = np.frombuffer(data, np.uint8)
    dtype = np.uint8 if port.get_element_type().get_type_name() == "u8" else np.float32

    def make(sink: Optional[Dict[str, List[float]]] = None) -> Callable[[], None]:
        request = compiled.create_infer_request()

        def call() -> None:
            t0 = time.perf_counter()
            pixels = cv2.imdecode(buf, flag)
            t1 = time.perf_counter()
            resized = cv2.resize(pixels, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, c)
            blob = np.ascontiguousarray(resized.transpose(2, 0, 1)[None], dtype=dtype)
            t2 = time.perf_counter()
            request.infer({0: blob})
            t3 = time.perf_counter()
            if sink is not None:
                for name, ms in zip(PARTS, ((t1 - t0), (t2 - t1), (t3 - t2))):
                    sink.setdefault(name, []).append(ms * 1000.0)

        return call

    return make


def http_call(port: int, ep: Endpoint, data: bytes, ctype: str,
              sink: Optional[List[Dict[str, float]]] = None) -> Callable[[], None]:
    """A POST of ``data`` over its own kept-alive connection; raises on anything but 200.
    ``sink`` collects the server's own ``timing_ms`` of each answer."""
    client = common.KeepAliveClient(port)

    def call() -> None:
        status, body = client.post(ep.path, data, ctype)
        if status != 200:
            raise RuntimeError(f"{ep.path}: HTTP {status}: {body[:300]!r}")
        if sink is not None:
            sink.append(json.loads(body)["timing_ms"])

    return call


def bench_endpoint(ep: Endpoint, xml: Path, base: Path, host_port: int, iters: int, seconds: float) -> Result:
    data = (common.IMAGES / ep.image).read_bytes()
    ctype = "image/png" if ep.image.endswith(".png") else "image/jpeg"
    where = str(base.relative_to(ROOT.parent)) if ROOT.parent in base.parents else str(base)
    result = Result(ep, where + (" (served with a u8 input)" if ep.entry.u8_input else ""))
    make_local = unavoidable_work(xml, data)
    parts: Dict[str, List[float]] = {}
    times = common.interleaved_ms({"http": http_call(host_port, ep, data, ctype, result.server_stages),
                                   "unavoidable": make_local(parts)}, iters, warmup=2)
    result.server_stages[:] = result.server_stages[-iters:]
    result.parts_ms = {k: v[-iters:] for k, v in parts.items()}
    result.server_total_ms = [t["total"] for t in result.server_stages]
    result.http_ms, result.unavoidable_ms = times["http"], times["unavoidable"]
    for n in CLIENTS:  # alternate the two paths at each level (fairer on a busy machine)
        result.http_rps[n] = run_concurrent(lambda: http_call(host_port, ep, data, ctype), n, seconds)
        result.inproc_rps[n] = run_concurrent(make_local, n, seconds)
    return result


# ---- report ----------------------------------------------------------------------------------

def _fmt(x: float) -> str:
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def tables(results: Sequence[Result], cold: Dict[str, dict]) -> List[Tuple[str, List[str], List[List[str]]]]:
    lat = [[r.endpoint.label, _fmt(common.median(r.http_ms)), _fmt(common.p95(r.http_ms)),
            _fmt(common.median(r.server_total_ms)), _fmt(common.median(r.unavoidable_ms)),
            _fmt(common.p95(r.unavoidable_ms)), f"{common.median(r.http_ms) / common.median(r.unavoidable_ms):.2f}"]
           for r in results]
    over = []
    for r in results:
        http, unavoidable = common.median(r.http_ms), common.median(r.unavoidable_ms)
        post = r.stage("postprocess") + r.stage("encode")
        over.append([r.endpoint.label, f"{http / unavoidable:.2f}", _fmt(http - unavoidable),
                     _fmt(r.stage("decode") - r.part("decode")), _fmt(r.stage("preprocess") - r.part("resize")),
                     _fmt(r.stage("inference") - r.part("inference")), _fmt(post),
                     _fmt(http - common.median(r.server_total_ms))])
    tput = []
    for r in results:
        row = [r.endpoint.label]
        for n in CLIENTS:
            row += [_fmt(r.http_rps[n]), _fmt(r.inproc_rps[n]), f"{r.http_rps[n] / r.inproc_rps[n]:.2f}"]
        tput.append(row)
    cs = [[fn, _fmt(m["import_s"] * 1000), _fmt(m["import_mb"]), _fmt(m["first_use_s"] * 1000),
           _fmt(m["first_use_mb"])] for fn, m in cold.items()]
    models = [[r.endpoint.label, r.endpoint.model + (" (placeholder weights)" if placeholder_weights(Path(r.model_path)) else ""),
               r.model_path, r.endpoint.image] for r in results]
    tput_header = ["endpoint"] + [f"{h} @{n}" for n in CLIENTS for h in ("HTTP req/s", "in-proc req/s", "ratio")]
    return [
        ("Latency, one client (ms; ratio = HTTP median / unavoidable median)",
         ["endpoint", "HTTP median", "HTTP p95", "server total", "unavoidable median", "unavoidable p95", "ratio"], lat),
        ("Overhead (ms) = HTTP median - unavoidable median, and where it goes: each server stage's median "
         "minus its unavoidable part (decode: the endpoint's decode vs a bare cv2.imdecode; preprocess vs "
         "the bare resize; gRPC hop: inference through the model server vs in-process), postprocess (+ "
         "encoding the answer), host = HTTP median - the server's own total",
         ["endpoint", "ratio", "overhead", "decode", "preprocess", "gRPC hop", "postprocess", "host"], over),
        ("Throughput (requests/s at 1, 4, 8 concurrent clients; ratio = HTTP / in-process)", tput_header, tput),
        ("Cold start: function module import in a fresh interpreter, then first-use imports",
         ["function", "import ms", "import MB", "first use ms", "first use MB"], cs),
        ("Models and pictures", ["endpoint", "model", "from", "picture"], models),
    ]


def markdown(blocks, header_lines: Sequence[str]) -> str:
    out = ["# Benchmark results", "", *header_lines, ""]
    for title, header, rows in blocks:
        out += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        out.append("")
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations and shorter throughput runs")
    ap.add_argument("--iters", type=int, default=None, help="latency samples per endpoint (default 40, quick 10)")
    ap.add_argument("--seconds", type=float, default=None, help="per throughput measurement (default 5, quick 1.5)")
    ap.add_argument("--coldstart-runs", type=int, default=None, help="fresh interpreters per module (default 5, quick 2)")
    ap.add_argument("--only", nargs="*", choices=[e.label for e in ENDPOINTS], help="a subset of endpoints")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = ap.parse_args(argv)
    iters = args.iters or (10 if args.quick else 40)
    seconds = args.seconds or (1.5 if args.quick else 5.0)
    runs = args.coldstart_runs or (2 if args.quick else 5)
    endpoints = [e for e in ENDPOINTS if not args.only or e.label in args.only]

    workdir = Path(tempfile.mkdtemp(prefix="bench-models-"))
    origin = {ep.label: locate(ep) for ep in endpoints}
    located = {ep.label: served_copy(origin[ep.label], ep, workdir) for ep in endpoints}
    started = time.monotonic()
    print(common.machine(), flush=True)
    print(common.precision_line(), flush=True)
    server = common.start_model_server({ep.served: located[ep.label][0] for ep in endpoints})
    host = None
    try:
        env: Dict[str, str] = {}
        for ep in endpoints:
            env.update(common.model_env(ep.prefix, server.port, ep.served))
            if ep.side:
                env[ep.side.setting] = str(located[ep.label][2])
        env["OBJECTDETECTION_LABELS_PATH"] = ""
        host = common.start_functions_host(env)
        results = []
        for ep in endpoints:
            _, xml, _ = located[ep.label]
            base = origin[ep.label][0]
            print(f"{ep.label}: {ep.model} on {ep.image} ...", flush=True)
            results.append(bench_endpoint(ep, xml, base, host.port, iters, seconds))
    finally:
        if host:
            host.stop()
        server.stop()
    cold = {fn: measure(fn, runs) for fn in FUNCTIONS
            if any(ep.function == fn for ep in endpoints)}

    blocks = tables(results, cold)
    for title, header, rows in blocks:
        common.print_table(title, rows, header)
    mode = "quick" if args.quick else "full"
    header_lines = [
        f"Machine: {common.machine()}",
        f"Precision: {common.precision_line()} on both sides (the model server and the in-process "
        "baseline use OpenVINO's defaults).",
        f"Run: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, `bench/run_all.py{' --quick' if args.quick else ''}` "
        f"({mode}: {iters} latency samples interleaved, {seconds:g} s per throughput point, "
        f"{runs} cold-start interpreters; {time.monotonic() - started:.0f} s).",
        "",
        "HTTP = POST to the local Functions host (emulators/functions_host) -> gRPC (KServe v2) -> local "
        "model server (emulators/ovms), JSON answer, kept-alive connection. Unavoidable = a bare cv2.imdecode + "
        "resize + in-process OpenVINO inference of the same model on the same picture, in the benchmark process. "
        "Server total = the endpoint's own `timing_ms.total`.",
        "The machine is shared with other work (2 cores): absolute numbers are noisy; the ratios, "
        "measured side by side in one run, are the meaningful part. At 4 and 8 clients the HTTP path "
        "shares the 2 cores between the benchmark's clients, the host and the model server.",
    ]
    args.out.write_text(markdown(blocks, header_lines), encoding="utf-8")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
