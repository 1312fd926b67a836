# OpenVINO Model Server on Azure Container Apps, beside the Function App in the same VNet.
#
# OVMS serves plain gRPC on 9000; the environment's ingress terminates TLS on 443 and carries
# gRPC to it over HTTP/2 (transport http2). The ingress is *external*, which in an environment
# with an internal load balancer means "on the environment's private IP": reachable from the VNet
# (the Function App's integration subnet), not from the internet. An *internal* ingress would be
# reachable only from apps of the same environment, which the Function App is not.
#
# Models: OVMS reads az:// paths with AZURE_STORAGE_CONNECTION_STRING (its legacy Azure Storage
# SDK takes no Entra ID token). That string is the only secret left: a read+list SAS on the
# "ovms" container (no account key), kept in Key Vault and read by the container app's own
# identity; it is renewed by `terraform apply` once time_rotating passes its rotation date.

locals {
  # The app's config.json as the Kubernetes variant ships it: every model pinned to f32 on CPU
  # (deploy/k8s/plain/config.json; tests/test_deploy_consistency.py checks it against
  # models/config.json). OVMS reads its config only from a local file, so the file is a
  # container-app secret mounted as a volume (a Secret volume names each file after its secret;
  # secret names take no dot, hence config-json).
  ovms_config_json = file("${path.module}/../k8s/plain/config.json")
  ovms_config_path = "/config/config-json"
  ovms_grpc_port   = 9000
  ovms_rest_port   = 8080
  # The app reaches OVMS on the ingress: TLS on 443 at <app>.<environment default domain>.
  ovms_ingress_port = 443
  ovms_sas_expiry   = timeadd(time_rotating.ovms_sas.rfc3339, "${var.ovms_sas_valid_days * 24}h")
}

resource "azurerm_user_assigned_identity" "ovms" {
  name                = "${var.name_prefix}-ovaas-ovms-id"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  tags                = var.tags
}

resource "azurerm_key_vault" "main" {
  #checkov:skip=CKV_AZURE_189:The Container Apps platform resolves Key Vault references from outside the VNet; access is Entra ID RBAC only
  #checkov:skip=CKV_AZURE_109:Network ACLs would block the Container Apps platform's Key Vault reference; access is Entra ID RBAC only
  #checkov:skip=CKV2_AZURE_32:A private endpoint needs the team's DNS layout for privatelink zones; access is Entra ID RBAC only
  name                       = "${var.name_prefix}ovaas${substr(md5(var.resource_group_name), 0, 6)}"
  resource_group_name        = azurerm_resource_group.main.name
  location                   = azurerm_resource_group.main.location
  tenant_id                  = data.azurerm_client_config.current.tenant_id
  sku_name                   = "standard"
  enable_rbac_authorization  = true
  purge_protection_enabled   = true
  soft_delete_retention_days = 7
  tags                       = var.tags
}

# Rotates the SAS: a new one is signed on the first apply after the rotation date, valid
# ovms_sas_valid_days from then (the rotation comes ovms_sas_rotate_days in, before expiry).
resource "time_rotating" "ovms_sas" {
  rotation_days = var.ovms_sas_rotate_days
}

data "azurerm_storage_account_blob_container_sas" "ovms" {
  connection_string = azurerm_storage_account.main.primary_connection_string
  container_name    = azurerm_storage_container.models.name
  https_only        = true
  start             = time_rotating.ovms_sas.rfc3339
  expiry            = local.ovms_sas_expiry

  # what OVMS needs of a model repository: read and list (its cloud storage docs)
  permissions {
    read   = true
    list   = true
    add    = false
    create = false
    write  = false
    delete = false
  }
}

resource "azurerm_key_vault_secret" "ovms_storage" {
  name            = "ovms-storage-connection"
  key_vault_id    = azurerm_key_vault.main.id
  content_type    = "Azure Storage connection string (read+list SAS on container ovms)"
  expiration_date = local.ovms_sas_expiry
  value = join(";", [
    "BlobEndpoint=${azurerm_storage_account.main.primary_blob_endpoint}",
    "SharedAccessSignature=${trimprefix(data.azurerm_storage_account_blob_container_sas.ovms.sas, "?")}",
  ])

  depends_on = [azurerm_role_assignment.deployer_secrets]
}

