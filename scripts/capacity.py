"""Capacity plan on paper: OVMS replicas x cores and Function instances for a load and a p95 target.

    python -m scripts.capacity --rps 200 --p95-ms 300 [--mix pose=1,handwriting=1,...]

Measured (bench/capacity.json, written by bench/bench_capacity.py on one machine): per endpoint,
the process CPU time of one inference (``inference_cpu_ms``) and of the app's own work for one
request (``app_cpu_ms``: parsing, decode, pre/postprocessing, gRPC client, JSON), mean and p95.

Assumed (options, printed with the plan): the traffic mix, the utilisation target, the model
server's overhead over in-process inference, the network time, the vCPUs of a Function instance
and its HTTP concurrency, and the queueing model: each side is an M/M/c queue (Poisson arrivals,
exponential service: pessimistic for the nearly constant service times here), c = cores.

Per endpoint with arrival rate lam (requests/s):
- OVMS: service time S_o = inference_cpu x (1 + overhead) on one core (one OpenVINO stream per
  core, INFERENCE_NUM_THREADS = cores); cores c_o = the least c with lam*S_o/c <= U and the
  M/M/c waiting-time p95 within its share of the latency slack; replicas = ceil(c_o / cores per
  replica).
- Function: vCPUs c_f likewise with S_f = app_cpu + the Functions host's own CPU per request
  (``host_ms``, assumed: the host's HTTP front end and its gRPC hop to the Python worker, which
  bench/capacity.json's in-process measurement does not include); instances = the larger of ceil(c_f / vCPUs per
  instance) and Little's law ceil(lam x mean request time / HTTP concurrency per instance).
- Connections: the app's gRPC client holds one HTTP/2 connection per model server address, and an
  L4 load balancer (a Kubernetes Service) spreads connections, not requests. With k Function
  instances each calling an endpoint's r replicas through one Service, the replicas that get a
  connection are on average r (1 - (1 - 1/r)^k); the plan flags endpoints where that is below r
  (README "Scaling": what balances requests instead).
- Latency: p95 ~ app p95 + Function wait p95 + network + inference p95 x (1 + overhead) + OVMS
  wait p95; the slack (target minus the service times) is shared half and half by the two waits.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared import catalog  # noqa: E402
BENCH = ROOT / "bench" / "capacity.json"
MAX_SERVERS = 100_000


def _function_of(name: str) -> str:
    """An endpoint's function folder from its task name ("pose"), its folder or its original name."""
    endpoint = catalog.by_name(name)
    return endpoint.function if endpoint else name


class CapacityError(ValueError):
    """Inputs the model cannot plan for (message meant for the user)."""


# --- queueing ----------------------------------------------------------------------------------

