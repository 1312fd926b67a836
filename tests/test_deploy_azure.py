"""deploy/terraform stands up the whole service in one apply, offline checks (no provider or Azure
account here): OVMS on Container Apps in the Function App's VNet, the Function App's model
addresses wired from the container app, no account key or connection string in the Function App,
each identity with the roles its reads need, the container's launch as scripts/tooling/ovms.py's.
What only an apply could show (the platform accepting it, DNS resolving, TLS, token exchange) is
listed in README "Deploy to Azure in one command"."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List

import pytest

from scripts.tooling import ovms as launch
from shared import catalog
from tests.terraform_hcl import load, locals_, named_blocks, resources, unquote

ROOT = Path(__file__).resolve().parent.parent
TF = ROOT / "deploy" / "terraform"
PREFIXES = [e.prefix for e in catalog.ENDPOINTS]

#: What refers to an account key or a connection string in Terraform: the storage account's key
#: and connection-string attributes, a SAS, the Key Vault secret's value, or the literals.
KEY_REFERENCES = re.compile(
    r"(primary|secondary)_(access_key|connection_string|blob_connection_string)|_sas\b|\.sas\b|"
    r"azurerm_key_vault_secret\.[\w]+\.value|AccountKey=|SharedAccessSignature=|UseDevelopmentStorage",
    re.I)


@pytest.fixture(scope="module")
def tf():
    return load()


def _one(tf, kind: str) -> dict:
    [body] = resources(tf, kind).values()
    return body


def resolve(value: Any, locs: Dict[str, Any]) -> Any:
    """A value with whole-value references to locals (``${local.a}``, ``${local.a.b}``) replaced by
    what they name, repeatedly."""
    for _ in range(10):
        if not isinstance(value, str):
            return value
        m = re.fullmatch(r"\$\{local\.(\w+)(?:\.(\w+))?\}", value)
        if not m:
            return value
        value = locs[m.group(1)]
        if m.group(2):
            value = value[m.group(2)]
    raise AssertionError(f"local references do not end: {value!r}")


def app_settings(tf) -> Dict[str, Any]:
    locs = locals_(tf)
    return {k: resolve(v, locs) for k, v in locs["app_settings"].items()}


def role_assignments(tf) -> List[dict]:
    return [{k: unquote(v) for k, v in body.items() if not k.startswith("__")}
            for body in resources(tf, "azurerm_role_assignment").values()]


# --- no shared key in the Function App -----------------------------------------------------------

def test_no_account_key_or_connection_string_in_the_function_app(tf):
    settings = app_settings(tf)
    leaks = {k: v for k, v in settings.items() if KEY_REFERENCES.search(str(v))}
    assert not leaks, f"settings that carry a key or a connection string: {leaks}"
    named = [k for k in settings if re.search(r"CONNECTION_STRING|ACCESS_KEY|ACCOUNT_KEY|_SAS\b", k)]
    assert not named, named
    # the provider's own AzureWebJobsStorage (keyless since the key is absent) is blanked, so the
    # host takes the identity-based connection
    assert unquote(settings["AzureWebJobsStorage"]) == ""
    assert settings["AzureWebJobsStorage__accountName"] == "${azurerm_storage_account.main.name}"
    assert unquote(settings["AzureWebJobsStorage__credential"]) == "managedidentity"
    app = _one(tf, "azurerm_function_app_flex_consumption")
    assert unquote(app["storage_authentication_type"]) == "SystemAssignedIdentity"
    assert "storage_access_key" not in app and not KEY_REFERENCES.search(json.dumps(app["site_config"]))
    assert app.get("connection_string") is None
    # side files: the account URL, read with the app's identity
    assert settings["AZURE_STORAGE_ACCOUNT_URL"] == "${azurerm_storage_account.main.primary_blob_endpoint}"


def test_the_key_check_finds_a_key_put_back(tf):
    """The check above is not blind: today's main put the connection string and the access key in."""
    assert KEY_REFERENCES.search("${azurerm_storage_account.main.primary_connection_string}")
    assert KEY_REFERENCES.search("${azurerm_storage_account.main.primary_access_key}")
    assert KEY_REFERENCES.search("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=x")
    assert KEY_REFERENCES.search("${data.azurerm_storage_account_blob_container_sas.ovms.sas}")
    assert not KEY_REFERENCES.search("${azurerm_storage_account.main.primary_blob_endpoint}")


