"""LaunchOVMS / LaunchALLOVMS: the exact container command lines (dry run), tags vs API, config."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys

import numpy as np
import pytest

from scripts.tooling import ovms
from scripts.tooling.azurite import ACCOUNT_KEY
from scripts.tooling.modelsearch import PROJECT_ROOT


def cs(host: str) -> str:
    return ("AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={ACCOUNT_KEY};BlobEndpoint=http://{host}:10000/devstoreaccount1;")


ENV_E = ["-e", "AZURE_STORAGE_CONNECTION_STRING"]  # the value travels in the environment, never in argv


def docker_cs(launch) -> str:
    return "AZURE_STORAGE_CONNECTION_STRING=" + launch.docker_env["AZURE_STORAGE_CONNECTION_STRING"]


TAIL = ["--port", "9000", "--log_level", "INFO", "--file_system_poll_wait_seconds", "0"]


def test_cpu_command_kserve():
    launch, notes = ovms.plan_one("human-pose-estimation", "10.0.0.5", 9001)
    assert notes == []
    assert launch.docker == [
        "docker", "run", "-d", "--rm", "--name", "ovaas-ovms-human-pose-estimation",
        "-p", "9001:9000", *ENV_E, "openvino/model_server:2026.3",
        "--model_name", "human-pose-estimation", "--model_path", "az://ovms/human-pose-estimation",
        "--target_device", "CPU", *TAIL]
    assert docker_cs(launch) == cs("10.0.0.5")
    assert not any("AccountKey" in a for a in launch.docker)


def test_gpu_command_uses_gpu_image_and_dri():
    launch, _ = ovms.plan_one("colorization", "127.0.0.1", 9002, "2025.4", "GPU",
                              render_gids=["109"])
    assert launch.docker == [
        "docker", "run", "-d", "--rm", "--name", "ovaas-ovms-colorization", "-p", "9002:9000",
        "--add-host=host.docker.internal:host-gateway", "--device", "/dev/dri",
        "--group-add", "109", *ENV_E,
        "openvino/model_server:2025.4-gpu", "--model_name", "colorization",
        "--model_path", "az://ovms/colorization", "--target_device", "GPU", *TAIL]
    assert docker_cs(launch) == cs("host.docker.internal")
    # the local stand-in reaches Azurite at the IP itself
    assert launch.local_env["AZURE_STORAGE_CONNECTION_STRING"] == cs("127.0.0.1").split("=", 1)[1]


def test_fpga_is_hetero_and_warns():
    launch, notes = ovms.plan_one("object-detection", "10.0.0.5", 9003, "2026.2", "FPGA")
    i = launch.docker.index("--target_device")
    assert launch.docker[i + 1] == "HETERO:FPGA,CPU"
    assert "openvino/model_server:2026.2" in launch.docker
    assert any("FPGA" in n and "2020" in n for n in notes)


def test_tfs_api_pins_2026_2_and_refuses_newer():
    launch, _ = ovms.plan_one("colorization", "10.0.0.5", 9000, api="tfs")
    assert "openvino/model_server:2026.2" in launch.docker
    launch, _ = ovms.plan_one("colorization", "10.0.0.5", 9000, "2024.1", api="tfs")
    assert "openvino/model_server:2024.1" in launch.docker
    for tag in ("2026.3", "latest", "2027.0"):
        with pytest.raises(ovms.LaunchError, match="TensorFlow-Serving"):
            ovms.plan_one("colorization", "10.0.0.5", 9000, tag, api="tfs")
    launch, notes = ovms.plan_one("colorization", "10.0.0.5", 9000, "latest", api="tfs",
                                  adjust_tag=True)
    assert "openvino/model_server:2026.2" in launch.docker and "2026.2" in notes[0]
    # the KServe API takes any tag
    launch, _ = ovms.plan_one("colorization", "10.0.0.5", 9000, "2026.4", api="kserve")
    assert "openvino/model_server:2026.4" in launch.docker


def test_all_models_one_port_from_config():
    launches, _ = ovms.plan_all("10.0.0.5")
    assert len(launches) == 1
    assert launches[0].docker == [
        "docker", "run", "-d", "--rm", "--name", "ovaas-ovms", "-p", "9000:9000",
        *ENV_E, "-v", f"{PROJECT_ROOT / 'models' / 'config.json'}:/config/config.json:ro",
        "openvino/model_server:2026.3", "--config_path", "/config/config.json", *TAIL]
    assert docker_cs(launches[0]) == cs("10.0.0.5")
    assert launches[0].local[1:] == ["-m", "emulators.ovms", "--config_path",
                                     str(PROJECT_ROOT / "models" / "config.json"),
                                     "--port", "9000", "--log_level", "INFO",
                                     "--file_system_poll_wait_seconds", "0"]


def test_all_models_per_model():
    launches, _ = ovms.plan_all("10.0.0.5", port=9100, per_model=True)
    assert [(l.name, l.port) for l in launches] == [
        ("human-pose-estimation", 9100), ("handwritten-japanese-recognition", 9101),
        ("colorization", 9102), ("object-detection", 9103)]
    assert "az://ovms/object-detection" in launches[3].docker


def test_models_config_json():
    data = json.loads((PROJECT_ROOT / "models" / "config.json").read_text())
    configs = {e["config"]["name"]: e["config"] for e in data["model_config_list"]}
    assert set(configs) == {"human-pose-estimation", "handwritten-japanese-recognition",
                            "colorization", "object-detection"}
    for name, c in configs.items():
        assert c["base_path"] == f"az://ovms/{name}"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.tooling.ovms", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=30)


def test_cli_dry_run_prints_exact_docker_command():
    proc = _cli("one", "human-pose-estimation", "10.0.0.5", "9001", "2026.2", "CPU", "--api", "tfs",
                "--dry-run", "--docker")
    assert proc.returncode == 0, proc.stderr
    launch, _ = ovms.plan_one("human-pose-estimation", "10.0.0.5", 9001, "2026.2", api="tfs")
    assert proc.stdout.strip() == shlex.join(launch.docker)
    assert shlex.split(proc.stdout) == launch.docker


def test_cli_without_docker_prints_stand_in_command():
    proc = _cli("all", "127.0.0.1", "--dry-run", "--local")
    assert proc.returncode == 0, proc.stderr
    assert "-m emulators.ovms --config_path" in proc.stdout
    assert "AZURE_STORAGE_CONNECTION_STRING=" in proc.stdout and "docker" not in proc.stdout


def test_dry_run_hides_a_real_account_key():
    proc = _cli("one", "colorization", "10.0.0.5", "9000", "--dry-run", "--docker",
                "--connection-string", "DefaultEndpointsProtocol=https;AccountName=prod;AccountKey=S3cretKey==;"
                "EndpointSuffix=core.windows.net")
    assert proc.returncode == 0, proc.stderr
    assert "S3cretKey" not in proc.stdout + proc.stderr and "AccountKey=***" in proc.stderr


def test_grpc_bind_address_reaches_the_stand_in_and_the_docker_publish():
    (launch,), _ = ovms.plan_all("10.0.0.5", grpc_bind_address="127.0.0.1")
    assert launch.local[-2:] == ["--grpc_bind_address", "127.0.0.1"]
    assert launch.docker[launch.docker.index("-p") + 1] == "127.0.0.1:9000:9000"
    # inside the container OVMS keeps listening on its own interface (Docker forwards to it)
    assert "--grpc_bind_address" not in launch.docker
    launch, _ = ovms.plan_one("colorization", "10.0.0.5", 9001, grpc_bind_address="::1")
    assert launch.docker[launch.docker.index("-p") + 1] == "[::1]:9001:9000"
    assert launch.local[-2:] == ["--grpc_bind_address", "::1"]
    launches, _ = ovms.plan_all("10.0.0.5", per_model=True, grpc_bind_address="127.0.0.1")
    assert all(l.local[-2:] == ["--grpc_bind_address", "127.0.0.1"] for l in launches)
    # unasked, OVMS's own default (every interface): nothing added
    (launch,), _ = ovms.plan_all("10.0.0.5")
    assert "--grpc_bind_address" not in launch.local and "9000:9000" in launch.docker


def test_cli_grpc_bind_address():
    proc = _cli("all", "127.0.0.1", "--grpc-bind-address", "127.0.0.1", "--dry-run", "--local")
    assert proc.returncode == 0, proc.stderr
    assert "--grpc_bind_address 127.0.0.1" in proc.stdout
    proc = _cli("one", "colorization", "127.0.0.1", "9000", "--grpc-bind-address", "127.0.0.1",
                "--dry-run", "--docker")
    assert proc.returncode == 0, proc.stderr
    assert "-p 127.0.0.1:9000:9000" in proc.stdout


def test_redact_hides_keys_and_signatures():
    real = "DefaultEndpointsProtocol=https;AccountName=prod;AccountKey=S3cret==;EndpointSuffix=core.windows.net"
    assert ovms.redact(real) == real.replace("S3cret==", "***")
    sas = "BlobEndpoint=https://a.blob.core.windows.net/;SharedAccessSignature=sv=2022&sig=abc%3D"
    assert ovms.redact(sas) == "BlobEndpoint=https://a.blob.core.windows.net/;SharedAccessSignature=***"
    dev = cs("127.0.0.1").split("=", 1)[1]
    assert ovms.redact(dev) == dev  # a dry run's command works as printed
    assert ACCOUNT_KEY not in ovms.redact(dev, keep_development_key=False)
    assert "AccountKey=***" in ovms.redact(dev, keep_development_key=False)


def test_cli_refuses_tfs_with_new_tag():
    proc = _cli("one", "colorization", "10.0.0.5", "9000", "latest", "--api", "tfs", "--dry-run")
    assert proc.returncode == 2
    assert "TensorFlow-Serving" in proc.stderr and "Traceback" not in proc.stderr


# ---- inference precision: the device's default unless the user pins it ------------------------------

PIN_F32 = ["--plugin_config", '{"INFERENCE_PRECISION_HINT":"f32"}']


def test_precision_is_the_devices_default_unless_pinned():
    launch, _ = ovms.plan_one("colorization", "10.0.0.5", 9000)
    assert "--plugin_config" not in launch.docker and "--plugin_config" not in launch.local
    (launch,), _ = ovms.plan_all("10.0.0.5")
    config = json.loads(open(launch.local[launch.local.index("--config_path") + 1]).read())
    assert all("INFERENCE_PRECISION_HINT" not in e["config"].get("plugin_config", {})
               for e in config["model_config_list"])


def test_precision_option_pins_one_model():
    launch, _ = ovms.plan_one("colorization", "10.0.0.5", 9000, precision="f32")
    i = launch.docker.index("--plugin_config")
    assert launch.docker[i:i + 2] == PIN_F32
    j = launch.local.index("--plugin_config")
    assert launch.local[j:j + 2] == PIN_F32
    with pytest.raises(ovms.LaunchError):
        ovms.plan_one("colorization", "10.0.0.5", 9000, precision="int4")


def test_precision_option_pins_every_model_of_the_config(tmp_path):
    src = tmp_path / "config.json"
    src.write_text(json.dumps({"model_config_list": [
        {"config": {"name": "a", "base_path": "az://ovms/a", "plugin_config": {"PERFORMANCE_HINT": "LATENCY"}}},
        {"config": {"name": "b", "base_path": "az://ovms/b"}}]}))
    (launch,), _ = ovms.plan_all("10.0.0.5", config_path=src, device="GPU", precision="f16")
    config = json.loads(open(launch.local[launch.local.index("--config_path") + 1]).read())
    got = {e["config"]["name"]: (e["config"]["target_device"], e["config"]["plugin_config"])
           for e in config["model_config_list"]}
    assert got == {"a": ("GPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f16"}),
                   "b": ("GPU", {"INFERENCE_PRECISION_HINT": "f16"})}
    launches, _ = ovms.plan_all("10.0.0.5", config_path=src, per_model=True, precision="f32")
    assert all(l.docker[l.docker.index("--plugin_config"):][:2] == PIN_F32 for l in launches)


def test_model_server_computes_at_the_pinned_precision(model_server, model_repo):
    """What the option produces is what the server runs: f32 when pinned, the device's default
    (bf16 on AMX CPUs) when not, read back from the compiled models."""
    from tests import modelgen
    from tests.precision import device_default_precision, served_precision

    base = model_repo.add("precision-probe", modelgen.constant_model, {"x": (1, 3, 8, 8)},
                          {"y": np.zeros((1, 4), np.float32)})
    pinned = model_server(["--model_name", "m", "--model_path", str(base), *PIN_F32])
    assert served_precision(pinned, "m") == "f32"
    default = model_server(["--model_name", "m", "--model_path", str(base)])
    assert served_precision(default, "m") == device_default_precision()
