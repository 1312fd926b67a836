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
#: hashicorp/time (time_rotating renews OVMS's SAS); every 0.x release from 0.4.0 has the
#: arguments used (CHANGELOG.md @ 0148b47b9b5d: triggers replaced keepers in 0.4.0)
TIME_PROVIDER = "hashicorp/time"
TIME_PIN = "~> 0.9"

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
    "azurerm_virtual_network": "website/docs/r/virtual_network.html.markdown @ c86e09a267569395cd907b7b796ec05248406545",
    "azurerm_subnet": "website/docs/r/subnet.html.markdown @ 0177a6ca6e8b84acc2d9d41d2bcfa3b7bd9bcc31 "
                      "(delegation, service_delegation); the 4.x names of the network-policy arguments "
                      "(private_endpoint_network_policies, private_link_service_network_policies_enabled) "
                      "and default_outbound_access_enabled are not used here",
    "azurerm_private_dns_zone": "website/docs/r/private_dns_zone.html.markdown @ 61fd1fb50a2eb63571be143a222be938d72aa37f",
    "azurerm_private_dns_zone_virtual_network_link":
        "website/docs/r/private_dns_zone_virtual_network_link.html.markdown @ 04b98c56a71a32325a7a50ebcca1163eb96f79c2",
    "azurerm_private_dns_a_record": "website/docs/r/private_dns_a_record.html.markdown @ 36277f682ca5643bf1e4823b1b3ef4ac07fa03ab",
    "azurerm_user_assigned_identity": "website/docs/r/user_assigned_identity.html.markdown @ d559dfa209527f1bc15f0e15d7272007a2de1229",
    "azurerm_key_vault": "website/docs/r/key_vault.html.markdown @ 000eff94f646f445f7368f5d7e25b54e724e6963 (the 4.x page "
                         "without soft_delete_enabled; enable_rbac_authorization is valid in every 4.x release, its "
                         "successor rbac_authorization_enabled was not found in a page the index holds at a known "
                         "release, so the older name is used)",
    "azurerm_key_vault_secret": "website/docs/r/key_vault_secret.html.markdown @ 018f2cac7e5d431f84075fb74decd5fe148af423",
    "azurerm_role_assignment": "internal/services/authorization/role_assignment_resource.go schema (search-index file id "
                               "1603895283: principal_type, description, condition; the stored docs pages @ 43720719 and "
                               "0238dbd7 predate them)",
    "azurerm_container_app_environment":
        "internal/services/containerapps/container_app_environment_resource.go Arguments() @ "
        "3a0242807978f5edcbf8966018ff88719ccc0bf1; workload_profile: helpers/container_app_environment.go "
        "WorkloadProfileSchema (search-index file id 47919521426)",
    "azurerm_container_app":
        "internal/services/containerapps/container_app_resource.go Arguments() (search-index file id 677515745) and "
        "helpers/container_apps.go @ eeaec7555b25bc322c476b27a02405b6b2497b8d (template, container, probes, "
        "ingress, secret with key_vault_secret_id and identity, volume storage_type from the SDK's StorageType "
        "values, http_scale_rule); the stored page @ 0134cc695e2c is a 3.x page",
    "time_rotating": "hashicorp/terraform-provider-time docs/resources/rotating.md @ 004bea5d17599ffdc799b17bfbafbaa970bf55cd",
    "data.azurerm_client_config": "website/docs/d/client_config.html.markdown (not read here: a data source that takes "
                                  "no argument and exports tenant_id and object_id, which is all that is used)",
    "data.azurerm_storage_account_blob_container_sas":
        "website/docs/d/storage_account_blob_container_sas.html.markdown @ 00050b51fbaf2851ce7f265a9866f2e30a77fbca",
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
    "azurerm_virtual_network": _b(
        "name resource_group_name address_space location bgp_community ddos_protection_plan dns_servers "
        "subnet vm_protection_enabled tags", SOURCES["azurerm_virtual_network"]),
    "azurerm_subnet": _b(
        "name resource_group_name virtual_network_name address_prefixes delegation service_endpoints "
        "service_endpoint_policy_ids", SOURCES["azurerm_subnet"],
        delegation=_b("name service_delegation", service_delegation=_b("name actions"))),
    "azurerm_private_dns_zone": _b("name resource_group_name tags", SOURCES["azurerm_private_dns_zone"]),
    "azurerm_private_dns_zone_virtual_network_link": _b(
        "name private_dns_zone_name resource_group_name virtual_network_id registration_enabled tags",
        SOURCES["azurerm_private_dns_zone_virtual_network_link"]),
    "azurerm_private_dns_a_record": _b("name resource_group_name zone_name ttl records tags",
                                       SOURCES["azurerm_private_dns_a_record"]),
    "azurerm_user_assigned_identity": _b("location name resource_group_name tags",
                                         SOURCES["azurerm_user_assigned_identity"]),
    "azurerm_key_vault": _b(
        "name location resource_group_name sku_name tenant_id access_policy enabled_for_deployment "
        "enabled_for_disk_encryption enabled_for_template_deployment enable_rbac_authorization network_acls "
        "purge_protection_enabled soft_delete_retention_days contact tags", SOURCES["azurerm_key_vault"]),
    "azurerm_key_vault_secret": _b(
        "name value key_vault_id content_type tags not_before_date expiration_date",
        SOURCES["azurerm_key_vault_secret"]),
    "azurerm_role_assignment": _b(
        "name scope role_definition_id role_definition_name principal_id principal_type "
        "skip_service_principal_aad_check delegated_managed_identity_resource_id description condition "
        "condition_version", SOURCES["azurerm_role_assignment"]),
    "azurerm_container_app_environment": _b(
        "name location resource_group_name dapr_application_insights_connection_string log_analytics_workspace_id "
        "logs_destination infrastructure_resource_group_name infrastructure_subnet_id internal_load_balancer_enabled "
        "workload_profile zone_redundancy_enabled mutual_tls_enabled tags",
        SOURCES["azurerm_container_app_environment"],
        workload_profile=_b("name workload_profile_type maximum_count minimum_count")),
    "azurerm_container_app": _b(
        "name resource_group_name container_app_environment_id template revision_mode ingress registry secret "
        "dapr identity workload_profile_name max_inactive_revisions tags", SOURCES["azurerm_container_app"],
        identity=_b("type identity_ids"),
        secret=_b("identity key_vault_secret_id name value"),
        ingress=_b(
            "allow_insecure_connections external_enabled custom_domain fqdn ip_security_restriction target_port "
            "exposed_port traffic_weight transport client_certificate_mode",
            traffic_weight=_b("label revision_suffix latest_revision percentage")),
        template=_b(
            "container init_container min_replicas max_replicas azure_queue_scale_rule custom_scale_rule "
            "http_scale_rule tcp_scale_rule volume revision_suffix termination_grace_period_seconds",
            http_scale_rule=_b("name concurrent_requests authentication"),
            volume=_b("name storage_type storage_name mount_options"),
            container=_b(
                "name image cpu memory ephemeral_storage env args command liveness_probe readiness_probe "
                "startup_probe volume_mounts",
                env=_b("name value secret_name"),
                volume_mounts=_b("name path sub_path"),
                readiness_probe=_b("transport port host path header initial_delay interval_seconds timeout "
                                   "failure_count_threshold success_count_threshold"),
                liveness_probe=_b("transport port host path header initial_delay interval_seconds timeout "
                                  "failure_count_threshold"),
                startup_probe=_b("transport port host path header initial_delay interval_seconds timeout "
                                 "failure_count_threshold")))),
    "time_rotating": _b("rfc3339 rotation_days rotation_hours rotation_minutes rotation_months rotation_rfc3339 "
                        "rotation_years triggers", SOURCES["time_rotating"]),
    "data.azurerm_client_config": _b("", SOURCES["data.azurerm_client_config"]),
    "data.azurerm_storage_account_blob_container_sas": _b(
        "connection_string container_name https_only ip_address start expiry permissions cache_control "
        "content_disposition content_encoding content_language content_type",
        SOURCES["data.azurerm_storage_account_blob_container_sas"],
        permissions=_b("read add create write delete list")),
}

# Meta-arguments and blocks every resource takes (Terraform's, not the provider's).
META_ARGUMENTS = frozenset({"count", "for_each", "depends_on", "provider", "lifecycle"})
