"""The core service: policyholders, products, policies and claims (``cardinsa.core.v1``)."""
