"""Operator bootstrap: register a company from the command line (no caller, no token).

Used to register the company that identity's first platform admin or the demo
admin already belongs to. Idempotent: an existing company is left as it is.
"""

from __future__ import annotations

import uuid

from cardinsa_company.application.context import CompanyContext, CompanyScope
from cardinsa_company.domain.companies import (
    UPDATABLE_FIELDS,
    CompanyProfile,
    check_profile,
    normalize_profile,
)
from cardinsa_company.repository.companies import find_company, new_company
from cardinsa_company.repository.models import CompanyRow
from cardinsa_foundation.errors import InvalidArgument


async def ensure_company(
    ctx: CompanyContext, *, company_id: uuid.UUID, profile: CompanyProfile
) -> tuple[CompanyRow, bool]:
    """The company with this id, created ACTIVE from ``profile`` when missing;
    the flag says whether it was created (audited as ``company.create`` by the CLI)."""
    profile = normalize_profile(profile)
    violations = check_profile(profile)
    if violations:
        raise InvalidArgument("the company is not valid", field_violations=violations)
    # The tenant of this transaction is the company itself: nothing else is visible.
    async with ctx.db.unit_of_work(company_id=company_id) as session:
        row = await find_company(session, company_id)
        if row is not None:
            return row, False
        row = new_company(company_id, profile)
        session.add(row)
        await session.flush()
        await ctx.record(
            session,
            CompanyScope(row.id, cross_company=False),
            "company.create",
            row.id,
            sorted(UPDATABLE_FIELDS),
            via="cli",
            display_name=row.display_name,
        )
        ctx.events.company_changed(session, row, change="created", from_state=None)
        return row, True
