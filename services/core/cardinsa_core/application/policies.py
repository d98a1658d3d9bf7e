"""Policies: drafts, quotes, binding and the in-force lifecycle.

Every transition runs in one unit of work: request id first (a replay returns
the policy as it is), then the row locked (``FOR UPDATE``) and its etag
checked (so of two calls with the same etag exactly one wins, the other gets
ABORTED), then the domain decides, and the status log, the policy versions and
the audit event are written in the same transaction.

A cancellation, lapse or endorsement that would leave claims with money on
them (approved, paid or closed, or paid out and reopened) without cover is
refused (``CLAIMS_WOULD_LOSE_COVER``, see :mod:`cardinsa_core.domain.cover`)
unless the caller gives ``override_reason`` and holds
``policies.override_claim_cover``; the override is recorded with the claims it
affects in the status log and the audit event. The policy row is locked by
then; the claims are read, not locked.

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
from typing import Any, TypeVar, Unpack

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from cardinsa_core.application.billing import NON_PAYMENT, outstanding_of
from cardinsa_core.application.context import (
    ChangeOptions,
    CoreContext,
    ListQuery,
    PageQuery,
    first_call,
    own_company,
)
from cardinsa_core.application.inputs import MemberRef, MoneyInput, resolve_members
from cardinsa_core.application.pricing import Priced, Pricing, breakdown_of
from cardinsa_core.application.underwriting import check_bindable, raise_issues
from cardinsa_core.domain.cover import (
    CLAIMS_WOULD_LOSE_COVER,
    OVERRIDE_CLAIM_COVER,
    ClaimCover,
    claims_losing_cover,
)
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
from cardinsa_core.domain.rating import Rating
from cardinsa_core.domain.underwriting import evaluate_quote
from cardinsa_core.repository.claims import claims_with_money
from cardinsa_core.repository.models import (
    PolicyholderRow,
    PolicyRow,
    PolicyStatusChangeRow,
    PolicyVersionRow,
    PremiumTransactionRow,
)
from cardinsa_core.repository.numbers import next_number
from cardinsa_core.repository.policies import (
    GET_POLICY,
    POLICIES,
    apply_policy,
    policy_of,
    policy_versions,
    status_change,
    status_changes,
    version_row,
)
from cardinsa_core.repository.policyholders import POLICYHOLDERS, current_dependent_ids
from cardinsa_core.repository.premium import premium_transactions
from cardinsa_core.repository.products import ProductView, load_product
from cardinsa_foundation.db import driver_connection
from cardinsa_foundation.errors import (
    FailedPrecondition,
    FieldViolation,
    PermissionDenied,
    PreconditionViolation,
)
from cardinsa_foundation.paging import OrderTerm, Page
from cardinsa_foundation.row_batch import RowBatch, SupportsAdd
from cardinsa_foundation.use_cases import (
    actor_uuid,
    check_mask,
    check_note,
    check_request_id,
    deleted,
    invalid,
    log_request_id,
    lookup_uuid,
    not_found,
    require_principal,
)

CREATE = "CreatePolicy"
T = TypeVar("T")
UPDATABLE = frozenset(
    {
        "effective_date",
        "expiry_date",
        "payment_frequency",
        "sum_insured",
        "insured_members",
        "do_not_renew",
    }
)
#: Who may change ``do_not_renew`` (on top of ``policies.update``).
RENEW_PERMISSION = "policies.renew"
#: What UpdatePolicy changes of a sold policy (every state but EXPIRED).
ANY_STATE_FIELDS = frozenset({"do_not_renew"})
#: A renewal starts the day after its predecessor ends: its dates are fixed.
RENEWAL_FIXED = frozenset({"effective_date", "expiry_date"})
ENDORSABLE = frozenset({"sum_insured", "insured_members"})
#: How many affected claims ErrorInfo metadata names (its values are clipped at
#: 200 characters); the PreconditionFailure lists up to 20.
SHOWN_CLAIMS = 5
#: Reinstating a lapsed policy with invoices due and unpaid.
PREMIUM_ARREARS = "PREMIUM_ARREARS"


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
    do_not_renew: bool = False


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


@dataclass(frozen=True, slots=True)
class _CoverGuard:
    """The claim-cover check of one cancellation, lapse or endorsement."""

    #: The override reason (stripped); empty: no override.
    override: str

    @classmethod
    def of(cls, override_reason: str) -> _CoverGuard:
        """Checked first thing: an override needs its permission, whatever else."""
        if override_reason and not require_principal().has_permission(OVERRIDE_CLAIM_COVER):
            raise PermissionDenied(
                f"an override_reason needs the permission {OVERRIDE_CLAIM_COVER}",
                reason="OVERRIDE_NOT_PERMITTED",
                metadata={"required_permission": OVERRIDE_CLAIM_COVER},
            )
        return cls(override_reason.strip())

    def violations(self, override_reason: str) -> list[FieldViolation]:
        found = check_note(override_reason, "override_reason")
        if override_reason and not self.override:
            found.append(FieldViolation("override_reason", "must not be blank"))
        return found

    @property
    def arguments(self) -> list[object]:
        """For the request fingerprint: a replay must repeat the override (calls
        without one keep the fingerprint they had before overrides existed)."""
        return [self.override] if self.override else []

    async def check(
        self, session: AsyncSession, row: PolicyRow, before: Policy, after: Policy
    ) -> list[ClaimCover]:
        """The claims the change takes the cover from (refused unless overridden)."""
        claims = [
            ClaimCover(c.id, c.claim_number, c.incident_date, c.claimant_dependent_id)
            for c in await claims_with_money(session, row.company_id, row.id)
        ]
        losing = claims_losing_cover(before, after, claims)
        if losing and not self.override:
            raise _would_lose_cover(losing)
        return losing

    def reason(self, reason: str, losing: Sequence[ClaimCover]) -> str:
        """The status log's reason of the change, with the override when it was used."""
        if not losing:
            return reason
        claims = ", ".join(f"{c.label} ({c.claim_id})" for c in losing)
        used = f"[claim cover override: {self.override}; claims losing cover: {claims}]"
        return f"{reason} {used}" if reason else used

    def detail(self, losing: Sequence[ClaimCover]) -> dict[str, object]:
        """What the audit event adds to its detail."""
        if not losing:
            return {}
        return {
            "claim_cover_override": {
                "reason": self.override,
                "claim_ids": [str(c.claim_id) for c in losing],
                "claim_numbers": [c.label for c in losing],
            }
        }


