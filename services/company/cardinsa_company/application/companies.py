"""Companies: create, read, list, update, delete/undelete, lifecycle, tenant status.

Creating, deleting and the lifecycle transitions are the platform's: the
contract asks for platform-only permissions and the use case also requires the
platform-admin role. Everything else works on the caller's own company (any
company for a platform admin); see :mod:`cardinsa_company.application.context`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_company.application.context import (
    PLATFORM_SCOPE,
    CompanyContext,
    CompanyScope,
    ListQuery,
    claim_request,
    company_scope,
    not_deleted,
    require_platform_admin,
)
from cardinsa_company.application.events import TRANSITION_CHANGES
from cardinsa_company.domain.companies import (
    UPDATABLE_FIELDS,
    CompanyProfile,
    changed_fields,
    check_profile,
    merge_update,
    normalize_profile,
    parse_update_mask,
)
from cardinsa_company.domain.lifecycle import (
    CompanyState,
    CompanyTransition,
    check_reason,
    transition,
)
from cardinsa_company.repository.companies import (
    COMPANY_FILTER,
    COMPANY_ORDER,
    DEFAULT_COMPANY_ORDER,
    REGISTRATION_INDEX,
    companies_listing,
    find_company,
    new_company,
)
from cardinsa_company.repository.documents import profile_of, write_profile
from cardinsa_company.repository.models import CompanyRow
from cardinsa_company.repository.queries import flush
from cardinsa_foundation.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
)
from cardinsa_foundation.filtering import parse_order_by
from cardinsa_foundation.paging import Page
from cardinsa_foundation.use_cases import (
    check_etag,
    check_request_id,
    lookup_uuid,
    not_found,
    require_principal,
)

CREATE_COMPANY: Final = "CreateCompany"

#: The gRPC method name of each transition, the key of its idempotency records.
_TRANSITION_METHODS: Final = {
    CompanyTransition.SUSPEND: "SuspendCompany",
    CompanyTransition.REACTIVATE: "ReactivateCompany",
    CompanyTransition.CLOSE: "CloseCompany",
}


def _registration_taken() -> AlreadyExists:
    return AlreadyExists(
        "a live company of this country already has this registration number",
        reason="REGISTRATION_NUMBER_TAKEN",
        field_violations=[FieldViolation("company.registration_number", "already in use")],
    )


async def _flush(session: AsyncSession) -> None:
    """Flush, turning the registration-number index into its own clear error."""
    await flush(session, {REGISTRATION_INDEX: _registration_taken})


class CompanyUseCases:
    def __init__(self, ctx: CompanyContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------------ create

    async def create(
        self, profile: CompanyProfile, *, company_id: str, request_id: str
    ) -> CompanyRow:
        principal = require_principal()
        require_platform_admin(principal, "create companies")
        profile = normalize_profile(profile)
        violations = check_profile(profile)
        new_id = lookup_uuid(company_id) if company_id else uuid.uuid4()
        if new_id is None:
            violations.append(FieldViolation("company_id", "must be a UUID"))
        violations += check_request_id(request_id)
        if violations or new_id is None:
            raise InvalidArgument("the company is not valid", field_violations=violations)
        # The company does not exist yet and the idempotency record is
        # platform-scoped: the explicit cross-tenant path.
        async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            earlier = await claim_request(
                session,
                PLATFORM_SCOPE,
                CREATE_COMPANY,
                request_id,
                str(new_id),
                company_id,
                profile,
            )
            if earlier is not None:
                row = await find_company(session, uuid.UUID(earlier))
                if row is None:  # pragma: no cover - companies are never hard-deleted
                    raise not_found("company", earlier)
                return row
            if await find_company(session, new_id) is not None:
                raise AlreadyExists(
                    "a company with this id already exists",
                    reason="COMPANY_ID_TAKEN",
                    field_violations=[FieldViolation("company_id", "already in use")],
                )
            row = new_company(new_id, profile)
            session.add(row)
            await _flush(session)
            # Creating a company is always a platform admin acting in another company.
            await self.ctx.record(
                session,
                CompanyScope(row.id, cross_company=True),
                "company.create",
                row.id,
                sorted(UPDATABLE_FIELDS),
                display_name=row.display_name,
                country=row.country,
                default_currency=row.default_currency,
            )
            self.ctx.events.company_changed(session, row, change="created", from_state=None)
            return row

    # ------------------------------------------------------------------ reads

    async def get(self, company_id: str) -> CompanyRow:
        scope = company_scope(require_principal(), company_id)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            return await self._row(session, scope, company_id)

    async def list_companies(self, query: ListQuery) -> Page[CompanyRow]:
        principal = require_principal()
        condition = COMPANY_FILTER.parse(query.filter)
        order = parse_order_by(query.order_by, COMPANY_ORDER, default=DEFAULT_COMPANY_ORDER)
        own = lookup_uuid(principal.company_id or "")
        # Everyone but a platform admin lists their own company at most; RLS holds it too.
        stmt = companies_listing(
            only=own,
            every=principal.is_platform_admin,
            show_deleted=query.show_deleted,
            condition=condition,
        )
        async with self.ctx.db.unit_of_work(
            company_id=None if principal.is_platform_admin else own,
            cross_tenant=principal.is_platform_admin,
        ) as session:
            return await self.ctx.list_page(
                session,
                stmt,
                query,
                order=order,
                parent="*" if principal.is_platform_admin else str(own or ""),
            )

    async def status(self, company_id: str) -> CompanyRow:
        """Any company's row, for GetCompanyStatus (callers hold the platform's
        ``companies.get_status``; not limited to their own company).

        The transaction's tenant is the company asked about, so row-level
        security lets this read see that one company and nothing else.
        """
        require_principal()
        key = lookup_uuid(company_id)
        if key is None:
            raise not_found("company", company_id)
        async with self.ctx.db.unit_of_work(company_id=key) as session:
            row = await find_company(session, key)
            if row is None:
                raise not_found("company", company_id)
            return row

    # ------------------------------------------------------------------ writes

    async def update(
        self, company_id: str, patch: CompanyProfile, mask_paths: list[str], etag: str
    ) -> CompanyRow:
        principal = require_principal()
        mask = parse_update_mask(mask_paths)
        scope = company_scope(principal, company_id)
        async with self._change(scope, company_id, etag) as (session, row):
            self._require_changeable(row)
            current = profile_of(row)
            updated = normalize_profile(merge_update(current, patch, mask))
            violations = check_profile(updated, tolerated_flags=current.feature_flags.keys())
            if violations:
                raise InvalidArgument("the company is not valid", field_violations=violations)
            changed = changed_fields(current, updated)
            if changed:
                write_profile(row, updated)
                await _flush(session)
                await self.ctx.record(session, scope, "company.update", row.id, changed)
                self.ctx.events.company_changed(
                    session, row, change="updated", from_state=row.state
                )
            return row

    async def delete(self, company_id: str, etag: str) -> CompanyRow:
        principal = require_principal()
        require_platform_admin(principal, "delete companies")
        scope = company_scope(principal, company_id)
        async with self._change(scope, company_id, etag) as (session, row):
            if row.delete_time is None:
                row.soft_delete()
                await _flush(session)
                await self.ctx.record(
                    session, scope, "company.delete", row.id, ["delete_time"], state=row.state
                )
                self.ctx.events.company_changed(
                    session, row, change="deleted", from_state=row.state
                )
            return row

    async def undelete(self, company_id: str, etag: str) -> CompanyRow:
        principal = require_principal()
        require_platform_admin(principal, "restore companies")
        scope = company_scope(principal, company_id)
        async with self._change(scope, company_id, etag) as (session, row):
            if row.delete_time is None:
                raise not_deleted("company", row.id)
            row.undelete()
            await _flush(session)
            await self.ctx.record(session, scope, "company.undelete", row.id, ["delete_time"])
            self.ctx.events.company_changed(session, row, change="undeleted", from_state=row.state)
            return row

    async def transition(
        self,
        company_id: str,
        action: CompanyTransition,
        *,
        etag: str,
        reason: str,
        request_id: str,
    ) -> CompanyRow:
        principal = require_principal()
        require_platform_admin(principal, f"{action.value} companies")
        violations = check_reason(action, reason) + check_request_id(request_id)
        if violations:
            raise InvalidArgument(
                f"the request to {action.value} the company is not valid",
                field_violations=violations,
            )
        scope = company_scope(principal, company_id)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            earlier = await claim_request(
                session,
                scope.company_id,
                _TRANSITION_METHODS[action],
                request_id,
                str(scope.company_id),
                reason.strip(),
            )
            if earlier is not None:
                return await self._row(session, scope, company_id)
            row = await self._row(session, scope, company_id, lock=True)
            check_etag(row, etag)
            if row.delete_time is not None:
                raise FailedPrecondition(
                    f"cannot {action.value} a deleted company; undelete it first",
                    reason="COMPANY_DELETED",
                    metadata={"company_id": str(row.id), "transition": action.value},
                )
            before = CompanyState(row.state)
            after = transition(before, action)
            row.state = after.value
            row.state_reason = reason.strip()
            row.state_change_time = datetime.now(UTC)
            await _flush(session)
            await self.ctx.record(
                session,
                scope,
                f"company.{action.value}",
                row.id,
                ["state", "state_reason", "state_change_time"],
                from_state=before.value,
                to_state=after.value,
                reason=row.state_reason,
            )
            self.ctx.events.company_changed(
                session, row, change=TRANSITION_CHANGES[action], from_state=before.value
            )
            return row

    # ------------------------------------------------------------------ helpers

    @asynccontextmanager
    async def _change(
        self, scope: CompanyScope, company_id: str, etag: str
    ) -> AsyncIterator[tuple[AsyncSession, CompanyRow]]:
        """The unit of work of a change to the company: its row locked, its etag current."""
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            row = await self._row(session, scope, company_id, lock=True)
            check_etag(row, etag)
            yield session, row

    @staticmethod
    async def _row(
        session: AsyncSession, scope: CompanyScope, company_id: str, *, lock: bool = False
    ) -> CompanyRow:
        row = await find_company(session, scope.company_id, lock=lock)
        if row is None:
            raise not_found("company", company_id)
        return row

    @staticmethod
    def _require_changeable(row: CompanyRow) -> None:
        if row.state == CompanyState.CLOSED:
            raise FailedPrecondition(
                "a closed company cannot be changed",
                reason="COMPANY_CLOSED",
                metadata={"company_id": str(row.id), "current_state": row.state},
            )
        if row.delete_time is not None:
            raise FailedPrecondition(
                "a deleted company cannot be changed; undelete it first",
                reason="COMPANY_DELETED",
                metadata={"company_id": str(row.id)},
            )
