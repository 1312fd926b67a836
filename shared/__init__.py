"""OVaaS backend: the package every HttpTrigger function imports."""