def test_the_only_secret_is_ovms_read_only_sas_in_key_vault(tf):
    [sas] = [b['"ovms"'] for b in tf["data"] if '"azurerm_storage_account_blob_container_sas"' in b
             for b in [b['"azurerm_storage_account_blob_container_sas"']]]
    perms = {k: v for k, v in sas["permissions"][0].items() if not k.startswith("__")}
    assert perms == {"read": True, "list": True, "add": False, "create": False, "write": False, "delete": False}
    assert sas["https_only"] is True and sas["container_name"] == "${azurerm_storage_container.models.name}"
    assert "time_rotating.ovms_sas" in sas["start"] and "local.ovms_sas_expiry" in sas["expiry"]
    secret = _one(tf, "azurerm_key_vault_secret")
    value = "".join(secret["value"]) if isinstance(secret["value"], list) else secret["value"]
    assert "SharedAccessSignature=" in value and "AccountKey" not in value and "access_key" not in value
    assert "expiration_date" in secret
    vault = _one(tf, "azurerm_key_vault")
    assert vault["enable_rbac_authorization"] is True and vault["purge_protection_enabled"] is True
    app = _one(tf, "azurerm_container_app")
    [store] = [s for s in app["secret"] if unquote(s["name"]) == "storage-connection"]
    assert store["key_vault_secret_id"] == "${azurerm_key_vault_secret.ovms_storage.versionless_id}"
    assert store["identity"] == "${azurerm_user_assigned_identity.ovms.id}" and "value" not in store
    [env] = [e for e in app["template"][0]["container"][0]["env"]
             if unquote(e["name"]) == "AZURE_STORAGE_CONNECTION_STRING"]
    assert unquote(env["secret_name"]) == "storage-connection" and "value" not in env


# --- the model address comes from the container app ----------------------------------------------

def test_every_model_address_is_the_container_apps_ingress(tf):
    settings, locs = app_settings(tf), locals_(tf)
    for p in PREFIXES:
        assert settings[f"{p}_IPADDRESS"] == "${azurerm_container_app.ovms.ingress[0].fqdn}", p
        assert settings[f"{p}_PORT"] == "${tostring(local.ovms_ingress_port)}", p
        assert "azurerm_container_app.ovms.ingress[0]" in settings[f"{p}_TLS"], p
    assert locs["ovms_ingress_port"] == 443          # the ingress's TLS port
    assert "azurerm_container_app.ovms" in settings["OVMS_TLS"]
    ingress = _one(tf, "azurerm_container_app")["ingress"][0]
    assert ingress["allow_insecure_connections"] is False  # so TLS resolves to "true"
    assert unquote(ingress["transport"]) == "http2"        # gRPC
    assert ingress["target_port"] == "${local.ovms_grpc_port}" and locs["ovms_grpc_port"] == launch.CONTAINER_PORT
    assert not any("var.ovms_hosts" in str(v) for v in settings.values())
    assert "ovms_hosts" not in named_blocks(tf, "variable"), "no address to fill in after a second step"


