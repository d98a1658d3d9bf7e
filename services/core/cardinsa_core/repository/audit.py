"""Core's audit log as ListAuditEvents reads it: one company's events only."""

from __future__ import annotations

from cardinsa_core.repository.models import AuditEventRow
from cardinsa_foundation.audit import AuditLog

__all__ = ["AUDIT_LOG"]

AUDIT_LOG = AuditLog(AuditEventRow, across_companies=False)
