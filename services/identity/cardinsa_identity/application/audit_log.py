"""Reading identity's audit log: company admins see their own company only."""

from __future__ import annotations

from cardinsa_foundation.paging import OrderTerm, Page, paginate, query_fingerprint
from cardinsa_foundation.use_cases import require_principal
from cardinsa_identity.application.context import IdentityContext, target_company
from cardinsa_identity.repository.audit_events import AUDIT_FILTER, audit_events_query
from cardinsa_identity.repository.models import AuditEventRow


class AuditLogUseCases:
    def __init__(self, ctx: IdentityContext) -> None:
        self.ctx = ctx

    async def list(
        self, *, page_size: int, page_token: str, filter: str, company_id: str
    ) -> Page[AuditEventRow]:
        principal = require_principal()
        condition = AUDIT_FILTER.parse(filter)
        all_companies = principal.is_platform_admin and not company_id
        company = None if all_companies else target_company(principal, company_id)
        stmt = audit_events_query(company, condition)
        fingerprint = query_fingerprint(filter=filter, parent=str(company or "*"))
        async with self.ctx.db.unit_of_work(
            company_id=company, cross_tenant=all_companies
        ) as session:
            return await paginate(
                session,
                stmt,
                order=[OrderTerm(AuditEventRow.create_time, True)],
                page_size=page_size,
                page_token=page_token,
                fingerprint=fingerprint,
                secret=self.ctx.settings.page_token_secret,
            )
