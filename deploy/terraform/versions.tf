# OVaaS backend on Azure Functions (Flex Consumption), Terraform with the azurerm provider.
# azurerm_function_app_flex_consumption exists from azurerm 4.x; pin the major version.
terraform {
  required_version = ">= 1.6"
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.20"
    }
  }
}

provider "azurerm" {
  features {}
}
