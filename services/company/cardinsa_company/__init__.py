"""The company service: tenants, their lifecycle and settings, and their org structure."""
