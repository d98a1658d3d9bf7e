"""Core's audit log in the database (written by the foundation's ``AuditWriter``)."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, select

from cardinsa_core.repository.models import AuditEventRow
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec

__all__ = ["AUDIT_FILTER", "audit_events"]

AUDIT_FILTER = FilterSpec(
    {
        "action": FilterField(AuditEventRow.action, FieldType.STRING),
        "entity_type": FilterField(AuditEventRow.entity_type, FieldType.STRING),
        "entity_id": FilterField(AuditEventRow.entity_id, FieldType.STRING),
        "actor_id": FilterField(AuditEventRow.actor_id, FieldType.STRING),
        "create_time": FilterField(AuditEventRow.create_time, FieldType.TIMESTAMP),
    }
)


def audit_events(company: uuid.UUID, *, filter: str) -> Select[AuditEventRow]:
    """The company's audit events ``filter`` selects (INVALID_ARGUMENT for a bad filter)."""
    condition = AUDIT_FILTER.parse(filter)
    stmt = select(AuditEventRow).where(AuditEventRow.company_id == company)
    if condition is not None:
        stmt = stmt.where(condition)
    return stmt
