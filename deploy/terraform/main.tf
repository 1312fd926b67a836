locals {
  # The memory arithmetic (README "Limits"): every request in flight on an instance may hold its
  # endpoint's peak at once, so instance memory >= resting size + concurrency x (a + b x megapixels
  # + body). The numbers are shared/catalog.py's (APP_RESTING_MB, the largest Endpoint.memory);
  # tests/test_memory_budget.py checks they agree.
  memory_resting_mb       = 350
  memory_peak_a_mb        = 40
  memory_peak_b_mb_per_mp = 9.0
  memory_required_mb      = local.memory_resting_mb + var.http_concurrency * (local.memory_peak_a_mb + local.memory_peak_b_mb_per_mp * var.max_image_pixels / 1000000 + var.max_body_bytes / 1048576)

  # Storage account names: 3-24 lower-case letters/digits, globally unique.
  storage_account_name = "${var.name_prefix}ovaas${substr(md5(var.resource_group_name), 0, 6)}"

  # Every model server address is the OVMS container app's ingress, from its attributes in this
  # same apply: TLS on 443 at its FQDN (the private DNS zone resolves it inside the VNet).
  ovms_address = {
    host = azurerm_container_app.ovms.ingress[0].fqdn
    port = tostring(local.ovms_ingress_port)
    tls  = azurerm_container_app.ovms.ingress[0].allow_insecure_connections ? "false" : "true"
  }

  # Every setting the app reads (README "Settings"; tests/test_deploy_consistency.py checks this
  # list against shared/). Keys are spelled out so the list can be read and checked as is.
  # No account key or connection string: host storage, the deployment package and the side files
  # are all reached with the app's managed identity (role assignments in identity.tf).
  app_settings = {
    OVMS_API                     = "kserve"
    OVMS_TIMEOUT_SECONDS         = tostring(var.ovms_timeout_seconds)
    OVMS_CONNECT_TIMEOUT_SECONDS = tostring(var.ovms_connect_timeout_seconds)
    OVMS_METADATA_TTL_SECONDS    = tostring(var.ovms_metadata_ttl_seconds)
    HEALTH_CACHE_SECONDS         = tostring(var.health_cache_seconds)
    MAX_BODY_BYTES               = tostring(var.max_body_bytes)
    MAX_IMAGE_PIXELS             = tostring(var.max_image_pixels)
    MAX_IMAGE_SIDE               = tostring(var.max_image_side)
    OVMS_TLS                     = local.ovms_address.tls
    # the ingress's certificate chains to a public root: the system's roots
    OVMS_TLS_CA_FILE = ""
    # The app's memory budget per instance (shared/budget.py): MEMORY_BUDGET_MB when set, else the
    # instance size less the app's resting size.
    MEMORY_BUDGET_MB   = var.memory_budget_mb == null ? "" : tostring(var.memory_budget_mb)
    INSTANCE_MEMORY_MB = tostring(var.instance_memory_mb)

    # Host storage through the managed identity (Microsoft's identity-based connection settings).
    # azurerm writes its own AzureWebJobsStorage from the storage arguments, with an empty
    # AccountKey when storage_authentication_type is an identity (provider issues 29149, 29693,
    # 30732); the empty value here replaces it (user settings win in the provider's merge), so
    # the host uses the __accountName connection.
    AzureWebJobsStorage              = ""
    AzureWebJobsStorage__accountName = azurerm_storage_account.main.name
    AzureWebJobsStorage__credential  = "managedidentity"

    # az:// side files live in the same account as the models (container ovms), read with the
    # app's identity (DefaultAzureCredential) from the account URL.
    AZURE_STORAGE_ACCOUNT_URL      = azurerm_storage_account.main.primary_blob_endpoint
    HANDWRITTEN_CHARLIST_PATH      = "az://${azurerm_storage_container.models.name}/${var.model_names["HANDWRITTEN"]}/kondate_nakayosi.txt"
    HANDWRITTEN_FONT_PATH          = var.handwritten_font_path
    COLORIZATION_COEFFICIENTS_PATH = "az://${azurerm_storage_container.models.name}/${var.model_names["COLORIZATION"]}/colorization-v2.npy"
    OBJECTDETECTION_LABELS_PATH    = var.objectdetection_labels_path

    HUMANPOSE_IPADDRESS       = local.ovms_address.host
    HUMANPOSE_PORT            = local.ovms_address.port
    HUMANPOSE_TLS             = local.ovms_address.tls
    HUMANPOSE_MODEL_NAME      = var.model_names["HUMANPOSE"]
    HUMANPOSE_MODEL_VERSION   = var.model_version
    HUMANPOSE_OVMS_API        = "kserve"
    HUMANPOSE_TIMEOUT_SECONDS = tostring(var.model_timeout_seconds["HUMANPOSE"])

    HANDWRITTEN_IPADDRESS       = local.ovms_address.host
    HANDWRITTEN_PORT            = local.ovms_address.port
    HANDWRITTEN_TLS             = local.ovms_address.tls
    HANDWRITTEN_MODEL_NAME      = var.model_names["HANDWRITTEN"]
    HANDWRITTEN_MODEL_VERSION   = var.model_version
    HANDWRITTEN_OVMS_API        = "kserve"
    HANDWRITTEN_TIMEOUT_SECONDS = tostring(var.model_timeout_seconds["HANDWRITTEN"])

    COLORIZATION_IPADDRESS       = local.ovms_address.host
    COLORIZATION_PORT            = local.ovms_address.port
    COLORIZATION_TLS             = local.ovms_address.tls
    COLORIZATION_MODEL_NAME      = var.model_names["COLORIZATION"]
    COLORIZATION_MODEL_VERSION   = var.model_version
    COLORIZATION_OVMS_API        = "kserve"
    COLORIZATION_TIMEOUT_SECONDS = tostring(var.model_timeout_seconds["COLORIZATION"])

    OBJECTDETECTION_IPADDRESS       = local.ovms_address.host
    OBJECTDETECTION_PORT            = local.ovms_address.port
    OBJECTDETECTION_TLS             = local.ovms_address.tls
    OBJECTDETECTION_MODEL_NAME      = var.model_names["OBJECTDETECTION"]
    OBJECTDETECTION_MODEL_VERSION   = var.model_version
    OBJECTDETECTION_OVMS_API        = "kserve"
    OBJECTDETECTION_TIMEOUT_SECONDS = tostring(var.model_timeout_seconds["OBJECTDETECTION"])

    # One worker thread per request the platform may send to an instance (http_concurrency): the
    # handlers are synchronous, so each request in flight holds one thread of the instance's one
    # Python worker process. Fewer threads would queue admitted requests inside the worker, where
    # the platform's scaling cannot see them; more would never be used. (FUNCTIONS_WORKER_PROCESS_COUNT
    # is not valid on Flex Consumption, tests/flex_settings.py.)
    PYTHON_THREADPOOL_THREAD_COUNT = tostring(var.http_concurrency)
  }
}

