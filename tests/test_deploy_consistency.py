"""deploy/ agrees with the app: every setting the app reads (derived from shared/ by
tests/app_settings_inventory.py) is set by the Terraform and listed in README, and the IaC's
values match the app's defaults, models/config.json and the manifests."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from shared import catalog
from shared import config as app_config
from tests import app_settings_inventory as inv
from tests.kubectl_kustomize import build
from tests.terraform_hcl import load, locals_, named_blocks, resources, unquote

ROOT = Path(__file__).resolve().parent.parent
# Read by the Functions host, not by shared/: the Python worker's threads, and host storage by
# identity (Microsoft's identity-based connection settings; AzureWebJobsStorage is blanked so the
# provider's own keyless value does not shadow them, tests/test_deploy_azure.py).
HOST_SETTINGS = {"PYTHON_THREADPOOL_THREAD_COUNT", "AzureWebJobsStorage__accountName",
                 "AzureWebJobsStorage__credential", "AzureWebJobsStorage"}
# Read by the app but only set locally (local.settings.json, the stack): a connection string has
# no place in the deployed app's settings, which give AZURE_STORAGE_ACCOUNT_URL instead.
LOCAL_ONLY_SETTINGS = {"AZURE_STORAGE_CONNECTION_STRING"}


@pytest.fixture(scope="module")
def tf():
    return load()


@pytest.fixture(scope="module")
def app_settings(tf):
    return locals_(tf)["app_settings"]


def var_default(tf, name):
    value = named_blocks(tf, "variable")[name]["default"]
    return {k: unquote(v) for k, v in value.items()} if isinstance(value, dict) else unquote(value)


def test_inventory_finds_the_settings_and_would_find_a_new_one(tmp_path):
    found = inv.inventory()
    assert {"OVMS_API", "MAX_BODY_BYTES", "HANDWRITTEN_CHARLIST_PATH", "HEALTH_CACHE_SECONDS"} <= found.globals
    assert {"IPADDRESS", "PORT", "MODEL_NAME", "MODEL_VERSION"} <= found.per_endpoint_suffixes
    assert found.prefixes == {e.prefix for e in catalog.ENDPOINTS}
    module = tmp_path / "m.py"
    module.write_text(textwrap.dedent('''
        import os
        NEW_PATH_SETTING = "SOMETHING_PATH"
        def f(e, prefix):
            return _get(e, "BRAND_NEW_SECONDS"), _int(e, f"{prefix}_RETRIES", 1), os.environ["RAW"]
        class T:
            settings_prefix = "EXTRA"
    '''))
    new = inv.scan([module])
    assert new.globals == {"SOMETHING_PATH", "BRAND_NEW_SECONDS", "RAW"}
    assert new.per_endpoint_suffixes == {"RETRIES"} and new.prefixes == {"EXTRA"}
    assert "EXTRA_RETRIES" in new.expanded()


def test_the_code_reads_no_setting_the_app_does_not_declare():
    """config.all_settings() (catalog + config) is complete: the scan of shared/ finds nothing more."""
    s, d = inv.scanned(), inv.declared()
    assert s.globals <= d.globals, sorted(s.globals - d.globals)
    assert s.per_endpoint_suffixes <= d.per_endpoint_suffixes, sorted(s.per_endpoint_suffixes - d.per_endpoint_suffixes)
    assert s.prefixes <= d.prefixes
    assert d.expanded() == set(app_config.all_settings())


def test_every_setting_the_app_reads_is_set_by_the_iac(tf, app_settings):
    wanted = inv.inventory().expanded() - inv.PLATFORM_SETTINGS - LOCAL_ONLY_SETTINGS
    missing = sorted(wanted - set(app_settings))
    assert not missing, f"settings the app reads but deploy/terraform does not set: {missing}"
    unknown = sorted(set(app_settings) - wanted - HOST_SETTINGS)
    assert not unknown, f"deploy/terraform sets settings the app never reads (typo?): {unknown}"
    assert not LOCAL_ONLY_SETTINGS & set(app_settings)
    assert LOCAL_ONLY_SETTINGS <= inv.inventory().globals  # still read by the app (locally)
    # Host storage: the provider's storage arguments, by identity.
    [app] = resources(tf, "azurerm_function_app_flex_consumption").values()
    assert unquote(app["storage_authentication_type"]) == "SystemAssignedIdentity"
    assert "storage_access_key" not in app


def test_every_setting_is_listed_in_readme():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    found = inv.inventory()
    for name in sorted(found.globals):
        assert f"`{name}`" in table, f"README Settings table lacks `{name}`"
    for suffix in sorted(found.per_endpoint_suffixes):
        assert f"`<MODEL>_{suffix}`" in table, f"README Settings table lacks `<MODEL>_{suffix}`"
    for prefix in sorted(found.prefixes):
        assert f"`{prefix}`" in table, f"README Settings table does not name the prefix {prefix}"


def test_iac_values_match_the_app_and_the_manifests(tf, app_settings):
    prefixes = sorted(inv.inventory().prefixes)
    names = var_default(tf, "model_names")
    assert names == {e.prefix: e.model_name for e in catalog.ENDPOINTS}
    config_names = {m["name"] for m in build("kserve")
                    if m["kind"] == "InferenceService" for m in [m["metadata"]]}
    assert set(names.values()) == config_names
    assert unquote(app_settings["OVMS_API"]) == "kserve"
    runtime = [o for o in build("kserve")
               if o["kind"] == "ServingRuntime"][0]
    grpc = {p["name"]: p["containerPort"] for p in runtime["spec"]["containers"][0]["ports"]}["grpc"]
    # OVMS listens where the manifests and the app's default say; the app reaches it through the
    # container app's ingress (tests/test_deploy_azure.py)
    assert locals_(tf)["ovms_grpc_port"] == grpc == app_config.model_settings("HUMANPOSE", env={}).port
    for p in prefixes:
        assert unquote(app_settings[f"{p}_OVMS_API"]) == "kserve"
        assert app_settings[f"{p}_PORT"] == "${local.ovms_address.port}"
        assert app_settings[f"{p}_MODEL_NAME"] == f'${{var.model_names["{p}"]}}'
        assert app_settings[f"{p}_IPADDRESS"] == "${local.ovms_address.host}"
        assert app_settings[f"{p}_TLS"] == "${local.ovms_address.tls}"
        assert app_settings[f"{p}_TIMEOUT_SECONDS"] == f'${{tostring(var.model_timeout_seconds["{p}"])}}'
    # The defaults equal the app's own (shared/config.py), so a plain apply changes no behaviour.
    defaults = app_config.limits(env={})
    assert var_default(tf, "max_body_bytes") == defaults.max_body_bytes
    assert var_default(tf, "max_image_pixels") == defaults.max_image_pixels
    assert var_default(tf, "max_image_side") == defaults.max_image_side
    s = app_config.model_settings("HUMANPOSE", env={})
    assert var_default(tf, "ovms_timeout_seconds") == s.timeout_s
    assert var_default(tf, "ovms_connect_timeout_seconds") == s.connect_timeout_s
    assert var_default(tf, "ovms_metadata_ttl_seconds") == s.metadata_ttl_s
    assert var_default(tf, "health_cache_seconds") == app_config.health_cache_seconds(env={})


def test_side_files_point_where_the_upload_puts_them(app_settings):
    """stack.sh and the upload script put a model's side files in az://ovms/<model>/<file>."""
    uploads = {side.setting: (e.prefix, side.filename) for e in catalog.ENDPOINTS for side in e.side_files
               if side.filename and side.where == catalog.BESIDE_MODEL}
    assert uploads, "the catalog names side files the stack uploads"
    for setting, (prefix, fname) in uploads.items():
        value = unquote(app_settings[setting])
        expected = f'az://${{azurerm_storage_container.models.name}}/${{var.model_names["{prefix}"]}}/{fname}'
        assert value == expected, (setting, value)
    assert re.search(r'name\s*=\s*"ovms"', (ROOT / "deploy/terraform/main.tf").read_text())