def _would_lose_cover(losing: Sequence[ClaimCover]) -> FailedPrecondition:
    shown = losing[:SHOWN_CLAIMS]
    labels = ", ".join(c.label for c in shown) + (", ..." if len(losing) > len(shown) else "")
    return FailedPrecondition(
        f"{len(losing)} approved or paid claim(s) would lose their cover ({labels}); "
        f"to make the change anyway give an override_reason (needs the permission "
        f"{OVERRIDE_CLAIM_COVER})",
        reason=CLAIMS_WOULD_LOSE_COVER,
        metadata={
            "count": str(len(losing)),
            "claim_ids": ",".join(str(c.claim_id) for c in shown),
            "claim_numbers": ",".join(c.label for c in shown),
            "override_permission": OVERRIDE_CLAIM_COVER,
        },
        precondition_violations=[
            PreconditionViolation(
                "CLAIM_COVER",
                f"claims/{c.claim_id}",
                f"claim {c.label}: the incident on {c.incident_date.isoformat()} "
                "would no longer be covered",
            )
            for c in losing
        ],
    )


# ------------------------------------------------------------------ mapping


def _cover_since(row: PolicyRow, policy: Policy, successor: Policy) -> dict[str, str]:
    """For each member the renewal insures who is insured by the policy it renews
    at its end, the first day of their unbroken cover (waiting periods carry over)."""
    before: dict[str, str] = dict(row.cover_since or {})
    ended = policy.terms.insured
    keys = (["holder"] if successor.terms.insured.holder and ended.holder else []) + [
        str(d) for d in sorted(successor.terms.insured.dependent_ids & ended.dependent_ids)
    ]
    return {key: before.get(key, policy.terms.effective_date.isoformat()) for key in keys}


