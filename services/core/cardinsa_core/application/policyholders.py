"""Policyholders and their dependents: standard methods and search.

Dependents belong to the policyholder aggregate: they are written through the
policyholder (``update_mask`` path ``dependents`` replaces the list) and share
its etag. A removed dependent is kept with ``remove_time`` because policies
that insured it still name it.

National ids: shown in full only with ``policyholders.read_national_id``
(the views carry that decision to the handlers); filtering on them needs the
same permission, because an exact-match filter would otherwise reveal them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Unpack

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.application.context import (
    CoreContext,
    ListQuery,
    first_call,
    own_company,
)
from cardinsa_core.domain.policyholders import (
    PARTY_FIELDS,
    READ_NATIONAL_ID,
    PartyKind,
    PolicyholderSpec,
    check_policyholder,
    display_name,
    mask_national_id,
    normalize_policyholder,
)
from cardinsa_core.repository.models import DependentRow, PolicyholderRow
from cardinsa_core.repository.policyholders import (
    POLICYHOLDERS,
    apply_spec,
    dependents_of,
    fingerprint_safe,
    new_dependent,
    replace_dependents,
    spec_of,
)
from cardinsa_foundation.errors import FailedPrecondition, FieldViolation, PermissionDenied
from cardinsa_foundation.paging import Page
from cardinsa_foundation.use_cases import check_mask, check_request_id, invalid, require_principal

CREATE = "CreatePolicyholder"
_NATIONAL_ID_FIELD = re.compile(r"(?<![A-Za-z0-9_.])national_id(?![A-Za-z0-9_])")


@dataclass(frozen=True, slots=True)
class PolicyholderView:
    """A policyholder, its current dependents and whether ids show unmasked."""

    row: PolicyholderRow
    dependents: tuple[DependentRow, ...]
    reveal_national_id: bool


class PolicyholderUseCases:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------- reading

    async def _view(
        self, session: AsyncSession, company: uuid.UUID, row: PolicyholderRow
    ) -> PolicyholderView:
        deps = (await dependents_of(session, company, [row.id]))[row.id]
        reveal = READ_NATIONAL_ID in require_principal().permissions
        return PolicyholderView(row, tuple(deps), reveal)

    async def get(self, policyholder_id: str) -> PolicyholderView:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            row = await POLICYHOLDERS.find(session, company, policyholder_id)
            return await self._view(session, company, row)

    async def list_policyholders(
        self, **query: Unpack[ListQuery]
    ) -> tuple[Page[PolicyholderView], bool]:
        principal = require_principal()
        company = own_company(principal)
        reveal = READ_NATIONAL_ID in principal.permissions
        if not reveal and _NATIONAL_ID_FIELD.search(query["filter"] or ""):
            raise PermissionDenied(
                "filtering on national_id needs the permission to read national ids",
                reason="PERMISSION_MISSING",
                metadata={"permission": READ_NATIONAL_ID},
            )
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            page = await self.ctx.list_page(session, POLICYHOLDERS, company, **query)
            deps = await dependents_of(session, company, [r.id for r in page.items])
        views = [PolicyholderView(r, tuple(deps[r.id]), reveal) for r in page.items]
        return Page(views, page.next_page_token), reveal

    # ------------------------------------------------------------- writing

    async def create(self, spec: PolicyholderSpec, *, request_id: str) -> PolicyholderView:
        principal = require_principal()
        company = own_company(principal)
        spec = normalize_policyholder(spec)
        violations = check_policyholder(spec, self.ctx.today()) + check_request_id(request_id)
        violations += [
            FieldViolation(f"policyholder.dependents[{i}].id", "must be empty on create")
            for i, d in enumerate(spec.dependents)
            if d.id
        ]
        invalid("the policyholder is not valid", violations)
        new_id = uuid.uuid4()
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            seen = await first_call(
                session, company, CREATE, request_id, str(new_id), fingerprint_safe(spec)
            )
            if seen is not None:
                return await self._view(
                    session, company, await POLICYHOLDERS.find(session, company, seen)
                )
            assert spec.kind is not None
            row = PolicyholderRow(
                id=new_id, company_id=company, kind=spec.kind.value, display_name=display_name(spec)
            )
            apply_spec(row, spec, PARTY_FIELDS)
            session.add(row)
            await session.flush()
            for dep in spec.dependents:
                session.add(new_dependent(company, row.id, dep))
            await session.flush()
            await self.ctx.audit.record(
                session,
                action="policyholder.create",
                entity_type="policyholder",
                entity_id=row.id,
                changed_fields=sorted(PARTY_FIELDS),
                detail={"kind": row.kind, "dependents": len(spec.dependents)},
            )
            return await self._view(session, company, row)

    async def update(
        self, policyholder_id: str, spec: PolicyholderSpec, mask: Sequence[str], etag: str
    ) -> PolicyholderView:
        principal = require_principal()
        company = own_company(principal)
        check_mask(mask, PARTY_FIELDS)
        fields = frozenset(mask)
        spec = normalize_policyholder(spec)
        async with self.ctx.change(
            POLICYHOLDERS, company, policyholder_id, method="update", etag=etag
        ) as change:
            session, row = change.session, change.row
            current = (await dependents_of(session, company, [row.id]))[row.id]
            spec = _unmasked(replace(spec, kind=PartyKind(row.kind)), row, current)
            # Check the result as a whole, so an update cannot leave a person nameless.
            merged = spec_of(row, current)
            merged = replace(
                merged, **{name: getattr(spec, name) for name in fields if name != "dependents"}
            )
            merged = replace(merged, dependents=spec.dependents)
            known = {str(d.id) for d in current}
            violations = check_policyholder(
                merged,
                self.ctx.today(),
                fields=fields | {"given_name", "family_name", "legal_name"},
            )
            violations += [
                FieldViolation(f"policyholder.dependents[{i}].id", "not a dependent of this holder")
                for i, d in enumerate(spec.dependents)
                if "dependents" in fields and d.id and d.id not in known
            ]
            invalid("the policyholder is not valid", violations)
            changed = apply_spec(row, spec, fields)
            name = display_name(merged)
            if row.display_name != name:
                row.display_name = name
            if "dependents" in fields and replace_dependents(
                session, company, row.id, current, spec.dependents
            ):
                changed.append("dependents")
            if changed:
                row.update_time = datetime.now(UTC)
                await session.flush()
                await self.ctx.audit.record(
                    session,
                    action="policyholder.update",
                    entity_type="policyholder",
                    entity_id=row.id,
                    changed_fields=changed,
                )
            return await self._view(session, company, row)

    async def delete(self, policyholder_id: str, etag: str) -> PolicyholderView:
        return await self._set_deleted(policyholder_id, etag, deleting=True)

    async def undelete(self, policyholder_id: str, etag: str) -> PolicyholderView:
        return await self._set_deleted(policyholder_id, etag, deleting=False)

    async def _set_deleted(
        self, policyholder_id: str, etag: str, *, deleting: bool
    ) -> PolicyholderView:
        company = own_company(require_principal())
        action = "delete" if deleting else "undelete"
        async with self.ctx.change(
            POLICYHOLDERS, company, policyholder_id, method=action, etag=etag, allow_deleted=True
        ) as change:
            session, row = change.session, change.row
            if deleting:
                row.soft_delete()
            elif row.delete_time is None:
                raise FailedPrecondition("the policyholder is not deleted", reason="NOT_DELETED")
            else:
                row.undelete()
            await session.flush()
            await self.ctx.audit.record(
                session,
                action=f"policyholder.{action}",
                entity_type="policyholder",
                entity_id=row.id,
                changed_fields=["delete_time"],
            )
            return await self._view(session, company, row)


def _unmasked(
    spec: PolicyholderSpec, row: PolicyholderRow, current: Sequence[DependentRow]
) -> PolicyholderSpec:
    """``spec`` with every masked national id sent back (meaning "unchanged")
    replaced by the stored one."""
    if spec.national_id and spec.national_id == mask_national_id(row.national_id):
        spec = replace(spec, national_id=row.national_id)
    by_id = {str(d.id): d for d in current}
    return replace(
        spec,
        dependents=tuple(
            replace(d, national_id=by_id[d.id].national_id)
            if d.id in by_id
            and d.national_id
            and d.national_id == mask_national_id(by_id[d.id].national_id)
            else d
            for d in spec.dependents
        ),
    )
