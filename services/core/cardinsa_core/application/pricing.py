"""Pricing a policy and recording its premium transactions.

The policy use cases call this module inside their unit of work, with the
policy row locked:

- :meth:`Pricing.rate` -- the rating of a policy's terms on a product version,
  by the strategy the company's feature flags choose
  (:func:`cardinsa_core.domain.rating.strategy_for`); members are rated by
  their age on the term's first day and their relation to the policyholder.
- :meth:`Pricing.bound` -- NEW (or RENEW for a renewal) at bind: the quoted net
  premium, its tax and the policy fee.
- :meth:`Pricing.endorsed` -- ENDORSE: the difference of the full-term net
  premiums over the remaining days, and the tax on it.
- :meth:`Pricing.cancelled` -- CANCEL: the return premium by the reason and
  the product's rule (FRAUD: FLAT; MEMBER_REQUEST with a short-rate penalty:
  SHORT_RATE; otherwise PRO_RATA), and the tax on it; the fee is not returned.
- :meth:`Pricing.reinstated` -- REINSTATE: charges back exactly what the
  cancellation returned (premium and tax).

Every amount is exact money in the currency's minor units; each transaction
stores its own rounding, so the transactions always sum to the written
premium.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.application.billing import Billing
from cardinsa_core.application.context import CoreContext
from cardinsa_core.application.tenants import TenantFacts
from cardinsa_core.domain import premium
from cardinsa_core.domain.money import Money
from cardinsa_core.domain.policies import CancelReason, InsuredMembers, Policy, PolicyTerms
from cardinsa_core.domain.premium import PremiumTransaction, RefundMethod, TransactionKind
from cardinsa_core.domain.rating import (
    BASIS_POINTS,
    RatedMember,
    Rating,
    RatingRequest,
    RatingRules,
    strategy_for,
    tax_of,
)
from cardinsa_core.repository.models import (
    DependentRow,
    PolicyholderRow,
    PolicyRow,
    PremiumTransactionRow,
)
from cardinsa_core.repository.premium import add_transaction, net_transactions, transactions_of
from cardinsa_core.repository.products import VersionView, load_version

__all__ = ["Priced", "Pricing", "breakdown_of", "refund_method"]


def breakdown_of(row: PolicyRow) -> Rating | None:
    """The stored rating of the policy's current terms (None before quote)."""
    data: Any = row.premium_breakdown
    if not data:
        return None
    if isinstance(data, str):  # the one-round-trip read returns JSON text
        data = json.loads(data)
    return Rating.from_json(data)


def refund_method(reason: CancelReason, rules: RatingRules) -> RefundMethod:
    """How much a cancellation returns: by its reason and the product's rule."""
    if reason is CancelReason.FRAUD:
        return RefundMethod.FLAT
    if reason is CancelReason.MEMBER_REQUEST and rules.short_rate_penalty_basis_points:
        return RefundMethod.SHORT_RATE
    return RefundMethod.PRO_RATA


@dataclass(frozen=True, slots=True)
class Priced:
    """A product version as pricing needs it."""

    version: VersionView
    rules: RatingRules

    @property
    def currency(self) -> str:
        return self.version.row.currency


