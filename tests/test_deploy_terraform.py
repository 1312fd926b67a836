"""deploy/terraform against what the azurerm provider and Flex Consumption accept, offline (no
provider or Azure account here): every argument and block is one the provider documents for that
resource at a release the pin admits (tests/terraform_docs.py, with the sources it was read from),
no app setting is one Flex Consumption does not take (tests/flex_settings.py), the per-instance
HTTP concurrency is Terraform's, and the subscription reaches the provider."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from tests import terraform_docs as docs
from tests.flex_settings import NOT_VALID_ON_FLEX
from tests.terraform_hcl import load, locals_, named_blocks, resources, undocumented, unquote

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tf():
    return load()


def findings(tf) -> list:
    """Every argument or block of deploy/terraform that its type's documented table lacks."""
    out = []
    for block in tf.get("provider", []):
        for name, body in block.items():
            key = f"provider.{unquote(name)}"
            out += undocumented(body, docs.DOCUMENTED[key], frozenset({"alias"}), key) \
                if key in docs.DOCUMENTED else [f"{key} (no documented table)"]
    for kind, prefix in (("resource", ""), ("data", "data.")):
        for block in tf.get(kind, []):
            for rtype, named in block.items():
                key = prefix + unquote(rtype)
                for name, body in named.items():
                    where = f"{key}.{unquote(name)}"
                    if key not in docs.DOCUMENTED:
                        out.append(f"{where} (no documented table: read its page and add it)")
                        continue
                    out += undocumented(body, docs.DOCUMENTED[key], docs.META_ARGUMENTS, where)
    return out


def test_every_argument_is_one_the_provider_documents(tf):
    assert findings(tf) == []
    # every table is used, and says where it was read
    used = {f"provider.{unquote(n)}" for b in tf["provider"] for n in b}
    used |= {unquote(t) for b in tf["resource"] for t in b} | {f"data.{unquote(t)}" for b in tf.get("data", []) for t in b}
    assert used == set(docs.DOCUMENTED)
    assert all(docs.DOCUMENTED[k].source for k in used)


def test_the_check_reports_what_the_provider_does_not_document(tf):
    bad = copy.deepcopy(tf)
    [app] = resources(bad, "azurerm_function_app_flex_consumption").values()
    app["https_only_enabled"] = True                                   # a misspelt argument
    app["site_config"][0]["cors"][0]["allowed_headers"] = ["*"]        # in a nested block
    app["dynamic"][0]['"always_ready"']["content"][0]["instances"] = 1  # in a dynamic block
    [account] = resources(bad, "azurerm_storage_account").values()
    account["enable_https_traffic_only"] = True                        # the 3.x name
    bad["resource"].append({'"azurerm_container_registry"': {'"x"': {"name": '"x"', "__is_block__": True}}})
    [ovms] = resources(bad, "azurerm_container_app").values()
    ovms["template"][0]["container"][0]["readiness_probe"][0]["period_seconds"] = 5  # Kubernetes' name
    found = findings(bad)
    assert any(f.endswith(".https_only_enabled") for f in found)
    assert any(f.endswith("site_config.cors.allowed_headers") for f in found)
    assert any(f.endswith("always_ready.instances") for f in found)
    assert any(f.endswith(".enable_https_traffic_only") for f in found)
    assert any(f.startswith("azurerm_container_registry.x (no documented table") for f in found)
    assert any(f.endswith("container.readiness_probe.period_seconds") for f in found)


def _lowest(constraint: str) -> tuple:
    m = re.fullmatch(r"~>\s*(\d+)\.(\d+)(?:\.(\d+))?", constraint)
    assert m, constraint
    return tuple(int(x or 0) for x in m.groups())


def test_the_pin_admits_no_release_that_lacks_an_argument_used(tf):
    providers = tf["terraform"][0]["required_providers"][0]
    time = providers["time"]
    assert unquote(time["source"]) == docs.TIME_PROVIDER and unquote(time["version"]) == docs.TIME_PIN
    assert {k for k in providers if not k.startswith("__")} == {"azurerm", "time"}
    provider = providers["azurerm"]
    pin = unquote(provider["version"])
    assert pin == docs.PIN and unquote(provider["source"]) == docs.PROVIDER
    lowest = _lowest(pin)
    [app] = resources(tf, "azurerm_function_app_flex_consumption").values()
    used = {"azurerm_function_app_flex_consumption"} | {f"azurerm_function_app_flex_consumption.{k}" for k in app}
    used |= {"azurerm_function_app_flex_consumption.always_ready"} if "dynamic" in app else set()
    for what, release in docs.INTRODUCED.items():
        if what in used:
            assert tuple(int(x) for x in release.split(".")) <= lowest, f"{what} needs azurerm {release}; the pin admits {pin}"
    assert _lowest("~> 4.20") < (4, 21, 0)  # the old pin admitted a release without the resource


def test_no_app_setting_is_one_flex_consumption_does_not_take(tf):
    settings = set(locals_(tf)["app_settings"])
    [app] = resources(tf, "azurerm_function_app_flex_consumption").values()
    assert app["app_settings"] == "${local.app_settings}"
    invalid = sorted(settings & set(NOT_VALID_ON_FLEX))
    assert not invalid, {s: NOT_VALID_ON_FLEX[s] for s in invalid}
    assert "FUNCTIONS_WORKER_PROCESS_COUNT" in NOT_VALID_ON_FLEX


def test_http_concurrency_is_terraforms_and_the_threads_follow_it(tf):
    [app] = resources(tf, "azurerm_function_app_flex_consumption").values()
    assert app["http_concurrency"] == "${var.http_concurrency}"
    assert locals_(tf)["app_settings"]["PYTHON_THREADPOOL_THREAD_COUNT"] == "${tostring(var.http_concurrency)}"
    var = named_blocks(tf, "variable")["http_concurrency"]
    assert var["default"] >= 1 and len(var["description"]) > 200  # the reason is written down
    condition = var["validation"][0]["condition"]
    assert ">= 1" in condition and "<= 1000" in condition          # the provider's IntBetween(1, 1000)
    readme = (ROOT / "README.md").read_text()
    assert "perInstanceConcurrency" not in readme, "README still sets the concurrency outside Terraform"


def test_sizes_follow_the_documented_ranges_and_the_regional_quota(tf):
    variables = named_blocks(tf, "variable")
    memory = variables["instance_memory_mb"]["validation"][0]["condition"]
    assert "[512, 2048, 4096]" in memory
    count = variables["maximum_instance_count"]["validation"][0]["condition"]
    assert ">= 1" in count and "<= 1000" in count
    [app] = resources(tf, "azurerm_function_app_flex_consumption").values()
    conditions = [pre["condition"] for pre in app["lifecycle"][0]["precondition"]]
    assert any("var.maximum_instance_count * var.instance_memory_mb <= 512000" in c for c in conditions)
    assert any("var.instance_memory_mb >= local.memory_required_mb" in c for c in conditions)


def test_the_subscription_reaches_the_provider(tf):
    [provider] = [b['"azurerm"'] for b in tf["provider"]]
    assert provider["subscription_id"] == "${var.subscription_id}"
    assert named_blocks(tf, "variable")["subscription_id"]["default"] is None
    section = (ROOT / "README.md").read_text().split("## Deploy to Azure in one command", 1)[1].split("\n## ", 1)[0]
    first_terraform = section.index("terraform -chdir=deploy/terraform")
    assert "export ARM_SUBSCRIPTION_ID=" in section[:first_terraform]
