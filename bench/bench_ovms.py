"""Bench: the OVMS emulator vs in-process OpenVINO on the same model, input and compile config.

    .venv/bin/python bench/bench_ovms.py [--model human-pose-estimation-0001] [--seconds 8] [--iters 40]

Prints, side by side, the median latency (1 client, sequential) and the throughput with 4
concurrent clients for: in-process OpenVINO, the app's own KServe adapter
(``shared.serving.kserve``), tritonclient (KServe v2 gRPC) and ovmsclient (TFS gRPC), with the
ratios to in-process. Both sides compile with the same config: the
emulator's default (no plugin_config: OpenVINO's CPU defaults, i.e. PERFORMANCE_HINT=LATENCY and
bf16 on CPUs with AMX) or ``--hint THROUGHPUT|LATENCY`` / ``--precision f32|bf16|f16``; it prints
the CPU model and the inference precision in force; nireq = OPTIMAL_NUMBER_OF_INFER_REQUESTS on both sides.
``--u8-input`` serves and runs the model as the stack serves it (u8 image inputs converted inside
the graph, ``scripts/tooling/modelprep.py``) on both sides: a quarter of the input bytes.
The machine may be shared, so measurements are interleaved: latency calls alternate between the
paths one call at a time, throughput runs in ``--rounds`` alternating windows of ``--seconds``;
medians are reported. Goals: latency ratio <= 1.15, throughput ratio >= 0.85.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import interleaved_ms, precision_line  # noqa: E402
from emulators.ovms.launcher import start_server  # noqa: E402
from scripts.tooling.modelsearch import find_model, model_xml  # noqa: E402
from shared.serving.grpc_common import ManagedChannel  # noqa: E402
from shared.serving.kserve import KServeAdapter  # noqa: E402



def run_concurrent(make_call, clients: int, seconds: float) -> float:
    """Requests per second with ``clients`` threads, each calling its own ``make_call()`` result."""
    calls = [make_call() for _ in range(clients)]
    for c in calls:
        c()
    stop = time.monotonic() + seconds
    counts = [0] * clients
    start = threading.Barrier(clients + 1)

    def worker(i):
        start.wait()
        while time.monotonic() < stop:
            calls[i]()
            counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    start.wait()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="human-pose-estimation-0001")
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--hint", choices=["LATENCY", "THROUGHPUT"], default=None,
                    help="PERFORMANCE_HINT for both sides (default: none = OpenVINO defaults, as the emulator)")
    ap.add_argument("--precision", choices=["default", "f32", "bf16", "f16"], default="default",
                    help="INFERENCE_PRECISION_HINT for both sides (default: OpenVINO's, bf16 on AMX CPUs)")
    ap.add_argument("--u8-input", action="store_true",
                    help="both sides run the model with u8 image inputs, as the stack serves it")
    args = ap.parse_args()
    plugin = {"PERFORMANCE_HINT": args.hint} if args.hint else {}
    if args.precision != "default":
        plugin["INFERENCE_PRECISION_HINT"] = args.precision

    import openvino as ov
    import ovmsclient
    import tritonclient.grpc as tg

    base, xml = find_model(args.model), model_xml(args.model)
    if base is None or xml is None:
        print(f"model {args.model} not found (scripts/tooling/modelsearch.py)", file=sys.stderr)
        return 2
    workdir = tempfile.TemporaryDirectory(prefix="bench-ovms-")
    if args.u8_input:
        from scripts.tooling.modelprep import u8_image_inputs

        base = Path(workdir.name) / "model"
        u8_image_inputs(xml, base / "1")
        xml = base / "1" / Path(xml).name
    core = ov.Core()
    compiled = core.compile_model(str(xml), "CPU", plugin)
    inp = compiled.inputs[0]
    in_name, shape = inp.get_any_name(), [d.get_length() for d in inp.get_partial_shape()]
    dtype = np.uint8 if inp.get_element_type() == ov.Type.u8 else np.float32
    x = (np.random.default_rng(0).random(shape, dtype=np.float32) * 255).astype(dtype)
    nireq = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    print(precision_line(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()))
    print(f"model {args.model} input {in_name} {shape} {np.dtype(dtype).name}; CPU plugin_config {plugin or '{}'} -> "
          f"{compiled.get_property('PERFORMANCE_HINT')}, streams {compiled.get_property('NUM_STREAMS')}, "
          f"nireq {nireq}; latency: {args.iters} interleaved calls per path; throughput: {args.rounds} "
          f"windows x {args.seconds:.0f} s at {args.clients} clients per path")

    def local_call():
        req = compiled.create_infer_request()

        def call():
            req.infer({0: x})
            return [req.get_output_tensor(i).data for i in range(len(compiled.outputs))]
        return call

    server_args = ["--model_name", "m", "--model_path", str(base), "--log_level", "WARNING"]
    if plugin:
        server_args += ["--plugin_config", json.dumps(plugin)]
    srv = start_server(server_args, timeout=120)
    try:
        def triton_call():
            client = tg.InferenceServerClient(srv.address)
            i = tg.InferInput(in_name, shape, "UINT8" if dtype is np.uint8 else "FP32")

            def call():
                i.set_data_from_numpy(x)
                r = client.infer("m", [i])
                return [r.as_numpy(o.name) for o in r.get_response().outputs]
            return call

        def ovms_call():
            client = ovmsclient.make_grpc_client(srv.address)
            return lambda: client.predict({in_name: x}, "m")

        def app_call():
            # the app's own client: one channel per address, the request written once, outputs as views
            adapter = KServeAdapter(ManagedChannel(srv.address, 5.0), "m", None, 60.0)
            return lambda: adapter.infer({in_name: x})

        paths = {"in-process OpenVINO": local_call, "KServe (the app's adapter)": app_call,
                 "KServe (tritonclient)": triton_call, "TFS (ovmsclient)": ovms_call}
        # latency: one call of each path in turn, so all paths see the same background load,
        # shuffled each round (seeded): a gRPC call right after the in-process one finds the server
        # idle (slower), so no path may always follow it
        lat = interleaved_ms({name: make() for name, make in paths.items()}, args.iters,
                             rng=random.Random(0))
        # throughput: short alternating windows
        tput = {name: [] for name in paths}
        for r in range(args.rounds):
            for name, make in paths.items():
                tput[name].append(run_concurrent(make, args.clients, args.seconds))
            print(f"round {r + 1}: " + "; ".join(f"{n}: {tput[n][-1]:.2f}/s" for n in paths))
    finally:
        srv.stop()
        workdir.cleanup()
    results = {n: (statistics.median(lat[n]), statistics.median(tput[n])) for n in paths}

    base_lat, base_tput = results["in-process OpenVINO"]
    print(f"\n{'path':26s} {'median latency ms':>18s} {'lat ratio':>10s} "
          f"{f'tput@{args.clients} req/s':>16s} {'tput ratio':>11s}")
    ok = True
    for name, (lat, tput) in results.items():
        lr, tr = lat / base_lat, tput / base_tput
        if name != "in-process OpenVINO":
            ok &= lr <= 1.15 and tr >= 0.85
        print(f"{name:26s} {lat:18.2f} {lr:10.3f} {tput:16.2f} {tr:11.3f}")
    print(f"\ngoals (latency ratio <= 1.15, throughput ratio >= 0.85): {'MET' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
