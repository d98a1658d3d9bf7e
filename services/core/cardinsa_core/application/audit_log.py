"""Reading core's audit log: always the caller's own company."""

from __future__ import annotations

from cardinsa_core.application.context import CoreContext, own_company
from cardinsa_core.repository.audit import audit_events
from cardinsa_core.repository.models import AuditEventRow
from cardinsa_foundation.paging import OrderTerm, Page
from cardinsa_foundation.use_cases import require_principal


class AuditLogUseCases:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx

    async def list_events(
        self, *, page_size: int, page_token: str, filter: str
    ) -> Page[AuditEventRow]:
        company = own_company(require_principal())
        stmt = audit_events(company, filter=filter)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await self.ctx.page(
                session,
                stmt,
                order=[OrderTerm(AuditEventRow.create_time, True)],
                page_size=page_size,
                page_token=page_token,
                filter=filter,
            )
