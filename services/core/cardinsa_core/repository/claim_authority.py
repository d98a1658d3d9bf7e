"""Claim authority in the database: the approval bands (one row per company and
currency) and the claim settings (one row per company). No row: the defaults
(see :class:`cardinsa_core.application.claim_authority.ClaimAuthority`)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.domain.claim_authority import ClaimSettings
from cardinsa_core.repository.models import ApprovalBandsRow, ClaimSettingsRow

__all__ = [
    "add_unless_present",
    "approval_bands",
    "claim_settings",
    "configured_approval_bands",
    "settings_of",
]


async def approval_bands(
    session: AsyncSession, company: uuid.UUID, currency: str, *, lock: bool = False
) -> ApprovalBandsRow | None:
    """The company's own bands in ``currency``, if it set any."""
    return await session.get(ApprovalBandsRow, (company, currency), with_for_update=lock)


async def configured_approval_bands(
    session: AsyncSession, company: uuid.UUID
) -> list[ApprovalBandsRow]:
    """Every set of bands the company configured, by currency code."""
    result = await session.scalars(
        select(ApprovalBandsRow)
        .where(ApprovalBandsRow.company_id == company)
        .order_by(ApprovalBandsRow.currency)
    )
    return list(result)


async def claim_settings(
    session: AsyncSession, company: uuid.UUID, *, lock: bool = False
) -> ClaimSettingsRow | None:
    """The company's claim settings row, if it changed the defaults.

    Reading it inside a claim transition's unit of work (``session``) sees the
    settings as that transaction does; :func:`settings_of` gives the values.
    """
    return await session.get(ClaimSettingsRow, company, with_for_update=lock)


def settings_of(row: ClaimSettingsRow | None) -> ClaimSettings:
    """The settings a row holds; the defaults for None."""
    if row is None:
        return ClaimSettings()
    return ClaimSettings(require_segregation_of_duties=row.require_segregation_of_duties)


async def add_unless_present(
    session: AsyncSession, row: ApprovalBandsRow | ClaimSettingsRow
) -> bool:
    """Insert ``row`` (a first write of its key); False when a concurrent call
    inserted that key first (the row is then not added: read it and update)."""
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        return False
    return True
