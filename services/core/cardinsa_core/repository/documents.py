"""Issued documents in the database, and the rows their facts are read from.

A document is found by (company, kind, subject, locale, facts hash), the
table's unique key. :func:`store_document` inserts with ``ON CONFLICT DO
NOTHING`` and reads the row back, so two requests that render the same facts
at once both get the one stored row (the loser's bytes, identical anyway, are
dropped).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.repository.models import ClaimLogEntryRow, DependentRow, DocumentRow

__all__ = ["dependents_by_id", "find_document", "last_log_entry", "store_document"]


async def find_document(
    session: AsyncSession,
    company: uuid.UUID,
    *,
    kind: str,
    subject: str,
    locale: str,
    facts_sha256: str,
) -> DocumentRow | None:
    return (
        await session.scalars(
            select(DocumentRow).where(
                DocumentRow.company_id == company,
                DocumentRow.kind == kind,
                DocumentRow.subject == subject,
                DocumentRow.locale == locale,
                DocumentRow.facts_sha256 == facts_sha256,
            )
        )
    ).first()


async def store_document(
    session: AsyncSession,
    company: uuid.UUID,
    *,
    kind: str,
    subject: str,
    locale: str,
    facts_sha256: str,
    content: bytes,
    created_by: str | None,
) -> tuple[DocumentRow, bool]:
    """The stored document of these facts, and whether this call stored it."""
    new_id = uuid.uuid4()
    inserted = await session.scalar(
        insert(DocumentRow)
        .values(
            id=new_id,
            company_id=company,
            kind=kind,
            subject=subject,
            locale=locale,
            facts_sha256=facts_sha256,
            content_sha256=hashlib.sha256(content).hexdigest(),
            content=content,
            created_by=created_by,
        )
        .on_conflict_do_nothing(
            index_elements=["company_id", "kind", "subject", "locale", "facts_sha256"]
        )
        .returning(DocumentRow.id)
    )
    row = await find_document(
        session, company, kind=kind, subject=subject, locale=locale, facts_sha256=facts_sha256
    )
    assert row is not None, "the document was stored or found"
    return row, inserted == new_id


async def dependents_by_id(
    session: AsyncSession, company: uuid.UUID, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, DependentRow]:
    """The company's dependents with these ids (removed ones too: a policy
    version names who it insured)."""
    if not ids:
        return {}
    rows = await session.scalars(
        select(DependentRow).where(DependentRow.company_id == company, DependentRow.id.in_(ids))
    )
    return {row.id: row for row in rows}


async def last_log_entry(
    session: AsyncSession, company: uuid.UUID, claim_id: uuid.UUID, actions: Sequence[str]
) -> ClaimLogEntryRow | None:
    """The claim's latest log entry of one of ``actions``."""
    return (
        await session.scalars(
            select(ClaimLogEntryRow)
            .where(
                ClaimLogEntryRow.company_id == company,
                ClaimLogEntryRow.claim_id == claim_id,
                ClaimLogEntryRow.action.in_(actions),
            )
            .order_by(ClaimLogEntryRow.create_time.desc(), ClaimLogEntryRow.id.desc())
            .limit(1)
        )
    ).first()
