"""scripts/capacity.py: the queueing arithmetic against hand-computed cases, and the command on the
committed bench/capacity.json."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import capacity as cap

ROOT = Path(__file__).resolve().parent.parent


def test_erlang_c_hand_computed():
    assert cap.erlang_c(1, 0.5) == pytest.approx(0.5)           # M/M/1: P(wait) = rho
    assert cap.erlang_c(2, 1.0) == pytest.approx(1 / 3)         # B1 = 1/2, B2 = 1/5, C = 0.4/1.2
    assert cap.erlang_c(4, 2.0) == pytest.approx(0.173913, abs=1e-6)
    assert cap.erlang_c(3, 3.0) == 1.0 and cap.erlang_c(3, 0.0) == 0.0


def test_wait_quantile_and_mean_hand_computed():
    # M/M/1, rate 5/s, service 0.1 s: C = 0.5, P(W > t) = 0.5 e^(-5t) -> t95 = ln(10)/5
    assert cap.wait_quantile(1, 5.0, 0.1) == pytest.approx(math.log(10) / 5)
    assert cap.mean_wait(1, 5.0, 0.1) == pytest.approx(0.1)      # rho S / (1 - rho) = 0.05/0.5
    assert cap.wait_quantile(4, 1.0, 0.1) == 0.0                 # C < 5 %: most requests never wait
    assert cap.wait_quantile(1, 10.0, 0.1) == math.inf


def test_servers_needed_hand_computed():
    assert cap.servers_needed(100, 0.02, 0.7, 1.0) == 3          # load 2 / 0.7 = 2.86 -> 3
    assert cap.servers_needed(100, 0.02, 0.5, 1.0) == 4
    # a tight waiting budget needs more than the utilisation bound: with load 2, 4 servers wait
    # ln(0.173913/0.05)/100 s = 12.5 ms at p95; 5 servers: C = 0.059701, ln(C/0.05)/150 s = 1.2 ms
    assert cap.wait_quantile(4, 100, 0.02) == pytest.approx(0.0124652, abs=1e-6)
    assert cap.wait_quantile(5, 100, 0.02) == pytest.approx(0.0011823, abs=1e-6)
    assert cap.servers_needed(100, 0.02, 0.7, 0.01) == 5
    assert cap.servers_needed(0, 0.02, 0.7, 1.0) == 0


FIGURES = {"inference_cpu_ms": {"mean": 20.0, "p95": 25.0},
           "app_cpu_ms": {"mean": 10.0, "p95": 12.0}, "app_image_cpu_ms": {"mean": 15.0, "p95": 18.0}}
EXACT = cap.Assumptions(utilisation=0.5, ovms_overhead=0.0, network_ms=0.0, ovms_cores_per_replica=2,
                        fn_vcpus=1.0, fn_concurrency=2, host_ms=0.0)


def test_plan_endpoint_hand_computed():
    p = cap.plan_endpoint("E", 100.0, FIGURES, 1000.0, EXACT)
    # OVMS: load 100 x 0.02 = 2 Erlangs, / 0.5 -> 4 cores = 2 replicas x 2
    assert (p.ovms_cores, p.ovms_replicas) == (4, 2)
    # Function: load 100 x 0.01 = 1 vCPU, / 0.5 -> 2 vCPUs = 2 instances of 1 vCPU
    assert (p.fn_vcpus, p.fn_instances_cpu) == (2, 2)
    # Little: 100/s x (0.01 + 1/300 + 0.02 + 0.173913/100) s = 3.507 in flight / 2 per instance -> 2
    assert p.fn_instances_concurrency == 2 and p.fn_instances == 2
    # p95 = 12 + 25 ms + OVMS wait ln(0.173913/0.05)/100 s + Function wait ln((1/3)/0.05)/100 s
    assert p.p95_ms == pytest.approx(37 + 12.4652 + 18.9712, abs=0.1)
    assert p.meets_p95 and not p.note


def test_plan_endpoint_concurrency_bound_and_infeasible_target():
    one = cap.Assumptions(**{**EXACT.__dict__, "fn_concurrency": 1})
    p = cap.plan_endpoint("E", 100.0, FIGURES, 1000.0, one)
    assert (p.fn_instances_cpu, p.fn_instances_concurrency, p.fn_instances) == (2, 4, 4)
    tight = cap.plan_endpoint("E", 100.0, FIGURES, 30.0, EXACT)  # below 12 + 25 ms of service
    assert not tight.meets_p95 and "sized for throughput" in tight.note
    assert (tight.ovms_cores, tight.fn_vcpus) == (4, 2)
    image = cap.plan_endpoint("E", 100.0, FIGURES, 1000.0, EXACT, answer="image")
    assert image.app_ms == 15.0 and image.fn_vcpus == 3          # 1.5 Erlangs / 0.5


def test_the_hosts_cpu_counts_as_the_apps():
    """The Functions host's own CPU per request is added to the app's: 10 + 5 ms at 100/s is 1.5
    Erlangs, / 0.5 -> 3 vCPUs (2 without it)."""
    host = cap.Assumptions(**{**EXACT.__dict__, "host_ms": 5.0})
    p = cap.plan_endpoint("E", 100.0, FIGURES, 1000.0, host)
    assert p.app_ms == 15.0 and p.fn_vcpus == 3
    assert cap.plan_endpoint("E", 100.0, FIGURES, 1000.0, EXACT).fn_vcpus == 2


def test_connections_spread_over_replicas_hand_computed():
    # k connections placed at random on r replicas reach r (1 - (1 - 1/r)^k) of them
    assert cap.replicas_reached(1, 1) == 1.0
    assert cap.replicas_reached(2, 1) == pytest.approx(1.0)
    assert cap.replicas_reached(2, 2) == pytest.approx(1.5)       # 2 (1 - 1/4)
    assert cap.replicas_reached(16, 7) == pytest.approx(16 * (1 - (15 / 16) ** 7))  # about 5.2 of 16
    assert cap.replicas_reached(0, 5) == 0.0
    # the plan flags an endpoint whose replicas outnumber what the connections reach
    bench = {"endpoints": {"HttpTriggerHumanPose": FIGURES,
                           "HttpTriggerHandwritten": {**FIGURES, "inference_cpu_ms": {"mean": 2000.0, "p95": 2100.0}}}}
    plan = cap.make_plan(bench, 40, 100000, "pose=1,handwriting=1", EXACT)
    heavy = plan.endpoints[1]
    assert heavy.ovms_replicas > plan.fn_instances
    assert heavy.replicas_reached == pytest.approx(cap.replicas_reached(heavy.ovms_replicas, plan.fn_instances))
    assert "through an L4 Service" in cap.render(plan, 40, 100000)


def test_mix_and_plan_totals():
    bench = {"endpoints": {"HttpTriggerHumanPose": FIGURES, "HttpTriggerObjectDetection": FIGURES}}
    assert cap.parse_mix("pose=3,detection=1", list(bench["endpoints"])) == \
        {"HttpTriggerHumanPose": 0.75, "HttpTriggerObjectDetection": 0.25}
    plan = cap.make_plan(bench, 200, 1000, "pose=1,detection=1", EXACT)
    assert [p.rps for p in plan.endpoints] == [100.0, 100.0]
    assert plan.fn_instances == sum(p.fn_instances for p in plan.endpoints) == 4
    with pytest.raises(cap.CapacityError):
        cap.parse_mix("nope=1", list(bench["endpoints"]))
    with pytest.raises(cap.CapacityError):
        cap.make_plan(bench, 0, 300)


def test_committed_bench_figures_are_complete():
    data = json.loads((ROOT / "bench" / "capacity.json").read_text())
    machine = data["machine"]
    assert machine["cpu_model"] and machine["inference_precision_hint"] in ("f32", "bf16", "f16")
    assert machine["cpu_default_inference_precision"]
    functions = {p.name for p in ROOT.glob("HttpTrigger*") if p.name != "HttpTriggerHealth"}
    assert set(data["endpoints"]) == functions
    for name, e in data["endpoints"].items():
        for key in ("inference_cpu_ms", "app_cpu_ms", "app_image_cpu_ms"):
            assert 0 < e[key]["mean"] <= e[key]["p95"] * 1.0001 + 1e-9 or e[key]["n"] == 1, (name, key)


def test_the_command_prints_every_endpoint():
    proc = subprocess.run([sys.executable, "-m", "scripts.capacity", "--rps", "200", "--p95-ms", "300"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name in json.loads((ROOT / "bench" / "capacity.json").read_text())["endpoints"]:
        assert name in proc.stdout
    assert "replicas" in proc.stdout and "assumed:" in proc.stdout and "measured" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "scripts.capacity", "--rps", "10", "--p95-ms", "300",
                          "--mix", "nope=1"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown endpoint" in bad.stderr


def test_readme_worked_example_is_what_the_command_prints():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("$ python -m scripts.capacity --rps 200 --p95-ms 300\n", 1)[1].split("\n```", 1)[0]
    proc = subprocess.run([sys.executable, "-m", "scripts.capacity", "--rps", "200", "--p95-ms", "300"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.rstrip() == block.rstrip(), "README 'Scaling' worked example is stale: re-run and paste"
