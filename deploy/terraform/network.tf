# One virtual network, two delegated subnets: the Function App's outbound (VNet integration) and
# the Container Apps environment that runs OVMS. The environment's load balancer is internal, so
# OVMS has no public address; the Function App reaches it through the VNet by the environment's
# default domain, which a private DNS zone linked to the VNet resolves to the environment's
# static (private) IP.

resource "azurerm_virtual_network" "main" {
  name                = "${var.name_prefix}-ovaas-vnet"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  address_space       = [var.vnet_address_space]
  tags                = var.tags
}

# Flex Consumption VNet integration: a subnet delegated to Microsoft.App/environments (Microsoft's
# Flex Consumption networking docs), used by this app only.
resource "azurerm_subnet" "functions" {
  #checkov:skip=CKV2_AZURE_31:A delegated integration subnet carries only the Function App's outbound traffic; an NSG is the team's network policy to add
  name                 = "functions"
  resource_group_name  = azurerm_resource_group.main.name
  virtual_network_name = azurerm_virtual_network.main.name
  address_prefixes     = [cidrsubnet(var.vnet_address_space, 8, 0)]

  delegation {
    name = "flex-consumption"
    service_delegation {
      name    = "Microsoft.App/environments"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }
}

# A workload-profiles Container Apps environment takes a subnet of /27 or larger delegated to
# Microsoft.App/environments (Container Apps networking docs); /24 leaves room to scale out.
resource "azurerm_subnet" "ovms" {
  #checkov:skip=CKV2_AZURE_31:The Container Apps platform manages the environment subnet's traffic; an NSG is the team's network policy to add
  name                 = "ovms"
  resource_group_name  = azurerm_resource_group.main.name
  virtual_network_name = azurerm_virtual_network.main.name
  address_prefixes     = [cidrsubnet(var.vnet_address_space, 8, 1)]

  delegation {
    name = "container-apps"
    service_delegation {
      name    = "Microsoft.App/environments"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }
}

# The environment's default domain, resolved inside the VNet: every app of the environment is
# <app>.<default_domain>, all on the environment's static IP.
resource "azurerm_private_dns_zone" "ovms" {
  name                = azurerm_container_app_environment.ovms.default_domain
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "ovms" {
  name                  = "${var.name_prefix}-ovaas-ovms-dns"
  resource_group_name   = azurerm_resource_group.main.name
  private_dns_zone_name = azurerm_private_dns_zone.ovms.name
  virtual_network_id    = azurerm_virtual_network.main.id
  registration_enabled  = false
  tags                  = var.tags
}

resource "azurerm_private_dns_a_record" "ovms_wildcard" {
  name                = "*"
  zone_name           = azurerm_private_dns_zone.ovms.name
  resource_group_name = azurerm_resource_group.main.name
  ttl                 = 300
  records             = [azurerm_container_app_environment.ovms.static_ip_address]
  tags                = var.tags
}

resource "azurerm_private_dns_a_record" "ovms_apex" {
  name                = "@"
  zone_name           = azurerm_private_dns_zone.ovms.name
  resource_group_name = azurerm_resource_group.main.name
  ttl                 = 300
  records             = [azurerm_container_app_environment.ovms.static_ip_address]
  tags                = var.tags
}
