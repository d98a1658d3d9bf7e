"""Reading the company service's audit log: company admins see their own company only."""

from __future__ import annotations

from typing import Final

from sqlalchemy import select

from cardinsa_company.application.context import CompanyContext, lookup_uuid, require_principal
from cardinsa_company.repository.models import AuditEventRow
from cardinsa_foundation.errors import FieldViolation, InvalidArgument, PermissionDenied
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec
from cardinsa_foundation.paging import OrderTerm, Page, paginate, query_fingerprint

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


class AuditLogUseCases:
    def __init__(self, ctx: CompanyContext) -> None:
        self.ctx = ctx

    async def list(
        self, *, page_size: int, page_token: str, filter: str, company_id: str
    ) -> Page[AuditEventRow]:
        """Events newest first: of ``company_id`` (platform admins), of every company
        (platform admins, no ``company_id``), or of the caller's own company.

        Naming another company is PERMISSION_DENIED for anyone but a platform
        admin, whether that company exists or not (so the answer says nothing
        about it), as in identity's audit log.
        """
        principal = require_principal()
        condition = AUDIT_FILTER.parse(filter)
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
        stmt = select(AuditEventRow)
        if company is not None:
            stmt = stmt.where(AuditEventRow.company_id == company)
        if condition is not None:
            stmt = stmt.where(condition)
        fingerprint = query_fingerprint(filter=filter, parent=str(company or "*"))
        # Every company's log at once is the one cross-tenant read here.
        async with self.ctx.db.unit_of_work(
            company_id=company, cross_tenant=company is None
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
