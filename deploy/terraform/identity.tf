# Who may read what, with Entra ID roles instead of keys. tests/test_deploy_consistency.py checks
# that each identity holds the role its reads need.

# The Function App's system-assigned identity on the storage account:
# - host storage (AzureWebJobsStorage__accountName): Storage Blob Data Owner, the role
#   Microsoft's identity-based host storage docs name for the Functions host;
# - the deployment package container (storage_authentication_type = SystemAssignedIdentity):
#   Storage Blob Data Contributor or more, per the Flex Consumption docs (Owner includes it);
# - the side files (az://ovms/..., DefaultAzureCredential): read, which both include.
resource "azurerm_role_assignment" "function_storage" {
  scope                = azurerm_storage_account.main.id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = azurerm_function_app_flex_consumption.main.identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Functions host storage, Flex deployment package and side files, by identity"
}

# The OVMS container app's user-assigned identity reads its one secret (the SAS connection
# string) from Key Vault. User-assigned, so the role exists before the app is created.
resource "azurerm_role_assignment" "ovms_secrets" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.ovms.principal_id
  principal_type       = "ServicePrincipal"
  description          = "OVMS reads its storage connection string (read-only SAS) from Key Vault"
}

# Whoever runs `terraform apply` writes that secret, and uploads the models with
# `--auth-mode login` (README "Deploy to Azure in one command").
resource "azurerm_role_assignment" "deployer_secrets" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
  description          = "terraform apply writes the OVMS storage secret"
}

resource "azurerm_role_assignment" "deployer_blobs" {
  scope                = azurerm_storage_account.main.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = data.azurerm_client_config.current.object_id
  description          = "The model upload with the deployer's Azure CLI login (--auth-mode login)"
}
