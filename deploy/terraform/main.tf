locals {
  # The Function App's VNet-integration subnet, from its ID
  # (/subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<name>).
  integration_subnet = var.vnet_integration_subnet_id == null ? [] : [split("/", var.vnet_integration_subnet_id)]
  # What the OVMS NetworkPolicy admits (k8s_params_env); 192.0.2.0/32 (TEST-NET-1) admits nothing
  # when the app has no VNet integration and so cannot reach a private load balancer anyway.
  function_subnet_cidr = length(data.azurerm_subnet.integration) > 0 ? data.azurerm_subnet.integration[0].address_prefixes[0] : "192.0.2.0/32"

  # Storage account names: 3-24 lower-case letters/digits, globally unique.
  storage_account_name = "${var.name_prefix}ovaas${substr(md5(var.resource_group_name), 0, 6)}"

  # Every setting the app reads (README "Settings"; tests/test_deploy_consistency.py checks this
  # list against shared/). Keys are spelled out so the list can be read and checked as is.
  app_settings = {
    OVMS_API                     = "kserve"
    OVMS_TIMEOUT_SECONDS         = tostring(var.ovms_timeout_seconds)
    OVMS_CONNECT_TIMEOUT_SECONDS = tostring(var.ovms_connect_timeout_seconds)
    OVMS_METADATA_TTL_SECONDS    = tostring(var.ovms_metadata_ttl_seconds)
    OVMS_TLS                     = "false"
    OVMS_TLS_CA_FILE             = ""
    HEALTH_CACHE_SECONDS         = tostring(var.health_cache_seconds)
    MAX_BODY_BYTES               = tostring(var.max_body_bytes)
    MAX_IMAGE_PIXELS             = tostring(var.max_image_pixels)
    MAX_IMAGE_SIDE               = tostring(var.max_image_side)

    # az:// side files live in the same account as the models (container ovms).
    AZURE_STORAGE_CONNECTION_STRING = azurerm_storage_account.main.primary_connection_string
    AZURE_STORAGE_ACCOUNT_URL       = azurerm_storage_account.main.primary_blob_endpoint
    HANDWRITTEN_CHARLIST_PATH       = "az://${azurerm_storage_container.models.name}/${var.model_names["HANDWRITTEN"]}/kondate_nakayosi.txt"
    HANDWRITTEN_FONT_PATH           = var.handwritten_font_path
    COLORIZATION_COEFFICIENTS_PATH  = "az://${azurerm_storage_container.models.name}/${var.model_names["COLORIZATION"]}/colorization-v2.npy"
    OBJECTDETECTION_LABELS_PATH     = var.objectdetection_labels_path

    HUMANPOSE_IPADDRESS       = lookup(var.ovms_hosts, "HUMANPOSE", "")
    HUMANPOSE_PORT            = tostring(var.ovms_port)
    HUMANPOSE_MODEL_NAME      = var.model_names["HUMANPOSE"]
    HUMANPOSE_MODEL_VERSION   = var.model_version
    HUMANPOSE_OVMS_API        = "kserve"
    HUMANPOSE_TIMEOUT_SECONDS = tostring(var.model_timeout_seconds["HUMANPOSE"])
    HUMANPOSE_TLS             = "false"

    HANDWRITTEN_IPADDRESS       = lookup(var.ovms_hosts, "HANDWRITTEN", "")
    HANDWRITTEN_PORT            = tostring(var.ovms_port)
    HANDWRITTEN_MODEL_NAME      = var.model_names["HANDWRITTEN"]
    HANDWRITTEN_MODEL_VERSION   = var.model_version
    HANDWRITTEN_OVMS_API        = "kserve"
    HANDWRITTEN_TIMEOUT_SECONDS = tostring(var.model_timeout_seconds["HANDWRITTEN"])
    HANDWRITTEN_TLS             = "false"

    COLORIZATION_IPADDRESS       = lookup(var.ovms_hosts, "COLORIZATION", "")
    COLORIZATION_PORT            = tostring(var.ovms_port)
    COLORIZATION_MODEL_NAME      = var.model_names["COLORIZATION"]
    COLORIZATION_MODEL_VERSION   = var.model_version
    COLORIZATION_OVMS_API        = "kserve"
    COLORIZATION_TIMEOUT_SECONDS = tostring(var.model_timeout_seconds["COLORIZATION"])
    COLORIZATION_TLS             = "false"

    OBJECTDETECTION_IPADDRESS       = lookup(var.ovms_hosts, "OBJECTDETECTION", "")
    OBJECTDETECTION_PORT            = tostring(var.ovms_port)
    OBJECTDETECTION_MODEL_NAME      = var.model_names["OBJECTDETECTION"]
    OBJECTDETECTION_MODEL_VERSION   = var.model_version
    OBJECTDETECTION_OVMS_API        = "kserve"
    OBJECTDETECTION_TIMEOUT_SECONDS = tostring(var.model_timeout_seconds["OBJECTDETECTION"])
    OBJECTDETECTION_TLS             = "false"

    # One worker thread per request the platform may send to an instance (http_concurrency): the
    # handlers are synchronous, so each request in flight holds one thread of the instance's one
    # Python worker process. Fewer threads would queue admitted requests inside the worker, where
    # the platform's scaling cannot see them; more would never be used. (FUNCTIONS_WORKER_PROCESS_COUNT
    # is not valid on Flex Consumption, tests/flex_settings.py.)
    PYTHON_THREADPOOL_THREAD_COUNT = tostring(var.http_concurrency)
  }
}

