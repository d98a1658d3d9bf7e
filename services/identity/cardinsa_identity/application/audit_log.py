"""Reading identity's audit log: company admins see their own company only."""

from __future__ import annotations

from cardinsa_foundation.audit import audit_log_company
from cardinsa_foundation.paging import Page
from cardinsa_foundation.use_cases import require_principal
from cardinsa_identity.application.context import IdentityContext
from cardinsa_identity.repository.audit_events import AUDIT_LOG
from cardinsa_identity.repository.models import AuditEventRow


class AuditLogUseCases:
    def __init__(self, ctx: IdentityContext) -> None:
        self.ctx = ctx

    async def list(
        self, *, page_size: int, page_token: str, filter: str, company_id: str
    ) -> Page[AuditEventRow]:
        principal = require_principal()
        AUDIT_LOG.filter.parse(filter)  # the filter is checked before the company
        company = audit_log_company(principal, company_id)
        stmt = AUDIT_LOG.query(company, filter)
        # Every company's log at once is the one cross-tenant read here.
        async with self.ctx.db.unit_of_work(
            company_id=company, cross_tenant=company is None
        ) as session:
            return await self.ctx.page(
                session,
                stmt,
                order=AUDIT_LOG.order,
                page_size=page_size,
                page_token=page_token,
                filter=filter,
                parent=str(company or "*"),
            )
