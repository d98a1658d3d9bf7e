"""Policies: drafts, quotes, binding and the in-force lifecycle.

Every transition runs in one unit of work: request id first (a replay returns
the policy as it is), then the row locked (``FOR UPDATE``) and its etag
checked (so of two calls with the same etag exactly one wins, the other gets
ABORTED), then the domain decides, and the status log, the policy versions and
the audit event are written in the same transaction.

Binding takes the next policy number from the company's counter row as its
last step (see :mod:`cardinsa_core.repository.numbers`): numbers are unique
and gap-free under concurrency because the counter row is locked until the
bind commits, and a failed bind gives its number back.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.application.context import (
    CoreContext,
    actor_uuid,
    check_etag,
    check_mask,
    check_note,
    check_request_id,
    deleted,
    invalid,
    log_request_id,
    lookup_uuid,
    not_found,
    own_company,
    require_principal,
)
from cardinsa_core.application.inputs import MemberRef, MoneyInput, resolve_members
from cardinsa_core.application.products import ProductUseCases
from cardinsa_core.application.requests import claim_request_id, request_id_reused
from cardinsa_core.domain.money import Money
from cardinsa_core.domain.numbering import NumberKind, format_number
from cardinsa_core.domain.policies import (
    POLICY_LIFECYCLE,
    CancelReason,
    InsuredMembers,
    PaymentFrequency,
    Policy,
    PolicyAction,
    PolicyState,
    PolicyTerms,
    add_months,
    check_policy_terms,
)
from cardinsa_core.repository.models import (
    DependentRow,
    PolicyholderRow,
    PolicyRow,
    PolicyStatusChangeRow,
    PolicyVersionRow,
)
from cardinsa_core.repository.numbers import next_number
from cardinsa_foundation.db import ReadQuery
from cardinsa_foundation.errors import FailedPrecondition, FieldViolation
from cardinsa_foundation.filtering import (
    FieldType,
    FilterField,
    FilterSpec,
    parse_order_by,
    tenant_list_query,
)
from cardinsa_foundation.paging import OrderTerm, Page, paginate, query_fingerprint

POLICY_FILTER = FilterSpec(
    {
        "state": FilterField(
            PolicyRow.state, FieldType.ENUM, values=[s.value for s in PolicyState]
        ),
        "policy_number": FilterField(PolicyRow.policy_number, FieldType.STRING),
        "policyholder_id": FilterField(PolicyRow.policyholder_id, FieldType.UUID),
        "product_id": FilterField(PolicyRow.product_id, FieldType.UUID),
        "effective_date": FilterField(PolicyRow.effective_date, FieldType.DATE),
        "expiry_date": FilterField(PolicyRow.expiry_date, FieldType.DATE),
        "payment_frequency": FilterField(
            PolicyRow.payment_frequency, FieldType.ENUM, values=[f.value for f in PaymentFrequency]
        ),
        "create_time": FilterField(PolicyRow.create_time, FieldType.TIMESTAMP),
    }
)
POLICY_ORDER = {
    "create_time": PolicyRow.create_time,
    "policy_number": PolicyRow.policy_number,
    "effective_date": PolicyRow.effective_date,
    "expiry_date": PolicyRow.expiry_date,
}
DEFAULT_ORDER = [OrderTerm(PolicyRow.create_time, True)]
CREATE = "CreatePolicy"
#: GetPolicy in one round trip, without the ORM (cardinsa_foundation.db.Database.read):
#: the function core.read_policy of migration core_0002.
GET_POLICY = ReadQuery(PolicyRow, "read_policy", ("id",))
UPDATABLE = frozenset(
    {"effective_date", "expiry_date", "payment_frequency", "sum_insured", "insured_members"}
)
ENDORSABLE = frozenset({"sum_insured", "premium", "insured_members"})


@dataclass(frozen=True, slots=True)
class PolicyInput:
    """A policy as a request describes it (amounts and members not yet resolved)."""

    policyholder_id: str = ""
    product_id: str = ""
    effective_date: date | None = None
    expiry_date: date | None = None
    payment_frequency: PaymentFrequency | None = None
    sum_insured: MoneyInput | None = None
    premium: MoneyInput | None = None
    insured_members: tuple[MemberRef, ...] = ()


@dataclass(slots=True)
class _Step:
    """One state change a transition makes (a bind that activates makes two)."""

    policy: Policy
    transition: str
    reason: str = ""
    effective_date: date | None = None


@dataclass(slots=True)
class _Outcome:
    steps: list[_Step]
    detail: dict[str, object] = field(default_factory=dict)
    #: Changed fields the steps do not show (delete_time).
    changed: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ mapping


def _money(amount: Decimal, currency: str) -> Money:
    return Money.of(amount, currency)


def policy_of(row: PolicyRow) -> Policy:
    currency = row.currency
    return Policy(
        state=PolicyState(row.state),
        currency=currency,
        terms=PolicyTerms(
            effective_date=row.effective_date,
            expiry_date=row.expiry_date,
            payment_frequency=PaymentFrequency(row.payment_frequency),
            sum_insured=_money(row.sum_insured, currency),
            insured=InsuredMembers(row.insures_holder, frozenset(row.insured_dependent_ids)),
        ),
        premium=_money(row.premium, currency) if row.premium is not None else None,
        policy_number=row.policy_number,
        version=row.current_version,
        version_effective_date=row.version_effective_date,
        activated=row.activate_time is not None,
        cancel_reason=CancelReason(row.cancel_reason) if row.cancel_reason else None,
        cancel_effective_date=row.cancel_effective_date,
        lapse_date=row.lapse_date,
        termination_note=row.termination_note,
        successor_id=row.successor_policy_id,
    )


def apply_policy(row: PolicyRow, policy: Policy) -> list[str]:
    """Store ``policy`` on ``row``; the columns that changed."""
    terms = policy.terms
    values: dict[str, object] = {
        "state": policy.state.value,
        "currency": policy.currency,
        "effective_date": terms.effective_date,
        "expiry_date": terms.expiry_date,
        "payment_frequency": terms.payment_frequency.value,
        "sum_insured": terms.sum_insured.amount,
        "insures_holder": terms.insured.holder,
        "insured_dependent_ids": sorted(terms.insured.dependent_ids),
        "premium": policy.premium.amount if policy.premium else None,
        "policy_number": policy.policy_number,
        "current_version": policy.version,
        "version_effective_date": policy.version_effective_date,
        "cancel_reason": policy.cancel_reason.value if policy.cancel_reason else None,
        "cancel_effective_date": policy.cancel_effective_date,
        "lapse_date": policy.lapse_date,
        "termination_note": policy.termination_note,
        "successor_policy_id": policy.successor_id,
    }
    changed = []
    for column, value in values.items():
        current = getattr(row, column)
        if column == "insured_dependent_ids":
            current = sorted(current or [])
        if current != value:
            setattr(row, column, value)
            changed.append(column)
    return changed


def members_of(holder: bool, dependents: Sequence[uuid.UUID]) -> list[MemberRef]:
    refs = [MemberRef(policyholder=True)] if holder else []
    return refs + [MemberRef(False, str(d)) for d in sorted(dependents)]


# ------------------------------------------------------------------ use cases


class PolicyUseCases:
    def __init__(self, ctx: CoreContext, products: ProductUseCases) -> None:
        self.ctx = ctx
        self.products = products

    # ------------------------------------------------------------- reading

    @staticmethod
    async def load(
        session: AsyncSession, company: uuid.UUID, policy_id: str, *, lock: bool = False
    ) -> PolicyRow:
        key = lookup_uuid(policy_id)
        row = None
        if key is not None:
            stmt = select(PolicyRow).where(PolicyRow.company_id == company, PolicyRow.id == key)
            if lock:
                stmt = stmt.with_for_update()
            row = (await session.scalars(stmt)).first()
        if row is None:
            raise not_found("policy", policy_id)
        return row

    async def get(self, policy_id: str) -> PolicyRow:
        company = own_company(require_principal())
        key = lookup_uuid(policy_id)
        row = None
        if key is not None:
            async with self.ctx.db.read(company_id=company) as reader:
                row = await reader.one(GET_POLICY, id=key)
        if row is None:
            raise not_found("policy", policy_id)
        return row

    async def list_policies(
        self, *, page_size: int, page_token: str, filter: str, order_by: str, show_deleted: bool
    ) -> Page[PolicyRow]:
        company = own_company(require_principal())
        stmt = tenant_list_query(
            PolicyRow, company, spec=POLICY_FILTER, filter=filter, show_deleted=show_deleted
        )
        order = parse_order_by(order_by, POLICY_ORDER, default=DEFAULT_ORDER)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await paginate(
                session,
                stmt,
                order=order,
                page_size=page_size,
                page_token=page_token,
                fingerprint=query_fingerprint(
                    filter=filter, order_by=order_by, show_deleted=show_deleted
                ),
                secret=self.ctx.settings.page_token_secret,
            )

    async def list_versions(
        self, policy_id: str, *, page_size: int, page_token: str
    ) -> Page[PolicyVersionRow]:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            policy = await self.load(session, company, policy_id)
            return await paginate(
                session,
                select(PolicyVersionRow).where(
                    PolicyVersionRow.company_id == company,
                    PolicyVersionRow.policy_id == policy.id,
                ),
                order=[OrderTerm(PolicyVersionRow.version, True)],
                page_size=page_size,
                page_token=page_token,
                fingerprint=query_fingerprint(parent=str(policy.id)),
                secret=self.ctx.settings.page_token_secret,
            )

    async def list_status_changes(
        self, policy_id: str, *, page_size: int, page_token: str
    ) -> Page[PolicyStatusChangeRow]:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            policy = await self.load(session, company, policy_id)
            return await paginate(
                session,
                select(PolicyStatusChangeRow).where(
                    PolicyStatusChangeRow.company_id == company,
                    PolicyStatusChangeRow.policy_id == policy.id,
                ),
                order=[OrderTerm(PolicyStatusChangeRow.create_time, True)],
                page_size=page_size,
                page_token=page_token,
                fingerprint=query_fingerprint(parent=str(policy.id)),
                secret=self.ctx.settings.page_token_secret,
            )

    # ------------------------------------------------------------- helpers

    async def _holder(
        self, session: AsyncSession, company: uuid.UUID, policyholder_id: str
    ) -> PolicyholderRow:
        key = lookup_uuid(policyholder_id)
        row = None
        if key is not None:
            row = (
                await session.scalars(
                    select(PolicyholderRow).where(
                        PolicyholderRow.company_id == company, PolicyholderRow.id == key
                    )
                )
            ).first()
        if row is None:
            raise not_found("policyholder", policyholder_id)
        if row.delete_time is not None:
            raise deleted("policyholder")
        return row

    @staticmethod
    async def _check_members(
        session: AsyncSession,
        *,
        company: uuid.UUID,
        holder: uuid.UUID,
        members: InsuredMembers,
        refs: Sequence[MemberRef],
        path: str,
    ) -> None:
        """Every insured dependent must be a current dependent of the holder."""
        if not members.dependent_ids:
            return
        known = set(
            await session.scalars(
                select(DependentRow.id).where(
                    DependentRow.company_id == company,
                    DependentRow.policyholder_id == holder,
                    DependentRow.id.in_(members.dependent_ids),
                    DependentRow.remove_time.is_(None),
                )
            )
        )
        invalid(
            "the insured members are not valid",
            [
                FieldViolation(f"{path}[{i}].dependent_id", "not a dependent of the policyholder")
                for i, ref in enumerate(refs)
                if not ref.policyholder and lookup_uuid(ref.dependent_id) not in known
            ],
        )

    async def _log(
        self,
        session: AsyncSession,
        row: PolicyRow,
        *,
        from_state: str | None,
        step: _Step,
        request_id: str,
    ) -> None:
        principal = require_principal()
        session.add(
            PolicyStatusChangeRow(
                id=uuid.uuid4(),
                company_id=row.company_id,
                policy_id=row.id,
                from_state=from_state,
                to_state=step.policy.state.value,
                transition=step.transition,
                reason=step.reason,
                effective_date=step.effective_date,
                actor_id=principal.subject,
                request_id=log_request_id(request_id),
            )
        )
        await session.flush()

    def _version_row(
        self, row: PolicyRow, policy: Policy, *, description: str, changed: Sequence[str]
    ) -> PolicyVersionRow:
        assert policy.premium is not None and policy.version_effective_date is not None
        return PolicyVersionRow(
            id=uuid.uuid4(),
            company_id=row.company_id,
            policy_id=row.id,
            version=policy.version,
            effective_date=policy.version_effective_date,
            currency=policy.currency,
            premium=policy.premium.amount,
            sum_insured=policy.terms.sum_insured.amount,
            insures_holder=policy.terms.insured.holder,
            insured_dependent_ids=sorted(policy.terms.insured.dependent_ids),
            description=description,
            changed_fields=list(changed),
            created_by=actor_uuid(require_principal()),
        )

    # ------------------------------------------------------------- create / update

    async def create(self, data: PolicyInput, *, request_id: str) -> PolicyRow:
        principal = require_principal()
        company = own_company(principal)
        violations = check_request_id(request_id)
        if data.effective_date is None:
            violations.append(FieldViolation("policy.effective_date", "required"))
        if data.sum_insured is None:
            violations.append(FieldViolation("policy.sum_insured", "required"))
        invalid("the policy is not valid", violations)
        assert data.effective_date is not None and data.sum_insured is not None
        members = (
            resolve_members(data.insured_members, "policy.insured_members")
            if data.insured_members
            else InsuredMembers(holder=True)
        )
        new_id = uuid.uuid4()
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            if request_id:
                seen = await claim_request_id(session, company, CREATE, request_id, str(new_id))
                if seen is not None:
                    return await self.load(session, company, seen)
            holder = await self._holder(session, company, data.policyholder_id)
            product = await self.products.load(session, company, data.product_id)
            if product.row.delete_time is not None:
                raise deleted("product")
            product.domain().check_on_sale()
            sold = product.version.terms()
            terms = PolicyTerms(
                effective_date=data.effective_date,
                expiry_date=data.expiry_date
                or add_months(data.effective_date, sold.term_months) - timedelta(days=1),
                payment_frequency=data.payment_frequency or PaymentFrequency.ANNUAL,
                sum_insured=data.sum_insured.resolve(sold.currency, "policy.sum_insured"),
                insured=members,
            )
            invalid("the policy is not valid", check_policy_terms(terms, sold.currency))
            await self._check_members(
                session,
                company=company,
                holder=holder.id,
                members=members,
                refs=data.insured_members,
                path="policy.insured_members",
            )
            policy = Policy(state=PolicyState.DRAFT, currency=sold.currency, terms=terms)
            row = PolicyRow(
                id=new_id,
                company_id=company,
                policyholder_id=holder.id,
                product_id=product.row.id,
                product_version=product.row.current_version,
            )
            apply_policy(row, policy)
            session.add(row)
            await session.flush()
            await self._log(
                session,
                row,
                from_state=None,
                step=_Step(policy, "create"),
                request_id=request_id,
            )
            await self.ctx.audit.record(
                session,
                action="policy.create",
                entity_type="policy",
                entity_id=row.id,
                changed_fields=sorted(UPDATABLE | {"policyholder_id", "product_id"}),
                detail={"product_version": row.product_version, "state": row.state},
            )
            return row

    async def update(
        self, policy_id: str, data: PolicyInput, mask: Sequence[str], etag: str
    ) -> PolicyRow:
        company = own_company(require_principal())
        check_mask(mask, UPDATABLE)
        fields = frozenset(mask)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            row = await self.load(session, company, policy_id, lock=True)
            check_etag(row, etag)
            if row.delete_time is not None:
                raise deleted("policy")
            policy = policy_of(row)
            POLICY_LIFECYCLE.next_state(policy.state, PolicyAction.UPDATE)
            terms = policy.terms
            violations: list[FieldViolation] = []
            for name in ("effective_date", "expiry_date", "sum_insured"):
                if name in fields and getattr(data, name) is None:
                    violations.append(FieldViolation(f"policy.{name}", "required"))
            invalid("the policy is not valid", violations)
            if "effective_date" in fields and data.effective_date is not None:
                terms = replace(terms, effective_date=data.effective_date)
            if "expiry_date" in fields and data.expiry_date is not None:
                terms = replace(terms, expiry_date=data.expiry_date)
            if "payment_frequency" in fields:
                terms = replace(
                    terms, payment_frequency=data.payment_frequency or PaymentFrequency.ANNUAL
                )
            if "sum_insured" in fields and data.sum_insured is not None:
                terms = replace(
                    terms, sum_insured=data.sum_insured.resolve(row.currency, "policy.sum_insured")
                )
            if "insured_members" in fields:
                members = resolve_members(data.insured_members, "policy.insured_members")
                terms = replace(terms, insured=members)
                await self._check_members(
                    session,
                    company=company,
                    holder=row.policyholder_id,
                    members=members,
                    refs=data.insured_members,
                    path="policy.insured_members",
                )
            invalid("the policy is not valid", check_policy_terms(terms, row.currency))
            before = row.state
            updated = policy.update(terms)
            changed = apply_policy(row, updated)
            if changed:
                row.update_time = datetime.now(UTC)
                await session.flush()
                if updated.state.value != before:
                    await self._log(
                        session,
                        row,
                        from_state=before,
                        step=_Step(updated, "update", reason="the quote was changed"),
                        request_id="",
                    )
                await self.ctx.audit.record(
                    session,
                    action="policy.update",
                    entity_type="policy",
                    entity_id=row.id,
                    changed_fields=changed,
                    detail={"from_state": before, "to_state": row.state},
                )
            return row

    # ------------------------------------------------------------- transitions

    async def _transition(
        self,
        policy_id: str,
        *,
        etag: str,
        request_id: str,
        method: str,
        apply: Callable[[AsyncSession, PolicyRow, Policy], Awaitable[_Outcome]],
        allow_deleted: bool = False,
    ) -> PolicyRow:
        company = own_company(require_principal())
        invalid("the request is not valid", check_request_id(request_id))
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            key = lookup_uuid(policy_id)
            if key is None:
                raise not_found("policy", policy_id)
            if request_id:
                seen = await claim_request_id(session, company, method, request_id, str(key))
                if seen is not None:
                    if seen != str(key):
                        raise request_id_reused()
                    return await self.load(session, company, policy_id)
            row = await self.load(session, company, policy_id, lock=True)
            check_etag(row, etag)
            if row.delete_time is not None and not allow_deleted:
                raise deleted("policy")
            first_state = row.state
            outcome = await apply(session, row, policy_of(row))
            changed: set[str] = set()
            for step in outcome.steps:
                before = row.state
                changed.update(apply_policy(row, step.policy))
                row.update_time = datetime.now(UTC)
                await session.flush()
                await self._log(session, row, from_state=before, step=step, request_id=request_id)
            await self.ctx.audit.record(
                session,
                action=f"policy.{method}",
                entity_type="policy",
                entity_id=row.id,
                changed_fields=sorted(changed | set(outcome.changed)),
                detail={"from_state": first_state, "to_state": row.state, **outcome.detail},
            )
            return row

    async def _product_on_sale(
        self, session: AsyncSession, row: PolicyRow
    ) -> tuple[int, Money, int]:
        """The product's current version, base premium and term; it must be on sale."""
        product = await self.products.load(session, row.company_id, str(row.product_id))
        if product.row.delete_time is not None:
            raise deleted("product")
        product.domain().check_on_sale()
        terms = product.version.terms()
        return product.row.current_version, terms.base_premium, terms.term_months

    async def quote(self, policy_id: str, etag: str, request_id: str) -> PolicyRow:
        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            POLICY_LIFECYCLE.next_state(policy.state, PolicyAction.QUOTE)
            version, base_premium, _ = await self._product_on_sale(session, row)
            quoted = policy.quote(base_premium)
            repinned = row.product_version != version
            row.product_version = version
            return _Outcome(
                [_Step(quoted, "quote")],
                {"product_version": version},
                changed=["product_version"] if repinned else [],
            )

        return await self._transition(
            policy_id, etag=etag, request_id=request_id, method="quote", apply=apply
        )

    async def bind(self, policy_id: str, etag: str, request_id: str) -> PolicyRow:
        today = self.ctx.today()

        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            POLICY_LIFECYCLE.next_state(policy.state, PolicyAction.BIND)
            await self._product_on_sale(session, row)
            await self._holder(session, row.company_id, str(row.policyholder_id))
            # Last, so the counter row stays locked as briefly as possible.
            value = await next_number(session, row.company_id, NumberKind.POLICY)
            bound = policy.bind(format_number(self.ctx.settings.policy_number_prefix, value))
            now = datetime.now(UTC)
            row.bind_time = now
            steps = [_Step(bound, "bind", effective_date=bound.terms.effective_date)]
            if bound.terms.effective_date <= today:
                steps.append(
                    _Step(
                        bound.activate(today), "activate", effective_date=bound.terms.effective_date
                    )
                )
                row.activate_time = now
            session.add(self._version_row(row, bound, description="", changed=[]))
            return _Outcome(
                steps,
                {"policy_number": bound.policy_number},
                changed=["bind_time", *(["activate_time"] if row.activate_time else [])],
            )

        return await self._transition(
            policy_id, etag=etag, request_id=request_id, method="bind", apply=apply
        )

    async def activate(self, policy_id: str, etag: str, request_id: str) -> PolicyRow:
        today = self.ctx.today()

        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            active = policy.activate(today)
            row.activate_time = datetime.now(UTC)
            return _Outcome(
                [_Step(active, "activate", effective_date=policy.terms.effective_date)],
                changed=["activate_time"],
            )

        return await self._transition(
            policy_id, etag=etag, request_id=request_id, method="activate", apply=apply
        )

    async def endorse(
        self,
        policy_id: str,
        *,
        etag: str,
        request_id: str,
        effective_date: date | None,
        description: str,
        data: PolicyInput,
        mask: Sequence[str],
    ) -> PolicyRow:
        check_mask(mask, ENDORSABLE)
        fields = frozenset(mask)
        description = description.strip()
        violations = check_note(description, "description")
        if not description:
            violations.append(FieldViolation("description", "required"))
        if effective_date is None:
            violations.append(FieldViolation("effective_date", "required"))
        for name in ("sum_insured", "premium"):
            if name in fields and getattr(data, name) is None:
                violations.append(FieldViolation(f"policy.{name}", "required"))
        invalid("the endorsement is not valid", violations)
        assert effective_date is not None

        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            POLICY_LIFECYCLE.next_state(policy.state, PolicyAction.ENDORSE)
            currency = policy.currency
            sum_insured = premium = None
            insured = None
            if "sum_insured" in fields and data.sum_insured is not None:
                sum_insured = data.sum_insured.resolve(currency, "policy.sum_insured")
            if "premium" in fields and data.premium is not None:
                premium = data.premium.resolve(currency, "policy.premium")
            if "insured_members" in fields:
                insured = resolve_members(data.insured_members, "policy.insured_members")
                await self._check_members(
                    session,
                    company=row.company_id,
                    holder=row.policyholder_id,
                    members=insured,
                    refs=data.insured_members,
                    path="policy.insured_members",
                )
            endorsed = policy.endorse(
                effective_date, sum_insured=sum_insured, insured=insured, premium=premium
            )
            changed = [
                name
                for name, before, after in (
                    ("sum_insured", policy.terms.sum_insured, endorsed.terms.sum_insured),
                    ("premium", policy.premium, endorsed.premium),
                    ("insured_members", policy.terms.insured, endorsed.terms.insured),
                )
                if before != after
            ]
            session.add(self._version_row(row, endorsed, description=description, changed=changed))
            return _Outcome(
                [_Step(endorsed, "endorse", reason=description, effective_date=effective_date)],
                {"version": endorsed.version, "endorsed_fields": changed},
            )

        return await self._transition(
            policy_id, etag=etag, request_id=request_id, method="endorse", apply=apply
        )

    async def renew(
        self, policy_id: str, etag: str, request_id: str
    ) -> tuple[PolicyRow, PolicyRow]:
        successor_id = uuid.uuid4()

        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            renewed = policy.renew(successor_id)
            version, base_premium, term_months = await self._product_on_sale(session, row)
            await self._holder(session, row.company_id, str(row.policyholder_id))
            draft = Policy(
                state=PolicyState.DRAFT,
                currency=base_premium.currency,
                terms=policy.renewal_terms(term_months),
            )
            quoted = draft.quote(base_premium)
            successor = PolicyRow(
                id=successor_id,
                company_id=row.company_id,
                policyholder_id=row.policyholder_id,
                product_id=row.product_id,
                product_version=version,
                previous_policy_id=row.id,
            )
            apply_policy(successor, quoted)
            session.add(successor)
            await session.flush()
            await self._log(
                session,
                successor,
                from_state=None,
                step=_Step(quoted, "renew", reason=f"renews {row.policy_number or row.id}"),
                request_id=request_id,
            )
            await self.ctx.audit.record(
                session,
                action="policy.create",
                entity_type="policy",
                entity_id=successor.id,
                changed_fields=sorted(UPDATABLE | {"policyholder_id", "product_id"}),
                detail={"previous_policy_id": str(row.id), "state": successor.state},
            )
            return _Outcome(
                [_Step(renewed, "renew", effective_date=quoted.terms.effective_date)],
                {"successor_policy_id": str(successor_id)},
            )

        row = await self._transition(
            policy_id, etag=etag, request_id=request_id, method="renew", apply=apply
        )
        company = row.company_id
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            if row.successor_policy_id is None:  # pragma: no cover - renew always links one
                raise FailedPrecondition("the policy has no successor", reason="NOT_RENEWED")
            successor = await self.load(session, company, str(row.successor_policy_id))
        return row, successor

    async def cancel(
        self,
        policy_id: str,
        *,
        etag: str,
        request_id: str,
        reason: CancelReason | None,
        effective_date: date | None,
        scheduled: bool,
        note: str,
    ) -> PolicyRow:
        invalid("the request is not valid", check_note(note, "note"))
        today = self.ctx.today()

        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            cancelled = policy.cancel(
                reason, today, effective_date=effective_date, scheduled=scheduled, note=note.strip()
            )
            assert cancelled.cancel_reason is not None
            return _Outcome(
                [
                    _Step(
                        cancelled,
                        "cancel",
                        reason=cancelled.cancel_reason.value
                        + (f": {note.strip()}" if note else ""),
                        effective_date=cancelled.cancel_effective_date,
                    )
                ],
                {
                    "scheduled": bool(
                        cancelled.cancel_effective_date and cancelled.cancel_effective_date > today
                    )
                },
            )

        return await self._transition(
            policy_id, etag=etag, request_id=request_id, method="cancel", apply=apply
        )

    async def reinstate(self, policy_id: str, etag: str, request_id: str, note: str) -> PolicyRow:
        invalid("the request is not valid", check_note(note, "note"))
        today = self.ctx.today()
        window = self.ctx.settings.reinstatement_window_days

        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            reinstated = policy.reinstate(today, window)
            return _Outcome(
                [_Step(reinstated, "reinstate", reason=note.strip(), effective_date=today)]
            )

        return await self._transition(
            policy_id, etag=etag, request_id=request_id, method="reinstate", apply=apply
        )

    async def lapse(
        self, policy_id: str, etag: str, request_id: str, lapse_date: date | None, note: str
    ) -> PolicyRow:
        invalid("the request is not valid", check_note(note, "note"))
        today = self.ctx.today()

        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            lapsed = policy.lapse(today, lapse_date=lapse_date, note=note.strip())
            return _Outcome(
                [_Step(lapsed, "lapse", reason=note.strip(), effective_date=lapsed.lapse_date)]
            )

        return await self._transition(
            policy_id, etag=etag, request_id=request_id, method="lapse", apply=apply
        )

    async def expire(self, policy_id: str, etag: str, request_id: str) -> PolicyRow:
        today = self.ctx.today()

        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            expired = policy.expire(today)
            return _Outcome(
                [_Step(expired, "expire", effective_date=policy.terms.expiry_date + timedelta(1))]
            )

        return await self._transition(
            policy_id, etag=etag, request_id=request_id, method="expire", apply=apply
        )

    async def delete(self, policy_id: str, etag: str) -> PolicyRow:
        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            policy.check_delete()
            row.soft_delete()
            return _Outcome([_Step(policy, "delete")], changed=["delete_time"])

        return await self._transition(
            policy_id, etag=etag, request_id="", method="delete", apply=apply, allow_deleted=True
        )

    async def undelete(self, policy_id: str, etag: str) -> PolicyRow:
        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            if row.delete_time is None:
                raise FailedPrecondition("the policy is not deleted", reason="NOT_DELETED")
            row.undelete()
            return _Outcome([_Step(policy, "undelete")], changed=["delete_time"])

        return await self._transition(
            policy_id, etag=etag, request_id="", method="undelete", apply=apply, allow_deleted=True
        )


__all__ = [
    "ENDORSABLE",
    "UPDATABLE",
    "PolicyInput",
    "PolicyUseCases",
    "members_of",
    "policy_of",
]
