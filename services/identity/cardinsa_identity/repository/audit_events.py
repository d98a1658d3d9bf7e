"""Identity's audit log as ListAuditEvents reads it (platform admins read every company's)."""

from __future__ import annotations

from cardinsa_foundation.audit import AuditLog
from cardinsa_identity.repository.models import AuditEventRow

__all__ = ["AUDIT_LOG"]

AUDIT_LOG = AuditLog(AuditEventRow, across_companies=True)