data "azurerm_client_config" "current" {}

resource "azurerm_resource_group" "main" {
  name     = var.resource_group_name
  location = var.location
  tags     = var.tags
}

# One account: models and side files (container "ovms", read by OVMS and the app through az://)
# and the Flex Consumption deployment package (container "app-package").
resource "azurerm_storage_account" "main" {
  #checkov:skip=CKV2_AZURE_40:The account key signs OVMS's read-only SAS (its SDK takes no Entra ID token) and KServe's storage initializer needs it; the Function App uses none
  #checkov:skip=CKV2_AZURE_33:Private endpoints depend on the team's network layout (privatelink DNS zones); not created here
  #checkov:skip=CKV_AZURE_59:Public endpoint kept for the upload from a workstation (az login) and the Container Apps platform; data access needs Entra ID roles or the SAS
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

  # The longest SAS the account expects: OVMS's (ovms.tf), renewed before it expires.
  sas_policy {
    expiration_period = "${var.ovms_sas_valid_days}.00:00:00"
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

  # The deployment package through the app's system-assigned identity (no key).
  storage_container_type      = "blobContainer"
  storage_container_endpoint  = "${azurerm_storage_account.main.primary_blob_endpoint}${azurerm_storage_container.package.name}"
  storage_authentication_type = "SystemAssignedIdentity"

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
  virtual_network_subnet_id                      = azurerm_subnet.functions.id

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
    precondition {
      # README "Limits": http_concurrency requests at the pixel and body limits must fit at once.
      condition     = var.instance_memory_mb >= local.memory_required_mb
      error_message = "instance_memory_mb is smaller than resting size + http_concurrency x the largest per-request peak at max_image_pixels and max_body_bytes (README \"Limits\"): raise instance_memory_mb, or lower http_concurrency or max_image_pixels."
    }
    precondition {
      condition     = var.memory_budget_mb == null || var.memory_budget_mb <= var.instance_memory_mb - local.memory_resting_mb
      error_message = "memory_budget_mb leaves the app less than its resting size on the instance (README \"Limits\")."
    }
  }
}
