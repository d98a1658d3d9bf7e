"""Reading core's audit log: always the caller's own company."""

from __future__ import annotations

from sqlalchemy import select

from cardinsa_core.application.context import CoreContext, own_company, require_principal
from cardinsa_core.repository.models import AuditEventRow
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec
from cardinsa_foundation.paging import OrderTerm, Page, paginate, query_fingerprint

AUDIT_FILTER = FilterSpec(
    {
        "action": FilterField(AuditEventRow.action, FieldType.STRING),
        "entity_type": FilterField(AuditEventRow.entity_type, FieldType.STRING),
        "entity_id": FilterField(AuditEventRow.entity_id, FieldType.STRING),
        "actor_id": FilterField(AuditEventRow.actor_id, FieldType.STRING),
        "create_time": FilterField(AuditEventRow.create_time, FieldType.TIMESTAMP),
    }
)


class AuditLogUseCases:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx

    async def list_events(
        self, *, page_size: int, page_token: str, filter: str
    ) -> Page[AuditEventRow]:
        company = own_company(require_principal())
        condition = AUDIT_FILTER.parse(filter)
        stmt = select(AuditEventRow).where(AuditEventRow.company_id == company)
        if condition is not None:
            stmt = stmt.where(condition)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await paginate(
                session,
                stmt,
                order=[OrderTerm(AuditEventRow.create_time, True)],
                page_size=page_size,
                page_token=page_token,
                fingerprint=query_fingerprint(filter=filter),
                secret=self.ctx.settings.page_token_secret,
            )
