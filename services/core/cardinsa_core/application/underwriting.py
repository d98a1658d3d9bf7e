"""Underwriting issues: raised by a quote, decided by an underwriter, checked at bind.

- :func:`raise_issues` runs inside the quote's unit of work (the policy row is
  locked there): it makes the policy's issues what the rules found this time
  (:func:`cardinsa_core.domain.underwriting.evaluate`). An issue found again
  keeps its decision; one no longer found is deleted (its decisions stay in the
  audit log); a new one is OPEN. It sets ``open_underwriting_issues`` on the row.
- :func:`check_bindable` runs inside the bind's unit of work: FAILED_PRECONDITION
  ``UNDERWRITING_ISSUES_OPEN`` while an issue is OPEN or DECLINED (one
  PreconditionFailure violation per issue), and, given today and the company's
  ``max_backdate_days``, ``BACKDATED`` when the effective date has since fallen
  further into the past without an approved BACKDATED issue for it.
- :class:`UnderwritingUseCases`: ListUnderwritingIssues,
  ApproveUnderwritingIssue and DeclineUnderwritingIssue. A decision locks the
  policy row, then the issue row (the order quote and bind lock them in, so a
  decision and a quote or bind of the same policy queue, never deadlock), is
  allowed only while the policy is QUOTED, and changes the policy
  (``open_underwriting_issues``, ``update_time`` and so its etag).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.application.context import CoreContext, first_call, own_company
from cardinsa_core.domain.underwriting import (
    BACKDATED,
    Decision,
    Finding,
    IssueState,
    backdated,
    blocks_bind,
    check_decidable,
    check_decision_note,
    decide,
)
from cardinsa_core.repository.models import PolicyRow, UnderwritingIssueRow
from cardinsa_core.repository.policies import POLICIES
from cardinsa_core.repository.underwriting import ISSUE, count_open, find_issue, policy_issues
from cardinsa_foundation.errors import FailedPrecondition, PreconditionViolation
from cardinsa_foundation.idempotency import request_id_reused
from cardinsa_foundation.paging import OrderTerm, Page
from cardinsa_foundation.use_cases import (
    check_request_id,
    deleted,
    invalid,
    log_request_id,
    lookup_uuid,
    not_found,
    require_principal,
)

__all__ = [
    "UNDERWRITING_ISSUES_OPEN",
    "UnderwritingUseCases",
    "check_bindable",
    "raise_issues",
]

UNDERWRITING_ISSUES_OPEN = "UNDERWRITING_ISSUES_OPEN"
#: PreconditionFailure violation type of an issue standing in the way.
UNDERWRITING = "UNDERWRITING"
#: How many issue ids ErrorInfo metadata names (the PreconditionFailure lists 20).
SHOWN_ISSUES = 5
_OLDEST_FIRST = (OrderTerm(UnderwritingIssueRow.create_time), OrderTerm(UnderwritingIssueRow.id))


async def _issues(
    session: AsyncSession, row: PolicyRow, *, lock: bool = False
) -> list[UnderwritingIssueRow]:
    stmt = policy_issues(row.company_id, row.id).order_by(
        UnderwritingIssueRow.create_time, UnderwritingIssueRow.id
    )
    if lock:
        stmt = stmt.with_for_update()
    return list((await session.scalars(stmt)).all())


async def raise_issues(session: AsyncSession, row: PolicyRow, findings: Iterable[Finding]) -> int:
    """Make the policy's issues the ``findings`` of this quote; the OPEN count.

    Call it in the quote's unit of work, with the policy row locked. Also sets
    ``row.open_underwriting_issues``.
    """
    wanted: dict[tuple[str, str], Finding] = {}
    for finding in findings:
        wanted.setdefault((finding.code, finding.key), finding)
    for issue in await _issues(session, row, lock=True):
        found = wanted.pop((issue.code, issue.key), None)
        if found is None:
            await session.delete(issue)
        elif issue.state == IssueState.OPEN.value and issue.description != found.description:
            issue.description = found.description
    await session.flush()
    for finding in wanted.values():
        session.add(
            UnderwritingIssueRow(
                id=uuid.uuid4(),
                company_id=row.company_id,
                policy_id=row.id,
                code=finding.code,
                key=finding.key,
                description=finding.description,
                state=IssueState.OPEN.value,
                decision_note="",
            )
        )
        # One at a time: each gets its own creation time, so the list keeps their order.
        await session.flush()
    open_count = await count_open(session, row.company_id, row.id)
    row.open_underwriting_issues = open_count
    return open_count


def _subject(issue: UnderwritingIssueRow) -> str:
    return f"policies/{issue.policy_id}/underwritingIssues/{issue.id}"


async def check_bindable(
    session: AsyncSession,
    row: PolicyRow,
    *,
    today: date | None = None,
    max_backdate_days: int | None = None,
) -> None:
    """FAILED_PRECONDITION unless the policy's underwriting allows the bind.

    ``UNDERWRITING_ISSUES_OPEN`` while an issue is OPEN or DECLINED. With
    ``today`` (the company's date) and ``max_backdate_days``: ``BACKDATED`` when
    the effective date is now further back than allowed and no approved
    BACKDATED issue covers it (the policy must be quoted again).
    """
    issues = await _issues(session, row)
    blocking = [i for i in issues if blocks_bind(i.state)]
    if blocking:
        raise _issues_open(blocking)
    if today is None or max_backdate_days is None:
        return
    late = backdated(row.effective_date, today, max_backdate_days)
    if late is None:
        return
    approved = any(
        i.code == BACKDATED and i.key == late.key and i.state == IssueState.APPROVED.value
        for i in issues
    )
    if not approved:
        raise FailedPrecondition(
            f"{late.description}; quote the policy again so that an underwriter can "
            "approve the backdating",
            reason=BACKDATED,
            metadata={
                "effective_date": row.effective_date.isoformat(),
                "max_backdate_days": str(max_backdate_days),
            },
            precondition_violations=[
                PreconditionViolation(UNDERWRITING, f"policies/{row.id}", late.description)
            ],
        )


def _issues_open(blocking: Sequence[UnderwritingIssueRow]) -> FailedPrecondition:
    open_ = sum(1 for i in blocking if i.state == IssueState.OPEN.value)
    declined = len(blocking) - open_
    shown = blocking[:SHOWN_ISSUES]
    return FailedPrecondition(
        f"{len(blocking)} underwriting issue(s) stand in the way of binding "
        f"({open_} open, {declined} declined); an underwriter must approve each "
        "(a declined one goes away only when a change of the policy and a new quote "
        "no longer raise it)",
        reason=UNDERWRITING_ISSUES_OPEN,
        metadata={
            "open": str(open_),
            "declined": str(declined),
            "issue_ids": ",".join(str(i.id) for i in shown),
        },
        precondition_violations=[
            PreconditionViolation(
                UNDERWRITING, _subject(i), f"{i.code} ({i.state.lower()}): {i.description}"
            )
            for i in blocking
        ],
    )


class UnderwritingUseCases:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx

    async def list_issues(
        self, policy_id: str, *, page_size: int, page_token: str
    ) -> Page[UnderwritingIssueRow]:
        """The issues of the policy's last quote, oldest first."""
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            policy = await POLICIES.find(session, company, policy_id)
            return await self.ctx.page(
                session,
                policy_issues(company, policy.id),
                order=_OLDEST_FIRST,
                page_size=page_size,
                page_token=page_token,
                parent=str(policy.id),
            )

    async def approve(
        self, policy_id: str, issue_id: str, *, note: str, request_id: str
    ) -> UnderwritingIssueRow:
        return await self._decide(Decision.APPROVE, policy_id, issue_id, note, request_id)

    async def decline(
        self, policy_id: str, issue_id: str, *, note: str, request_id: str
    ) -> UnderwritingIssueRow:
        return await self._decide(Decision.DECLINE, policy_id, issue_id, note, request_id)

    async def _decide(
        self, decision: Decision, policy_id: str, issue_id: str, note: str, request_id: str
    ) -> UnderwritingIssueRow:
        principal = require_principal()
        company = own_company(principal)
        invalid(
            "the decision is not valid",
            check_request_id(request_id) + check_decision_note(note),
        )
        policy_key, issue_key = lookup_uuid(policy_id), lookup_uuid(issue_id)
        if policy_key is None:
            raise not_found(POLICIES.name, policy_id)
        if issue_key is None:
            raise not_found(ISSUE, issue_id)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            seen = await first_call(
                session,
                company,
                f"underwriting_issue.{decision.value}",
                request_id,
                str(issue_key),
                str(policy_key),
                note,
            )
            if seen is not None:
                if seen != str(issue_key):
                    raise request_id_reused()
                policy = await POLICIES.find(session, company, policy_id)
                return await find_issue(session, company, policy.id, issue_id)
            # The policy first, as quote and bind lock it: decisions queue behind them.
            policy = await POLICIES.find(session, company, policy_id, lock=True)
            issue = await find_issue(session, company, policy.id, issue_id, lock=True)
            before = issue.state
            state = decide(before, decision)
            if policy.delete_time is not None:
                raise deleted(POLICIES.name)
            check_decidable(policy.state)
            now = datetime.now(UTC)
            issue.state = state.value
            issue.decided_by = principal.subject
            issue.decide_time = now
            issue.decision_note = note.strip()
            issue.request_id = log_request_id(request_id)
            await session.flush()
            policy.open_underwriting_issues = await count_open(session, company, policy.id)
            policy.update_time = now
            await session.flush()
            await self.ctx.audit.record(
                session,
                action=f"policy.underwriting_issue.{decision.value}",
                entity_type="policy",
                entity_id=policy.id,
                changed_fields=["open_underwriting_issues"],
                detail={
                    "issue_id": str(issue.id),
                    "code": issue.code,
                    "key": issue.key,
                    "from_state": before,
                    "to_state": state.value,
                    "note": issue.decision_note,
                    "open_underwriting_issues": policy.open_underwriting_issues,
                },
            )
            return issue
