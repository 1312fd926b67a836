"""Linters over deploy/: yamllint on every YAML file of the repository, checkov on the Terraform,
the Kubernetes manifests and the Dockerfile (no finding left unfixed; every waiver in the file,
with a reason), and the Terraform parses (python-hcl2) with the resources the issue asks for."""
from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.kubectl_kustomize import build

from tests.terraform_hcl import load as terraform, named_blocks, resources, unquote

ROOT = Path(__file__).resolve().parent.parent
CHECKOV = ROOT / ".venv" / "checkov" / "bin" / "checkov"
SKIP_DIRS = {".git", ".venv", "node_modules", ".azurite", ".run", ".pytest_cache", ".hypothesis"}


def yaml_files():
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        out += [Path(dirpath) / f for f in filenames if f.endswith((".yaml", ".yml"))]
    return sorted(out)


def test_yamllint_passes_on_every_yaml_file():
    files = yaml_files()
    assert ROOT / "openapi.yaml" in files and ROOT / "deploy" / "docker-compose.yml" in files
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "yamllint"), "-f", "parsable", "--strict",
                           "-c", str(ROOT / ".yamllint.yaml"), *map(str, files)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_yamllint_catches_a_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\n")  # duplicate key
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "yamllint"), "-c", str(ROOT / ".yamllint.yaml"),
                           str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0 and "duplicate" in proc.stdout


def run_checkov(target: Path, framework: str) -> dict:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `bash scripts/bootstrap.sh`")
    args = ["-f", str(target)] if target.is_file() else ["-d", str(target)]
    # --skip-download: offline (no Prisma Cloud guidelines); the checks themselves ship with checkov.
    proc = subprocess.run([str(CHECKOV), *args, "--framework", framework, "--skip-download",
                           "-o", "json"], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false"))
    out = json.loads(proc.stdout)
    report = out[0] if isinstance(out, list) else out
    assert report["check_type"] == framework, report
    return report


@pytest.mark.parametrize("target,framework,min_resources", [
    ("deploy/terraform", "terraform", 7),
    ("deploy/k8s", "kubernetes", 10),
    ("deploy/Dockerfile", "dockerfile", 1),
])
def test_checkov_has_no_unwaived_finding(target, framework, min_resources):
    report = run_checkov(ROOT / target, framework)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range']})"
              for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= min_resources
    assert summary["passed"] > 0
    for check in report["results"]["skipped_checks"]:
        reason = (check.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason.strip()) > 15, f"{check['check_id']} waived without a reason"


def kserve_predictor_deployments(variant: str):
    """The predictor Deployments KServe (raw deployment) makes of the ServingRuntime and each
    InferenceService: the runtime container with {{.Name}} filled in and the model's args
    appended, the predictor's pod fields, and the runtime's checkov waivers. checkov has no rules
    for the KServe kinds themselves, so this is how their pods get scanned."""
    objects = build(variant)
    [runtime] = [o for o in objects if o["kind"] == "ServingRuntime"]
    waivers = {k: v for k, v in runtime["metadata"].get("annotations", {}).items() if k.startswith("checkov.io/")}
    out = [o for o in objects if o["kind"] == "NetworkPolicy"]
    for isvc in (o for o in objects if o["kind"] == "InferenceService"):
        name, pred = isvc["metadata"]["name"], isvc["spec"]["predictor"]
        container = copy.deepcopy(runtime["spec"]["containers"][0])
        container["args"] = [a.replace("{{.Name}}", name) for a in container["args"]] + pred["model"].get("args", [])
        pod = {k: pred[k] for k in ("serviceAccountName", "automountServiceAccountToken", "securityContext",
                                    "nodeSelector", "tolerations") if k in pred}
        pod.update(containers=[container], volumes=runtime["spec"].get("volumes", []))
        out.append({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": f"{name}-predictor", "namespace": isvc["metadata"]["namespace"],
                                 "annotations": waivers},
                    "spec": {"selector": {"matchLabels": pred["labels"]},
                             "template": {"metadata": {"labels": pred["labels"]}, "spec": pod}}})
    return out


@pytest.mark.parametrize("variant", ["kserve", "kserve-gpu"])
def test_checkov_on_the_pods_kserve_creates(variant, tmp_path):
    rendered = kserve_predictor_deployments(variant)
    assert sum(o["kind"] == "Deployment" for o in rendered) == 4
    (tmp_path / "predictors.yaml").write_text(yaml.safe_dump_all(rendered))
    report = run_checkov(tmp_path, "kubernetes")
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert report["summary"]["failed"] == 0, "\n".join(failed)
    assert report["summary"]["passed"] > 50
    for check in report["results"]["skipped_checks"]:
        assert len((check.get("check_result") or {}).get("suppress_comment", "").strip()) > 15


def test_checkov_reports_a_finding_once_its_waiver_is_removed(tmp_path):
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    stripped = "\n".join(line for line in dockerfile.splitlines() if "checkov:skip" not in line)
    (tmp_path / "Dockerfile").write_text(stripped)
    report = run_checkov(tmp_path / "Dockerfile", "dockerfile")
    assert "CKV_DOCKER_3" in {c["check_id"] for c in report["results"]["failed_checks"]}


def test_terraform_has_what_the_issue_asks_for():
    tf = terraform()
    provider = tf["terraform"][0]["required_providers"][0]["azurerm"]
    assert unquote(provider["source"]) == "hashicorp/azurerm" and unquote(provider["version"]).startswith("~> 4.")
    [app] = resources(tf, "azurerm_function_app_flex_consumption").values()
    assert unquote(app["runtime_name"]) == "python" and unquote(app["runtime_version"]) == "3.11"
    [plan] = resources(tf, "azurerm_service_plan").values()
    assert unquote(plan["sku_name"]) == "FC1" and unquote(plan["os_type"]) == "Linux"
    assert "azurerm_service_plan.main.id" in app["service_plan_id"]
    containers = {unquote(c["name"]) for c in resources(tf, "azurerm_storage_container").values()}
    assert "ovms" in containers
    assert resources(tf, "azurerm_application_insights")
    site = app["site_config"][0]
    assert "azurerm_application_insights" in site["application_insights_connection_string"]
    assert site["cors"][0]["allowed_origins"] == "${var.frontend_origins}"
    # checkov 3.3 has no rules for azurerm_function_app_flex_consumption: the basics, checked here.
    assert app["https_only"] is True and app["webdeploy_publish_basic_authentication_enabled"] is False
    assert unquote(site["minimum_tls_version"]) == "1.2"
    assert unquote(app["identity"][0]["type"]) == "SystemAssigned"
    assert "*" not in str(site["cors"][0]["allowed_origins"]) and site["cors"][0]["support_credentials"] is False
    variables = named_blocks(tf, "variable")
    for name in ("http_concurrency", "maximum_instance_count", "frontend_origins"):
        assert len(variables[name]["description"]) > 40, f"{name} needs its reason"
