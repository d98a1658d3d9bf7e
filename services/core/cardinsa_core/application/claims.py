"""Claims: first notice of loss to closure, with an action log and approval bands.

Eligibility (checked on create, on update, on submit and again at every money
step -- approve, each indemnity payment, reopen -- since the policy may have
changed in between): the policy was in force on the incident date; the
claimant is insured by the policy version in effect that day; the coverage
belongs to the policy's product version and its waiting period has passed
(see :mod:`cardinsa_core.application.claim_cover`). Claim numbers are assigned
on submit from the company's counter, like policy numbers.

Every transition runs in one transaction with the claim row locked: the
claim's state and amounts, its consumption of the accumulators (moved by
:func:`~cardinsa_core.application.claim_cover.settle` whenever it changes),
the action log entry and the audit row commit together or not at all.

Approval authority is checked before the claim is even read (permission
before existence): the amount's band depends only on the request and the
company's bands, so a caller without the authority learns nothing about the
claim. Outside the band the answer is PERMISSION_DENIED (reason
APPROVAL_AUTHORITY_EXCEEDED): the caller lacks an authority another approver
has; nothing about the claim's state is wrong. With the company's
segregation of duties on, the claim's adjuster may neither approve nor pay it
(PERMISSION_DENIED, reason SEGREGATION_OF_DUTIES).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, Unpack

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.application.claim_authority import ClaimAuthority
from cardinsa_core.application.claim_cover import (
    Cover,
    assessed,
    benefit_of,
    eligible_from,
    eligible_version,
    load_cover,
    moved,
    read_cover,
    settle,
)
from cardinsa_core.application.context import (
    ChangeOptions,
    CoreContext,
    ListQuery,
    first_call,
    own_company,
)
from cardinsa_core.application.inputs import MemberRef, MoneyInput
from cardinsa_core.domain.claims import (
    Claim,
    ClaimAction,
    ClaimDetails,
    ClaimState,
    ClaimType,
    CostType,
    check_claim_details,
)
from cardinsa_core.domain.money import Money, check_currency
from cardinsa_core.domain.numbering import NumberKind, format_number
from cardinsa_core.repository.claim_authority import settings_of
from cardinsa_core.repository.claim_facts import (
    ApprovalFacts,
    lock_accumulator_rows,
    read_approval_facts,
    read_create_facts,
)
from cardinsa_core.repository.claims import (
    CLAIMS,
    GET_CLAIM,
    apply_claim,
    claim_log,
    claim_of,
    log_entry,
)
from cardinsa_core.repository.models import ClaimLogEntryRow, ClaimRow, PolicyRow
from cardinsa_core.repository.numbers import next_number, take_number
from cardinsa_core.repository.policies import POLICIES
from cardinsa_foundation.context import Principal
from cardinsa_foundation.db import driver_connection
from cardinsa_foundation.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
)
from cardinsa_foundation.idempotency import request_fingerprint
from cardinsa_foundation.models import check_etag
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

CREATE = "CreateClaim"
#: Method names: the scope of their request ids and their audit actions.
APPROVE = "approve"
SUBMIT = "submit"


@dataclass(frozen=True, slots=True)
class FastOptions:
    """How a call changes a claim on :meth:`ClaimUseCases.fast_change`."""

    etag: str
    request_id: str
    #: What else defines the call (a replay must repeat it), as in ChangeOptions.
    arguments: Sequence[object]
    #: The currency whose approval bands the statement reads ("": the claim's).
    bands_currency: str = ""
    #: Permission before existence: run on the facts before the claim is looked at.
    authorise: Callable[[ApprovalFacts], Awaitable[None]] | None = None


#: A fast transition's own reads and decision: (connection, the locked claim row,
#: the claim before, the facts read, the statement's rows) -> (outcome, changed columns).
FastStep = Callable[
    [Any, "ClaimRow", "Claim", ApprovalFacts, RowBatch], Awaitable[tuple["Outcome", list[str]]]
]
UPDATABLE = frozenset(
    {
        "claimant",
        "claim_type",
        "description",
        "coverage_code",
        "incident_date",
        "report_date",
        "claimed_amount",
    }
)


@dataclass(frozen=True, slots=True)
class ClaimInput:
    """A claim as a request describes it."""

    policy_id: str = ""
    claimant: MemberRef | None = None
    claim_type: ClaimType | None = None
    description: str = ""
    coverage_code: str = ""
    incident_date: date | None = None
    report_date: date | None = None
    claimed_amount: MoneyInput | None = None


@dataclass(slots=True)
class Outcome:
    """What a transition did, for the claim row, the action log and the audit row."""

    claim: Claim
    amount: Money | None = None
    note: str = ""
    payment_reference: str = ""
    changed: list[str] = field(default_factory=list)
    #: The cover the transition loaded (checked), reused to settle the accumulators.
    cover: Cover | None = None
    #: More for the audit row's detail.
    detail: dict[str, object] = field(default_factory=dict)
    #: The accumulators were moved already (a fast approval locks them to assess).
    settled: bool = False


Apply = Callable[[AsyncSession, ClaimRow, Claim], Awaitable[Outcome]]


def check_duties(principal: Principal, row: ClaimRow, required: bool, act: str) -> None:
    """With segregation of duties on, the claim's adjuster may not ``act``."""
    if not required or row.assigned_adjuster_id is None:
        return
    if actor_uuid(principal) == row.assigned_adjuster_id:
        raise PermissionDenied(
            f"segregation of duties: the claim's adjuster may not {act} it",
            reason="SEGREGATION_OF_DUTIES",
            metadata={"action": act},
        )