class Pricing:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx
        self.billing = Billing(ctx)

    async def _bill(
        self,
        session: AsyncSession,
        row: PolicyRow,
        added: PremiumTransactionRow,
        *,
        actor: str | None,
        policy_number: str | None = None,
    ) -> None:
        """The invoices of a transaction just added, in the same unit of work."""
        number = policy_number or row.policy_number
        assert number is not None, "only a bound policy has premium transactions"
        await self.billing.bill(session, row, added, policy_number=number, actor=actor)

    @staticmethod
    async def product(session: AsyncSession, row: PolicyRow, version: int | None = None) -> Priced:
        """The policy's product version (its pinned one unless ``version``)."""
        found = await load_version(
            session, row.company_id, row.product_id, version or row.product_version
        )
        if found is None:  # pragma: no cover - the foreign key guarantees it
            raise LookupError("the policy's product version is missing")
        return Priced(found, RatingRules.from_json(found.row.rating_rules))

    @staticmethod
    async def members(
        session: AsyncSession, company: uuid.UUID, holder: uuid.UUID, insured: InsuredMembers
    ) -> tuple[RatedMember, ...]:
        """The insured members with their dates of birth and relations."""
        rated: list[RatedMember] = []
        if insured.holder:
            birth = await session.scalar(
                select(PolicyholderRow.date_of_birth).where(
                    PolicyholderRow.company_id == company, PolicyholderRow.id == holder
                )
            )
            rated.append(RatedMember.holder(birth))
        if insured.dependent_ids:
            rows = await session.scalars(
                select(DependentRow).where(
                    DependentRow.company_id == company,
                    DependentRow.id.in_(sorted(insured.dependent_ids)),
                )
            )
            for dep in sorted(rows, key=lambda d: str(d.id)):
                rated.append(RatedMember.dependent(dep.id, dep.relation, dep.date_of_birth))
        return tuple(rated)

    async def request(
        self,
        session: AsyncSession,
        row: PolicyRow,
        priced: Priced,
        terms: PolicyTerms,
    ) -> RatingRequest:
        version = priced.version.row
        return RatingRequest(
            currency=version.currency,
            base_premium=Money(version.base_premium, version.currency).rounded(),
            term_months=version.term_months,
            rules=priced.rules,
            members=await self.members(session, row.company_id, row.policyholder_id, terms.insured),
            start=terms.effective_date,
            end=terms.expiry_date,
            sum_insured=terms.sum_insured,
        )

    @staticmethod
    def rate(request: RatingRequest, facts: TenantFacts) -> Rating:
        """The rating by the strategy the company's feature flags choose."""
        return strategy_for(facts.feature_flags).rate(request)

    # ------------------------------------------------------------- transactions

    async def bound(
        self, session: AsyncSession, row: PolicyRow, policy: Policy, *, actor: str | None
    ) -> None:
        """NEW (RENEW for a renewal) at bind: the quoted premium of the term."""
        rating = breakdown_of(row)
        if rating is None:  # pragma: no cover - a QUOTED policy has its rating
            raise LookupError("the policy has no rating")
        kind = TransactionKind.RENEW if policy.is_renewal else TransactionKind.NEW
        terms = policy.terms
        first = PremiumTransaction(kind, terms.effective_date, terms.expiry_date, rating.net)
        existing = await transactions_of(session, row)
        added = add_transaction(
            session,
            row,
            existing,
            first,
            tax=rating.tax,
            fee=rating.fee,
            description=f"{kind.value.lower()} business, rated {rating.strategy}",
            actor=actor,
            version=policy.version,
        )
        await self._bill(session, row, added, actor=actor, policy_number=policy.policy_number)

    async def endorsed(
        self,
        session: AsyncSession,
        row: PolicyRow,
        *,
        old: Rating,
        new: Rating,
        effective: date,
        rules: RatingRules,
        description: str,
        actor: str | None,
        version: int,
    ) -> PremiumTransaction:
        """ENDORSE: the full-term difference over the remaining days."""
        existing = await transactions_of(session, row)
        change = premium.endorse(net_transactions(existing), old.net, new.net, effective)
        added = add_transaction(
            session,
            row,
            existing,
            change,
            tax=tax_of(change.amount, rules),
            fee=Money.zero(change.amount.currency),
            description=description,
            actor=actor,
            version=version,
        )
        await self._bill(session, row, added, actor=actor)
        return change

    async def cancelled(
        self,
        session: AsyncSession,
        row: PolicyRow,
        policy: Policy,
        *,
        rules: RatingRules,
        actor: str | None,
    ) -> PremiumTransaction | None:
        """CANCEL: the return premium from the cancellation date (None when the
        policy was never bound with a premium)."""
        existing = await transactions_of(session, row)
        if not existing:
            return None
        assert policy.cancel_reason is not None and policy.cancel_effective_date is not None
        method = refund_method(policy.cancel_reason, rules)
        penalty = Decimal(rules.short_rate_penalty_basis_points) / (BASIS_POINTS // 100)
        returned = premium.cancel(
            net_transactions(existing),
            policy.cancel_effective_date,
            method,
            penalty_percent=penalty,
        )
        added = add_transaction(
            session,
            row,
            existing,
            returned,
            tax=tax_of(returned.amount, rules),
            fee=Money.zero(returned.amount.currency),
            description=f"{policy.cancel_reason.value} from "
            f"{policy.cancel_effective_date.isoformat()} ({method.value})",
            actor=actor,
            version=policy.version,
            refund_method=method.value,
        )
        await self._bill(session, row, added, actor=actor)
        return returned

    async def reinstated(
        self, session: AsyncSession, row: PolicyRow, policy: Policy, *, actor: str | None
    ) -> PremiumTransaction | None:
        """REINSTATE: charges back the cancellation being undone (None after a
        lapse, which returned nothing)."""
        existing = await transactions_of(session, row)
        pending = _open_cancellation(existing)
        if pending is None:
            return None
        cancellation = net_transactions([pending])[0]
        charged = premium.reinstate(cancellation)
        currency = pending.currency
        added = add_transaction(
            session,
            row,
            existing,
            charged,
            tax=Money(-pending.tax, currency).rounded(),
            fee=Money.zero(currency),
            description=f"reinstates the cancellation of transaction {pending.sequence}",
            actor=actor,
            version=policy.version,
        )
        await self._bill(session, row, added, actor=actor)
        return charged


def _open_cancellation(rows: list[Any]) -> Any:
    """The last CANCEL not yet reinstated."""
    for r in reversed(rows):
        if r.kind == TransactionKind.REINSTATE.value:
            return None
        if r.kind == TransactionKind.CANCEL.value:
            return r
    return None
