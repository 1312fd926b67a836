output "function_app_name" {
  description = "For: func azure functionapp publish <name>"
  value       = azurerm_function_app_flex_consumption.main.name
}

output "function_app_url" {
  description = "Base URL of the endpoints (append /api/HttpTrigger...; they take a function key)."
  value       = "https://${azurerm_function_app_flex_consumption.main.default_hostname}"
}

output "function_key_command" {
  description = "The command that prints the app's default function key (x-functions-key header or ?code=)."
  value = join(" ", [
    "az functionapp keys list",
    "--resource-group ${azurerm_resource_group.main.name}",
    "--name ${azurerm_function_app_flex_consumption.main.name}",
    "--query functionKeys.default --output tsv",
  ])
}

output "storage_account_name" {
  description = "Holds container ovms (models + side files): python -m scripts.tooling.upload --account-name <this> --auth-mode login."
  value       = azurerm_storage_account.main.name
}

output "ovms_address" {
  description = "The model server as the Function App reaches it: TLS on 443 at the container app's FQDN (resolves only inside the VNet)."
  value       = "${azurerm_container_app.ovms.ingress[0].fqdn}:${local.ovms_ingress_port}"
}

output "k8s_params_env" {
  description = "Already on Kubernetes: deploy/k8s/<kserve|plain>/params.env, the values kustomize fills into the manifests."
  value = join("", [
    "STORAGE_BLOB_HOST=${azurerm_storage_account.main.primary_blob_host}\n",
    "FUNCTION_SUBNET_CIDR=${azurerm_subnet.functions.address_prefixes[0]}\n",
  ])
}

output "plain_storage_env" {
  description = "Already on Kubernetes: deploy/k8s/plain/storage.env, the read-only SAS connection string OVMS reads az:// paths with."
  value       = "AZURE_STORAGE_CONNECTION_STRING=${azurerm_key_vault_secret.ovms_storage.value}\n"
  sensitive   = true
}

output "kserve_storage_env" {
  description = "Already on Kubernetes: deploy/k8s/kserve/storage.env; KServe's storage initializer reads the account key."
  value       = "AZURE_STORAGE_ACCESS_KEY=${azurerm_storage_account.main.primary_access_key}\n"
  sensitive   = true
}
