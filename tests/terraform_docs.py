"""The arguments the azurerm provider documents for each block type deploy/terraform uses, read
from the provider's own repository (hashicorp/terraform-provider-azurerm) with the search tools, with
where each list was read. tests/test_deploy_terraform.py checks every argument and nested block of
deploy/terraform against these lists. To use a new resource or argument, read its page
(website/docs/r/<resource>.html.markdown, or d/ for a data source) at a release the pin admits,
add it here with its source, and raise the pin in versions.tf if the argument is newer.

The pin is ``~> 4.46``: the lowest 4.x release that has every argument used (CHANGELOG.md).
Each table lists the page's top-level arguments and the blocks' arguments; a block's name maps to
its own table. Where the stored copy of a page predates an argument of 4.46, the argument comes
from the resource's Go schema (``Arguments()``) or the CHANGELOG entry that added it, named in
``SOURCES``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Mapping

PROVIDER = "hashicorp/azurerm"
PIN = "~> 4.46"
REPO = "hashicorp/terraform-provider-azurerm"

# What the pin rests on, from CHANGELOG.md (commit 00030056ee5b0453714300b2aa2ad3be6c2d31ba,
# entries 4.21.0 to 4.55.0).
INTRODUCED = {
    "azurerm_function_app_flex_consumption": "4.21.0",  # "New Resource" (#28199)
    "azurerm_function_app_flex_consumption.always_ready": "4.30.0",  # (#29023)
    "azurerm_function_app_flex_consumption.https_only": "4.31.0",  # (#29024)
    "azurerm_function_app_flex_consumption.site_config.vnet_route_all_enabled": "4.35.0",  # (#29839)
    "azurerm_function_app_flex_consumption.http_concurrency": "4.46.0",  # (#29678)
}


@dataclass(frozen=True)
class Block:
    """Documented arguments of one block; ``blocks`` maps nested block names to their tables."""

    arguments: FrozenSet[str]
    blocks: Mapping[str, "Block"] = field(default_factory=dict)
    source: str = ""


def _b(names: str, source: str = "", **blocks: "Block") -> Block:
    return Block(frozenset(names.split()), dict(blocks), source)


SOURCES = {
    "provider": "CHANGELOG.md @ 00030056ee5b0453714300b2aa2ad3be6c2d31ba: 4.35.0 'provider - allow missing "
                "subscription_id when use_cli is true' (#29985); the features block is required in every "
                "page's example (e.g. website/docs/r/service_plan.html.markdown @ 3a0242807978f5edcbf8966018ff88719ccc0bf1)",
    "azurerm_resource_group": "website/docs/r/resource_group.html.markdown @ ed4e392d9747e8170c6fc0e32baf7945dfb13b57",
    "azurerm_storage_account": "website/docs/r/storage_account.html.markdown, the 4.x page (https_traffic_only_enabled, "
                               "sas_policy; search-index file id 980419355, commit not reported by the index; the copies at "
                               "761209292cb1 and 00050b51fbaf are 2.x pages)",
    "azurerm_storage_container": "website/docs/r/storage_container.html.markdown @ 046b215c0c6ffa6330fe8c0e8439dbc30bd2bf05",
    "azurerm_log_analytics_workspace": "website/docs/r/log_analytics_workspace.html.markdown @ f06b24e6a97880118404e33be8f5dd0b8f9853a2",
    "azurerm_application_insights": "website/docs/r/application_insights.html.markdown, the 4.x page with workspace_id "
                                    "(search-index file id 240922442; the copy at 1efd35b9d989 predates workspace_id)",
    "azurerm_service_plan": "website/docs/r/service_plan.html.markdown @ 3a0242807978f5edcbf8966018ff88719ccc0bf1",
    "azurerm_function_app_flex_consumption":
        "top level: internal/services/appservice/function_app_flex_consumption_resource.go Arguments() @ "
        "0007415504df97e8efc8c9810ee3bb288e636963 (has http_concurrency 1..1000, maximum_instance_count 1..1000, "
        "instance_memory_in_mb without validation); site_config, cors, identity: "
        "website/docs/r/function_app_flex_consumption.html.markdown @ 016f23d1219b5844edb7d020a0476c2cb3947f78 "
        "(the stored pages, there and @ 3a0242807978, predate always_ready, https_only and http_concurrency)",
    "data.azurerm_subnet": "website/docs/d/subnet.html.markdown @ 4d158e6116bc27d31417300a662159d50b77605b",
}

_CORS = _b("allowed_origins support_credentials")
_SITE_CONFIG = _b(
    "api_definition_url api_management_api_id app_command_line application_insights_connection_string "
    "application_insights_key app_service_logs container_registry_managed_identity_client_id "
    "container_registry_use_managed_identity cors default_documents health_check_path "
    "health_check_eviction_time_in_min http2_enabled ip_restriction ip_restriction_default_action "
    "load_balancing_mode managed_pipeline_mode minimum_tls_version remote_debugging_enabled "
    "remote_debugging_version runtime_scale_monitoring_enabled scm_ip_restriction "
    "scm_ip_restriction_default_action scm_minimum_tls_version scm_use_main_ip_restriction "
    "websockets_enabled worker_count vnet_route_all_enabled",
    cors=_CORS)

DOCUMENTED: Dict[str, Block] = {
    "provider.azurerm": _b("subscription_id features", SOURCES["provider"], features=_b("")),
    "azurerm_resource_group": _b("name location managed_by tags", SOURCES["azurerm_resource_group"]),
    "azurerm_storage_account": _b(
        "name resource_group_name location account_kind account_tier account_replication_type "
        "cross_tenant_replication_enabled access_tier edge_zone https_traffic_only_enabled min_tls_version "
        "allow_nested_items_to_be_public shared_access_key_enabled public_network_access_enabled "
        "default_to_oauth_authentication is_hns_enabled nfsv3_enabled custom_domain customer_managed_key "
        "identity blob_properties queue_properties static_website share_properties network_rules "
        "large_file_share_enabled local_user_enabled azure_files_authentication routing "
        "queue_encryption_key_type table_encryption_key_type infrastructure_encryption_enabled "
        "immutability_policy sas_policy allowed_copy_scope sftp_enabled dns_endpoint_type tags",
        SOURCES["azurerm_storage_account"],
        sas_policy=_b("expiration_period expiration_action"),
        blob_properties=_b(
            "cors_rule delete_retention_policy restore_policy versioning_enabled change_feed_enabled "
            "change_feed_retention_in_days default_service_version last_access_time_enabled "
            "container_delete_retention_policy",
            delete_retention_policy=_b("days permanent_delete_enabled"),
            container_delete_retention_policy=_b("days"))),
    "azurerm_storage_container": _b(
        "name storage_account_name storage_account_id container_access_type default_encryption_scope "
        "encryption_scope_override_enabled metadata", SOURCES["azurerm_storage_container"]),
    "azurerm_log_analytics_workspace": _b(
        "name resource_group_name location sku retention_in_days daily_quota_gb internet_ingestion_enabled "
        "internet_query_enabled tags", SOURCES["azurerm_log_analytics_workspace"]),
    "azurerm_application_insights": _b(
        "name resource_group_name location application_type daily_data_cap_in_gb "
        "daily_data_cap_notifications_disabled retention_in_days sampling_percentage disable_ip_masking tags "
        "workspace_id local_authentication_disabled internet_ingestion_enabled internet_query_enabled "
        "force_customer_storage_for_profiler", SOURCES["azurerm_application_insights"]),
    "azurerm_service_plan": _b(
        "name location os_type resource_group_name sku_name app_service_environment_id "
        "premium_plan_auto_scale_enabled maximum_elastic_worker_count worker_count per_site_scaling_enabled "
        "zone_balancing_enabled tags", SOURCES["azurerm_service_plan"]),
    "azurerm_function_app_flex_consumption": _b(
        "name resource_group_name location service_plan_id storage_container_type storage_container_endpoint "
        "storage_authentication_type storage_access_key storage_user_assigned_identity_id runtime_name "
        "runtime_version instance_memory_in_mb maximum_instance_count http_concurrency always_ready "
        "site_config site_update_strategy sticky_settings app_settings auth_settings auth_settings_v2 "
        "client_certificate_enabled client_certificate_mode client_certificate_exclusion_paths "
        "connection_string enabled identity public_network_access_enabled https_only "
        "webdeploy_publish_basic_authentication_enabled virtual_network_subnet_id zip_deploy_file "
        "vnet_application_traffic_enabled tags",
        SOURCES["azurerm_function_app_flex_consumption"],
        always_ready=_b("name instance_count"),
        site_config=_SITE_CONFIG,
        identity=_b("type identity_ids")),
    "data.azurerm_subnet": _b("name virtual_network_name resource_group_name", SOURCES["data.azurerm_subnet"]),
}

# Meta-arguments and blocks every resource takes (Terraform's, not the provider's).
META_ARGUMENTS = frozenset({"count", "for_each", "depends_on", "provider", "lifecycle"})
