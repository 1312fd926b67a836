output "function_app_name" {
  description = "For: func azure functionapp publish <name>"
  value       = azurerm_function_app_flex_consumption.main.name
}

output "function_app_url" {
  description = "Base URL of the endpoints (append /api/HttpTrigger...)."
  value       = "https://${azurerm_function_app_flex_consumption.main.default_hostname}"
}

output "storage_account_name" {
  description = "Holds container ovms (models + side files): upload with scripts/UploadModelFilesToAzureStorage.py."
  value       = azurerm_storage_account.main.name
}

output "models_blob_url" {
  description = "KServe storageUri base: <models_blob_url>/<model-name> (deploy/k8s/kserve)."
  value       = "${azurerm_storage_account.main.primary_blob_endpoint}${azurerm_storage_container.models.name}"
}

output "storage_connection_string" {
  description = "For OVMS (az://) and the upload script; keep it secret."
  value       = azurerm_storage_account.main.primary_connection_string
  sensitive   = true
}
