"""deploy/k8s, validated offline: every kustomization resolves (tests/kustomize_lite.py), built-in
kinds pass kubernetes-validate in strict mode, KServe kinds pass their CRD schemas strictly (an
unknown field is an error, as with ``kubectl apply --validate=strict``), and the manifests agree
with the app and with models/config.json."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version, schema_contents
from referencing import Registry, Resource

from shared import config as app_config
from tests.kustomize_lite import KustomizeError, build

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
CRDS = ROOT.parent / "shared" / "reference" / "kserve-crds"
VARIANTS = ["kserve", "kserve-gpu", "plain", "plain-gpu"]
KSERVE_GROUP = "serving.kserve.io"
K8S_VERSION = latest_version()
GPU_RESOURCE = "gpu.intel.com/i915"


def built(variant: str):
    return build(K8S / variant, example_for_missing=True)


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def config_models():
    return [e["config"] for e in json.loads((ROOT / "models" / "config.json").read_text())["model_config_list"]]


# --- strict CRD validation ------------------------------------------------------------------

def _strict(schema):
    """A copy of an OpenAPI v3 CRD schema in which every object rejects unknown fields."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (node.get("type") == "object" and "properties" in node
                    and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(schema)
    return schema


def _crd_schemas():
    out = {}
    for path in sorted(CRDS.glob("serving.kserve.io_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            out[key] = _strict(version["schema"]["openAPIV3Schema"])
    return out


@pytest.fixture(scope="module")
def crd_schemas():
    if not CRDS.is_dir():
        pytest.fail(f"the KServe CRDs are missing: {CRDS}")
    return _crd_schemas()


def _object_meta_validator():
    defs = schema_contents(f"kubernetes-json-schema/v{K8S_VERSION}-local-strict/_definitions.json",
                           K8S_VERSION)
    registry = Resource.from_contents(defs) @ Registry()
    ref = {"$ref": f"{defs['$id']}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    return jsonschema.Draft202012Validator(ref, registry=registry)


def validate_kserve(obj, crd_schemas):
    """Raise jsonschema.ValidationError unless obj passes its CRD's schema strictly."""
    key = (obj["apiVersion"], obj["kind"])
    if key not in crd_schemas:
        raise jsonschema.ValidationError(f"no served CRD version for {key}")
    body = {k: v for k, v in obj.items() if k != "metadata"}
    jsonschema.Draft7Validator(crd_schemas[key]).validate(body)
    _object_meta_validator().validate(obj.get("metadata", {}))


def test_strict_crd_validation_rejects_unknown_and_mistyped_fields(crd_schemas):
    isvc = copy.deepcopy(by_kind(built("kserve"), "InferenceService")[0])
    validate_kserve(isvc, crd_schemas)
    bad = copy.deepcopy(isvc)
    bad["spec"]["predictor"]["model"]["storageURI"] = "https://x.blob.core.windows.net/ovms/a"  # typo
    with pytest.raises(jsonschema.ValidationError, match="storageURI"):
        validate_kserve(bad, crd_schemas)
    bad = copy.deepcopy(isvc)
    bad["spec"]["predictor"]["minReplicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        validate_kserve(bad, crd_schemas)
    bad = copy.deepcopy(isvc)
    bad["metadata"]["label"] = {"a": "b"}  # not an ObjectMeta field
    with pytest.raises(jsonschema.ValidationError):
        validate_kserve(bad, crd_schemas)


def test_strict_builtin_validation_rejects_unknown_fields():
    dep = copy.deepcopy(by_kind(built("plain"), "Deployment")[0])
    kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    dep["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


# --- every variant -------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_of_every_variant_validates(variant, crd_schemas):
    objects = built(variant)
    assert objects
    for obj in objects:
        where = f"{variant}: {obj['kind']} {obj['metadata'].get('name')}"
        if obj["apiVersion"].split("/")[0] == KSERVE_GROUP:
            try:
                validate_kserve(obj, crd_schemas)
            except jsonschema.ValidationError as exc:
                pytest.fail(f"{where}: {exc.message} at {list(exc.absolute_path)}")
        else:
            try:
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "ovaas", where


def test_the_resolver_refuses_what_it_does_not_implement(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: [a.yaml]\ncommonLabels: {a: b}\n")
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    with pytest.raises(KustomizeError, match="commonLabels"):
        build(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources: [../outside.yaml]\n")
    with pytest.raises(KustomizeError, match="load restrictor"):
        build(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [a.yaml]\npatches:\n- target: {kind: ConfigMap, name: a}\n"
        "  patch: '[{op: replace, path: /data/missing, value: x}]'\n")
    with pytest.raises(KustomizeError):
        build(tmp_path)


@pytest.mark.parametrize("variant", ["kserve", "plain"])
def test_the_storage_secret_is_an_operator_file_not_committed(variant):
    with pytest.raises(KustomizeError, match="storage.env"):
        build(K8S / variant)  # without the example fallback, as kubectl apply -k would fail
    assert not (K8S / variant / "storage.env").exists() or \
        "deploy/k8s/*/storage.env" in (ROOT / ".gitignore").read_text()


# --- KServe variant ------------------------------------------------------------------------

def _runtime(objects):
    runtimes = by_kind(objects, "ServingRuntime")
    assert len(runtimes) == 1
    return runtimes[0]


def _arg(args, name):
    hits = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(hits) == 1, (name, args)
    return hits[0]


def test_every_model_of_config_json_has_its_inference_service():
    objects = built("kserve")
    isvcs = {o["metadata"]["name"]: o for o in by_kind(objects, "InferenceService")}
    assert set(isvcs) == {m["name"] for m in config_models()}
    runtime = _runtime(objects)
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    for m in config_models():
        isvc = isvcs[m["name"]]
        model = isvc["spec"]["predictor"]["model"]
        # storageUri = the model's folder in Blob: the same container/path as config.json's az:// base_path.
        container_path = m["base_path"][len("az://"):]
        assert re.fullmatch(rf"https://[a-z0-9]{{3,24}}\.blob\.core\.windows\.net/{re.escape(container_path)}",
                            model["storageUri"]), model["storageUri"]
        assert model["runtime"] == runtime["metadata"]["name"]
        assert model["modelFormat"]["name"] in formats
        assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
        pred = isvc["spec"]["predictor"]
        assert 1 <= pred["minReplicas"] <= pred["maxReplicas"]
        assert pred["scaleMetric"] == "cpu" and 0 < pred["scaleTarget"] < 100
        assert pred["labels"]["app.kubernetes.io/name"] == "ovms"
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
        sa = [s for s in by_kind(objects, "ServiceAccount") if s["metadata"]["name"] == pred["serviceAccountName"]]
        assert sa, "the predictor's ServiceAccount is deployed"
        secret_names = {s["name"] for s in sa[0]["secrets"]}
        secrets = [s for s in by_kind(objects, "Secret") if s["metadata"]["name"] in secret_names]
        # KServe's storage initializer reads an Azure account key from a Secret of the ServiceAccount.
        assert secrets and "AZURE_STORAGE_ACCESS_KEY" in secrets[0]["data"]


def test_runtime_serves_what_the_app_expects():
    runtime = _runtime(built("kserve"))
    assert runtime["spec"]["protocolVersions"] == ["v2", "grpc-v2"]
    c = runtime["spec"]["containers"][0]
    assert c["name"] == "kserve-container"
    args = c["args"]
    # KServe's kserve-openvino shape.
    assert _arg(args, "model_name") == "{{.Name}}" and _arg(args, "model_path") == "/mnt/models"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert int(_arg(args, "port")) == ports["grpc"] == 9000
    assert int(_arg(args, "rest_port")) == ports["http"] == 8080
    # The app's default port (README: <MODEL>_PORT 9000) and API (OVMS_API=kserve = KServe v2 gRPC).
    assert app_config.model_settings("HUMANPOSE", env={}).port == ports["grpc"]
    assert app_config.model_settings("HUMANPOSE", env={}).api == "kserve"
    # KServe raw deployment: the first container port becomes Service port 80, the others keep theirs.
    assert c["ports"][0]["name"] == "http"


def _probes_and_resources(container, rest_port):
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": rest_port}
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    res = container["resources"]
    for key in ("cpu", "memory"):
        assert res["requests"][key] and res["limits"][key]
    return res


def _plugin_config_of_args(args):
    return json.loads(_arg(args, "plugin_config"))


@pytest.mark.parametrize("variant,device,precision", [("kserve", "CPU", "f32"), ("kserve-gpu", "GPU", "f16")])
def test_kserve_device_precision_resources(variant, device, precision):
    c = _runtime(built(variant))["spec"]["containers"][0]
    res = _probes_and_resources(c, 8080)
    args = c["args"]
    assert _arg(args, "target_device") == device
    plugin = _plugin_config_of_args(args)
    assert plugin["INFERENCE_PRECISION_HINT"] == precision
    if device == "GPU":
        assert c["image"].endswith("-gpu")
        assert res["limits"][GPU_RESOURCE] == res["requests"][GPU_RESOURCE] == "1"
    else:
        assert not c["image"].endswith("-gpu") and GPU_RESOURCE not in res["limits"]
        # OpenVINO's thread pool sized to the CPU limit, not to the node.
        assert plugin["INFERENCE_NUM_THREADS"] == int(res["limits"]["cpu"])


# --- plain variant -------------------------------------------------------------------------

def _plain_parts(variant):
    objects = built(variant)
    dep = by_kind(objects, "Deployment")[0]
    cm = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == "ovms-config"][0]
    return objects, dep, json.loads(cm["data"]["config.json"])


@pytest.mark.parametrize("variant", ["plain", "plain-gpu"])
def test_plain_serves_config_json_from_blob(variant):
    objects, dep, cfg = _plain_parts(variant)
    served = [e["config"] for e in cfg["model_config_list"]]
    strip = lambda m: {k: m[k] for k in ("name", "base_path")}  # noqa: E731
    assert [strip(m) for m in served] == [strip(m) for m in config_models()]
    assert all(m["base_path"].startswith("az://") for m in served)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert _arg(c["args"], "config_path") == "/config/config.json"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert mounts["config"] == "/config" and volumes["config"]["configMap"]["name"] == "ovms-config"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]}
    ref = env["AZURE_STORAGE_CONNECTION_STRING"]
    secret = [s for s in by_kind(objects, "Secret") if s["metadata"]["name"] == ref["name"]][0]
    assert ref["key"] in secret["data"]
    res = _probes_and_resources(c, 8080)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert int(_arg(c["args"], "port")) == ports["grpc"] == 9000
    svc = by_kind(objects, "Service")[0]
    assert svc["spec"]["ports"] == [{"name": "grpc", "port": 9000, "targetPort": 9000, "protocol": "TCP"}]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    hpa = by_kind(objects, "HorizontalPodAutoscaler")[0]
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    gpu = variant.endswith("gpu")
    for m in served:
        assert m["target_device"] == ("GPU" if gpu else "CPU")
        assert m["plugin_config"]["INFERENCE_PRECISION_HINT"] == ("f16" if gpu else "f32")
        if not gpu:
            assert m["plugin_config"]["INFERENCE_NUM_THREADS"] == int(res["limits"]["cpu"])
    assert c["image"].endswith("-gpu") == gpu
    assert (GPU_RESOURCE in res["limits"]) == gpu


# --- both ----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_network_policy_admits_only_the_app_on_the_grpc_port(variant):
    objects = built(variant)
    [policy] = by_kind(objects, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    selected = spec["podSelector"]["matchLabels"]
    [rule] = spec["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9000}]
    peers = rule["from"]
    assert all(set(p) <= {"podSelector", "ipBlock"} for p in peers), "no namespace-wide or open peers"
    assert [p["podSelector"]["matchLabels"] for p in peers if "podSelector" in p] == \
        [{"app.kubernetes.io/name": "ovaas-functions"}]
    assert all(p["ipBlock"]["cidr"] not in ("0.0.0.0/0", "::/0") for p in peers if "ipBlock" in p)
    # The policy selects the OVMS pods of this variant.
    if variant.startswith("kserve"):
        pod_labels = [i["spec"]["predictor"]["labels"] for i in by_kind(objects, "InferenceService")]
    else:
        pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in by_kind(objects, "Deployment")]
    assert pod_labels and all(selected.items() <= labels.items() for labels in pod_labels)
