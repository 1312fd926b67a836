"""OVMS emulator lifecycle: background loading, devices, config, drain on SIGTERM, stalls, restarts,
malformed requests and concurrent clients."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import ovmsclient
import pytest
import tritonclient.grpc as tg
from ovmsclient.tfs_compat.base.errors import ModelNotFoundError
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from emulators.ovms.launcher import PROJECT_ROOT, ServerStartError, free_port
from emulators.ovms.models import LoadError, resolve_device
from tests import modelgen
from tests.netutil import listening_ips
from tests.precision import F32


@pytest.fixture(scope="module")
def affine(model_repo):
    return model_repo.add("life-affine", modelgen.affine_model, scale=2.0, shape=(1, 4))


def _x():
    return np.array([[1, 2, 3, 4]], np.float32)


def _triton_infer(address, model="m", version="", timeout=30.0):
    """One inference; a deadline, so a server that never answers fails the test instead of hanging it."""
    c = tg.InferenceServerClient(address)
    i = tg.InferInput("x", [1, 4], "FP32")
    i.set_data_from_numpy(_x())
    return c.infer(model, [i], model_version=version, client_timeout=timeout).as_numpy("y")


def test_models_load_in_background(model_server, affine):
    srv = model_server(["--model_name", "m", "--model_path", str(affine)],
                       env={**os.environ, "OVMS_EMULATOR_LOAD_DELAY": "2.5"}, wait=False)
    srv.wait_ready(models=[])  # live before the model is loaded
    c = tg.InferenceServerClient(srv.address)
    assert c.is_server_live() and not c.is_model_ready("m")
    oc = ovmsclient.make_grpc_client(srv.address)
    assert oc.get_model_status("m")[1]["state"] in ("START", "LOADING")
    with pytest.raises(InferenceServerException) as ei:
        _triton_infer(srv.address)
    assert ei.value.status() == "StatusCode.UNAVAILABLE"
    assert "Model with requested version is not loaded yet" in ei.value.message()
    with pytest.raises(ConnectionError, match="not loaded yet"):  # ovmsclient maps UNAVAILABLE to ConnectionError
        oc.predict({"x": _x()}, "m")
    with pytest.raises(ModelNotFoundError):  # unknown names are known at once
        oc.predict({"x": _x()}, "other")
    srv.wait_ready(timeout=30)
    assert oc.get_model_status("m")[1]["state"] == "AVAILABLE"
    assert np.array_equal(_triton_infer(srv.address), _x() * 2)


HOLD = "Test hook: holding an inference"  # logged by each inference that OVMS_EMULATOR_INFER_DELAY holds
DRAINING = "draining in-flight requests"  # logged once server.stop(grace) refuses new calls
#: Ceilings that only bound a failure (a hang); passing never depends on them.
HANG = 60.0


def _calls_in_background(address, n):
    """Start ``n`` inferences in threads; returns (threads, results, errors)."""
    results, errors = [], []

    def call():
        try:
            results.append(_triton_infer(address, timeout=HANG))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    return threads, results, errors


def test_sigterm_drains_in_flight_requests(model_server, affine):
    """Three requests inside inference when SIGTERM comes: all three are answered, a new one is
    refused, and the server exits 0. Each step waits on an event (the log lines the server writes
    as requests enter inference and as the drain starts), not on a clock."""
    srv = model_server(["--model_name", "m", "--model_path", str(affine), "--nireq", "4"],
                       env={**os.environ, "OVMS_EMULATOR_INFER_DELAY": "1.5"})
    threads, results, errors = _calls_in_background(srv.address, 3)
    srv.wait_for_log(HOLD, count=3, timeout=HANG)  # all three are inside inference now
    os.kill(srv.pid, signal.SIGTERM)
    srv.wait_for_log(DRAINING, timeout=HANG)  # the server has taken the signal
    with pytest.raises(InferenceServerException) as refused:  # new requests are refused while draining
        _triton_infer(srv.address, timeout=HANG)
    # refused: UNAVAILABLE on a new connection, CANCELLED on the open one (gRPC's shutdown; seen both)
    assert refused.value.status() in ("StatusCode.UNAVAILABLE", "StatusCode.CANCELLED")
    for t in threads:
        t.join(HANG)
    assert srv.proc.wait(HANG) == 0
    assert not errors and len(results) == 3 and all(np.array_equal(r, _x() * 2) for r in results)
    assert srv.log_text().count(HOLD) == 3  # the refused call never reached inference


def _at_moment(model_server, affine, moment):
    """Start a server and bring it to ``moment``; returns (server, in-flight calls or None)."""
    env = {**os.environ}
    if moment == "loading":
        env["OVMS_EMULATOR_LOAD_DELAY"] = "30"  # the loader sleeps: SIGTERM comes while it loads
    if moment.startswith("inference"):
        env["OVMS_EMULATOR_INFER_DELAY"] = "1.0"
    srv = model_server(["--model_name", "m", "--model_path", str(affine), "--nireq", "4"], env=env,
                       wait=moment not in ("starting", "loading"))
    calls = None
    if moment == "loading":
        srv.wait_ready(models=[], timeout=HANG)  # live, the model still loading
    elif moment == "first requests":  # the moment of the old deadlock: first views taken at once
        calls = _calls_in_background(srv.address, 3)
    elif moment.startswith("inference"):
        calls = _calls_in_background(srv.address, 3)
        srv.wait_for_log(HOLD, count=3, timeout=HANG)
    return srv, calls


@pytest.mark.parametrize("moment,sig", [
    ("starting", signal.SIGTERM),        # before the server listens (imports, model compile)
    ("loading", signal.SIGTERM),         # live, a model version still loading
    ("idle", signal.SIGTERM),            # ready, nothing in flight
    ("first requests", signal.SIGTERM),  # three first requests arriving at once
    ("inference", signal.SIGTERM),       # three requests inside inference
    ("inference", signal.SIGINT),        # the same with Ctrl+C
])
def test_stop_signal_at_any_moment_ends_the_server(model_server, affine, moment, sig):
    """Whenever the stop signal comes, the server exits by itself: 0 once it has taken the signal
    (sigwait), or by the signal's default action in the first instant of the interpreter, before
    ``python -m emulators.ovms`` has blocked it. In-flight requests are answered."""
    srv, calls = _at_moment(model_server, affine, moment)
    os.kill(srv.pid, sig)
    try:
        code = srv.proc.wait(HANG)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server hung after {signal.Signals(sig).name} at moment {moment!r}:\n"
                    f"{srv.log_text()[-2000:]}")
    if moment == "starting":
        assert code in (0, -sig), srv.log_text()[-2000:]
    else:
        assert code == 0, srv.log_text()[-2000:]
        assert f"Shutting down on {signal.Signals(sig).name}" in srv.log_text()
    if calls is not None:
        threads, results, errors = calls
        for t in threads:
            t.join(HANG)
        if moment.startswith("inference"):  # inside inference before the signal: all answered
            assert not errors and len(results) == 3, errors
        else:  # arriving with the signal: each answered or refused, none left hanging
            assert len(results) + len(errors) == 3
            assert all(np.array_equal(r, _x() * 2) for r in results)


def test_second_signal_while_draining_ends_at_once(model_server, affine):
    """A second SIGTERM (or Ctrl+C) during the drain ends the process by the signal's default action,
    without waiting for the requests still in inference."""
    srv = model_server(["--model_name", "m", "--model_path", str(affine), "--nireq", "4"],
                       env={**os.environ, "OVMS_EMULATOR_INFER_DELAY": "30"})
    threads, results, errors = _calls_in_background(srv.address, 2)
    srv.wait_for_log(HOLD, count=2, timeout=HANG)
    os.kill(srv.pid, signal.SIGTERM)
    srv.wait_for_log(DRAINING, timeout=HANG)
    os.kill(srv.pid, signal.SIGTERM)
    assert srv.proc.wait(HANG) == -signal.SIGTERM  # long before the 30 s inferences could end
    for t in threads:
        t.join(HANG)
    assert not results and len(errors) == 2  # cut off, as asked


@pytest.mark.parametrize("mode,runs", [("views", 8), ("infer", 4)])
def test_first_concurrent_inferences_never_deadlock(affine, mode, runs):
    """The root cause of the drain test's old failure: OpenVINO's Python bindings initialise
    pybind11's numpy API (a C++ function-local static) on the first numpy view of a tensor, and two
    threads taking their first view at once deadlock (one holds the static's guard and waits for the
    GIL, the other holds the GIL and waits for the guard), which stops the whole process, signal
    handling included. The emulator takes every tensor's view once while loading, so no request can
    be first. Each run is a fresh interpreter (tests/probes/first_inferences.py): loaded as the
    emulator loads, then three threads meet at a barrier and view (or infer) at once. Without the
    warm-up, about one ``views`` run in three hung here (AMD EPYC, 2 cores)."""
    probe = PROJECT_ROOT / "tests" / "probes" / "first_inferences.py"
    for i in range(runs):
        try:
            out = subprocess.run([sys.executable, str(probe), str(affine), mode], capture_output=True, text=True,
                                 timeout=HANG, cwd=str(PROJECT_ROOT))
        except subprocess.TimeoutExpired:
            pytest.fail(f"run {i + 1} of {runs} ({mode}) deadlocked")
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


def test_pause_resume_restart_kill(model_server, affine):
    srv = model_server(["--model_name", "m", "--model_path", str(affine)])
    port = srv.port
    srv.pause()
    oc = ovmsclient.make_grpc_client(srv.address)
    with pytest.raises(TimeoutError):
        oc.predict({"x": _x()}, "m", timeout=0.5)
    srv.resume()
    assert np.array_equal(oc.predict({"x": _x()}, "m"), _x() * 2)
    assert srv.kill() == -9
    with pytest.raises(ConnectionError):
        ovmsclient.make_grpc_client(srv.address).predict({"x": _x()}, "m", timeout=2)
    srv.restart()
    assert srv.port == port and np.array_equal(_triton_infer(srv.address), _x() * 2)


def test_target_device_missing_is_named(model_server, affine, tmp_path):
    srv = model_server(config=[
        {"name": "m", "base_path": str(affine)},
        {"name": "gpu", "base_path": str(affine), "target_device": "GPU"},
        {"name": "fpga", "base_path": str(affine), "target_device": "FPGA"},
    ], wait=False)
    srv.wait_ready(models=["m"])
    oc = ovmsclient.make_grpc_client(srv.address)
    for name in ("gpu", "fpga"):  # their loads may still be running: poll until they fail
        deadline = time.monotonic() + HANG  # a state; the ceiling only bounds a failure
        while not oc.get_model_status(name)[1]["error_message"].startswith("Cannot") and time.monotonic() < deadline:
            time.sleep(0.1)
    gpu, fpga = oc.get_model_status("gpu")[1], oc.get_model_status("fpga")[1]
    assert gpu["state"] == "LOADING" and gpu["error_code"] != 0 and "target device GPU" in gpu["error_message"]
    assert "target device FPGA" in fpga["error_message"] and "HETERO:FPGA,CPU" in fpga["error_message"]
    assert not tg.InferenceServerClient(srv.address).is_model_ready("gpu")
    with pytest.raises(InferenceServerException) as ei:
        _triton_infer(srv.address, "gpu")
    assert ei.value.status() == "StatusCode.UNAVAILABLE"
    assert np.array_equal(_triton_infer(srv.address, "m"), _x() * 2)


def test_resolve_device():
    assert resolve_device("CPU", ["CPU"]) == "CPU"
    assert resolve_device("FPGA", ["CPU", "FPGA"]) == "HETERO:FPGA,CPU"
    assert resolve_device("GPU.1", ["CPU", "GPU.0", "GPU.1"]) == "GPU.1"
    assert resolve_device("HETERO:GPU,CPU", ["CPU", "GPU"]) == "HETERO:GPU,CPU"
    assert resolve_device("AUTO", ["CPU"]) == "AUTO"
    with pytest.raises(LoadError, match="target device NPU"):
        resolve_device("MULTI:CPU,NPU", ["CPU"])


def test_config_policies_and_relative_paths(model_server, model_repo, tmp_path):
    base = tmp_path / "repo" / "aff"
    for v in (1, 2, 3):
        modelgen.write_version(base, v, modelgen.affine_model, scale=float(v), shape=(1, 4))
    cfg = tmp_path / "repo" / "config.json"
    cfg.write_text(json.dumps({"model_config_list": [
        {"config": {"name": "latest2", "base_path": "aff", "model_version_policy": {"latest": {"num_versions": 2}},
                    "nireq": 3, "target_device": "CPU", "plugin_config": {"PERFORMANCE_HINT": "LATENCY"}}},
        {"config": {"name": "pinned", "base_path": "aff", "model_version_policy": {"specific": {"versions": [1]}}}},
        {"config": {"name": "batch4", "base_path": "aff", "batch_size": 4}},
    ]}))
    srv = model_server(config=cfg)
    oc = ovmsclient.make_grpc_client(srv.address)
    assert sorted(oc.get_model_status("latest2")) == [2, 3]
    assert list(oc.get_model_status("pinned")) == [1]
    assert np.array_equal(oc.predict({"x": _x()}, "pinned"), _x())
    assert oc.get_model_metadata("batch4")["inputs"]["x"]["shape"] == [4, 4]
    assert np.array_equal(oc.predict({"x": np.ones((4, 4), np.float32)}, "batch4"), np.full((4, 4), 3, np.float32))
    assert "nireq 3" in srv.log_text()


@pytest.mark.parametrize("args, needle", [
    (["--model_name", "m"], "go together"),
    (["--config_path", "/nonexistent/config.json"], "Cannot read config file"),
    ([], "--config_path"),
])
def test_bad_command_line_exits_1(args, needle):
    p = subprocess.run([sys.executable, "-m", "emulators.ovms", *args, "--port", str(free_port())],
                       cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and needle in p.stderr


def test_busy_port_fails(model_server, affine):
    srv = model_server(["--model_name", "m", "--model_path", str(affine)])
    with pytest.raises(ServerStartError, match="busy"):  # the launcher checks first
        model_server(["--model_name", "m", "--model_path", str(affine)], port=srv.port)
    p = subprocess.run([sys.executable, "-m", "emulators.ovms", "--model_name", "m", "--model_path", str(affine),
                        "--port", str(srv.port)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and f"Failed to start gRPC server on port {srv.port}" in p.stderr


def test_bad_base_path_reported(model_server, tmp_path):
    srv = model_server(["--model_name", "m", "--model_path", str(tmp_path / "missing")], wait=False)
    srv.wait_ready(models=[])
    c = tg.InferenceServerClient(srv.address)
    deadline = time.monotonic() + HANG  # a state; the ceiling only bounds a failure
    while not c.is_server_ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.is_server_ready() and not c.is_model_ready("m")
    with pytest.raises(InferenceServerException) as ei:
        _triton_infer(srv.address)
    assert ei.value.status() == "StatusCode.NOT_FOUND"


def test_malformed_requests_do_not_crash(model_server, affine):
    srv = model_server(["--model_name", "m", "--model_path", str(affine)])
    ch = grpc.insecure_channel(srv.address)
    garbage = [b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", bytes(range(256)) * 4]
    methods = ["/inference.GRPCInferenceService/ModelInfer", "/inference.GRPCInferenceService/ModelMetadata",
               "/tensorflow.serving.PredictionService/Predict",
               "/tensorflow.serving.PredictionService/GetModelMetadata",
               "/tensorflow.serving.ModelService/GetModelStatus"]
    for method in methods:
        call = ch.unary_unary(method)  # raw bytes in and out
        for g in garbage:
            with pytest.raises(grpc.RpcError) as ei:
                call(g, timeout=5)
            assert ei.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT,
                                       grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNKNOWN)
    # structurally valid but hostile: huge declared shape with no data, unknown datatype, BYTES
    stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
    for dt, shape, raw in [("FP32", [1, 4_000_000_000], [b"abc"]), ("WEIRD", [1, 4], [b"\0" * 16]),
                           ("BYTES", [1, 4], [b"\0" * 16]), ("FP32", [1, -4], [b""])]:
        req = service_pb2.ModelInferRequest(model_name="m")
        req.inputs.add(name="x", datatype=dt, shape=shape)
        req.raw_input_contents.extend(raw)
        with pytest.raises(grpc.RpcError) as ei:
            stub.ModelInfer(req, timeout=5)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ch.close()
    assert srv.running and np.array_equal(_triton_infer(srv.address), _x() * 2)


def test_concurrent_mixed_clients(model_server, model_repo):
    heat = np.random.default_rng(3).random((1, 19, 32, 57), dtype=np.float32)
    pafs = np.random.default_rng(4).random((1, 38, 32, 57), dtype=np.float32)
    pose = model_repo.add("life-pose", modelgen.pose_model, heat, pafs)
    srv = model_server(config=[{"name": "pose", "base_path": str(pose), "nireq": 2, "plugin_config": F32}])
    x = np.random.default_rng(0).random((1, 3, 256, 456), dtype=np.float32)
    failures = []

    def worker(kind, n):
        try:
            if kind == "tfs":
                c = ovmsclient.make_grpc_client(srv.address)
                for _ in range(n):
                    out = c.predict({"data": x}, "pose")
                    assert np.array_equal(out["Mconv7_stage2_L2"], heat)
                    assert np.array_equal(out["Mconv7_stage2_L1"], pafs)
            else:
                c = tg.InferenceServerClient(srv.address)
                i = tg.InferInput("data", [1, 3, 256, 456], "FP32")
                i.set_data_from_numpy(x)
                for _ in range(n):
                    r = c.infer("pose", [i])
                    assert np.array_equal(r.as_numpy("Mconv7_stage2_L2"), heat)
                    assert np.array_equal(r.as_numpy("Mconv7_stage2_L1"), pafs)
        except Exception as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=("tfs" if i % 2 else "kfs", 6)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    assert srv.running


def test_grpc_bind_address_limits_where_the_server_listens(model_server, affine):
    """OVMS's --grpc_bind_address: loopback only when asked; OVMS's default (every interface) else."""
    local = model_server(["--model_name", "m", "--model_path", str(affine), "--grpc_bind_address", "127.0.0.1"])
    assert listening_ips(local.port, local.pid) == ["127.0.0.1"]
    assert _triton_infer(local.address).tolist() == [[2, 4, 6, 8]]
    everywhere = model_server(["--model_name", "m", "--model_path", str(affine)])
    assert listening_ips(everywhere.port, everywhere.pid) in (["0.0.0.0"], ["::"], ["0.0.0.0", "::"])
    assert "Started gRPC server on 127.0.0.1:" in local.log_text()


def test_grpc_bind_address_that_is_not_ours_fails():
    p = subprocess.run([sys.executable, "-m", "emulators.ovms", "--model_name", "m", "--model_path", "/nonexistent",
                        "--grpc_bind_address", "192.0.2.254", "--port", str(free_port())],
                       cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "Failed to start gRPC server" in p.stderr
