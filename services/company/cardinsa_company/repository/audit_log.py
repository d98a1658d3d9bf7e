"""The company service's audit log in the database: the filter and the List statement."""

from __future__ import annotations

import uuid
from typing import Final

from sqlalchemy import ColumnElement, Select, select

from cardinsa_company.repository.models import AuditEventRow
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec
from cardinsa_foundation.paging import OrderTerm

AUDIT_FILTER: Final = FilterSpec(
    {
        "action": FilterField(AuditEventRow.action, FieldType.STRING),
        "entity_type": FilterField(AuditEventRow.entity_type, FieldType.STRING),
        "entity_id": FilterField(AuditEventRow.entity_id, FieldType.STRING),
        "actor_id": FilterField(AuditEventRow.actor_id, FieldType.STRING),
        "company_id": FilterField(AuditEventRow.company_id, FieldType.UUID),
        "create_time": FilterField(AuditEventRow.create_time, FieldType.TIMESTAMP),
    }
)
#: Newest first.
AUDIT_ORDER: Final = [OrderTerm(AuditEventRow.create_time, True)]


def audit_listing(
    company_id: uuid.UUID | None, condition: ColumnElement[bool] | None
) -> Select[AuditEventRow]:
    """Events of one company, or of every company when ``company_id`` is None."""
    stmt = select(AuditEventRow)
    if company_id is not None:
        stmt = stmt.where(AuditEventRow.company_id == company_id)
    if condition is not None:
        stmt = stmt.where(condition)
    return stmt