def test_ovms_is_reachable_from_the_function_apps_subnet_only(tf):
    env = _one(tf, "azurerm_container_app_environment")
    assert env["internal_load_balancer_enabled"] is True
    assert env["infrastructure_subnet_id"] == "${azurerm_subnet.ovms.id}"
    ingress = _one(tf, "azurerm_container_app")["ingress"][0]
    # external = on the environment's (private) inbound IP, which the VNet reaches; internal would
    # be reachable from the environment's own apps only
    assert ingress["external_enabled"] is True
    subnets = resources(tf, "azurerm_subnet")
    assert set(subnets) == {"functions", "ovms"}
    for name, subnet in subnets.items():
        assert subnet["virtual_network_name"] == "${azurerm_virtual_network.main.name}", name
        [d] = subnet["delegation"]
        assert unquote(d["service_delegation"][0]["name"]) == "Microsoft.App/environments", name
    assert subnets["functions"]["address_prefixes"] != subnets["ovms"]["address_prefixes"]
    app = _one(tf, "azurerm_function_app_flex_consumption")
    assert app["virtual_network_subnet_id"] == "${azurerm_subnet.functions.id}"
    zone = _one(tf, "azurerm_private_dns_zone")
    assert zone["name"] == "${azurerm_container_app_environment.ovms.default_domain}"
    link = _one(tf, "azurerm_private_dns_zone_virtual_network_link")
    assert link["virtual_network_id"] == "${azurerm_virtual_network.main.id}"
    records = resources(tf, "azurerm_private_dns_a_record")
    assert {unquote(r["name"]) for r in records.values()} == {"*", "@"}
    for r in records.values():
        assert r["records"] == ["${azurerm_container_app_environment.ovms.static_ip_address}"]
        assert r["zone_name"] == "${azurerm_private_dns_zone.ovms.name}"


# --- identities and roles -------------------------------------------------------------------------

def test_each_identity_has_the_roles_its_reads_need(tf):
    roles = {(r["principal_id"], r["scope"], r["role_definition_name"]) for r in role_assignments(tf)}
    function = "${azurerm_function_app_flex_consumption.main.identity[0].principal_id}"
    account = "${azurerm_storage_account.main.id}"
    vault = "${azurerm_key_vault.main.id}"
    ovms = "${azurerm_user_assigned_identity.ovms.principal_id}"
    deployer = "${data.azurerm_client_config.current.object_id}"
    # host storage by identity: Storage Blob Data Owner (Microsoft's identity-based host storage);
    # it includes the Flex deployment container's Contributor and the side files' read
    assert (function, account, "Storage Blob Data Owner") in roles
    assert (ovms, vault, "Key Vault Secrets User") in roles
    assert (deployer, vault, "Key Vault Secrets Officer") in roles
    assert (deployer, account, "Storage Blob Data Contributor") in roles   # upload with --auth-mode login
    assert len(roles) == 4, roles  # nothing more than these
    # the roles exist before what needs them
    assert "${azurerm_role_assignment.ovms_secrets}" in _one(tf, "azurerm_container_app")["depends_on"]
    assert "${azurerm_role_assignment.deployer_secrets}" in _one(tf, "azurerm_key_vault_secret")["depends_on"]
    app = _one(tf, "azurerm_container_app")
    assert unquote(app["identity"][0]["type"]) == "UserAssigned"
    assert app["identity"][0]["identity_ids"] == ["${azurerm_user_assigned_identity.ovms.id}"]
    assert unquote(_one(tf, "azurerm_function_app_flex_consumption")["identity"][0]["type"]) == "SystemAssigned"


# --- the container is OVMS as scripts/tooling/ovms.py launches it ---------------------------------

def _pairs(argv: List[str]) -> Dict[str, str]:
    flags = [a for a in argv if a.startswith("--")]
    out = {}
    for i, a in enumerate(argv):
        if a.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else ""
            out[a] = nxt
    assert len(out) == len(flags), "a flag is given twice"
    return out


