"""deploy/Dockerfile and deploy/docker-compose.yml, checked statically (no Docker engine here):
they parse, image tags are pinned (to the versions the scripts use), the files they copy or mount
exist, and the compose services agree with local.settings.json and models/config.json."""
from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from scripts.tooling.ovms import PINNED_TAGS
from scripts.tooling.azurite import connection_string as development_connection_string
from shared import catalog
from tests import image_tree
from tests.fixtures.functions_host import start_functions_host
from tests.realmodels import real_model

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BASE_IMAGE = "mcr.microsoft.com/azure-functions/python"
# endpoint -> the model stack.sh serves for it (its object-detection default)
STACK_SIDES = [(e.prefix, e.omz_model) for e in catalog.ENDPOINTS if e.task == "detection"]


def dockerfile():
    return DockerfileParser(path=str(DEPLOY / "Dockerfile"))


def compose():
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest") and bool(re.search(r"\d", tag))


def test_dockerfile_base_image_is_the_functions_python_image_pinned():
    parsed = dockerfile()
    assert parsed.baseimage == f"{BASE_IMAGE}:4-python3.11"
    assert pinned(parsed.baseimage)
    assert not pinned("openvino/model_server:latest") and not pinned("openvino/model_server")


def test_dockerfile_copies_exactly_the_app():
    instructions = dockerfile().structure
    assert all(i["instruction"] == "COPY" for i in instructions if i["instruction"] in ("COPY", "ADD"))
    sources = [src for srcs, _ in image_tree.copies() for src in srcs]
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: not in the build context (the repository root)"
    # the image holds the function folders `func azure functionapp publish` ships (.funcignore)
    published = image_tree.published_functions()
    assert {"humanpose", "CvatDetector", "HttpTriggerHealth"} <= set(published)
    assert set(published) <= set(sources), sorted(set(published) - set(sources))
    assert {"host.json", "shared", "requirements.txt"} <= set(sources)
    for dev_only in ("tests", "emulators", "bench", "scripts", "models", "local.settings.json", "."):
        assert dev_only not in sources
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"local.settings.json", "tests", ".venv", "models"} <= set(ignored)


def _catalog_routes(routes):
    """Every route the catalog names (/api/<function> and the frontend's /api/<compat_function>),
    plus the other HTTP functions the publish package declares (CVAT's, health)."""
    wanted = {e.function for e in catalog.ENDPOINTS} | {e.compat_function for e in catalog.ENDPOINTS}
    return sorted(wanted | set(routes.values()))


@pytest.mark.slow
def test_every_catalog_route_answers_from_the_images_file_tree(tmp_path):
    """The tree the Dockerfile's COPY lines build, served by the local Functions host: every route of
    the catalog and of the publish package answers (no 404), and an unknown one does not."""
    wwwroot = image_tree.assemble(tmp_path / "image")
    published = image_tree.http_routes(ROOT)  # the repository = what `func publish` ships (minus .funcignore)
    assert set(published) == set(image_tree.published_functions())
    host = start_functions_host(wwwroot, env={"FUNCTIONS_WORKER_RUNTIME": "python"}, log_dir=tmp_path,
                                mode="in-house")
    try:
        served = {}
        for route in _catalog_routes(published) + ["NoSuchFunction"]:
            req = urllib.request.Request(host.url(f"/api/{route}"), method="GET")
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    served[route] = r.status
            except urllib.error.HTTPError as err:
                served[route] = err.code
    finally:
        host.stop()
    assert served.pop("NoSuchFunction") == 404, "the control: an unknown route is a 404"
    missing = sorted(r for r, status in served.items() if status == 404)
    assert not missing, f"routes the image does not serve: {missing}"


def test_publish_package_leaves_deploy_files_out():
    """`func azure functionapp publish` ships the folder minus .funcignore."""
    ignored = set((ROOT / ".funcignore").read_text().split())
    assert {"deploy", "requirements-checkov.txt", "tests", "bench"} <= ignored


