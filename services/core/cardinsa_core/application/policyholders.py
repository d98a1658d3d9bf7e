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

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.application.context import (
    CoreContext,
    check_etag,
    check_mask,
    check_request_id,
    deleted,
    invalid,
    lookup_uuid,
    not_found,
    own_company,
    require_principal,
)
from cardinsa_core.application.requests import claim_request_id
from cardinsa_core.domain.policyholders import (
    PARTY_FIELDS,
    READ_NATIONAL_ID,
    Address,
    DependentSpec,
    Gender,
    PartyKind,
    PolicyholderSpec,
    check_policyholder,
    display_name,
    mask_national_id,
    normalize_policyholder,
)
from cardinsa_core.repository.models import DependentRow, PolicyholderRow
from cardinsa_foundation.errors import FailedPrecondition, FieldViolation, PermissionDenied
from cardinsa_foundation.filtering import (
    FieldType,
    FilterField,
    FilterSpec,
    parse_order_by,
    tenant_list_query,
)
from cardinsa_foundation.paging import OrderTerm, Page, paginate, query_fingerprint

POLICYHOLDER_FILTER = FilterSpec(
    {
        "kind": FilterField(
            PolicyholderRow.kind, FieldType.ENUM, values=[k.value for k in PartyKind]
        ),
        "display_name": FilterField(PolicyholderRow.display_name, FieldType.STRING),
        "given_name": FilterField(PolicyholderRow.given_name, FieldType.STRING),
        "family_name": FilterField(PolicyholderRow.family_name, FieldType.STRING),
        "legal_name": FilterField(PolicyholderRow.legal_name, FieldType.STRING),
        "email": FilterField(PolicyholderRow.email, FieldType.STRING),
        "phone": FilterField(PolicyholderRow.phone, FieldType.STRING),
        "date_of_birth": FilterField(PolicyholderRow.date_of_birth, FieldType.DATE),
        "create_time": FilterField(PolicyholderRow.create_time, FieldType.TIMESTAMP),
        "national_id": FilterField(PolicyholderRow.national_id, FieldType.STRING),
    }
)
POLICYHOLDER_ORDER = {
    "create_time": PolicyholderRow.create_time,
    "display_name": PolicyholderRow.display_name,
    "family_name": PolicyholderRow.family_name,
    "email": PolicyholderRow.email,
}
DEFAULT_ORDER = [OrderTerm(PolicyholderRow.create_time, True)]
CREATE = "CreatePolicyholder"
_NATIONAL_ID_FIELD = re.compile(r"(?<![A-Za-z0-9_.])national_id(?![A-Za-z0-9_])")


@dataclass(frozen=True, slots=True)
class PolicyholderView:
    """A policyholder, its current dependents and whether ids show unmasked."""

    row: PolicyholderRow
    dependents: tuple[DependentRow, ...]
    reveal_national_id: bool


def _apply_spec(row: PolicyholderRow, spec: PolicyholderSpec, fields: frozenset[str]) -> list[str]:
    """Copy the named fields of ``spec`` onto ``row``; the names that changed."""
    changed: list[str] = []

    def put(column: str, value: object, name: str) -> None:
        if getattr(row, column) != value:
            setattr(row, column, value)
            changed.append(name)

    for name in (
        "given_name",
        "family_name",
        "date_of_birth",
        "legal_name",
        "registration_number",
        "national_id",
        "email",
        "phone",
    ):
        if name in fields:
            put(name, getattr(spec, name), name)
    if "gender" in fields:
        put("gender", spec.gender.value, "gender")
    if "address" in fields:
        for part in ("line1", "line2", "city", "region", "postal_code", "country_code"):
            put(f"address_{part}", getattr(spec.address, part), "address")
    return sorted(set(changed))


