"""Policyholders in the database: the party row and its dependents.

A removed dependent is kept with ``remove_time`` because policies that insured
it still name it; "the dependents" of a holder are the current ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import LargeBinary, Table, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.domain.policyholders import (
    Address,
    DependentSpec,
    Gender,
    PartyKind,
    PolicyholderSpec,
    normalize_national_id,
)
from cardinsa_core.repository.models import DependentRow, PolicyholderRow
from cardinsa_core.repository.personal_data import keys, national_id_hash
from cardinsa_core.repository.rows import Resources, assign
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec

__all__ = [
    "ENCRYPTED_ATTRIBUTES",
    "POLICYHOLDERS",
    "ReencryptBatch",
    "apply_spec",
    "current_dependent_ids",
    "dependents_of",
    "fingerprint_safe",
    "new_dependent",
    "reencrypt_batch",
    "replace_dependents",
    "spec_of",
]


def _national_id_lookup(value: str) -> bytes | None:
    return national_id_hash(normalize_national_id(value))


POLICYHOLDERS = Resources(
    PolicyholderRow,
    "policyholder",
    FilterSpec(
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
            # Stored only encrypted: an exact match on its keyed hash.
            "national_id": FilterField(
                PolicyholderRow.national_id_hash, FieldType.STRING, lookup=_national_id_lookup
            ),
        }
    ),
    {
        "create_time": PolicyholderRow.create_time,
        "display_name": PolicyholderRow.display_name,
        "family_name": PolicyholderRow.family_name,
        "email": PolicyholderRow.email,
    },
)
_PLAIN_FIELDS = (
    "given_name",
    "family_name",
    "date_of_birth",
    "legal_name",
    "registration_number",
    "national_id",
    "email",
    "phone",
)
_ADDRESS_PARTS = ("line1", "line2", "city", "region", "postal_code", "country_code")


# ------------------------------------------------------------------ mapping


def fingerprint_safe(spec: PolicyholderSpec) -> PolicyholderSpec:
    """``spec`` with the values stored only encrypted replaced by their keyed
    hashes: what a request id's fingerprint (a plain SHA-256, stored in
    ``core.idempotency_keys``) may be computed from, so the fingerprint cannot be
    brute-forced back to a national id. Equal specs still fingerprint equally."""
    lookup = keys().lookup

    def keyed(value: str) -> str:
        return lookup.digest(value).hex() if value else ""

    return replace(
        spec,
        national_id=keyed(spec.national_id),
        address=Address(line1=keyed(repr(spec.address))),
        dependents=tuple(replace(d, national_id=keyed(d.national_id)) for d in spec.dependents),
    )


def apply_spec(row: PolicyholderRow, spec: PolicyholderSpec, fields: frozenset[str]) -> list[str]:
    """Copy the named fields of ``spec`` onto ``row``; the names that changed."""
    changed = assign(row, {name: getattr(spec, name) for name in _PLAIN_FIELDS if name in fields})
    if "gender" in fields:
        changed += assign(row, {"gender": spec.gender.value})
    if "address" in fields and assign(
        row, {f"address_{part}": getattr(spec.address, part) for part in _ADDRESS_PARTS}
    ):
        changed.append("address")
    return sorted(set(changed))


def spec_of(row: PolicyholderRow, dependents: Sequence[DependentRow]) -> PolicyholderSpec:
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
        address=Address(*(getattr(row, f"address_{part}") for part in _ADDRESS_PARTS)),
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


def _dependent_values(dep: DependentSpec) -> dict[str, object]:
    assert dep.relation is not None
    return {
        "relation": dep.relation.value,
        "given_name": dep.given_name,
        "family_name": dep.family_name,
        "date_of_birth": dep.date_of_birth,
        "gender": dep.gender.value,
        "national_id": dep.national_id,
    }


def new_dependent(company: uuid.UUID, holder: uuid.UUID, dep: DependentSpec) -> DependentRow:
    return DependentRow(
        id=uuid.uuid4(), company_id=company, policyholder_id=holder, **_dependent_values(dep)
    )


# ------------------------------------------------------------------ reading


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


async def current_dependent_ids(
    session: AsyncSession, company: uuid.UUID, holder: uuid.UUID, ids: Collection[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``ids`` are current dependents of ``holder``."""
    return set(
        await session.scalars(
            select(DependentRow.id).where(
                DependentRow.company_id == company,
                DependentRow.policyholder_id == holder,
                DependentRow.id.in_(ids),
                DependentRow.remove_time.is_(None),
            )
        )
    )


# ------------------------------------------------------------------ writing


def replace_dependents(
    session: AsyncSession,
    company: uuid.UUID,
    holder: uuid.UUID,
    current: Sequence[DependentRow],
    wanted: Sequence[DependentSpec],
) -> bool:
    """Make ``wanted`` the holder's dependents (removing the others); whether anything changed."""
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
            session.add(new_dependent(company, holder, spec))
            changed = True
        elif assign(by_id[spec.id], _dependent_values(spec)):
            changed = True
    return changed


# ------------------------------------------------------------------ personal data at rest

#: The encrypted attributes of each table (docs/personal-data.md).
ENCRYPTED_ATTRIBUTES: dict[type[PolicyholderRow] | type[DependentRow], tuple[str, ...]] = {
    PolicyholderRow: (
        "national_id",
        "address_line1",
        "address_line2",
        "address_city",
        "address_region",
        "address_postal_code",
    ),
    DependentRow: ("national_id",),
}


@dataclass(frozen=True, slots=True)
class ReencryptBatch:
    seen: int
    rewritten: int
    last_id: uuid.UUID | None


async def reencrypt_batch(
    session: AsyncSession,
    model: type[PolicyholderRow] | type[DependentRow],
    after: uuid.UUID | None,
    limit: int,
) -> ReencryptBatch:
    """Re-encrypt, under the current key, the values of the next ``limit`` rows
    (by id, after ``after``) that are stored under an older one, and refresh
    stale lookup hashes. The rows are locked meanwhile; the version (etag) is
    left alone, since the values do not change."""
    attributes = ENCRYPTED_ATTRIBUTES[model]
    cipher = keys().cipher
    table = cast(Table, model.__table__)
    plain = [getattr(model, a).label(f"plain_{a}") for a in attributes]
    raw = [type_coerce(getattr(model, a), LargeBinary).label(f"raw_{a}") for a in attributes]
    stmt = select(model.id, model.national_id_hash, *plain, *raw).order_by(model.id).limit(limit)
    if after is not None:
        stmt = stmt.where(model.id > after)
    rows = (await session.execute(stmt.with_for_update())).all()
    rewritten = 0
    for row in rows:
        values = row[2 : 2 + len(attributes)]
        blobs = row[2 + len(attributes) :]
        changes: dict[str, object] = {}
        for attribute, value, blob in zip(attributes, values, blobs, strict=True):
            if blob is not None and not cipher.is_current(bytes(blob)):
                changes[getattr(model, attribute).property.columns[0].name] = value
        expected = national_id_hash(values[0])
        if row[1] != expected:
            changes["national_id_hash"] = expected
        if changes:
            await session.execute(update(table).where(table.c.id == row[0]).values(changes))
            rewritten += 1
    return ReencryptBatch(len(rows), rewritten, rows[-1][0] if rows else None)
