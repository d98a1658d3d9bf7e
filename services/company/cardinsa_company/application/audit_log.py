"""Reading the company service's audit log: company admins see their own company only."""

from __future__ import annotations

from cardinsa_company.application.context import CompanyContext, ListQuery
from cardinsa_company.repository.audit_log import AUDIT_LOG
from cardinsa_company.repository.models import AuditEventRow
from cardinsa_foundation.audit import audit_log_company
from cardinsa_foundation.paging import Page
from cardinsa_foundation.use_cases import require_principal


class AuditLogUseCases:
    def __init__(self, ctx: CompanyContext) -> None:
        self.ctx = ctx

    async def list(self, query: ListQuery, *, company_id: str) -> Page[AuditEventRow]:
        """Events newest first: of ``company_id`` (platform admins), of every company
        (platform admins, no ``company_id``), or of the caller's own company.

        Naming another company is PERMISSION_DENIED for anyone but a platform
        admin, whether that company exists or not (so the answer says nothing
        about it), as in identity's audit log.
        """
        principal = require_principal()
        AUDIT_LOG.filter.parse(query.filter)  # the filter is checked before the company
        company = audit_log_company(principal, company_id)
        stmt = AUDIT_LOG.query(company, query.filter)
        # Every company's log at once is the one cross-tenant read here.
        async with self.ctx.db.unit_of_work(
            company_id=company, cross_tenant=company is None
        ) as session:
            return await self.ctx.list_page(
                session, stmt, query, order=AUDIT_LOG.order, parent=str(company or "*")
            )
