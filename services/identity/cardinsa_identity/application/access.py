"""AccessService's use cases: roles and role bindings (application/roles.py),
service accounts and API keys (application/service_accounts.py); the pure rules
are in domain/access.py.

Tenancy: every query is scoped to the caller's company and row-level security
backs that up; an id that is malformed, missing or another company's gives the
same NOT_FOUND.
"""

from __future__ import annotations

from cardinsa_identity.application.roles import RoleUseCases
from cardinsa_identity.application.service_accounts import ServiceAccountUseCases

__all__ = ["AccessUseCases"]


class AccessUseCases(RoleUseCases, ServiceAccountUseCases):
    """Every use case of AccessService; one transaction per call, audited in it."""
