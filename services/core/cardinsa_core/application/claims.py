"""Claims: first notice of loss to closure, with an action log and approval bands.

Eligibility (checked on create, on update and again on submit, since the
policy may have changed in between): the policy was in force on the incident
date; the claimant is insured by the policy version in effect that day; the
coverage belongs to the policy's product version and its waiting period has
passed. Claim numbers are assigned on submit from the company's counter, like
policy numbers.

Approval authority is checked before the claim is even read (permission
before existence): the amount's band depends only on the request and the
company's bands, so a caller without the authority learns nothing about the
claim. Outside the band the answer is PERMISSION_DENIED (reason
APPROVAL_AUTHORITY_EXCEEDED): the caller lacks an authority another approver
has; nothing about the claim's state is wrong.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Unpack

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.application.claim_authority import ClaimAuthority
from cardinsa_core.application.context import (
    ChangeOptions,
    CoreContext,
    ListQuery,
    first_call,
    own_company,
)
from cardinsa_core.application.inputs import MemberRef, MoneyInput
from cardinsa_core.domain.claims import (
    CLAIM_LIFECYCLE,
    Claim,
    ClaimAction,
    ClaimDetails,
    ClaimState,
    ClaimType,
    check_claim_details,
)
from cardinsa_core.domain.money import Money, check_currency
from cardinsa_core.domain.numbering import NumberKind, format_number
from cardinsa_core.domain.products import Coverage
from cardinsa_core.repository.claims import (
    CLAIMS,
    apply_claim,
    claim_log,
    claim_of,
    log_entry,
)
from cardinsa_core.repository.models import ClaimLogEntryRow, ClaimRow, PolicyRow
from cardinsa_core.repository.numbers import next_number
from cardinsa_core.repository.policies import POLICIES, insured_by, policy_of, version_in_effect
from cardinsa_core.repository.products import coverage_of, load_version
from cardinsa_foundation.errors import FailedPrecondition, FieldViolation, InvalidArgument
from cardinsa_foundation.paging import OrderTerm, Page
from cardinsa_foundation.use_cases import (
    actor_uuid,
    check_mask,
    check_note,
    check_request_id,
    invalid,
    log_request_id,
    lookup_uuid,
    require_principal,
)

CREATE = "CreateClaim"
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
class _Outcome:
    claim: Claim
    amount: Money | None = None
    note: str = ""
    payment_reference: str = ""
    changed: list[str] = field(default_factory=list)


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
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await CLAIMS.find(session, company, claim_id)

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

    async def _coverage(self, session: AsyncSession, policy: PolicyRow, code: str) -> Coverage:
        version = await load_version(
            session, policy.company_id, policy.product_id, policy.product_version
        )
        found = next((c for c in version.coverages if c.code == code), None) if version else None
        if found is None:
            raise InvalidArgument(
                "the policy's product has no such coverage",
                reason="UNKNOWN_COVERAGE",
                field_violations=[
                    FieldViolation("claim.coverage_code", "not a coverage of the policy's product")
                ],
            )
        return coverage_of(found, policy.currency)

    async def _eligible(
        self, session: AsyncSession, policy: PolicyRow, details: ClaimDetails
    ) -> int:
        """The policy version in effect on the incident date, after every check."""
        incident = details.incident_date
        if policy.delete_time is not None or not policy_of(policy).covers(incident):
            raise FailedPrecondition(
                f"the policy was not in force on {incident.isoformat()}",
                reason="POLICY_NOT_IN_FORCE",
                metadata={"incident_date": incident.isoformat(), "policy_state": policy.state},
            )
        version = await version_in_effect(session, policy, incident)
        if version is None:  # pragma: no cover - an activated policy has version 1
            raise FailedPrecondition("the policy has no version", reason="POLICY_NOT_IN_FORCE")
        if not insured_by(version).includes(details.claimant_dependent_id):
            raise FailedPrecondition(
                "the claimant was not insured by the policy on the incident date",
                reason="CLAIMANT_NOT_INSURED",
                metadata={"policy_version": str(version.version)},
            )
        coverage = await self._coverage(session, policy, details.coverage_code)
        waiting_ends = policy.effective_date + timedelta(days=coverage.waiting_period_days)
        if incident < waiting_ends:
            raise FailedPrecondition(
                f"the coverage's waiting period runs until {waiting_ends.isoformat()}",
                reason="WAITING_PERIOD",
                metadata={"waiting_period_ends": waiting_ends.isoformat()},
            )
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

    async def _log(
        self,
        session: AsyncSession,
        row: ClaimRow,
        *,
        action: str,
        from_state: str | None,
        outcome: _Outcome,
        request_id: str,
    ) -> None:
        session.add(
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
        await session.flush()

    async def create(self, data: ClaimInput, *, request_id: str) -> ClaimRow:
        company = own_company(require_principal())
        invalid("the claim is not valid", check_request_id(request_id))
        new_id = uuid.uuid4()
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            seen = await first_call(session, company, CREATE, request_id, str(new_id), data)
            if seen is not None:
                return await CLAIMS.find(session, company, seen)
            policy = await POLICIES.find(session, company, data.policy_id)
            details = self._details(data, UPDATABLE, None, policy.currency)
            version = await self._eligible(session, policy, details)
            claim = Claim(state=ClaimState.DRAFT, details=details)
            row = ClaimRow(
                id=new_id, company_id=company, policy_id=policy.id, policy_version=version
            )
            apply_claim(row, claim)
            session.add(row)
            await session.flush()
            await self._log(
                session,
                row,
                action="create",
                from_state=None,
                outcome=_Outcome(claim, amount=details.claimed_amount),
                request_id=request_id,
            )
            await self.ctx.audit.record(
                session,
                action="claim.create",
                entity_type="claim",
                entity_id=row.id,
                changed_fields=sorted(UPDATABLE | {"policy_id"}),
                detail={"policy_id": str(policy.id), "claimed_amount": str(details.claimed_amount)},
            )
            return row

    async def update(
        self, claim_id: str, data: ClaimInput, mask: Sequence[str], etag: str
    ) -> ClaimRow:
        check_mask(mask, UPDATABLE)

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> _Outcome:
            CLAIM_LIFECYCLE.next_state(claim.state, ClaimAction.UPDATE)
            policy = await POLICIES.find(session, row.company_id, str(row.policy_id))
            details = self._details(data, frozenset(mask), claim.details, row.currency)
            row.policy_version = await self._eligible(session, policy, details)
            return _Outcome(claim.update(details), amount=details.claimed_amount)

        return await self._transition(
            claim_id, etag=etag, request_id="", method="update", apply=apply
        )

    async def _transition(
        self,
        claim_id: str,
        apply: Callable[[AsyncSession, ClaimRow, Claim], Awaitable[_Outcome]],
        **options: Unpack[ChangeOptions],
    ) -> ClaimRow:
        company = own_company(require_principal())
        method, request_id = options["method"], options.get("request_id", "")
        async with self.ctx.change(CLAIMS, company, claim_id, **options) as change:
            session, row = change.session, change.row
            if change.replay:
                return row
            before = row.state
            outcome = await apply(session, row, claim_of(row))
            changed = apply_claim(row, outcome.claim) + outcome.changed
            row.update_time = datetime.now(UTC)
            await session.flush()
            await self._log(
                session,
                row,
                action=method,
                from_state=before,
                outcome=outcome,
                request_id=request_id,
            )
            detail: dict[str, object] = {"from_state": before, "to_state": row.state}
            if outcome.amount is not None:
                detail["amount"] = str(outcome.amount)
            await self.ctx.audit.record(
                session,
                action=f"claim.{method}",
                entity_type="claim",
                entity_id=row.id,
                changed_fields=changed,
                detail=detail,
            )
            return row

    async def submit(self, claim_id: str, etag: str, request_id: str) -> ClaimRow:
        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> _Outcome:
            CLAIM_LIFECYCLE.next_state(claim.state, ClaimAction.SUBMIT)
            policy = await POLICIES.find(session, row.company_id, str(row.policy_id))
            invalid(
                "the claim is not valid",
                check_claim_details(claim.details, row.currency, self.ctx.today()),
            )
            row.policy_version = await self._eligible(session, policy, claim.details)
            value = await next_number(session, row.company_id, NumberKind.CLAIM)
            submitted = claim.submit(format_number(self.ctx.settings.claim_number_prefix, value))
            return _Outcome(submitted, amount=claim.details.claimed_amount)

        return await self._transition(
            claim_id, etag=etag, request_id=request_id, method="submit", apply=apply
        )

    async def review(self, claim_id: str, etag: str, request_id: str) -> ClaimRow:
        adjuster = actor_uuid(require_principal())

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> _Outcome:
            reviewed = claim.review()
            row.assigned_adjuster_id = adjuster
            return _Outcome(reviewed, changed=["assigned_adjuster_id"])

        return await self._transition(
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
        bands = await self.authority.bands(company)
        # Permission before existence: the band depends on the request only.
        bands.check_authority(money, principal.permissions)

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> _Outcome:
            CLAIM_LIFECYCLE.next_state(claim.state, ClaimAction.APPROVE)
            policy = await POLICIES.find(session, row.company_id, str(row.policy_id))
            coverage = await self._coverage(session, policy, row.coverage_code)
            approved = claim.approve(
                money, coverage_limit=coverage.limit, bands=bands, permissions=principal.permissions
            )
            return _Outcome(approved, amount=money, note=note.strip())

        return await self._transition(
            claim_id,
            etag=etag,
            request_id=request_id,
            method="approve",
            apply=apply,
            arguments=[money, note.strip()],
        )

    async def deny(self, claim_id: str, etag: str, request_id: str, reason: str) -> ClaimRow:
        return await self._noted(
            claim_id, etag, request_id, method="deny", field="reason", note=reason, act=Claim.deny
        )

    async def pay(self, claim_id: str, etag: str, request_id: str, reference: str) -> ClaimRow:
        reference = reference.strip()
        if len(reference) > 100:
            invalid(
                "the request is not valid", [FieldViolation("payment_reference", "at most 100")]
            )

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> _Outcome:
            paid, amount = claim.pay(reference)
            return _Outcome(paid, amount=amount, payment_reference=reference)

        return await self._transition(
            claim_id,
            etag=etag,
            request_id=request_id,
            method="pay",
            apply=apply,
            arguments=[reference],
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

    async def reopen(self, claim_id: str, etag: str, request_id: str, reason: str) -> ClaimRow:
        return await self._noted(
            claim_id,
            etag,
            request_id,
            method="reopen",
            field="reason",
            note=reason,
            act=Claim.reopen,
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

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> _Outcome:
            return _Outcome(act(claim, note), note=note)

        return await self._transition(
            claim_id,
            etag=etag,
            request_id=request_id,
            method=method,
            apply=apply,
            arguments=[note],
        )

    async def delete(self, claim_id: str, etag: str) -> ClaimRow:
        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> _Outcome:
            claim.check_delete()
            row.soft_delete()
            return _Outcome(claim, changed=["delete_time"])

        return await self._transition(
            claim_id, etag=etag, request_id="", method="delete", apply=apply, allow_deleted=True
        )

    async def undelete(self, claim_id: str, etag: str) -> ClaimRow:
        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> _Outcome:
            if row.delete_time is None:
                raise FailedPrecondition("the claim is not deleted", reason="NOT_DELETED")
            row.undelete()
            return _Outcome(claim, changed=["delete_time"])

        return await self._transition(
            claim_id, etag=etag, request_id="", method="undelete", apply=apply, allow_deleted=True
        )


__all__ = ["ClaimInput", "ClaimUseCases", "claim_of"]