resource "azurerm_container_app_environment" "ovms" {
  name                           = "${var.name_prefix}-ovaas-env"
  resource_group_name            = azurerm_resource_group.main.name
  location                       = azurerm_resource_group.main.location
  log_analytics_workspace_id     = azurerm_log_analytics_workspace.main.id
  infrastructure_subnet_id       = azurerm_subnet.ovms.id
  internal_load_balancer_enabled = true
  tags                           = var.tags

  # Consumption profile: billed per replica-second, nothing for the environment itself.
  workload_profile {
    name                  = "Consumption"
    workload_profile_type = "Consumption"
  }
}

resource "azurerm_container_app" "ovms" {
  name                         = "${var.name_prefix}-ovaas-ovms"
  resource_group_name          = azurerm_resource_group.main.name
  container_app_environment_id = azurerm_container_app_environment.ovms.id
  revision_mode                = "Single"
  workload_profile_name        = "Consumption"
  tags                         = var.tags

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.ovms.id]
  }

  secret {
    name                = "storage-connection"
    key_vault_secret_id = azurerm_key_vault_secret.ovms_storage.versionless_id
    identity            = azurerm_user_assigned_identity.ovms.id
  }

  secret {
    name  = "config-json"
    value = local.ovms_config_json
  }

  ingress {
    external_enabled           = true
    target_port                = local.ovms_grpc_port
    transport                  = "http2"
    allow_insecure_connections = false
    traffic_weight {
      latest_revision = true
      percentage      = 100
    }
  }

  template {
    # One replica always: OVMS loads the four models from Blob before it is ready (tens of
    # seconds), longer than a request waits for a connection (OVMS_CONNECT_TIMEOUT_SECONDS), so
    # scaling to zero would answer the first requests after a quiet spell with 503s.
    min_replicas = var.ovms_min_replicas
    max_replicas = var.ovms_max_replicas

    # Concurrent gRPC calls per replica before another starts: the inferences one replica runs
    # at full speed (variable description).
    http_scale_rule {
      name                = "inflight-inferences"
      concurrent_requests = tostring(var.ovms_concurrent_requests)
    }

    # A Secret volume holds every secret of the app as a file (the provider has no per-secret
    # selection): /config/config-json, and /config/storage-connection, readable only inside the
    # container, which has that value in its environment anyway.
    volume {
      name         = "config"
      storage_type = "Secret"
    }

    container {
      name   = "ovms"
      image  = var.ovms_image
      cpu    = var.ovms_cpu
      memory = var.ovms_memory
      # scripts/tooling/ovms.py's launch (--port, --log_level, --file_system_poll_wait_seconds),
      # plus the REST port the readiness probe reads (as deploy/k8s/plain does)
      args = [
        "--config_path", local.ovms_config_path,
        "--port", tostring(local.ovms_grpc_port),
        "--rest_port", tostring(local.ovms_rest_port),
        "--log_level", "INFO",
        "--file_system_poll_wait_seconds", "0",
      ]

      env {
        name        = "AZURE_STORAGE_CONNECTION_STRING"
        secret_name = "storage-connection"
      }

      volume_mounts {
        name = "config"
        path = "/config"
      }

      # Ready once every model is loaded (KServe v2 server readiness), as in deploy/k8s.
      readiness_probe {
        transport               = "HTTP"
        port                    = local.ovms_rest_port
        path                    = "/v2/health/ready"
        interval_seconds        = 5
        failure_count_threshold = 3
        success_count_threshold = 1
      }

      liveness_probe {
        transport               = "HTTP"
        port                    = local.ovms_rest_port
        path                    = "/v2/health/live"
        interval_seconds        = 10
        failure_count_threshold = 3
      }

      # Model loading from Blob may take minutes on a cold replica: up to 30 x 10 s.
      startup_probe {
        transport               = "HTTP"
        port                    = local.ovms_rest_port
        path                    = "/v2/health/live"
        interval_seconds        = 10
        failure_count_threshold = 30
      }
    }
  }

  depends_on = [azurerm_role_assignment.ovms_secrets]
}
