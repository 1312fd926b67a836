output "function_app_name" {
  description = "For: func azure functionapp publish <name>"
  value       = azurerm_function_app_flex_consumption.main.name
}

output "function_app_url" {
  description = "Base URL of the endpoints (append /api/HttpTrigger...)."
  value       = "https://${azurerm_function_app_flex_consumption.main.default_hostname}"
}

output "storage_account_name" {
  description = "Holds container ovms (models + side files)."
  value       = azurerm_storage_account.main.name
}

output "storage_connection_string" {
  description = "For the upload (python -m scripts.tooling.stack --upload-only); keep it secret."
  value       = azurerm_storage_account.main.primary_connection_string
  sensitive   = true
}

output "k8s_params_env" {
  description = "deploy/k8s/<kserve|plain>/params.env: the values kustomize fills into the manifests."
  value = join("", [
    "STORAGE_BLOB_HOST=${azurerm_storage_account.main.primary_blob_host}\n",
    "FUNCTION_SUBNET_CIDR=${local.function_subnet_cidr}\n",
  ])
}

output "plain_storage_env" {
  description = "deploy/k8s/plain/storage.env: OVMS reads az:// paths with this connection string."
  value       = "AZURE_STORAGE_CONNECTION_STRING=${azurerm_storage_account.main.primary_connection_string}\n"
  sensitive   = true
}

output "kserve_storage_env" {
  description = "deploy/k8s/kserve/storage.env: KServe's storage initializer reads the account key."
  value       = "AZURE_STORAGE_ACCESS_KEY=${azurerm_storage_account.main.primary_access_key}\n"
  sensitive   = true
}