data "azurerm_subnet" "integration" {
  count                = length(local.integration_subnet)
  resource_group_name  = local.integration_subnet[0][4]
  virtual_network_name = local.integration_subnet[0][8]
  name                 = local.integration_subnet[0][10]
}

resource "azurerm_resource_group" "main" {
  name     = var.resource_group_name
  location = var.location
  tags     = var.tags
}

# One account: models and side files (container "ovms", read by OVMS and the app through az://)
# and the Flex Consumption deployment package (container "app-package").
resource "azurerm_storage_account" "main" {
  #checkov:skip=CKV2_AZURE_40:OVMS (az://) and the app's side-file reader authenticate with a connection string; shared keys must stay enabled
  #checkov:skip=CKV2_AZURE_33:Private endpoints depend on the team's network layout (VNet, DNS zones); not created here
  #checkov:skip=CKV_AZURE_59:Public endpoint kept so OVMS outside the VNet (and uploads from a workstation) can reach the models; access needs the account key
  #checkov:skip=CKV_AZURE_33:No queues are used (the Queue service logging check does not apply)
  #checkov:skip=CKV_AZURE_206:ZRS by default (variable); geo-replication is a cost choice for re-creatable model files
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; customer-managed keys need a Key Vault the team owns
  name                            = local.storage_account_name
  resource_group_name             = azurerm_resource_group.main.name
  location                        = azurerm_resource_group.main.location
  account_tier                    = "Standard"
  account_replication_type        = var.storage_replication_type
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = true
  local_user_enabled              = false

  # SAS tokens handed out for uploads expire within a day.
  sas_policy {
    expiration_period = "01.00:00:00"
  }

  blob_properties {
    versioning_enabled = true
    delete_retention_policy {
      days = 7
    }
    container_delete_retention_policy {
      days = 7
    }
  }

  tags = var.tags
}

resource "azurerm_storage_container" "models" {
  #checkov:skip=CKV2_AZURE_21:Blob read logging goes through a diagnostic setting chosen by the team's monitoring policy (cost)
  name                  = "ovms"
  storage_account_id    = azurerm_storage_account.main.id
  container_access_type = "private"
}

resource "azurerm_storage_container" "package" {
  #checkov:skip=CKV2_AZURE_21:Blob read logging goes through a diagnostic setting chosen by the team's monitoring policy (cost)
  name                  = "app-package"
  storage_account_id    = azurerm_storage_account.main.id
  container_access_type = "private"
}

resource "azurerm_log_analytics_workspace" "main" {
  name                = "${var.name_prefix}-ovaas-logs"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = var.tags
}

resource "azurerm_application_insights" "main" {
  name                = "${var.name_prefix}-ovaas-ai"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  workspace_id        = azurerm_log_analytics_workspace.main.id
  application_type    = "web"
  tags                = var.tags
}

resource "azurerm_service_plan" "main" {
  #checkov:skip=CKV_AZURE_212:Flex Consumption scales instances itself (maximum_instance_count); a minimum worker count does not apply
  #checkov:skip=CKV_AZURE_225:Zone redundancy is not a setting of the FC1 (Flex Consumption) plan resource
  name                = "${var.name_prefix}-ovaas-plan"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  os_type             = "Linux"
  sku_name            = "FC1"
  tags                = var.tags
}

resource "azurerm_function_app_flex_consumption" "main" {
  name                = "${var.name_prefix}-ovaas-func"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  service_plan_id     = azurerm_service_plan.main.id

  runtime_name    = "python"
  runtime_version = "3.11"

  storage_container_type      = "blobContainer"
  storage_container_endpoint  = "${azurerm_storage_account.main.primary_blob_endpoint}${azurerm_storage_container.package.name}"
  storage_authentication_type = "StorageAccountConnectionString"
  storage_access_key          = azurerm_storage_account.main.primary_access_key

  instance_memory_in_mb  = var.instance_memory_mb
  maximum_instance_count = var.maximum_instance_count
  # Requests the platform sends to one instance before it adds another (Flex's per-instance HTTP
  # concurrency), set here rather than with `az functionapp scale config set`, which Terraform
  # would then fight on the next apply.
  http_concurrency = var.http_concurrency

  dynamic "always_ready" {
    for_each = var.always_ready_instances > 0 ? [1] : []
    content {
      name           = "http"
      instance_count = var.always_ready_instances
    }
  }

  https_only                                     = true
  public_network_access_enabled                  = true
  webdeploy_publish_basic_authentication_enabled = false
  virtual_network_subnet_id                      = var.vnet_integration_subnet_id

  identity {
    type = "SystemAssigned"
  }

  site_config {
    application_insights_connection_string = azurerm_application_insights.main.connection_string
    minimum_tls_version                    = "1.2"
    http2_enabled                          = true
    cors {
      allowed_origins     = var.frontend_origins
      support_credentials = false
    }
  }

  app_settings = local.app_settings
  tags         = var.tags

  lifecycle {
    precondition {
      # Flex Consumption's regional quota: 512,000 MB of instance memory per subscription and region,
      # shared by every Flex app there (Microsoft's Flex Consumption plan docs).
      condition     = var.maximum_instance_count * var.instance_memory_mb <= 512000
      error_message = "maximum_instance_count x instance_memory_mb exceeds the region's Flex Consumption quota (512,000 MB per subscription and region)."
    }
  }
}
