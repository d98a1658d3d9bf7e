"""Reading core's audit log: always the caller's own company."""

from __future__ import annotations

from cardinsa_core.application.context import CoreContext, own_company
from cardinsa_core.repository.audit import AUDIT_LOG
from cardinsa_core.repository.models import AuditEventRow
from cardinsa_foundation.paging import Page
from cardinsa_foundation.use_cases import require_principal


class AuditLogUseCases:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx

    async def list_events(
        self, *, page_size: int, page_token: str, filter: str
    ) -> Page[AuditEventRow]:
        company = own_company(require_principal())
        stmt = AUDIT_LOG.query(company, filter)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await self.ctx.page(
                session,
                stmt,
                order=AUDIT_LOG.order,
                page_size=page_size,
                page_token=page_token,
                filter=filter,
            )