def members_of(holder: bool, dependents: Sequence[uuid.UUID]) -> list[MemberRef]:
    refs = [MemberRef(policyholder=True)] if holder else []
    return refs + [MemberRef(False, str(d)) for d in sorted(dependents)]


# ------------------------------------------------------------------ use cases


class PolicyUseCases:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx
        self.pricing = Pricing(ctx)

    # ------------------------------------------------------------- reading

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

    async def list_policies(self, **query: Unpack[ListQuery]) -> Page[PolicyRow]:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await self.ctx.list_page(session, POLICIES, company, **query)

    async def list_versions(
        self, policy_id: str, **page: Unpack[PageQuery]
    ) -> Page[PolicyVersionRow]:
        return await self._child_page(policy_id, policy_versions, PolicyVersionRow.version, **page)

    async def list_premium_transactions(
        self, policy_id: str, **page: Unpack[PageQuery]
    ) -> Page[PremiumTransactionRow]:
        """Oldest first: the running written premium reads top to bottom."""
        return await self._child_page(
            policy_id,
            premium_transactions,
            PremiumTransactionRow.sequence,
            newest_first=False,
            **page,
        )

    async def list_status_changes(
        self, policy_id: str, **page: Unpack[PageQuery]
    ) -> Page[PolicyStatusChangeRow]:
        return await self._child_page(
            policy_id, status_changes, PolicyStatusChangeRow.create_time, **page
        )

    async def _child_page(
        self,
        policy_id: str,
        query: Callable[[uuid.UUID, uuid.UUID], Select[T]],
        key: InstrumentedAttribute[Any],
        *,
        newest_first: bool = True,
        **page: Unpack[PageQuery],
    ) -> Page[T]:
        """A page of the rows ``query`` finds under the policy (NOT_FOUND without
        it), by ``key``, newest first unless told otherwise."""
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            policy = await POLICIES.find(session, company, policy_id)
            return await self.ctx.page(
                session,
                query(company, policy.id),
                order=[OrderTerm(key, newest_first)],
                parent=str(policy.id),
                **page,
            )

    # ------------------------------------------------------------- helpers

    @staticmethod
    async def _holder(
        session: AsyncSession, company: uuid.UUID, policyholder_id: str
    ) -> PolicyholderRow:
        row = await POLICYHOLDERS.find(session, company, policyholder_id)
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
        known = await current_dependent_ids(session, company, holder, members.dependent_ids)
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
        self._log_rows(session, row, from_state=from_state, step=step, request_id=request_id)
        await session.flush()

    def _log_rows(
        self,
        adder: SupportsAdd,
        row: PolicyRow,
        *,
        from_state: str | None,
        step: _Step,
        request_id: str,
    ) -> None:
        """The step's status log entry and its event (of ``row`` as it is now)."""
        adder.add(
            status_change(
                row,
                from_state=from_state,
                to_state=step.policy.state.value,
                transition=step.transition,
                reason=step.reason,
                effective_date=step.effective_date,
                actor_id=require_principal().subject,
                request_id=log_request_id(request_id),
            )
        )
        self.ctx.events.policy_changed(
            adder, row, transition=step.transition, from_state=from_state
        )

    async def _created(
        self,
        session: AsyncSession,
        row: PolicyRow,
        step: _Step,
        request_id: str,
        detail: dict[str, object],
    ) -> None:
        """Log and audit a new policy (created, or the successor of a renewal)."""
        await self._log(session, row, from_state=None, step=step, request_id=request_id)
        await self.ctx.audit.record(
            session,
            action="policy.create",
            entity_type="policy",
            entity_id=row.id,
            changed_fields=sorted(UPDATABLE | {"policyholder_id", "product_id"}),
            detail=detail,
        )

    @staticmethod
    def _version_row(
        row: PolicyRow, policy: Policy, *, description: str, changed: Sequence[str]
    ) -> PolicyVersionRow:
        return version_row(
            row,
            policy,
            description=description,
            changed=changed,
            actor=actor_uuid(require_principal()),
        )

    @staticmethod
    async def _on_sale(session: AsyncSession, company: uuid.UUID, product_id: str) -> ProductView:
        """The product with its current version; it must be on sale."""
        product = await load_product(session, company, product_id)
        if product.row.delete_time is not None:
            raise deleted("product")
        product.domain().check_on_sale()
        return product

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
            seen = await first_call(session, company, CREATE, request_id, str(new_id), data)
            if seen is not None:
                return await POLICIES.find(session, company, seen)
            holder = await self._holder(session, company, data.policyholder_id)
            product = await self._on_sale(session, company, data.product_id)
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
            await self._created(
                session,
                row,
                _Step(policy, "create"),
                request_id,
                {"product_version": row.product_version, "state": row.state},
            )
            return row

    async def update(
        self, policy_id: str, data: PolicyInput, mask: Sequence[str], etag: str
    ) -> PolicyRow:
        principal = require_principal()
        company = own_company(principal)
        check_mask(mask, UPDATABLE)
        fields = frozenset(mask)
        if "do_not_renew" in fields and not principal.has_permission(RENEW_PERMISSION):
            # Whether a policy is renewed is the renewer's decision, not an editor's.
            raise PermissionDenied(
                f"changing do_not_renew needs the permission {RENEW_PERMISSION}",
                reason="DO_NOT_RENEW_NOT_PERMITTED",
                metadata={"required_permission": RENEW_PERMISSION},
            )
        async with self.ctx.change(
            POLICIES, company, policy_id, method="update", etag=etag
        ) as change:
            session, row = change.session, change.row
            policy = policy_of(row)
            if fields <= ANY_STATE_FIELDS:
                return await self._set_do_not_renew(session, row, policy, data)
            POLICY_LIFECYCLE.next_state(policy.state, PolicyAction.UPDATE)
            if policy.is_renewal and fields & RENEWAL_FIXED:
                raise FailedPrecondition(
                    "a renewal starts the day after the policy it renews ends; its dates "
                    "cannot be changed",
                    reason="RENEWAL_DATES_FIXED",
                    metadata={"previous_policy_id": str(row.previous_policy_id)},
                )
            if "do_not_renew" in fields:
                policy = policy.set_do_not_renew(data.do_not_renew)
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
            if updated.premium is None:
                row.premium_breakdown = None
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

    async def _set_do_not_renew(
        self, session: AsyncSession, row: PolicyRow, policy: Policy, data: PolicyInput
    ) -> PolicyRow:
        """Only ``do_not_renew``: allowed in every state but EXPIRED; the quote stays."""
        if row.delete_time is not None:
            raise deleted("policy")
        changed = apply_policy(row, policy.set_do_not_renew(data.do_not_renew))
        if changed:
            row.update_time = datetime.now(UTC)
            await session.flush()
            await self.ctx.audit.record(
                session,
                action="policy.update",
                entity_type="policy",
                entity_id=row.id,
                changed_fields=changed,
                detail={"do_not_renew": row.do_not_renew},
            )
        return row

    # ------------------------------------------------------------- transitions

    async def _transition(
        self,
        policy_id: str,
        apply: Callable[[AsyncSession, PolicyRow, Policy], Awaitable[_Outcome]],
        **options: Unpack[ChangeOptions],
    ) -> PolicyRow:
        company = own_company(require_principal())
        method, request_id = options["method"], options.get("request_id", "")
        async with self.ctx.change(POLICIES, company, policy_id, **options) as change:
            session, row = change.session, change.row
            if change.replay:
                return row
            first_state = row.state
            self.pricing.billing.defer(session)
            outcome = await apply(session, row, policy_of(row))
            # What apply changed and added goes through the unit of work (a
            # bind's version row, premium transaction and invoices). The steps
            # then go as one statement: the row's one UPDATE (its version moved
            # once per step, as a flush per step did), each step's status log
            # entry and event (of the row after that step: its state, its etag),
            # the billing events and the audit row. Detached, the row is not
            # written again by the unit of work.
            await session.flush()
            session.expunge(row)
            rows = RowBatch(self.ctx.db.engine.dialect)
            changed: set[str] = set()
            read_version = row.version
            for number, step in enumerate(outcome.steps, start=1):
                before = row.state
                changed.update(apply_policy(row, step.policy))
                row.update_time = datetime.now(UTC)
                row.version = read_version + number
                self._log_rows(rows, row, from_state=before, step=step, request_id=request_id)
            if outcome.steps:
                row.version = read_version
                rows.update(row, [*changed, "update_time"], steps=len(outcome.steps))
            await self.ctx.audit.record(
                rows,
                action=f"policy.{method}",
                entity_type="policy",
                entity_id=row.id,
                changed_fields=sorted(changed | set(outcome.changed)),
                detail={"from_state": first_state, "to_state": row.state, **outcome.detail},
            )
            self.pricing.billing.release(session, rows)
            await rows.insert(await driver_connection(session))
            return row

    async def _product_on_sale(
        self, session: AsyncSession, row: PolicyRow
    ) -> tuple[int, Money, int]:
        """The product's current version, base premium and term; it must be on sale."""
        product = await self._on_sale(session, row.company_id, str(row.product_id))
        terms = product.version.terms()
        return product.row.current_version, terms.base_premium, terms.term_months

    async def _rate(
        self,
        session: AsyncSession,
        row: PolicyRow,
        terms: PolicyTerms,
        version: int,
        *,
        underwrite: bool = False,
    ) -> tuple[Rating, Priced]:
        """The rating of ``terms`` on product version ``version`` (and its rules).

        ``underwrite``: also run the underwriting rules on them (the issues
        stored on ``row``, decisions kept where a rule finds the same again);
        members whose cover continues from the policy a renewal renews are not
        re-checked for entry ages, members joining are."""
        priced = await self.pricing.product(session, row, version)
        request = await self.pricing.request(session, row, priced, terms)
        facts = await self.ctx.facts(row.company_id)
        rating = self.pricing.rate(request, facts)
        if underwrite:
            findings = evaluate_quote(
                request,
                priced.version.coverages,
                today=self.ctx.today_of(facts),
                max_backdate_days=facts.max_backdate_days,
                continuing=frozenset(row.cover_since or {}),
            )
            await raise_issues(session, row, findings)
        return rating, priced

    async def _today(self) -> date:
        return await self.ctx.company_today(own_company(require_principal()))

    async def quote(self, policy_id: str, etag: str, request_id: str) -> PolicyRow:
        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            POLICY_LIFECYCLE.next_state(policy.state, PolicyAction.QUOTE)
            version, _, _ = await self._product_on_sale(session, row)
            rating, _ = await self._rate(session, row, policy.terms, version, underwrite=True)
            quoted = policy.quote(rating.total)
            repinned = row.product_version != version
            row.product_version = version
            row.premium_breakdown = rating.to_json()
            return _Outcome(
                [_Step(quoted, "quote")],
                {
                    "product_version": version,
                    "rating": rating.strategy,
                    "open_underwriting_issues": row.open_underwriting_issues,
                },
                changed=[
                    "premium_breakdown",
                    "open_underwriting_issues",
                    *(["product_version"] if repinned else []),
                ],
            )

        return await self._transition(
            policy_id, etag=etag, request_id=request_id, method="quote", apply=apply
        )

    async def _check_predecessor(self, session: AsyncSession, row: PolicyRow) -> None:
        """A renewal whose predecessor was cancelled or lapsed cannot be bound."""
        if row.previous_policy_id is None:
            return
        previous = await session.get(PolicyRow, row.previous_policy_id)
        if previous is None or previous.successor_policy_id != row.id:
            raise FailedPrecondition(
                "the renewal was withdrawn: the policy it renews was cancelled or lapsed",
                reason="RENEWAL_WITHDRAWN",
                metadata={"previous_policy_id": str(row.previous_policy_id)},
            )

    async def bind(self, policy_id: str, etag: str, request_id: str) -> PolicyRow:
        today = await self._today()

        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            POLICY_LIFECYCLE.next_state(policy.state, PolicyAction.BIND)
            await self._product_on_sale(session, row)
            await self._holder(session, row.company_id, str(row.policyholder_id))
            await self._check_predecessor(session, row)
            facts = await self.ctx.facts(row.company_id)
            await check_bindable(
                session, row, today=today, max_backdate_days=facts.max_backdate_days
            )
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
            await self.pricing.bound(session, row, bound, actor=require_principal().subject)
            return _Outcome(
                steps,
                {"policy_number": bound.policy_number, "written_premium": str(row.written_premium)},
                changed=[
                    "bind_time",
                    "written_premium",
                    *(["activate_time"] if row.activate_time else []),
                ],
            )

        return await self._transition(
            policy_id, etag=etag, request_id=request_id, method="bind", apply=apply
        )

    async def activate(self, policy_id: str, etag: str, request_id: str) -> PolicyRow:
        today = await self._today()

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
        override_reason: str = "",
    ) -> PolicyRow:
        guard = _CoverGuard.of(override_reason)
        check_mask(mask, ENDORSABLE)
        fields = frozenset(mask)
        description = description.strip()
        violations = check_note(description, "description") + guard.violations(override_reason)
        if not description:
            violations.append(FieldViolation("description", "required"))
        if effective_date is None:
            violations.append(FieldViolation("effective_date", "required"))
        if "sum_insured" in fields and data.sum_insured is None:
            violations.append(FieldViolation("policy.sum_insured", "required"))
        invalid("the endorsement is not valid", violations)
        assert effective_date is not None

        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            POLICY_LIFECYCLE.next_state(policy.state, PolicyAction.ENDORSE)
            currency = policy.currency
            sum_insured = None
            insured = None
            if "sum_insured" in fields and data.sum_insured is not None:
                sum_insured = data.sum_insured.resolve(currency, "policy.sum_insured")
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
            endorsed = policy.endorse(effective_date, sum_insured=sum_insured, insured=insured)
            old = breakdown_of(row)
            new, priced = await self._rate(session, row, endorsed.terms, row.product_version)
            endorsed = endorsed.repriced(new.total)
            changed = [
                name
                for name, before, after in (
                    ("sum_insured", policy.terms.sum_insured, endorsed.terms.sum_insured),
                    ("premium", policy.premium, endorsed.premium),
                    ("insured_members", policy.terms.insured, endorsed.terms.insured),
                )
                if before != after
            ]
            losing = await guard.check(session, row, policy, endorsed)
            session.add(self._version_row(row, endorsed, description=description, changed=changed))
            detail: dict[str, object] = {}
            if old is not None:
                change = await self.pricing.endorsed(
                    session,
                    row,
                    old=old,
                    new=new,
                    effective=effective_date,
                    rules=priced.rules,
                    description=description,
                    actor=require_principal().subject,
                    version=endorsed.version,
                )
                detail["premium_change"] = str(change.amount.amount)
            row.premium_breakdown = new.to_json()
            return _Outcome(
                [
                    _Step(
                        endorsed,
                        "endorse",
                        reason=guard.reason(description, losing),
                        effective_date=effective_date,
                    )
                ],
                {
                    "version": endorsed.version,
                    "endorsed_fields": changed,
                    **detail,
                    **guard.detail(losing),
                },
                changed=["premium_breakdown", "written_premium"],
            )

        return await self._transition(
            policy_id,
            etag=etag,
            request_id=request_id,
            method="endorse",
            apply=apply,
            arguments=[effective_date, description, data, sorted(fields), *guard.arguments],
        )

    async def renew(
        self, policy_id: str, etag: str, request_id: str
    ) -> tuple[PolicyRow, PolicyRow]:
        successor_id = uuid.uuid4()

        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            renewed = policy.renew(successor_id)
            version, base_premium, term_months = await self._product_on_sale(session, row)
            await self._holder(session, row.company_id, str(row.policyholder_id))
            terms = policy.renewal_terms(term_months)
            draft = Policy(
                state=PolicyState.DRAFT,
                currency=base_premium.currency,
                terms=terms,
                previous_id=row.id,
            )
            successor = PolicyRow(
                id=successor_id,
                company_id=row.company_id,
                policyholder_id=row.policyholder_id,
                product_id=row.product_id,
                product_version=version,
                previous_policy_id=row.id,
            )
            apply_policy(successor, draft)
            successor.cover_since = _cover_since(row, policy, draft)
            session.add(successor)
            await session.flush()
            rating, _ = await self._rate(session, successor, terms, version, underwrite=True)
            quoted = draft.quote(rating.total)
            apply_policy(successor, quoted)
            successor.premium_breakdown = rating.to_json()
            await session.flush()
            await self._created(
                session,
                successor,
                _Step(quoted, "renew", reason=f"renews {row.policy_number or row.id}"),
                request_id,
                {"previous_policy_id": str(row.id), "state": successor.state},
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
            successor = await POLICIES.find(session, company, str(row.successor_policy_id))
        return row, successor

    async def _withdraw_renewal(
        self, session: AsyncSession, row: PolicyRow, today: date, request_id: str, why: str
    ) -> dict[str, object]:
        """A cancelled or lapsed policy is not renewed: its pending successor is
        withdrawn (a draft or quote deleted, a bound one cancelled flat)."""
        if row.successor_policy_id is None:
            return {}
        successor = await POLICIES.find(session, row.company_id, str(row.successor_policy_id))
        # Locked like any transition of it.
        await session.refresh(successor, with_for_update=True)
        state = PolicyState(successor.state)
        before = successor.state
        current = policy_of(successor)
        if state in (PolicyState.DRAFT, PolicyState.QUOTED):
            successor.soft_delete()
            step = _Step(current, "renewal_withdrawn", reason=why)
        elif state is PolicyState.BOUND:
            ended = current.cancel(CancelReason.BUSINESS_DECISION, today, note=why)
            apply_policy(successor, ended)
            priced = await self.pricing.product(session, successor)
            await self.pricing.cancelled(
                session, successor, ended, rules=priced.rules, actor=require_principal().subject
            )
            step = _Step(
                ended, "renewal_withdrawn", reason=why, effective_date=ended.cancel_effective_date
            )
        else:
            return {}
        successor.update_time = datetime.now(UTC)
        await session.flush()
        await self._log(session, successor, from_state=before, step=step, request_id=request_id)
        await self.ctx.audit.record(
            session,
            action="policy.renewal_withdrawn",
            entity_type="policy",
            entity_id=successor.id,
            changed_fields=["state"] if state is PolicyState.BOUND else ["delete_time"],
            detail={"previous_policy_id": str(row.id), "reason": why},
        )
        return {"withdrawn_renewal_id": str(successor.id)}

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
        override_reason: str = "",
    ) -> PolicyRow:
        guard = _CoverGuard.of(override_reason)
        invalid(
            "the request is not valid",
            check_note(note, "note") + guard.violations(override_reason),
        )
        today = await self._today()

        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            cancelled = policy.cancel(
                reason, today, effective_date=effective_date, scheduled=scheduled, note=note.strip()
            )
            assert cancelled.cancel_reason is not None
            losing = await guard.check(session, row, policy, cancelled)
            withdrawn = await self._withdraw_renewal(
                session, row, today, request_id, f"the policy it renews was cancelled ({row.id})"
            )
            if withdrawn:
                cancelled = replace(cancelled, successor_id=None)
            assert cancelled.cancel_reason is not None
            priced = await self.pricing.product(session, row)
            returned = await self.pricing.cancelled(
                session, row, cancelled, rules=priced.rules, actor=require_principal().subject
            )
            return _Outcome(
                [
                    _Step(
                        cancelled,
                        "cancel",
                        reason=guard.reason(
                            cancelled.cancel_reason.value + (f": {note.strip()}" if note else ""),
                            losing,
                        ),
                        effective_date=cancelled.cancel_effective_date,
                    )
                ],
                {
                    "scheduled": cancelled.state is PolicyState.CANCEL_PENDING,
                    **(
                        {"return_premium": str(returned.amount.amount)}
                        if returned is not None
                        else {}
                    ),
                    **withdrawn,
                    **guard.detail(losing),
                },
                changed=["written_premium"] if returned is not None else [],
            )

        return await self._transition(
            policy_id,
            etag=etag,
            request_id=request_id,
            method="cancel",
            apply=apply,
            arguments=[reason, effective_date, scheduled, note, *guard.arguments],
        )

    async def complete_cancellation(self, policy_id: str, etag: str, request_id: str) -> PolicyRow:
        """CANCEL_PENDING → CANCELLED on the cancellation date (the lifecycle
        scheduler's step; the return premium was booked when it was scheduled)."""
        today = await self._today()

        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            done = policy.complete_cancel(today)
            return _Outcome(
                [
                    _Step(
                        done,
                        "cancel",
                        reason="the scheduled cancellation took effect",
                        effective_date=done.cancel_effective_date,
                    )
                ]
            )

        return await self._transition(
            policy_id, etag=etag, request_id=request_id, method="complete_cancel", apply=apply
        )

    async def reinstate(self, policy_id: str, etag: str, request_id: str, note: str) -> PolicyRow:
        invalid("the request is not valid", check_note(note, "note"))
        today = await self._today()
        window = self.ctx.settings.reinstatement_window_days

        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            if policy.state is PolicyState.LAPSED and row.termination_note.startswith(NON_PAYMENT):
                await self._check_no_arrears(session, row, today)
            reinstated = policy.reinstate(today, window)
            charged = await self.pricing.reinstated(
                session, row, reinstated, actor=require_principal().subject
            )
            return _Outcome(
                [_Step(reinstated, "reinstate", reason=note.strip(), effective_date=today)],
                {"premium_charged": str(charged.amount.amount)} if charged is not None else {},
                changed=["written_premium"] if charged is not None else [],
            )

        return await self._transition(
            policy_id,
            etag=etag,
            request_id=request_id,
            method="reinstate",
            apply=apply,
            arguments=[note],
        )

    async def _check_no_arrears(self, session: AsyncSession, row: PolicyRow, today: date) -> None:
        """A policy lapsed for non-payment comes back only with everything due paid."""
        arrears = await self.pricing.billing.unpaid(session, row, today)
        if arrears is None:
            return
        raise FailedPrecondition(
            f"the policy has premium arrears of {arrears.amount}: pay them before reinstating",
            reason=PREMIUM_ARREARS,
            metadata={
                "amount": str(arrears.amount.amount),
                "currency": arrears.amount.currency,
                "oldest_due_date": arrears.oldest_due_date.isoformat(),
                "invoice_numbers": ",".join(i.number for i in arrears.invoices[:SHOWN_CLAIMS]),
            },
            precondition_violations=[
                PreconditionViolation(
                    PREMIUM_ARREARS,
                    f"policies/{row.id}/invoices/{i.id}",
                    f"invoice {i.number}: {outstanding_of(i)} due on "
                    f"{i.due_date.isoformat()} is unpaid",
                )
                for i in arrears.invoices
            ],
        )

    async def lapse(
        self,
        policy_id: str,
        etag: str,
        request_id: str,
        lapse_date: date | None,
        note: str,
        *,
        override_reason: str = "",
    ) -> PolicyRow:
        guard = _CoverGuard.of(override_reason)
        invalid(
            "the request is not valid",
            check_note(note, "note") + guard.violations(override_reason),
        )
        today = await self._today()

        async def apply(session: AsyncSession, row: PolicyRow, policy: Policy) -> _Outcome:
            lapsed = policy.lapse(today, lapse_date=lapse_date, note=note.strip())
            losing = await guard.check(session, row, policy, lapsed)
            withdrawn = await self._withdraw_renewal(
                session, row, today, request_id, f"the policy it renews lapsed ({row.id})"
            )
            if withdrawn:
                lapsed = replace(lapsed, successor_id=None)
            return _Outcome(
                [
                    _Step(
                        lapsed,
                        "lapse",
                        reason=guard.reason(note.strip(), losing),
                        effective_date=lapsed.lapse_date,
                    )
                ],
                {**withdrawn, **guard.detail(losing)},
            )

        return await self._transition(
            policy_id,
            etag=etag,
            request_id=request_id,
            method="lapse",
            apply=apply,
            arguments=[lapse_date, note, *guard.arguments],
        )

    async def expire(self, policy_id: str, etag: str, request_id: str) -> PolicyRow:
        today = await self._today()

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