def erlang_c(servers: int, load: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with ``servers`` and offered ``load``
    (= arrival rate x service time, in Erlangs). 1.0 when the queue is unstable (load >= servers)."""
    if servers < 1:
        raise ValueError("servers must be >= 1")
    if load <= 0:
        return 0.0
    if load >= servers:
        return 1.0
    b = 1.0  # Erlang B by its stable recurrence
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    return servers * b / (servers - load * (1.0 - b))


def wait_quantile(servers: int, rate: float, service: float, q: float = 0.95) -> float:
    """The q-quantile of the waiting time (seconds) in M/M/c: P(W > t) = C exp(-(c/S - rate) t)."""
    load = rate * service
    if load >= servers:
        return math.inf
    c = erlang_c(servers, load)
    if c <= 1.0 - q:
        return 0.0
    return math.log(c / (1.0 - q)) / (servers / service - rate)


def mean_wait(servers: int, rate: float, service: float) -> float:
    """Mean waiting time (seconds) in M/M/c."""
    load = rate * service
    if load >= servers:
        return math.inf
    return erlang_c(servers, load) / (servers / service - rate) if load > 0 else 0.0


def servers_needed(rate: float, service: float, utilisation: float, wait_budget: float,
                   q: float = 0.95) -> int:
    """The least number of servers with utilisation <= target and waiting-time q-quantile <= budget."""
    if not 0 < utilisation <= 1:
        raise CapacityError("utilisation must be in (0, 1]")
    if rate <= 0:
        return 0
    m = max(1, math.ceil(rate * service / utilisation - 1e-9))
    while wait_quantile(m, rate, service, q) > max(wait_budget, 0.0):
        m += 1
        if m > MAX_SERVERS:
            raise CapacityError("no finite number of servers meets the waiting-time budget")
    return m


# --- the plan ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Assumptions:
    """The figures that are not measured (defaults documented in README "Scaling")."""

    utilisation: float = 0.7          # target CPU utilisation (the HPA's 70 %)
    ovms_overhead: float = 0.10       # model server (gRPC, scheduling) over in-process inference
    network_ms: float = 2.0           # Function <-> OVMS round trip inside one region/VNet
    ovms_cores_per_replica: int = 2   # deploy/k8s CPU limit = INFERENCE_NUM_THREADS
    fn_vcpus: float = 1.0             # Flex Consumption 2048 MB instance
    fn_concurrency: int = 4           # http_concurrency in deploy/terraform = PYTHON_THREADPOOL_THREAD_COUNT
    host_ms: float = 2.0              # Functions host CPU per request (not measured here)
    quantile: float = 0.95


@dataclass(frozen=True)
class EndpointPlan:
    endpoint: str
    rps: float
    inference_ms: float
    app_ms: float
    ovms_cores: int
    ovms_replicas: int
    fn_vcpus: int
    fn_instances: int
    fn_instances_cpu: int
    fn_instances_concurrency: int
    p95_ms: float
    meets_p95: bool
    note: str = ""
    replicas_reached: float = 0.0     # replicas with a connection, on average (set by make_plan)


@dataclass(frozen=True)
class Plan:
    endpoints: List[EndpointPlan]
    fn_instances: int
    assumptions: Assumptions
    bench: Mapping = field(default_factory=dict)


def plan_endpoint(endpoint: str, rps: float, figures: Mapping, p95_target_ms: float, a: Assumptions,
                  answer: str = "json") -> EndpointPlan:
    """Size one endpoint from its measured figures (bench/capacity.json ``endpoints[...]``)."""
    app_key = "app_cpu_ms" if answer == "json" else "app_image_cpu_ms"
    inf_mean = figures["inference_cpu_ms"]["mean"] / 1000.0
    inf_p95 = figures["inference_cpu_ms"]["p95"] / 1000.0
    host = a.host_ms / 1000.0
    app_mean = figures[app_key]["mean"] / 1000.0 + host
    app_p95 = figures[app_key]["p95"] / 1000.0 + host
    s_o = inf_mean * (1 + a.ovms_overhead)
    net = a.network_ms / 1000.0
    floor = app_p95 + net + inf_p95 * (1 + a.ovms_overhead)
    slack = p95_target_ms / 1000.0 - floor
    note = ""
    if slack < 0:
        note = f"p95 {p95_target_ms:g} ms is below the service time alone ({floor * 1000:.0f} ms): sized for throughput"
    budget = slack / 2 if slack >= 0 else math.inf  # waiting time each side may add
    ovms_cores = servers_needed(rps, s_o, a.utilisation, budget, a.quantile)
    replicas = math.ceil(ovms_cores / a.ovms_cores_per_replica) if rps > 0 else 0
    cores = replicas * a.ovms_cores_per_replica  # the cores actually deployed
    fn_vcpus = servers_needed(rps, app_mean, a.utilisation, budget, a.quantile)
    by_cpu = math.ceil(fn_vcpus / a.fn_vcpus - 1e-9) if rps > 0 else 0
    vcpus = by_cpu * a.fn_vcpus
    wq_o = wait_quantile(cores, rps, s_o, a.quantile) if rps > 0 else 0.0
    wq_f = wait_quantile(max(1, int(vcpus)), rps, app_mean, a.quantile) if rps > 0 else 0.0
    # Little's law: requests in flight = rate x mean time in the system; each holds a worker thread.
    mean_time = (app_mean + (mean_wait(max(1, int(vcpus)), rps, app_mean) if rps > 0 else 0) + net
                 + s_o + (mean_wait(cores, rps, s_o) if rps > 0 else 0))
    by_conc = math.ceil(rps * mean_time / a.fn_concurrency - 1e-9) if rps > 0 else 0
    p95 = (floor + wq_o + wq_f) * 1000.0
    return EndpointPlan(endpoint, rps, figures["inference_cpu_ms"]["mean"], figures[app_key]["mean"] + a.host_ms,
                        cores, replicas, fn_vcpus, max(by_cpu, by_conc), by_cpu, by_conc,
                        round(p95, 1), slack >= 0 and p95 <= p95_target_ms + 1e-6, note)


def parse_mix(text: Optional[str], endpoints: Sequence[str]) -> Dict[str, float]:
    """``pose=2,detection=1`` -> shares summing to 1 (endpoint names or their short aliases)."""
    if not text:
        return {e: 1.0 / len(endpoints) for e in endpoints}
    weights: Dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = _function_of(name.strip())
        if name not in endpoints:
            raise CapacityError(f"--mix: unknown endpoint {name!r} (use {', '.join(e.task for e in catalog.ENDPOINTS)})")
        try:
            weights[name] = float(value)
        except ValueError:
            raise CapacityError(f"--mix: {part!r} is not name=weight") from None
        if weights[name] < 0:
            raise CapacityError("--mix: weights must be >= 0")
    total = sum(weights.values())
    if total <= 0:
        raise CapacityError("--mix: weights sum to 0")
    return {e: weights.get(e, 0.0) / total for e in endpoints}


def make_plan(bench: Mapping, rps: float, p95_ms: float, mix: Optional[str] = None,
              a: Assumptions = Assumptions(), answer: str = "json") -> Plan:
    if rps <= 0 or p95_ms <= 0:
        raise CapacityError("--rps and --p95-ms must be positive")
    endpoints = list(bench["endpoints"])
    shares = parse_mix(mix, endpoints)
    plans = [plan_endpoint(e, rps * shares[e], bench["endpoints"][e], p95_ms, a, answer) for e in endpoints]
    # All HTTP functions of a Flex Consumption app scale together as one group: instances add up,
    # and every instance may open a connection to every endpoint's Service.
    instances = sum(p.fn_instances for p in plans)
    plans = [dataclasses.replace(p, replicas_reached=replicas_reached(p.ovms_replicas, instances)) for p in plans]
    return Plan(plans, instances, a, bench)


def replicas_reached(replicas: int, connections: int) -> float:
    """Replicas that get at least one of ``connections`` placed uniformly at random, on average."""
    if replicas <= 0:
        return 0.0
    return replicas * (1.0 - (1.0 - 1.0 / replicas) ** max(connections, 0))


def load_bench(path: Path = BENCH) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CapacityError(f"{path} not found: run .venv/bin/python bench/bench_capacity.py") from None
    if not data.get("endpoints"):
        raise CapacityError(f"{path} has no endpoints")
    return data


def render(plan: Plan, rps: float, p95_ms: float) -> str:
    a = plan.assumptions
    m = plan.bench.get("machine", {})
    lines = [f"Capacity for {rps:g} requests/s at p95 <= {p95_ms:g} ms",
             f"measured ({plan.bench.get('date', '?')}, {m.get('cpu_model', '?')}, OpenVINO {m.get('openvino', '?')}, "
             f"precision {m.get('inference_precision_hint', '?')}; bench/capacity.json)", ""]
    head = (f"{'endpoint':28} {'req/s':>7} {'infer ms':>9} {'app ms':>7} {'OVMS replicas x cores':>22} "
            f"{'Fn instances':>13} {'p95 ms':>8}")
    lines += [head, "-" * len(head)]
    for p in plan.endpoints:
        ok = "" if p.meets_p95 else "  (!)"
        lines.append(f"{p.endpoint:28} {p.rps:7.1f} {p.inference_ms:9.1f} {p.app_ms:7.1f} "
                     f"{f'{p.ovms_replicas} x {a.ovms_cores_per_replica}':>22} {p.fn_instances:13d} "
                     f"{p.p95_ms:8.0f}{ok}")
    lines.append("-" * len(head))
    lines.append(f"{'Function App (one pool)':28} {sum(p.rps for p in plan.endpoints):7.1f} {'':9} {'':7} "
                 f"{f'{sum(p.ovms_replicas for p in plan.endpoints)} replicas':>22} {plan.fn_instances:13d}")
    lines.append("")
    for p in plan.endpoints:
        detail = (f"{p.endpoint}: Function instances = max(CPU {p.fn_instances_cpu}, "
                  f"in-flight/concurrency {p.fn_instances_concurrency})")
        if p.ovms_replicas and p.replicas_reached < p.ovms_replicas - 0.5:
            detail += (f"; through an L4 Service {plan.fn_instances} connections reach about "
                       f"{p.replicas_reached:.0f} of {p.ovms_replicas} replicas")
        lines.append(detail + (f"; {p.note}" if p.note else ""))
    lines += ["",
              "measured: inference CPU ms and app CPU ms per request (means shown; p95s used for latency)",
              f"assumed: utilisation {a.utilisation:.0%}, OVMS overhead {a.ovms_overhead:.0%}, network "
              f"{a.network_ms:g} ms, {a.ovms_cores_per_replica} cores per OVMS replica, "
              f"{a.fn_vcpus:g} vCPU and HTTP concurrency {a.fn_concurrency} per Function instance, "
              f"{a.host_ms:g} ms host CPU per request, "
              f"M/M/c queues, traffic mix as given",
              "(!) = the p95 target is not met (see the note); set OVMS maxReplicas and the Function App's "
              "maximum_instance_count at or above these figures."]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.capacity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rps", type=float, required=True, help="total requests per second")
    p.add_argument("--p95-ms", type=float, required=True, help="p95 latency target, milliseconds")
    p.add_argument("--mix", help="traffic shares, e.g. pose=4,detection=4,handwriting=1,colorization=1 "
                                 "(default: equal)")
    p.add_argument("--answer", choices=("json", "image"), default="json",
                   help="JSON answers or rendered pictures (the web frontend)")
    p.add_argument("--bench", type=Path, default=BENCH)
    d = Assumptions()
    p.add_argument("--utilisation", type=float, default=d.utilisation)
    p.add_argument("--ovms-overhead", type=float, default=d.ovms_overhead)
    p.add_argument("--network-ms", type=float, default=d.network_ms)
    p.add_argument("--ovms-cores-per-replica", type=int, default=d.ovms_cores_per_replica)
    p.add_argument("--fn-vcpus", type=float, default=d.fn_vcpus, help="vCPUs of a Function instance")
    p.add_argument("--fn-concurrency", type=int, default=d.fn_concurrency,
                   help="HTTP per-instance concurrency of the Function App (http_concurrency)")
    p.add_argument("--host-ms", type=float, default=d.host_ms,
                   help="the Functions host's own CPU per request, milliseconds (assumed)")
    args = p.parse_args(argv)
    try:
        a = Assumptions(args.utilisation, args.ovms_overhead, args.network_ms, args.ovms_cores_per_replica,
                        args.fn_vcpus, args.fn_concurrency, args.host_ms)
        plan = make_plan(load_bench(args.bench), args.rps, args.p95_ms, args.mix, a, args.answer)
    except CapacityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(plan, args.rps, args.p95_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