def test_the_container_app_runs_ovms_as_the_launch_script_does(tf):
    locs = locals_(tf)
    app = _one(tf, "azurerm_container_app")
    container = app["template"][0]["container"][0]
    args = [str(unquote(resolve(a, locs))) for a in container["args"]]
    args = [str(locs[m.group(1)]) if (m := re.fullmatch(r"\$\{tostring\(local\.(\w+)\)\}", a)) else a for a in args]
    # the precision is the config file's (f32 pinned in it, test below), not an argument
    [plan], _ = launch.plan_all("127.0.0.1")
    image_at = next(i for i, a in enumerate(plan.docker) if a.startswith(launch.IMAGE + ":"))
    script = _pairs(plan.docker[image_at + 1:])
    ours = _pairs(args)
    assert ours.pop("--rest_port") == str(locs["ovms_rest_port"])   # what the readiness probe reads
    config_path = ours.pop("--config_path")
    script.pop("--config_path")
    assert ours == script, (ours, script)
    variables = named_blocks(tf, "variable")
    assert unquote(variables["ovms_image"]["default"]) == launch.image_for(launch.PINNED_TAGS["kserve"], "CPU")
    assert container["image"] == "${var.ovms_image}"
    # the config file is the mounted secret
    mount = container["volume_mounts"][0]
    [volume] = app["template"][0]["volume"]
    assert unquote(volume["storage_type"]) == "Secret" and unquote(mount["name"]) == unquote(volume["name"])
    secrets = {unquote(s["name"]): s for s in app["secret"]}
    assert config_path == f"{unquote(mount['path'])}/config-json" and "config-json" in secrets
    assert secrets["config-json"]["value"] == "${local.ovms_config_json}"


def test_readiness_is_ovms_health_and_scaling_has_reasons(tf):
    locs = locals_(tf)
    app = _one(tf, "azurerm_container_app")
    template = app["template"][0]
    container = template["container"][0]
    ready = container["readiness_probe"][0]
    assert unquote(ready["transport"]) == "HTTP" and unquote(ready["path"]) == "/v2/health/ready"
    assert ready["port"] == "${local.ovms_rest_port}" and locs["ovms_rest_port"] == 8080
    assert unquote(container["startup_probe"][0]["path"]) == "/v2/health/live"
    assert template["min_replicas"] == "${var.ovms_min_replicas}"
    assert template["max_replicas"] == "${var.ovms_max_replicas}"
    [rule] = template["http_scale_rule"]
    assert rule["concurrent_requests"] == "${tostring(var.ovms_concurrent_requests)}"
    variables = named_blocks(tf, "variable")
    for name in ("ovms_min_replicas", "ovms_max_replicas", "ovms_concurrent_requests", "ovms_cpu", "ovms_memory"):
        assert len(variables[name]["description"]) > 80, f"{name} needs its reason"
    assert variables["ovms_min_replicas"]["default"] >= 1
    assert variables["ovms_cpu"]["default"] == 2 and unquote(variables["ovms_memory"]["default"]) == "4Gi"


def test_the_served_config_is_the_apps_models_pinned_to_f32(tf):
    locs = locals_(tf)
    assert locs["ovms_config_json"] == '${file("${path.module}/../k8s/plain/config.json")}'
    served = json.loads((ROOT / "deploy" / "k8s" / "plain" / "config.json").read_text())["model_config_list"]
    app = json.loads((ROOT / "models" / "config.json").read_text())["model_config_list"]
    assert [(m["config"]["name"], m["config"]["base_path"]) for m in served] == \
        [(m["config"]["name"], m["config"]["base_path"]) for m in app]
    for m in served:
        c = m["config"]
        assert c["target_device"] == "CPU" and c["plugin_config"]["INFERENCE_PRECISION_HINT"] == "f32", c["name"]
        assert c["base_path"].startswith("az://ovms/")
    names = {unquote(v) for v in named_blocks(tf, "variable")["model_names"]["default"].values()}
    assert names == {m["config"]["name"] for m in served}


def test_outputs_give_the_url_and_the_key_command(tf):
    outputs = named_blocks(tf, "output")
    assert unquote(outputs["function_app_url"]["value"]).startswith("https://${azurerm_function_app_flex_consumption.main")
    command = "".join(outputs["function_key_command"]["value"])
    assert "az functionapp keys list" in command and "functionKeys.default" in command
    assert "storage_connection_string" not in outputs
    for name, out in outputs.items():
        if KEY_REFERENCES.search(json.dumps(out["value"])):
            assert out.get("sensitive") is True, f"output {name} carries a secret"
