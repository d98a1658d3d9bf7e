"""Reading the company service's audit log: company admins see their own company only."""

from __future__ import annotations

from cardinsa_company.application.context import CompanyContext, ListQuery
from cardinsa_company.repository.audit_log import AUDIT_FILTER, AUDIT_ORDER, audit_listing
from cardinsa_company.repository.models import AuditEventRow
from cardinsa_foundation.errors import FieldViolation, InvalidArgument, PermissionDenied
from cardinsa_foundation.paging import Page
from cardinsa_foundation.use_cases import lookup_uuid, require_principal


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
        condition = AUDIT_FILTER.parse(query.filter)
        own = lookup_uuid(principal.company_id or "")
        if company_id:
            wanted = lookup_uuid(company_id)
            if wanted is None:
                raise InvalidArgument(
                    "company_id must be a UUID",
                    field_violations=[FieldViolation("company_id", "must be a UUID")],
                )
            if not principal.is_platform_admin and wanted != own:
                raise PermissionDenied(
                    "only platform administrators read another company's audit log",
                    reason="CROSS_COMPANY_DENIED",
                )
            company = wanted
        elif principal.is_platform_admin:
            company = None
        elif own is not None:
            company = own
        else:
            raise InvalidArgument(
                "company_id is required for a caller without a company",
                field_violations=[FieldViolation("company_id", "required")],
            )
        stmt = audit_listing(company, condition)
        # Every company's log at once is the one cross-tenant read here.
        async with self.ctx.db.unit_of_work(
            company_id=company, cross_tenant=company is None
        ) as session:
            return await self.ctx.page(
                session, stmt, query, order=AUDIT_ORDER, parent=str(company or "*")
            )
