"""Companies (the tenants) in the database: lookups, the List statement, new rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import ColumnElement, Select, false, select
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_company.domain.companies import CompanyProfile
from cardinsa_company.domain.lifecycle import CompanyState
from cardinsa_company.repository.documents import write_profile
from cardinsa_company.repository.models import CompanyRow
from cardinsa_company.repository.queries import listing
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec
from cardinsa_foundation.paging import OrderTerm

COMPANY_FILTER: Final = FilterSpec(
    {
        "display_name": FilterField(CompanyRow.display_name, FieldType.STRING),
        "legal_name": FilterField(CompanyRow.legal_name, FieldType.STRING),
        "registration_number": FilterField(CompanyRow.registration_number, FieldType.STRING),
        "country": FilterField(CompanyRow.country, FieldType.STRING),
        "default_currency": FilterField(CompanyRow.default_currency, FieldType.STRING),
        "state": FilterField(
            CompanyRow.state, FieldType.ENUM, values=[s.value for s in CompanyState]
        ),
        "create_time": FilterField(CompanyRow.create_time, FieldType.TIMESTAMP),
        "update_time": FilterField(CompanyRow.update_time, FieldType.TIMESTAMP),
    }
)
COMPANY_ORDER: Final = {
    "create_time": CompanyRow.create_time,
    "update_time": CompanyRow.update_time,
    "display_name": CompanyRow.display_name,
    "country": CompanyRow.country,
}
DEFAULT_COMPANY_ORDER: Final = [OrderTerm(CompanyRow.create_time, True)]
REGISTRATION_INDEX: Final = "uq_companies_country_registration_number"


async def find_company(
    session: AsyncSession, company_id: uuid.UUID, *, lock: bool = False
) -> CompanyRow | None:
    """The company with this id (locked for update when ``lock``), if the
    transaction's tenant may see it."""
    stmt = select(CompanyRow).where(CompanyRow.id == company_id)
    if lock:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


def new_company(company_id: uuid.UUID, profile: CompanyProfile) -> CompanyRow:
    """A new ACTIVE company holding a normalised, valid profile (not yet added)."""
    row = CompanyRow(
        id=company_id,
        state=CompanyState.ACTIVE.value,
        state_reason="",
        state_change_time=datetime.now(UTC),
    )
    write_profile(row, profile)
    return row


def companies_listing(
    *,
    only: uuid.UUID | None,
    every: bool,
    show_deleted: bool,
    condition: ColumnElement[bool] | None,
) -> Select[CompanyRow]:
    """Every company (``every``), else the one company ``only`` (none without it)."""
    scope: list[ColumnElement[bool]] = []
    if not every:
        scope.append(CompanyRow.id == only if only is not None else false())
    return listing(CompanyRow, *scope, show_deleted=show_deleted, condition=condition)
