"""The query of identity's audit log."""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, Select, select

from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec
from cardinsa_identity.repository.models import AuditEventRow

__all__ = ["AUDIT_FILTER", "audit_events_query"]

AUDIT_FILTER = FilterSpec(
    {
        "action": FilterField(AuditEventRow.action, FieldType.STRING),
        "entity_type": FilterField(AuditEventRow.entity_type, FieldType.STRING),
        "entity_id": FilterField(AuditEventRow.entity_id, FieldType.STRING),
        "actor_id": FilterField(AuditEventRow.actor_id, FieldType.STRING),
        "company_id": FilterField(AuditEventRow.company_id, FieldType.UUID),
        "create_time": FilterField(AuditEventRow.create_time, FieldType.TIMESTAMP),
    }
)


def audit_events_query(
    company: uuid.UUID | None, condition: ColumnElement[bool] | None
) -> Select[AuditEventRow]:
    """The events of ``company`` (None: of every company) that ``condition`` selects."""
    stmt = select(AuditEventRow)
    if company is not None:
        stmt = stmt.where(AuditEventRow.company_id == company)
    if condition is not None:
        stmt = stmt.where(condition)
    return stmt