def test_dockerfile_installs_only_the_deployed_requirements():
    runs = " ".join(i["value"] for i in dockerfile().structure if i["instruction"] == "RUN")
    assert "requirements.txt" in runs and "requirements-dev" not in runs
    reqs = [l.split("#")[0].strip().lower() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    assert reqs and not any(r.startswith(("openvino", "-r")) for r in reqs)


def test_compose_services_and_pinned_images():
    c = compose()
    services = c["services"]
    assert set(services) == {"azurite", "models", "ovms", "app"}
    assert services["ovms"]["image"] == f"openvino/model_server:{PINNED_TAGS['kserve']}"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    azurite_version = lock["packages"]["node_modules/azurite"]["version"]
    assert services["azurite"]["image"] == f"mcr.microsoft.com/azure-storage/azurite:{azurite_version}"
    for name, svc in services.items():
        assert pinned(svc["image"]) or "build" in svc, name
        if "build" in svc:
            build = svc["build"]
            context = (DEPLOY / build["context"]).resolve()
            assert context == ROOT and (context / build["dockerfile"]).is_file()


def _env(service):
    env = service.get("environment", {})
    return dict(e.split("=", 1) for e in env) if isinstance(env, list) else env


def test_compose_app_environment_mirrors_local_settings():
    c = compose()
    app_env = _env(c["services"]["app"])
    values = json.loads((ROOT / "local.settings.json").read_text())["Values"]
    assert set(app_env) == set(values), set(app_env) ^ set(values)
    blob = development_connection_string("azurite", 10000)
    for key, local in values.items():
        got = str(app_env[key])
        if key.endswith("_IPADDRESS"):
            assert local == "127.0.0.1" and got == "ovms", key
        elif key == "AzureWebJobsStorage":
            assert local == "UseDevelopmentStorage=true"
            assert got.startswith(blob) and "QueueEndpoint=http://azurite:10001" in got
        elif key == "AZURE_STORAGE_CONNECTION_STRING":
            assert got == blob
        elif key == "OBJECTDETECTION_LABELS_PATH":
            # what stack.sh sets: the labels of the default detector, uploaded beside the model
            detector = "person-detection-retail-0013"
            assert (ROOT / "models" / "labels" / f"{detector}.txt").is_file()
            assert dict(STACK_SIDES)["OBJECTDETECTION"] == detector
            assert got == f"az://ovms/object-detection/{detector}.txt"
        else:
            assert got == local, key


def test_compose_ports_and_models_agree():
    c = compose()
    services = c["services"]
    ovms_cmd = services["ovms"]["command"]
    grpc = int(ovms_cmd[ovms_cmd.index("--port") + 1])
    app_env = _env(services["app"])
    assert {int(v) for k, v in app_env.items() if k.endswith("_PORT")} == {grpc}
    assert _env(services["ovms"])["AZURE_STORAGE_CONNECTION_STRING"] == development_connection_string("azurite", 10000)
    config_mount = [v for v in services["ovms"]["volumes"] if v.endswith(":/config/config.json:ro")]
    assert config_mount and ovms_cmd[ovms_cmd.index("--config_path") + 1] == "/config/config.json"
    source = (DEPLOY / config_mount[0].split(":")[0]).resolve()
    assert source == DEPLOY / "k8s" / "plain" / "config.json"
    served = json.loads(source.read_text())["model_config_list"]
    strip = lambda m: {k: m["config"][k] for k in ("name", "base_path")}  # noqa: E731
    models = json.loads((ROOT / "models" / "config.json").read_text())["model_config_list"]
    assert [strip(m) for m in served] == [strip(m) for m in models]
    assert all(m["config"]["base_path"].startswith("az://ovms/") for m in served)
    app_models = {v for k, v in app_env.items() if k.endswith("_MODEL_NAME")}
    assert app_models == {m["config"]["name"] for m in served}
    assert services["app"]["ports"] == ["127.0.0.1:7071:80"]
    assert services["azurite"]["ports"] == ["127.0.0.1:10000:10000"]
    # the one-shot upload runs the project's own command, which exists
    entry = services["models"]["entrypoint"]
    assert entry[:4] == ["python", "-m", "scripts.tooling.stack", "--upload-only"]
    assert entry[4] == development_connection_string("azurite", 10000)
    assert services["ovms"]["depends_on"]["models"]["condition"] == "service_completed_successfully"
    assert (DEPLOY / services["models"]["volumes"][0].split(":")[0]).resolve() == ROOT


ONE_SHOT = {"models"}  # runs to completion (restart "no"); everything else serves until stopped


def test_every_depends_on_waits_for_health_or_completion():
    """Without a condition (or with service_started) compose starts a service as soon as its
    dependency's container exists: OVMS would read an Azurite not yet listening, the app would call
    an OVMS still loading."""
    services = compose()["services"]
    assert {n for n, s in services.items() if s.get("restart") == "no"} == ONE_SHOT
    edges = 0
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: the short depends_on form has no condition"
        for dep, spec in deps.items():
            edges += 1
            if dep in ONE_SHOT:
                assert spec["condition"] == "service_completed_successfully", (name, dep)
            else:
                assert spec["condition"] == "service_healthy", (name, dep)
                assert services[dep].get("healthcheck", {}).get("test"), f"{dep} has no healthcheck"
    assert edges >= 4


def test_every_long_running_service_has_a_healthcheck():
    for name, svc in compose()["services"].items():
        if name in ONE_SHOT:
            continue
        check = svc.get("healthcheck", {})
        assert check.get("test") and check["test"][0] == "CMD" and not check.get("disable"), name
        assert check.get("retries", 0) >= 3 and check.get("interval"), name


def test_compose_ovms_runs_the_precision_kubernetes_pins():
    served = json.loads((DEPLOY / "k8s" / "plain" / "config.json").read_text())["model_config_list"]
    assert served and all(m["config"]["plugin_config"]["INFERENCE_PRECISION_HINT"] == "f32" for m in served)
    assert all(m["config"]["target_device"] == "CPU" for m in served)


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        self.send_response(self.status if self.path == "/v2/health/ready" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status,healthy", [(200, True), (503, False)])
def test_the_ovms_healthcheck_command_reads_readiness(status, healthy):
    """The compose healthcheck of OVMS, run here with bash against a server that answers
    /v2/health/ready with ``status`` (the port rewritten to the server's)."""
    test = compose()["services"]["ovms"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"] and "/v2/health/ready" in test[3]
    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        command = test[3].replace("/127.0.0.1/8080", f"/127.0.0.1/{server.server_port}")
        proc = subprocess.run(["bash", "-c", command], capture_output=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert (proc.returncode == 0) == healthy, proc.stderr


@pytest.fixture
def own_azurite(tmp_path):
    """A fresh Azurite of this test's own: the upload fills container ovms, which the session's
    shared Azurite must not see (tests that use it expect to upload first)."""
    from tests.fixtures.azurite import running_azurite
    with running_azurite(tmp_path) as connection_string:
        yield connection_string


@pytest.mark.slow
def test_upload_only_puts_models_and_side_files_in_azurite(own_azurite):
    """What the compose "models" service runs, against a real Azurite."""
    azurite = own_azurite
    from azure.storage.blob import BlobServiceClient
    for e in catalog.ENDPOINTS:
        real_model(e.omz_model)
    proc = subprocess.run([sys.executable, "-m", "scripts.tooling.stack", "--upload-only", azurite],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    printed = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    compose_env = _env(compose()["services"]["app"])
    assert printed == {k: compose_env[k] for k in ("HANDWRITTEN_CHARLIST_PATH", "COLORIZATION_COEFFICIENTS_PATH",
                                                   "OBJECTDETECTION_LABELS_PATH")}
    container = BlobServiceClient.from_connection_string(azurite).get_container_client("ovms")
    names = {b.name for b in container.list_blobs()}
    for value in printed.values():
        assert value[len("az://ovms/"):] in names
    for m in json.loads((ROOT / "models" / "config.json").read_text())["model_config_list"]:
        model = m["config"]["name"]
        assert any(n.startswith(f"{model}/1/") and n.endswith(".xml") for n in names), model