def _spec_of(row: PolicyholderRow, dependents: Sequence[DependentRow]) -> PolicyholderSpec:
    return PolicyholderSpec(
        kind=PartyKind(row.kind),
        given_name=row.given_name,
        family_name=row.family_name,
        date_of_birth=row.date_of_birth,
        gender=Gender(row.gender),
        legal_name=row.legal_name,
        registration_number=row.registration_number,
        national_id=row.national_id,
        email=row.email,
        phone=row.phone,
        address=Address(
            row.address_line1,
            row.address_line2,
            row.address_city,
            row.address_region,
            row.address_postal_code,
            row.address_country_code,
        ),
        dependents=tuple(
            DependentSpec(
                relation=None,
                given_name=d.given_name,
                family_name=d.family_name,
                id=str(d.id),
            )
            for d in dependents
        ),
    )


class PolicyholderUseCases:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------- reading

    async def _load(
        self, session: AsyncSession, company: uuid.UUID, policyholder_id: str, *, lock: bool = False
    ) -> PolicyholderRow:
        key = lookup_uuid(policyholder_id)
        if key is None:
            raise not_found("policyholder", policyholder_id)
        stmt = select(PolicyholderRow).where(
            PolicyholderRow.company_id == company, PolicyholderRow.id == key
        )
        if lock:
            stmt = stmt.with_for_update()
        row = (await session.scalars(stmt)).first()
        if row is None:
            raise not_found("policyholder", policyholder_id)
        return row

    @staticmethod
    async def dependents_of(
        session: AsyncSession, company: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[DependentRow]]:
        """Current (not removed) dependents of the given policyholders."""
        found: dict[uuid.UUID, list[DependentRow]] = {i: [] for i in ids}
        if not ids:
            return found
        rows = await session.scalars(
            select(DependentRow)
            .where(
                DependentRow.company_id == company,
                DependentRow.policyholder_id.in_(ids),
                DependentRow.remove_time.is_(None),
            )
            .order_by(DependentRow.create_time, DependentRow.id)
        )
        for dep in rows:
            found[dep.policyholder_id].append(dep)
        return found

    async def _view(
        self, session: AsyncSession, company: uuid.UUID, row: PolicyholderRow
    ) -> PolicyholderView:
        deps = (await self.dependents_of(session, company, [row.id]))[row.id]
        reveal = READ_NATIONAL_ID in require_principal().permissions
        return PolicyholderView(row, tuple(deps), reveal)

    async def get(self, policyholder_id: str) -> PolicyholderView:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            row = await self._load(session, company, policyholder_id)
            return await self._view(session, company, row)

    async def list_policyholders(
        self, *, page_size: int, page_token: str, filter: str, order_by: str, show_deleted: bool
    ) -> tuple[Page[PolicyholderView], bool]:
        principal = require_principal()
        company = own_company(principal)
        reveal = READ_NATIONAL_ID in principal.permissions
        if not reveal and _NATIONAL_ID_FIELD.search(filter or ""):
            raise PermissionDenied(
                "filtering on national_id needs the permission to read national ids",
                reason="PERMISSION_MISSING",
                metadata={"permission": READ_NATIONAL_ID},
            )
        stmt = tenant_list_query(
            PolicyholderRow,
            company,
            spec=POLICYHOLDER_FILTER,
            filter=filter,
            show_deleted=show_deleted,
        )
        order = parse_order_by(order_by, POLICYHOLDER_ORDER, default=DEFAULT_ORDER)
        fingerprint = query_fingerprint(filter=filter, order_by=order_by, show_deleted=show_deleted)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            page = await paginate(
                session,
                stmt,
                order=order,
                page_size=page_size,
                page_token=page_token,
                fingerprint=fingerprint,
                secret=self.ctx.settings.page_token_secret,
            )
            deps = await self.dependents_of(session, company, [r.id for r in page.items])
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
            if request_id:
                seen = await claim_request_id(session, company, CREATE, request_id, str(new_id))
                if seen is not None:
                    return await self._view(
                        session, company, await self._load(session, company, seen)
                    )
            assert spec.kind is not None
            row = PolicyholderRow(
                id=new_id, company_id=company, kind=spec.kind.value, display_name=display_name(spec)
            )
            _apply_spec(row, spec, PARTY_FIELDS)
            session.add(row)
            await session.flush()
            for dep in spec.dependents:
                session.add(self._new_dependent(company, row.id, dep))
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

    @staticmethod
    def _new_dependent(company: uuid.UUID, holder: uuid.UUID, dep: DependentSpec) -> DependentRow:
        assert dep.relation is not None
        return DependentRow(
            id=uuid.uuid4(),
            company_id=company,
            policyholder_id=holder,
            relation=dep.relation.value,
            given_name=dep.given_name,
            family_name=dep.family_name,
            date_of_birth=dep.date_of_birth,
            gender=dep.gender.value,
            national_id=dep.national_id,
        )

    async def update(
        self, policyholder_id: str, spec: PolicyholderSpec, mask: Sequence[str], etag: str
    ) -> PolicyholderView:
        principal = require_principal()
        company = own_company(principal)
        check_mask(mask, PARTY_FIELDS)
        fields = frozenset(mask)
        spec = normalize_policyholder(spec)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            row = await self._load(session, company, policyholder_id, lock=True)
            check_etag(row, etag)
            if row.delete_time is not None:
                raise deleted("policyholder")
            current = (await self.dependents_of(session, company, [row.id]))[row.id]
            # The kind is fixed; a masked national id sent back means "unchanged".
            spec = replace(spec, kind=PartyKind(row.kind))
            if spec.national_id and spec.national_id == mask_national_id(row.national_id):
                spec = replace(spec, national_id=row.national_id)
            by_id = {str(d.id): d for d in current}
            spec = replace(
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
            # Check the result as a whole, so an update cannot leave a person nameless.
            merged = _spec_of(row, current)
            merged = replace(
                merged, **{name: getattr(spec, name) for name in fields if name != "dependents"}
            )
            merged = replace(merged, dependents=spec.dependents)
            violations = check_policyholder(
                merged,
                self.ctx.today(),
                fields=fields | {"given_name", "family_name", "legal_name"},
            )
            violations += [
                FieldViolation(f"policyholder.dependents[{i}].id", "not a dependent of this holder")
                for i, d in enumerate(spec.dependents)
                if "dependents" in fields and d.id and d.id not in by_id
            ]
            invalid("the policyholder is not valid", violations)
            changed = _apply_spec(row, spec, fields)
            name = display_name(merged)
            if row.display_name != name:
                row.display_name = name
            if "dependents" in fields and self._replace_dependents(
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

    def _replace_dependents(
        self,
        session: AsyncSession,
        company: uuid.UUID,
        holder: uuid.UUID,
        current: Sequence[DependentRow],
        wanted: Sequence[DependentSpec],
    ) -> bool:
        changed = False
        keep = {d.id for d in wanted if d.id}
        now = datetime.now(UTC)
        for dep in current:
            if str(dep.id) not in keep:
                dep.remove_time = now
                changed = True
        by_id = {str(d.id): d for d in current}
        for spec in wanted:
            if not spec.id:
                session.add(self._new_dependent(company, holder, spec))
                changed = True
                continue
            dep = by_id[spec.id]
            assert spec.relation is not None
            values = {
                "relation": spec.relation.value,
                "given_name": spec.given_name,
                "family_name": spec.family_name,
                "date_of_birth": spec.date_of_birth,
                "gender": spec.gender.value,
                "national_id": spec.national_id,
            }
            for column, value in values.items():
                if getattr(dep, column) != value:
                    setattr(dep, column, value)
                    changed = True
        return changed

    async def delete(self, policyholder_id: str, etag: str) -> PolicyholderView:
        return await self._set_deleted(policyholder_id, etag, deleting=True)

    async def undelete(self, policyholder_id: str, etag: str) -> PolicyholderView:
        return await self._set_deleted(policyholder_id, etag, deleting=False)

    async def _set_deleted(
        self, policyholder_id: str, etag: str, *, deleting: bool
    ) -> PolicyholderView:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            row = await self._load(session, company, policyholder_id, lock=True)
            check_etag(row, etag)
            if deleting:
                row.soft_delete()
            elif row.delete_time is None:
                raise FailedPrecondition("the policyholder is not deleted", reason="NOT_DELETED")
            else:
                row.undelete()
            await session.flush()
            await self.ctx.audit.record(
                session,
                action="policyholder.delete" if deleting else "policyholder.undelete",
                entity_type="policyholder",
                entity_id=row.id,
                changed_fields=["delete_time"],
            )
            return await self._view(session, company, row)
