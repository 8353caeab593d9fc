"""Reference control plane for the bootstrap_saas.provisioning collection (see docs/api.md)."""
