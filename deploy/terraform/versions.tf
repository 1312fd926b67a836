# OVaaS backend on Azure Functions (Flex Consumption) and OVMS on Azure Container Apps, Terraform
# with the azurerm provider. azurerm_function_app_flex_consumption first appears in 4.21.0;
# always_ready in 4.30.0, https_only in 4.31.0 and http_concurrency in 4.46.0 (the provider's
# CHANGELOG.md): 4.46 is the lowest release that accepts every argument used here.
# tests/terraform_docs.py holds the documented arguments each resource is checked against.
# hashicorp/time rotates OVMS's read-only SAS (time_rotating).
terraform {
  required_version = ">= 1.6"
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.46"
    }
    time = {
      source  = "hashicorp/time"
      version = "~> 0.9"
    }
  }
}

# azurerm 4.x needs the subscription: var.subscription_id, or ARM_SUBSCRIPTION_ID in the environment
# when it is null (README "Deploy to Azure in one command" exports it from `az account show`).
provider "azurerm" {
  features {}
  subscription_id = var.subscription_id
}
