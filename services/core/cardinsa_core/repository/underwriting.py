"""Underwriting issues in the database: one row per ``(policy, code, key)``."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.domain.underwriting import IssueState
from cardinsa_core.repository.models import UnderwritingIssueRow
from cardinsa_core.repository.rows import children
from cardinsa_foundation.use_cases import lookup_uuid, not_found

__all__ = ["ISSUE", "count_open", "find_issue", "policy_issues"]

#: The resource as errors name it (UNDERWRITING_ISSUE_NOT_FOUND).
ISSUE = "underwriting issue"


def policy_issues(company: uuid.UUID, policy_id: uuid.UUID) -> Select[UnderwritingIssueRow]:
    """The policy's issues (a listing orders them)."""
    return children(UnderwritingIssueRow, company, UnderwritingIssueRow.policy_id, policy_id)


async def find_issue(
    session: AsyncSession,
    company: uuid.UUID,
    policy_id: uuid.UUID,
    issue_id: str,
    *,
    lock: bool = False,
) -> UnderwritingIssueRow:
    """The policy's issue ``issue_id`` (``FOR UPDATE`` with ``lock``), else NOT_FOUND."""
    key = lookup_uuid(issue_id)
    row = None
    if key is not None:
        stmt = policy_issues(company, policy_id).where(UnderwritingIssueRow.id == key)
        if lock:
            stmt = stmt.with_for_update()
        row = (await session.scalars(stmt)).first()
    if row is None:
        raise not_found(ISSUE, issue_id)
    return row


async def count_open(session: AsyncSession, company: uuid.UUID, policy_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(
        UnderwritingIssueRow.company_id == company,
        UnderwritingIssueRow.policy_id == policy_id,
        UnderwritingIssueRow.state == IssueState.OPEN.value,
    )
    return int(await session.scalar(stmt) or 0)
