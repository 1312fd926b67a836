"""App settings that are not valid (deprecated, replaced by a property of the app, or unsupported)
on a Flex Consumption app, with where each was read. tests/test_deploy_terraform.py checks every
app setting of deploy/terraform against this list.

Microsoft keeps the list in "Flex Consumption plan deprecations" (``DEPRECATIONS_URL``). The search
index holds only the head of that page, so the rows were read where they are quoted: the
unsupported ones in Microsoft's own Flex Consumption plan article (MicrosoftDocs/azure-docs,
articles/azure-functions/flex-consumption-plan.md, search-index file id 4648076174: "Certificates"
and "Timezones"), and the deprecation table's rows as quoted with its URL by
microsoft/azure-skills' Flex Bicep reference (search-index file id 69533943035), by a Flex settings
lint rule's documentation (file id 61073079144), and by a Flex migration runbook (file id
70150356434). A setting is listed when one of these names it; the replacement says what to use.
"""
from __future__ import annotations

DEPRECATIONS_URL = "https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations"
PLAN_URL = "https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan"

# setting -> what replaces it on Flex Consumption
NOT_VALID_ON_FLEX = {
    "FUNCTIONS_EXTENSION_VERSION": "set by the platform",
    "FUNCTIONS_WORKER_RUNTIME": "functionAppConfig.runtime.name (runtime_name)",
    "FUNCTIONS_WORKER_RUNTIME_VERSION": "functionAppConfig.runtime.version (runtime_version)",
    "FUNCTIONS_WORKER_PROCESS_COUNT": "not valid; per-instance concurrency is the platform's (http_concurrency)",
    "SCM_DO_BUILD_DURING_DEPLOYMENT": "the remote build parameter of the deployment",
    "ENABLE_ORYX_BUILD": "the remote build parameter of the deployment",
    "WEBSITE_RUN_FROM_PACKAGE": "functionAppConfig.deployment (the deployment blob container)",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING": "functionAppConfig.deployment (no content share)",
    "WEBSITE_CONTENTSHARE": "functionAppConfig.deployment (no content share)",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT": "functionAppConfig.scaleAndConcurrency (maximum_instance_count)",
    "WEBSITE_VNET_ROUTE_ALL": "the site's networking properties",
    "WEBSITE_MOUNT_ENABLED": "not valid",
    "WEBSITE_USE_PLACEHOLDER_DOTNETISOLATED": "not valid",
    "WEBSITES_CONTAINER_START_TIME_LIMIT": "not supported",
    "WEBSITE_TIME_ZONE": "not supported (flex-consumption-plan.md, Timezones)",
    "TZ": "not supported (flex-consumption-plan.md, Timezones)",
    "WEBSITE_LOAD_CERTIFICATES": "not supported (flex-consumption-plan.md, Certificates)",
}
