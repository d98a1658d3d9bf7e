"""Core's use cases: one unit of work per call, tenancy, idempotency, audit."""
