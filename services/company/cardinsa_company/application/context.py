"""What every company use case needs, and the tenancy rules they share.

Who sees which company:

* a platform admin sees every company. Calls about one company run with the
  transaction's tenant set to *that* company, so row-level security still binds
  them to it; only calls that span companies (ListCompanies, the audit log of
  every company, CreateCompany, whose idempotency record is platform-scoped)
  open the explicit cross-tenant unit of work;
* anyone else sees their own company only. Another company's id -- existing or
  not, well-formed or not -- answers NOT_FOUND, exactly like an id that names
  nothing, and the query runs under the caller's tenant so the database would
  hide the row anyway.

Writes by a platform admin in a company not their own are audited with
``detail.cross_company = true``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_company.application.events import CompanyEventSink
from cardinsa_company.domain.lifecycle import CompanyState
from cardinsa_company.repository.companies import find_company
from cardinsa_company.repository.models import AuditEventRow, CompanyRow, IdempotencyRow
from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_foundation.audit import AuditWriter
from cardinsa_foundation.context import Principal
from cardinsa_foundation.db import Database
from cardinsa_foundation.errors import FailedPrecondition, PermissionDenied
from cardinsa_foundation.idempotency import RequestIds
from cardinsa_foundation.paging import OrderTerm, Page
from cardinsa_foundation.use_cases import Paging, lookup_uuid, not_found

R = TypeVar("R")

#: The company of platform-scoped idempotency records (no tenant owns them).
PLATFORM_SCOPE: Final = uuid.UUID(int=0)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """What a List request asks for besides its parent (AIP-132, -158, -160, -164)."""

    page_size: int
    page_token: str
    filter: str = ""
    order_by: str = ""
    show_deleted: bool = False


@dataclass
class CompanyContext(Paging):
    db: Database
    settings: CompanyServiceSettings
    audit: AuditWriter[AuditEventRow]
    # Where the companies' events go (company's outbox), in the change's transaction.
    events: CompanyEventSink

    async def list_page(
        self,
        session: AsyncSession,
        stmt: Select[R],
        query: ListQuery,
        *,
        order: Sequence[OrderTerm],
        parent: str,
    ) -> Page[R]:
        """One page of a List statement; its token holds only for the same query
        under the same ``parent``."""
        return await self.page(
            session,
            stmt,
            order=order,
            page_size=query.page_size,
            page_token=query.page_token,
            filter=query.filter,
            order_by=query.order_by,
            show_deleted=query.show_deleted,
            parent=parent,
        )

    async def record(
        self,
        session: AsyncSession,
        scope: CompanyScope,
        action: str,
        entity_id: uuid.UUID,
        changed: list[str],
        **detail: Any,
    ) -> None:
        """Audit ``action`` (``<entity type>.<verb>``) on an entity of the scope's
        company, in the same transaction."""
        await self.audit.record(
            session,
            action=action,
            entity_type=action.partition(".")[0],
            entity_id=entity_id,
            company_id=scope.company_id,
            changed_fields=changed,
            detail=scope.audit_detail(**detail),
        )


def require_platform_admin(principal: Principal, what: str) -> None:
    """Platform decisions about tenants: the permission alone is not enough.

    The contract already limits these methods to permissions no company role or
    key can hold; this keeps a mistakenly granted permission from acting too.
    """
    if not principal.is_platform_admin:
        raise PermissionDenied(f"only platform administrators {what}", reason="PLATFORM_ADMIN_ONLY")


def not_deleted(resource: str, resource_id: uuid.UUID) -> FailedPrecondition:
    """Undeleting a ``resource`` that is not deleted."""
    return FailedPrecondition(
        f"the {resource} is not deleted",
        reason="NOT_DELETED",
        metadata={f"{resource}_id": str(resource_id)},
    )


@dataclass(frozen=True, slots=True)
class CompanyScope:
    """The one company a call acts in, as the caller may see it."""

    company_id: uuid.UUID
    #: A platform admin acting in a company that is not their own.
    cross_company: bool

    def audit_detail(self, **detail: Any) -> dict[str, Any]:
        return {**detail, "cross_company": True} if self.cross_company else detail


def company_scope(principal: Principal, company_id: str) -> CompanyScope:
    """The company named by a request, or NOT_FOUND when the caller cannot see it.

    The answer for another tenant's company is the answer for a company that
    does not exist; the caller learns nothing from it.
    """
    key = lookup_uuid(company_id)
    if key is not None:
        own = principal.company_id == str(key)
        if own or principal.is_platform_admin:
            return CompanyScope(key, cross_company=not own)
    raise not_found("company", company_id)


async def scope_company(session: AsyncSession, scope: CompanyScope, company_id: str) -> CompanyRow:
    """The scope's company, which must exist (a platform admin may name any id)."""
    row = await find_company(session, scope.company_id)
    if row is None:
        raise not_found("company", company_id)
    return row


async def writable_company(
    session: AsyncSession, scope: CompanyScope, company_id: str, what: str = "structure"
) -> CompanyRow:
    """The scope's company, which must be neither closed nor deleted for its
    ``what`` to change. A suspended company's callers are already refused by the
    tenant-status check; a platform admin may still act in it."""
    row = await scope_company(session, scope, company_id)
    if row.state == CompanyState.CLOSED or row.delete_time is not None:
        raise FailedPrecondition(
            f"the company is closed or deleted; its {what} is read-only",
            reason="COMPANY_READ_ONLY",
            metadata={"company_id": str(row.id), "current_state": row.state},
        )
    return row


#: Claim an optional request id first thing in a unit of work (None: act; else
#: the resource the first call acted on). See :meth:`RequestIds.claim`.
claim_request = RequestIds(IdempotencyRow).claim
