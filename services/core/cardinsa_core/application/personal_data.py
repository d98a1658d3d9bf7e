"""Personal data: data-subject requests (export, erasure) and re-encryption.

- :meth:`DataSubjectRequests.export` (GDPR articles 15 and 20) returns every
  record core holds about a policyholder as JSON-ready dicts, national ids
  unmasked, and audits that the export was made (``policyholder.export``).
- :meth:`DataSubjectRequests.erase` (article 17) pseudonymises the holder and
  its dependents (rules in :mod:`cardinsa_core.domain.personal_data`), keeps the
  financial and audit records, and audits it (``policyholder.erase``); refused
  while a policy runs or a claim is open.
- :func:`reencrypt_all` rewrites every encrypted value under the current key
  after a key rotation (``python -m cardinsa_core.cli reencrypt``).

All of it acts within the caller's company (row-level security); the
permissions (``policyholders.export_personal_data``,
``policyholders.erase_personal_data``) are checked before a call gets here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cardinsa_core.application.context import CoreContext, own_company
from cardinsa_core.application.policyholders import PolicyholderView
from cardinsa_core.domain.personal_data import erasure_blocker, pseudonym
from cardinsa_core.domain.policyholders import READ_NATIONAL_ID, Gender, PartyKind
from cardinsa_core.repository.data_subjects import (
    all_dependents,
    holder_records,
    record_dict,
    running_states,
)
from cardinsa_core.repository.models import DependentRow, PolicyholderRow
from cardinsa_core.repository.policyholders import POLICYHOLDERS, dependents_of, reencrypt_batch
from cardinsa_foundation.db import Database
from cardinsa_foundation.errors import FailedPrecondition
from cardinsa_foundation.use_cases import require_principal

__all__ = ["DataSubjectRequests", "PersonalDataExport", "ReencryptReport", "reencrypt_all"]

#: What an erasure clears on the policyholder (names are pseudonymised).
ERASED_HOLDER_FIELDS = (
    "national_id",
    "date_of_birth",
    "gender",
    "registration_number",
    "email",
    "phone",
    "address",
)


@dataclass(frozen=True, slots=True)
class PersonalDataExport:
    policyholder_id: str
    export_time: datetime
    data: dict[str, Any]


class DataSubjectRequests:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx

    async def export(self, policyholder_id: str) -> PersonalDataExport:
        company = own_company(require_principal())
        now = datetime.now(UTC)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            holder = await POLICYHOLDERS.find(session, company, policyholder_id)
            records = await holder_records(session, company, holder)
            data: dict[str, Any] = {"policyholder": record_dict(holder)}
            data.update({name: [record_dict(r) for r in rows] for name, rows in records.items()})
            await self.ctx.audit.record(
                session,
                action="policyholder.export",
                entity_type="policyholder",
                entity_id=holder.id,
                detail={name: len(rows) for name, rows in records.items()},
            )
            self.ctx.events.personal_data_request(
                session, company, holder.id, "export_personal_data"
            )
        return PersonalDataExport(str(holder.id), now, data)

    async def erase(self, policyholder_id: str, etag: str) -> PolicyholderView:
        principal = require_principal()
        company = own_company(principal)
        async with self.ctx.change(
            POLICYHOLDERS, company, policyholder_id, method="erase", etag=etag, allow_deleted=True
        ) as change:
            session, row = change.session, change.row
            blocker = erasure_blocker(*await running_states(session, company, row.id))
            if blocker is not None:
                reason, message = blocker
                raise FailedPrecondition(message, reason=reason)
            name = pseudonym(row.id)
            if row.kind == PartyKind.ORGANIZATION.value:
                row.legal_name = name
            else:
                row.given_name, row.family_name = name, name
            row.display_name = name
            row.national_id = ""
            row.date_of_birth = None
            row.gender = Gender.UNSPECIFIED.value
            row.registration_number = ""
            row.email = ""
            row.phone = ""
            for part in ("line1", "line2", "city", "region", "postal_code", "country_code"):
                setattr(row, f"address_{part}", "")
            now = datetime.now(UTC)
            row.update_time = now
            if row.delete_time is None:
                row.soft_delete()
            dependents = await all_dependents(session, company, row.id)
            erased = 0
            for dep in dependents:
                dep_name = pseudonym(dep.id)
                dep.given_name, dep.family_name = dep_name, dep_name
                dep.national_id = ""
                dep.date_of_birth = None
                dep.gender = Gender.UNSPECIFIED.value
                if dep.remove_time is None:
                    dep.remove_time = now
                erased += 1
            await session.flush()
            await self.ctx.audit.record(
                session,
                action="policyholder.erase",
                entity_type="policyholder",
                entity_id=row.id,
                changed_fields=sorted({*ERASED_HOLDER_FIELDS, "display_name", "delete_time"}),
                detail={"dependents": erased},
            )
            self.ctx.events.personal_data_request(session, company, row.id, "erase_personal_data")
            current = (await dependents_of(session, company, [row.id]))[row.id]
            return PolicyholderView(row, tuple(current), READ_NATIONAL_ID in principal.permissions)


@dataclass(frozen=True, slots=True)
class ReencryptReport:
    table: str
    seen: int
    rewritten: int


async def reencrypt_all(
    db: Database,
    *,
    batch_size: int = 500,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[ReencryptReport]:
    """Re-encrypt every policyholder's and dependent's personal data under the
    current key (and refresh stale lookup hashes), one transaction per batch
    across all tenants (the platform role). Idempotent: values already under the
    current key are left alone, so an interrupted run is simply run again.
    ``progress(table, seen, rewritten)`` follows each batch."""
    reports = []
    for model in (PolicyholderRow, DependentRow):
        table = model.__tablename__
        after: uuid.UUID | None = None
        seen = rewritten = 0
        while True:
            async with db.unit_of_work(company_id=None, cross_tenant=True) as session:
                batch = await reencrypt_batch(session, model, after, batch_size)
            seen += batch.seen
            rewritten += batch.rewritten
            if progress is not None and batch.seen:
                progress(table, seen, rewritten)
            if batch.last_id is None or batch.seen < batch_size:
                break
            after = batch.last_id
        reports.append(ReencryptReport(table, seen, rewritten))
    return reports
