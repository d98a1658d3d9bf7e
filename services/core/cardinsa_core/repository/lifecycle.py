"""The lifecycle scheduler's queries: which companies have live policies, and
which of a company's policies are due for a dated transition.

A transition is due on a date of the policy's own (its *due date*):

- ``activate``: a BOUND policy, on its effective date;
- ``complete_cancellation``: a CANCEL_PENDING policy, on its cancellation's
  effective date;
- ``renew``: an IN_FORCE policy without a successor whose ``do_not_renew`` is
  false, ``renewal_offer_days`` before its expiry date;
- ``expire``: an IN_FORCE policy, the day after its expiry date;
- ``mark_overdue``: a policy with an invoice not settled in full and still
  ISSUED or PARTIALLY_PAID, the day after that invoice's due date;
- ``lapse_non_payment``: an IN_FORCE policy with an invoice not settled in
  full more than its product version's ``grace_period_days`` after its due
  date (its issue date when issued later), the day after the grace period ends.

The due queries run in the company's own tenant context (row-level security
applies); only :func:`companies_with_live_policies` is meant for the platform
role (it reads every tenant's policies, company ids only).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from sqlalchemy import ColumnElement, Date, and_, cast, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from cardinsa_core.repository.models import InvoiceRow, PolicyRow, ProductVersionRow

__all__ = [
    "BILLING_KINDS",
    "DueKind",
    "DuePolicy",
    "companies_with_live_policies",
    "due_for_billing",
    "due_policies",
]


class DueKind(StrEnum):
    """A dated transition, named after the use case that makes it."""

    ACTIVATE = "activate"
    COMPLETE_CANCELLATION = "complete_cancellation"
    RENEW = "renew"
    EXPIRE = "expire"
    MARK_OVERDUE = "mark_overdue"
    LAPSE_NON_PAYMENT = "lapse_non_payment"


#: The kinds found through the policies' invoices (:func:`due_for_billing`).
BILLING_KINDS = frozenset({DueKind.MARK_OVERDUE, DueKind.LAPSE_NON_PAYMENT})


#: The states a dated transition can start from (CANCEL_PENDING: once it exists).
LIVE_STATES = ("BOUND", "IN_FORCE", "CANCEL_PENDING")


@dataclass(frozen=True, slots=True)
class DuePolicy:
    """A policy whose ``kind`` transition is due since ``due_date``."""

    kind: DueKind
    policy_id: uuid.UUID
    company_id: uuid.UUID
    etag: str
    due_date: date


async def companies_with_live_policies(session: AsyncSession) -> list[uuid.UUID]:
    """Every company with a policy a dated transition could move (a platform-role
    session sees every tenant; an application-role one only its own)."""
    result = await session.scalars(
        select(PolicyRow.company_id)
        .where(PolicyRow.state.in_(LIVE_STATES), PolicyRow.delete_time.is_(None))
        .distinct()
        .order_by(PolicyRow.company_id)
    )
    return list(result)


def _due_date(
    kind: DueKind, renewal_offer_days: int
) -> ColumnElement[date] | InstrumentedAttribute[date]:
    if kind is DueKind.ACTIVATE:
        return PolicyRow.effective_date
    if kind is DueKind.COMPLETE_CANCELLATION:
        return PolicyRow.cancel_effective_date  # type: ignore[return-value]
    if kind is DueKind.RENEW:
        return cast(PolicyRow.expiry_date - literal(renewal_offer_days), Date)
    return cast(PolicyRow.expiry_date + literal(1), Date)


def _condition(kind: DueKind) -> ColumnElement[bool]:
    if kind is DueKind.ACTIVATE:
        return PolicyRow.state == "BOUND"
    if kind is DueKind.COMPLETE_CANCELLATION:
        return and_(
            PolicyRow.state == "CANCEL_PENDING", PolicyRow.cancel_effective_date.is_not(None)
        )
    if kind is DueKind.RENEW:
        return and_(
            PolicyRow.state == "IN_FORCE",
            PolicyRow.successor_policy_id.is_(None),
            PolicyRow.do_not_renew.is_(False),
        )
    return PolicyRow.state == "IN_FORCE"


async def due_policies(
    session: AsyncSession,
    company_id: uuid.UUID,
    kind: DueKind,
    *,
    today: date,
    renewal_offer_days: int = 0,
    after: tuple[date, uuid.UUID] | None = None,
    limit: int = 100,
) -> Sequence[DuePolicy]:
    """Up to ``limit`` of the company's policies whose ``kind`` transition is due
    on or before ``today``, oldest due date first (then by id); ``after`` is the
    (due date, id) of the last one of the previous batch (keyset paging, so a
    policy that could not be moved does not come back in the same pass)."""
    due = _due_date(kind, renewal_offer_days).label("due_date")
    query = select(PolicyRow, due).where(
        PolicyRow.company_id == company_id,
        PolicyRow.delete_time.is_(None),
        _condition(kind),
        _due_date(kind, renewal_offer_days) <= today,
    )
    if after is not None:
        key = _due_date(kind, renewal_offer_days)
        query = query.where(or_(key > after[0], and_(key == after[0], PolicyRow.id > after[1])))
    query = query.order_by(_due_date(kind, renewal_offer_days), PolicyRow.id).limit(limit)
    rows = (await session.execute(query)).all()
    return [
        DuePolicy(kind, row.id, row.company_id, row.etag, due_date)
        for row, due_date in ((r[0], r[1]) for r in rows)
    ]


async def due_for_billing(
    session: AsyncSession,
    company_id: uuid.UUID,
    kind: DueKind,
    *,
    today: date,
    after: tuple[date, uuid.UUID] | None = None,
    limit: int = 100,
) -> Sequence[DuePolicy]:
    """As :func:`due_policies`, for the kinds the policies' invoices make due
    (``mark_overdue``, ``lapse_non_payment``)."""
    unpaid = and_(
        InvoiceRow.company_id == company_id,
        InvoiceRow.amount > 0,
        InvoiceRow.settled < InvoiceRow.amount,
    )
    if kind is DueKind.MARK_OVERDUE:
        late = (
            select(
                InvoiceRow.policy_id,
                func.min(cast(InvoiceRow.due_date + literal(1), Date)).label("due"),
            )
            .where(unpaid, InvoiceRow.state.in_(("ISSUED", "PARTIALLY_PAID")))
            .group_by(InvoiceRow.policy_id)
            .subquery()
        )
        condition: ColumnElement[bool] = PolicyRow.delete_time.is_(None)
    else:
        # From the due date, or the issue date for an invoice issued late (a
        # backdated bind): nobody is in arrears before they were billed.
        grace_end = cast(
            func.greatest(InvoiceRow.due_date, InvoiceRow.issue_date)
            + ProductVersionRow.grace_period_days
            + literal(1),
            Date,
        )
        late = (
            select(InvoiceRow.policy_id, func.min(grace_end).label("due"))
            .join(
                PolicyRow,
                and_(
                    PolicyRow.company_id == InvoiceRow.company_id,
                    PolicyRow.id == InvoiceRow.policy_id,
                ),
            )
            .join(
                ProductVersionRow,
                and_(
                    ProductVersionRow.company_id == PolicyRow.company_id,
                    ProductVersionRow.product_id == PolicyRow.product_id,
                    ProductVersionRow.version == PolicyRow.product_version,
                ),
            )
            .where(unpaid, InvoiceRow.state.in_(("ISSUED", "PARTIALLY_PAID", "OVERDUE")))
            .group_by(InvoiceRow.policy_id)
            .subquery()
        )
        condition = and_(PolicyRow.delete_time.is_(None), PolicyRow.state == "IN_FORCE")
    query = (
        select(PolicyRow, late.c.due)
        .join(late, late.c.policy_id == PolicyRow.id)
        .where(PolicyRow.company_id == company_id, condition, late.c.due <= today)
    )
    if after is not None:
        query = query.where(
            or_(late.c.due > after[0], and_(late.c.due == after[0], PolicyRow.id > after[1]))
        )
    query = query.order_by(late.c.due, PolicyRow.id).limit(limit)
    rows = (await session.execute(query)).all()
    return [DuePolicy(kind, r[0].id, r[0].company_id, r[0].etag, r[1]) for r in rows]