def _member(ref: MemberRef | None, path: str) -> uuid.UUID | None:
    """The claimant's dependent id (None: the policyholder)."""
    if ref is None:
        raise InvalidArgument(
            "the claimant is required", field_violations=[FieldViolation(path, "required")]
        )
    if ref.policyholder:
        return None
    found = lookup_uuid(ref.dependent_id)
    if found is None:
        raise InvalidArgument(
            "the claimant is not valid",
            field_violations=[FieldViolation(f"{path}.dependent_id", "must be a dependent id")],
        )
    return found


class ClaimUseCases:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx
        self.authority = ClaimAuthority(ctx)

    # ------------------------------------------------------------- reading

    async def get(self, claim_id: str) -> ClaimRow:
        """One round trip, without the ORM (``core.read_claim``), as GetPolicy."""
        company = own_company(require_principal())
        key = lookup_uuid(claim_id)
        row = None
        if key is not None:
            async with self.ctx.db.read(company_id=company) as reader:
                row = await reader.one(GET_CLAIM, id=key)
        if row is None:
            raise not_found(CLAIMS.name, claim_id)
        return row

    async def list_claims(self, **query: Unpack[ListQuery]) -> Page[ClaimRow]:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await self.ctx.list_page(session, CLAIMS, company, **query)

    async def list_log(
        self, claim_id: str, *, page_size: int, page_token: str
    ) -> Page[ClaimLogEntryRow]:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            claim = await CLAIMS.find(session, company, claim_id)
            return await self.ctx.page(
                session,
                claim_log(company, claim.id),
                order=[OrderTerm(ClaimLogEntryRow.create_time, True)],
                page_size=page_size,
                page_token=page_token,
                parent=str(claim.id),
            )

    # ------------------------------------------------------------- eligibility

    async def _eligible(
        self, session: AsyncSession, policy: PolicyRow, details: ClaimDetails
    ) -> int:
        """The number of the policy version in effect on the incident date."""
        version, _ = await eligible_version(session, policy, details)
        return version.version

    def _details(
        self, data: ClaimInput, fields: frozenset[str], base: ClaimDetails | None, currency: str
    ) -> ClaimDetails:
        """The details a request describes: ``fields`` from ``data``, the rest from ``base``."""
        today = self.ctx.today()
        if base is None:
            fields = UPDATABLE
            base = ClaimDetails(
                claim_type=None,
                description="",
                incident_date=today,
                report_date=today,
                claimed_amount=Money.zero(currency),
                coverage_code="",
            )
        invalid(
            "the claim is not valid",
            [
                FieldViolation(f"claim.{name}", "required")
                for name in ("incident_date", "claimed_amount")
                if name in fields and getattr(data, name) is None
            ],
        )
        details = base
        if "claim_type" in fields:
            details = replace(details, claim_type=data.claim_type)
        if "description" in fields:
            details = replace(details, description=data.description.strip())
        if "incident_date" in fields and data.incident_date is not None:
            details = replace(details, incident_date=data.incident_date)
        if "report_date" in fields:
            details = replace(details, report_date=data.report_date or today)
        if "claimed_amount" in fields and data.claimed_amount is not None:
            details = replace(
                details,
                claimed_amount=data.claimed_amount.resolve(currency, "claim.claimed_amount"),
            )
        if "coverage_code" in fields:
            details = replace(details, coverage_code=data.coverage_code.strip())
        if "claimant" in fields:
            details = replace(
                details, claimant_dependent_id=_member(data.claimant, "claim.claimant")
            )
        invalid("the claim is not valid", check_claim_details(details, currency, today))
        return details

    # ------------------------------------------------------------- writing

    def _log_rows(
        self,
        adder: SupportsAdd,
        row: ClaimRow,
        *,
        action: str,
        from_state: str | None,
        outcome: Outcome,
        request_id: str,
    ) -> None:
        """The action's log entry and its event, added to ``adder``."""
        adder.add(
            log_entry(
                row,
                action=action,
                from_state=from_state,
                amount=outcome.amount,
                note=outcome.note,
                payment_reference=outcome.payment_reference,
                actor_id=require_principal().subject,
                request_id=log_request_id(request_id),
            )
        )
        self.ctx.events.claim_changed(adder, row, action=action, from_state=from_state)

    async def create(self, data: ClaimInput, *, request_id: str) -> ClaimRow:
        """A new DRAFT claim. The hot path (:meth:`_create_fast`) reads what it
        needs in one statement and inserts the claim, its log entry, its event
        and its audit row in one more, in one transaction; a request id used
        before is answered by the unit-of-work path (:meth:`_create_or_replay`),
        which finds the first call's claim."""
        company = own_company(require_principal())
        invalid("the claim is not valid", check_request_id(request_id))
        created = await self._create_fast(company, data, request_id)
        if created is not None:
            return created
        return await self._create_or_replay(company, data, request_id)

    @staticmethod
    def _new_claim(
        new_id: uuid.UUID, policy: PolicyRow, version: int, details: ClaimDetails
    ) -> ClaimRow:
        row = ClaimRow(
            id=new_id, company_id=policy.company_id, policy_id=policy.id, policy_version=version
        )
        apply_claim(row, Claim(state=ClaimState.DRAFT, details=details))
        return row

    async def _record_create(
        self, adder: SupportsAdd, row: ClaimRow, details: ClaimDetails, request_id: str
    ) -> None:
        """The new claim's log entry, event and audit row, added to ``adder``."""
        self._log_rows(
            adder,
            row,
            action="create",
            from_state=None,
            outcome=Outcome(claim_of(row), amount=details.claimed_amount),
            request_id=request_id,
        )
        await self.ctx.audit.record(
            adder,
            action="claim.create",
            entity_type="claim",
            entity_id=row.id,
            changed_fields=sorted(UPDATABLE | {"policy_id"}),
            detail={"policy_id": str(row.policy_id), "claimed_amount": str(details.claimed_amount)},
        )

    async def _create_fast(
        self, company: uuid.UUID, data: ClaimInput, request_id: str
    ) -> ClaimRow | None:
        """The create in four round trips (BEGIN with the tenant, the reads, the
        inserts, COMMIT) without the ORM's unit of work; None when the request
        id was used before (nothing written)."""
        policy_id = lookup_uuid(data.policy_id)
        if policy_id is None:
            raise not_found(POLICIES.name, data.policy_id)
        new_id = uuid.uuid4()
        key = (CREATE, request_id, str(new_id), request_fingerprint(data)) if request_id else None
        async with self.ctx.db.transaction(company_id=company) as connection:
            facts = await read_create_facts(
                connection,
                company=company,
                policy_id=policy_id,
                incident=data.incident_date or self.ctx.today(),
                coverage_code=data.coverage_code.strip(),
                key=key,
            )
            if not facts.claimed:
                return None
            policy = facts.policy
            if policy is None:
                raise not_found(POLICIES.name, data.policy_id)
            details = self._details(data, UPDATABLE, None, policy.currency)
            version, _ = eligible_from(policy, details, facts.version, facts.coverage)
            row = self._new_claim(new_id, policy, version.version, details)
            assert facts.now is not None  # with the policy
            row.create_time = row.update_time = facts.now  # now() of this transaction
            rows = RowBatch(self.ctx.db.engine.dialect)
            rows.add(row)
            await self._record_create(rows, row, details, request_id)
            await rows.insert(connection)
            return row

    async def _create_or_replay(
        self, company: uuid.UUID, data: ClaimInput, request_id: str
    ) -> ClaimRow:
        new_id = uuid.uuid4()
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            seen = await first_call(session, company, CREATE, request_id, str(new_id), data)
            if seen is not None:
                return await CLAIMS.find(session, company, seen)
            policy = await POLICIES.find(session, company, data.policy_id)
            details = self._details(data, UPDATABLE, None, policy.currency)
            row = self._new_claim(
                new_id, policy, await self._eligible(session, policy, details), details
            )
            session.add(row)
            await session.flush()
            await self._record_create(session, row, details, request_id)
            return row

    async def update(
        self, claim_id: str, data: ClaimInput, mask: Sequence[str], etag: str
    ) -> ClaimRow:
        check_mask(mask, UPDATABLE)

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> Outcome:
            claim.check_can(ClaimAction.UPDATE)
            policy = await POLICIES.find(session, row.company_id, str(row.policy_id))
            details = self._details(data, frozenset(mask), claim.details, row.currency)
            row.policy_version = await self._eligible(session, policy, details)
            return Outcome(claim.update(details), amount=details.claimed_amount)

        return await self.transition(
            claim_id, etag=etag, request_id="", method="update", apply=apply
        )

    async def transition(
        self, claim_id: str, apply: Apply, **options: Unpack[ChangeOptions]
    ) -> ClaimRow:
        """Run ``apply`` on the locked claim; store, settle, log and audit what it did."""
        company = own_company(require_principal())
        method, request_id = options["method"], options.get("request_id", "")
        async with self.ctx.change(CLAIMS, company, claim_id, **options) as change:
            session, row = change.session, change.row
            if change.replay:
                return row
            before = claim_of(row)
            outcome = await apply(session, row, before)
            after = outcome.claim
            # The row first, so the flush of the accumulators writes it once.
            changed = apply_claim(row, after) + outcome.changed
            row.update_time = datetime.now(UTC)
            if after.consumption != before.consumption:
                cover = outcome.cover or await load_cover(session, row, after.details, check=False)
                await settle(session, cover, row.currency, before.consumption, after.consumption)
            await session.flush()
            # The log entry, the event (of the row as flushed: its new etag) and
            # the audit row: one statement on the unit of work's connection.
            rows = RowBatch(self.ctx.db.engine.dialect)
            await self._record_change(
                rows,
                row,
                method=method,
                before=before,
                outcome=outcome,
                changed=changed,
                request_id=request_id,
            )
            await rows.insert(await driver_connection(session))
            return row

    async def _record_change(
        self,
        adder: SupportsAdd,
        row: ClaimRow,
        *,
        method: str,
        before: Claim,
        outcome: Outcome,
        changed: Sequence[str],
        request_id: str,
    ) -> None:
        """A transition's log entry, event and audit row, added to ``adder``
        (``row`` as it is stored: its new etag)."""
        self._log_rows(
            adder,
            row,
            action=method,
            from_state=before.state.value,
            outcome=outcome,
            request_id=request_id,
        )
        detail: dict[str, object] = {"from_state": before.state.value, "to_state": row.state}
        if outcome.amount is not None:
            detail["amount"] = str(outcome.amount)
        detail.update(outcome.detail)
        await self.ctx.audit.record(
            adder,
            action=f"claim.{method}",
            entity_type="claim",
            entity_id=row.id,
            changed_fields=sorted(set(changed)),
            detail=detail,
        )

    async def submit(self, claim_id: str, etag: str, request_id: str) -> ClaimRow:
        submitted = await self._submit_fast(require_principal(), claim_id, etag, request_id)
        if submitted is not None:
            return submitted

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> Outcome:
            claim.check_can(ClaimAction.SUBMIT)
            policy = await POLICIES.find(session, row.company_id, str(row.policy_id))
            invalid(
                "the claim is not valid",
                check_claim_details(claim.details, row.currency, self.ctx.today()),
            )
            row.policy_version = await self._eligible(session, policy, claim.details)
            value = await next_number(session, row.company_id, NumberKind.CLAIM)
            submitted = claim.submit(format_number(self.ctx.settings.claim_number_prefix, value))
            return Outcome(submitted, amount=claim.details.claimed_amount)

        return await self.transition(
            claim_id, etag=etag, request_id=request_id, method=SUBMIT, apply=apply
        )

    async def review(self, claim_id: str, etag: str, request_id: str) -> ClaimRow:
        adjuster = actor_uuid(require_principal())

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> Outcome:
            reviewed = claim.review()
            row.assigned_adjuster_id = adjuster
            # An estimate for the adjuster; the approval works it out again under lock.
            cover = await load_cover(session, row, claim.details, check=False)
            reviewed = reviewed.assessed(await benefit_of(session, reviewed, cover, lock=False))
            return Outcome(reviewed, changed=["assigned_adjuster_id"])

        return await self.transition(
            claim_id, etag=etag, request_id=request_id, method="review", apply=apply
        )

    async def approve(
        self, claim_id: str, etag: str, request_id: str, amount: MoneyInput | None, note: str
    ) -> ClaimRow:
        principal = require_principal()
        company = own_company(principal)
        violations = check_note(note, "note") + check_request_id(request_id)
        if amount is None:
            violations.append(FieldViolation("approved_amount", "required"))
        elif not amount.currency:
            violations.append(FieldViolation("approved_amount.currency_code", "required"))
        else:
            violations += check_currency(amount.currency, "approved_amount.currency_code")
        invalid("the approval is not valid", violations)
        assert amount is not None
        money = amount.resolve(amount.currency, "approved_amount")
        approved = await self._approve_fast(
            principal, claim_id, etag=etag, request_id=request_id, money=money, note=note
        )
        if approved is not None:
            return approved

        async def authority(session: AsyncSession) -> None:
            # Permission before existence: the band depends on the request only
            # (read first in the change's unit of work, before the claim).
            bands = await self.authority.bands(company, money.currency, session=session)
            bands.check_authority(money, principal.permissions)

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> Outcome:
            claim.check_can(ClaimAction.APPROVE)
            segregated = await self.authority.segregation_required(company, session=session)
            check_duties(principal, row, segregated, "approve")
            cover = await load_cover(session, row, claim.details)
            benefit = await benefit_of(session, claim, cover, lock=True)
            approved = claim.approve(money, benefit)
            row.approved_by = actor_uuid(principal)
            return Outcome(
                approved,
                amount=money,
                note=note.strip(),
                cover=cover,
                changed=["approved_by"],
                detail={"payable": str(benefit.payable)},
            )

        return await self.transition(
            claim_id,
            etag=etag,
            request_id=request_id,
            method=APPROVE,
            apply=apply,
            arguments=[money, note.strip()],
            check=authority,
        )

    async def fast_change(
        self,
        principal: Principal,
        claim_id: str,
        step: FastStep,
        *,
        method: str,
        options: FastOptions,
    ) -> ClaimRow | None:
        """A transition without the ORM's unit of work, for the hot ones
        (submit, approve): BEGIN with the tenant; one statement that claims the
        request id and reads the claim locked ``FOR UPDATE``, the claim
        settings and the bands of ``options.bands_currency``
        (:func:`read_approval_facts`); what ``step`` reads; the claim's UPDATE
        with whatever ``step`` added, the log entry, the event and the audit
        row in one statement; COMMIT. The checks and their order are those of
        :meth:`transition` (``options.authorise`` first: permission before
        existence; then the claim, its etag, not deleted; then ``step``'s).
        None -- nothing written -- when the request id was used before or the
        id is no UUID: the unit-of-work path answers those."""
        request_id = options.request_id
        # First, as CoreContext.change does: a bad request id (1 MB of text) is
        # INVALID_ARGUMENT, never a row of the idempotency table.
        invalid("the request is not valid", check_request_id(request_id))
        company = own_company(principal)
        key = lookup_uuid(claim_id)
        if key is None:
            return None
        fingerprint = request_fingerprint(claim_id, options.etag, *options.arguments)
        async with self.ctx.db.transaction(company_id=company) as connection:
            facts = await read_approval_facts(
                connection,
                company=company,
                claim_id=key,
                currency=options.bands_currency,
                key=(method, request_id, fingerprint) if request_id else None,
            )
            if not facts.claimed:
                return None
            if options.authorise is not None:
                await options.authorise(facts)
            row = facts.claim
            if row is None:
                raise not_found(CLAIMS.name, claim_id)
            check_etag(row, options.etag)
            if row.delete_time is not None:
                raise deleted(CLAIMS.name)
            before = claim_of(row)
            rows = RowBatch(self.ctx.db.engine.dialect)
            outcome, changed = await step(connection, row, before, facts, rows)
            after = outcome.claim
            if after.consumption != before.consumption and not outcome.settled:
                # What the claim takes from its accumulators moved: under their lock.
                cover = outcome.cover
                if cover is None:  # pragma: no cover - a step that moves money reads the cover
                    raise AssertionError("a fast step moved the consumption without its cover")
                locked = await lock_accumulator_rows(
                    connection, company, cover.periods, row.currency
                )
                for accumulator in moved(
                    locked, cover, row.currency, before.consumption, after.consumption
                ):
                    rows.update(accumulator, ["deductible_used", "limit_used"])
            row.update_time = datetime.now(UTC)
            rows.update(row, [*changed, "policy_version", "update_time"])
            await self._record_change(
                rows,
                row,
                method=method,
                before=before,
                outcome=outcome,
                changed=changed,
                request_id=request_id,
            )
            await rows.insert(connection)
            return row

    async def _approve_fast(
        self,
        principal: Principal,
        claim_id: str,
        *,
        etag: str,
        request_id: str,
        money: Money,
        note: str,
    ) -> ClaimRow | None:
        """:meth:`approve` on :meth:`fast_change`: the cover with the policy
        held ``FOR SHARE``, then the accumulators created and locked in their
        order, each one statement."""
        company = own_company(principal)

        async def authorise(facts: ApprovalFacts) -> None:
            view = await self.authority.view_of(company, money.currency, facts.bands)
            view.bands.check_authority(money, principal.permissions)

        async def step(
            connection: Any, row: ClaimRow, before: Claim, facts: ApprovalFacts, rows: RowBatch
        ) -> tuple[Outcome, list[str]]:
            before.check_can(ClaimAction.APPROVE)
            segregated = settings_of(facts.settings).require_segregation_of_duties
            check_duties(principal, row, segregated, "approve")
            cover = await read_cover(connection, row, before.details)
            locked = await lock_accumulator_rows(connection, company, cover.periods, row.currency)
            benefit = assessed(before, cover, locked)
            after = before.approve(money, benefit)
            row.approved_by = actor_uuid(principal)
            changed = [*apply_claim(row, after), "approved_by"]
            for accumulator in moved(
                locked, cover, row.currency, before.consumption, after.consumption
            ):
                rows.update(accumulator, ["deductible_used", "limit_used"])
            outcome = Outcome(
                after,
                amount=money,
                note=note.strip(),
                cover=cover,
                detail={"payable": str(benefit.payable)},
                settled=True,
            )
            return outcome, changed

        return await self.fast_change(
            principal,
            claim_id,
            step,
            method=APPROVE,
            options=FastOptions(
                etag,
                request_id,
                (money, note.strip()),
                bands_currency=money.currency,
                authorise=authorise,
            ),
        )

    async def _submit_fast(
        self, principal: Principal, claim_id: str, etag: str, request_id: str
    ) -> ClaimRow | None:
        """:meth:`submit` on :meth:`fast_change`: the policy, its version on
        the incident date and the coverage in one statement, then the claim's
        number (the company's counter row, locked until the commit: taken last)."""

        async def step(
            connection: Any, row: ClaimRow, before: Claim, facts: ApprovalFacts, rows: RowBatch
        ) -> tuple[Outcome, list[str]]:
            before.check_can(ClaimAction.SUBMIT)
            details = before.details
            cover = await read_create_facts(
                connection,
                company=row.company_id,
                policy_id=row.policy_id,
                incident=details.incident_date,
                coverage_code=details.coverage_code,
                key=None,
            )
            if cover.policy is None:  # pragma: no cover - a claim's policy exists (foreign key)
                raise not_found(POLICIES.name, str(row.policy_id))
            invalid(
                "the claim is not valid",
                check_claim_details(details, row.currency, self.ctx.today()),
            )
            version, _ = eligible_from(cover.policy, details, cover.version, cover.coverage)
            row.policy_version = version.version
            value = await take_number(connection, row.company_id, NumberKind.CLAIM)
            submitted = before.submit(format_number(self.ctx.settings.claim_number_prefix, value))
            return Outcome(submitted, amount=details.claimed_amount), apply_claim(row, submitted)

        return await self.fast_change(
            principal, claim_id, step, method=SUBMIT, options=FastOptions(etag, request_id, ())
        )

    async def unapprove(self, claim_id: str, etag: str, request_id: str, reason: str) -> ClaimRow:
        return await self._noted(
            claim_id,
            etag,
            request_id,
            method="unapprove",
            field="reason",
            note=reason,
            act=Claim.unapprove,
        )

    async def deny(self, claim_id: str, etag: str, request_id: str, reason: str) -> ClaimRow:
        return await self._noted(
            claim_id, etag, request_id, method="deny", field="reason", note=reason, act=Claim.deny
        )

    async def withdraw(self, claim_id: str, etag: str, request_id: str, reason: str) -> ClaimRow:
        return await self._noted(
            claim_id,
            etag,
            request_id,
            method="withdraw",
            field="reason",
            note=reason,
            act=Claim.withdraw,
        )

    async def close(self, claim_id: str, etag: str, request_id: str, note: str) -> ClaimRow:
        return await self._noted(
            claim_id,
            etag,
            request_id,
            method="close",
            field="note",
            note=note,
            act=lambda claim, _: claim.close(),
        )

    async def reopen(
        self,
        claim_id: str,
        etag: str,
        request_id: str,
        reason: str,
        claimed: MoneyInput | None = None,
    ) -> ClaimRow:
        invalid("the request is not valid", check_note(reason, "reason"))
        reason = reason.strip()

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> Outcome:
            claim.check_can(ClaimAction.REOPEN)
            amount = claimed.resolve(row.currency, "claimed_amount") if claimed else None
            reopened = claim.reopen(reason, amount)
            cover = await load_cover(session, row, reopened.details)
            # Locked: a reopened claim with money paid keeps the estimate's deductible,
            # so two reopens at once must not both see the period's deductible unborne.
            reopened = reopened.assessed(await benefit_of(session, reopened, cover, lock=True))
            return Outcome(reopened, amount=amount, note=reason, cover=cover)

        return await self.transition(
            claim_id,
            etag=etag,
            request_id=request_id,
            method="reopen",
            apply=apply,
            arguments=[reason, claimed],
        )

    async def set_reserve(
        self,
        claim_id: str,
        etag: str,
        request_id: str,
        *,
        cost_type: CostType | None,
        amount: MoneyInput | None,
        note: str,
    ) -> ClaimRow:
        principal = require_principal()
        company = own_company(principal)
        violations = check_note(note, "note")
        if cost_type is None:
            violations.append(FieldViolation("cost_type", "required"))
        if amount is None:
            violations.append(FieldViolation("amount", "required"))
        invalid("the reserve is not valid", violations)
        assert cost_type is not None and amount is not None

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> Outcome:
            money = amount.resolve(row.currency, "amount")
            bands = await self.authority.bands(company, row.currency, session=session)
            bands.check_authority(money, principal.permissions, action="reserving")
            changed = claim.set_reserve(cost_type, money)
            return Outcome(
                changed, amount=money, note=note.strip(), detail={"cost_type": cost_type.value}
            )

        return await self.transition(
            claim_id,
            etag=etag,
            request_id=request_id,
            method="set_reserve",
            apply=apply,
            arguments=[cost_type, amount, note.strip()],
        )

    async def _noted(
        self,
        claim_id: str,
        etag: str,
        request_id: str,
        *,
        method: str,
        field: str,
        note: str,
        act: Callable[[Claim, str], Claim],
    ) -> ClaimRow:
        """A transition whose only argument is a free-text note (logged with it)."""
        invalid("the request is not valid", check_note(note, field))
        note = note.strip()

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> Outcome:
            return Outcome(act(claim, note), note=note)

        return await self.transition(
            claim_id,
            etag=etag,
            request_id=request_id,
            method=method,
            apply=apply,
            arguments=[note],
        )

    async def delete(self, claim_id: str, etag: str) -> ClaimRow:
        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> Outcome:
            claim.check_delete()
            row.soft_delete()
            return Outcome(claim, changed=["delete_time"])

        return await self.transition(
            claim_id, etag=etag, request_id="", method="delete", apply=apply, allow_deleted=True
        )

    async def undelete(self, claim_id: str, etag: str) -> ClaimRow:
        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> Outcome:
            if row.delete_time is None:
                raise FailedPrecondition("the claim is not deleted", reason="NOT_DELETED")
            row.undelete()
            return Outcome(claim, changed=["delete_time"])

        return await self.transition(
            claim_id, etag=etag, request_id="", method="undelete", apply=apply, allow_deleted=True
        )


__all__ = ["ClaimInput", "ClaimUseCases", "claim_of"]
