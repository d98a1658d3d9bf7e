"""The company service's audit log as ListAuditEvents reads it (platform admins
read every company's)."""

from __future__ import annotations

from cardinsa_company.repository.models import AuditEventRow
from cardinsa_foundation.audit import AuditLog

__all__ = ["AUDIT_LOG"]

AUDIT_LOG = AuditLog(AuditEventRow, across_companies=True)
