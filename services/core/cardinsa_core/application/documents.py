"""Documents: the policy schedule and the claim decision letter as PDF.

A request builds the document's facts from what core stores (the policy at its
current version with its product version's coverages, its stored rating and
its premium transactions; the claim with its benefit calculation and the last
approval or denial), hashes them and looks the document up by (kind, subject,
locale, facts hash): a reissue for the same facts serves the stored bytes, so
what a customer was sent can always be shown again byte for byte. Changed
facts (an endorsement, a new approval, a new company name) render and store a
new document; the old ones stay (the table is append-only). Issuing one is
audited (``document.create``) and writes an event
(``cardinsa.core.document.issue.v1``, in the same transaction); serving a
stored one is a read.

The locale is the request's ``locale`` when given (an unsupported one renders
English), else the company's locale from the company service, else by the
company's country (DE, AT, CH → German), else English.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.application.context import CoreContext, local_date, own_company
from cardinsa_core.application.pricing import breakdown_of
from cardinsa_core.application.tenants import TenantFacts
from cardinsa_core.domain.claims import APPROVED_STATES, ClaimAction, ClaimState
from cardinsa_core.domain.documents import (
    ClaimDecision,
    ClaimDecisionFacts,
    CoverageTerms,
    Facts,
    InsuredPerson,
    InvoiceFacts,
    PolicyScheduleFacts,
    PremiumLine,
    PremiumTransactionLine,
    facts_sha256,
    locale_for_company,
    render,
)
from cardinsa_core.repository.billing import find_invoice
from cardinsa_core.repository.claims import CLAIMS
from cardinsa_core.repository.documents import (
    dependents_by_id,
    find_document,
    last_log_entry,
    store_document,
)
from cardinsa_core.repository.models import (
    ClaimRow,
    DependentRow,
    DocumentRow,
    PolicyholderRow,
    PolicyRow,
)
from cardinsa_core.repository.policies import POLICIES
from cardinsa_core.repository.policyholders import POLICYHOLDERS
from cardinsa_core.repository.premium import transactions_of
from cardinsa_core.repository.products import load_version
from cardinsa_foundation.errors import FailedPrecondition, FieldViolation
from cardinsa_foundation.fields import is_locale_tag
from cardinsa_foundation.use_cases import invalid, require_principal

__all__ = ["DocumentUseCases", "IssuedDocument"]

POLICY_NOT_BOUND = "POLICY_NOT_BOUND"
CLAIM_NOT_DECIDED = "CLAIM_NOT_DECIDED"


@dataclass(frozen=True, slots=True)
class IssuedDocument:
    """A stored document and whether this request issued it."""

    row: DocumentRow
    created: bool

    @property
    def content(self) -> bytes:
        return self.row.content


def _holder_name(holder: PolicyholderRow) -> str:
    return holder.display_name or " ".join(
        part for part in (holder.given_name, holder.family_name) if part
    )


def _dependent_name(dependent: DependentRow) -> str:
    return f"{dependent.given_name} {dependent.family_name}".strip()


def _address(holder: PolicyholderRow) -> tuple[str, ...]:
    city = " ".join(part for part in (holder.address_postal_code, holder.address_city) if part)
    lines = (
        holder.address_line1,
        holder.address_line2,
        city,
        holder.address_region,
        holder.address_country_code,
    )
    return tuple(line for line in lines if line)


def _basis_points(percent: Decimal | None) -> int | None:
    return None if percent is None else int((percent * 100).to_integral_value())


class DocumentUseCases:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------- requests

    async def policy_schedule(self, policy_id: str, locale: str = "") -> IssuedDocument:
        """The schedule of a bound policy at its current version (NOT_FOUND for
        an unknown or another company's policy; FAILED_PRECONDITION for one
        never bound)."""
        company = own_company(require_principal())
        _check_locale(locale)
        tenant = await self.ctx.facts(company)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            # FOR SHARE: every change of a policy (its version, its premium
            # transactions) holds its row lock, so the facts are read whole.
            row = await POLICIES.find(session, company, policy_id, share=True)
            facts = await self._schedule_facts(session, row, tenant)
            subject = f"policies/{row.id}"
            return await self.issue(
                session, company, facts, subject=subject, tenant=tenant, requested_locale=locale
            )

    async def claim_decision(self, claim_id: str, locale: str = "") -> IssuedDocument:
        """The decision letter of an approved or denied claim (NOT_FOUND for an
        unknown or another company's claim; FAILED_PRECONDITION for a claim
        without a decision)."""
        company = own_company(require_principal())
        _check_locale(locale)
        tenant = await self.ctx.facts(company)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            row = await CLAIMS.find(session, company, claim_id, share=True)
            facts = await self._decision_facts(session, row, tenant)
            subject = f"claims/{row.id}"
            return await self.issue(
                session, company, facts, subject=subject, tenant=tenant, requested_locale=locale
            )

    async def invoice_document(
        self, policy_id: str, invoice_id: str, locale: str = ""
    ) -> IssuedDocument:
        """An invoice of a policy as a document for the payer (NOT_FOUND for an
        unknown invoice, one of another policy, or another company's)."""
        company = own_company(require_principal())
        _check_locale(locale)
        tenant = await self.ctx.facts(company)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            policy = await POLICIES.find(session, company, policy_id, share=True)
            invoice = await find_invoice(session, company, policy.id, invoice_id)
            holder = await POLICYHOLDERS.find(session, company, str(policy.policyholder_id))
            facts = InvoiceFacts(
                company_name=tenant.legal_name,
                invoice_number=invoice.number,
                issue_date=invoice.issue_date,
                due_date=invoice.due_date,
                policy_number=policy.policy_number or "",
                payer_name=_holder_name(holder),
                payer_address=_address(holder),
                currency=invoice.currency,
                amount=invoice.amount,
                period_start=invoice.period_start,
                period_end=invoice.period_end,
            )
            subject = f"policies/{policy.id}/invoices/{invoice.id}"
            return await self.issue(
                session, company, facts, subject=subject, tenant=tenant, requested_locale=locale
            )

    # ------------------------------------------------------------- issuing

    async def issue(
        self,
        session: AsyncSession,
        company: uuid.UUID,
        facts: Facts,
        *,
        subject: str,
        tenant: TenantFacts,
        requested_locale: str,
    ) -> IssuedDocument:
        """The stored document of ``facts`` about ``subject`` in the locale the
        request and the company choose, rendered, stored, audited and announced
        in ``session`` if it is new. Any kind of facts: an invoice is issued the
        same way (``InvoiceFacts``, subject ``policies/<id>/invoices/<id>``), inside the unit
        of work that reads the invoice."""
        locale = locale_for_company(requested_locale, tenant.locale, tenant.country)
        kind, digest = facts.KIND.value, facts_sha256(facts)
        key = {"kind": kind, "subject": subject, "locale": locale, "facts_sha256": digest}
        found = await find_document(session, company, **key)
        if found is not None:
            return IssuedDocument(found, created=False)
        row, created = await store_document(
            session,
            company,
            **key,
            content=render(facts, locale),
            created_by=require_principal().subject,
        )
        if created:
            self.ctx.events.document_issued(session, row)
            await self.ctx.audit.record(
                session,
                action="document.create",
                entity_type="document",
                entity_id=row.id,
                detail={**key, "content_sha256": row.content_sha256},
            )
        return IssuedDocument(row, created)

    # ------------------------------------------------------------- facts

    async def _schedule_facts(
        self, session: AsyncSession, row: PolicyRow, tenant: TenantFacts
    ) -> PolicyScheduleFacts:
        rating = breakdown_of(row)
        if row.policy_number is None or rating is None:
            raise FailedPrecondition(
                f"the policy is {row.state} and was never bound: it has no schedule",
                reason=POLICY_NOT_BOUND,
                metadata={"state": row.state},
            )
        company = row.company_id
        holder = await POLICYHOLDERS.find(session, company, str(row.policyholder_id))
        dependents = await dependents_by_id(session, company, row.insured_dependent_ids)
        members: list[InsuredPerson] = []
        if row.insures_holder:
            members.append(
                InsuredPerson(_holder_name(holder), "POLICYHOLDER", holder.date_of_birth)
            )
        for dependent_id in row.insured_dependent_ids:
            dependent = dependents.get(dependent_id)
            if dependent is not None:
                members.append(
                    InsuredPerson(
                        _dependent_name(dependent), dependent.relation, dependent.date_of_birth
                    )
                )
        version = await load_version(session, company, row.product_id, row.product_version)
        assert version is not None, "a bound policy's product version exists"
        transactions = await transactions_of(session, row)
        return PolicyScheduleFacts(
            company_name=tenant.legal_name,
            policy_number=row.policy_number,
            policy_version=row.current_version,
            version_effective_date=row.version_effective_date,
            policyholder_name=_holder_name(holder),
            policyholder_address=_address(holder),
            insured_members=tuple(members),
            product_name=version.row.name,
            effective_date=row.effective_date,
            expiry_date=row.expiry_date,
            currency=row.currency,
            sum_insured=row.sum_insured,
            coverages=tuple(
                CoverageTerms(
                    code=c.code,
                    name=c.name,
                    limit=c.limit_amount,
                    limit_period=c.limit_period,
                    deductible=c.deductible,
                    copay=c.copay,
                    coinsurance_basis_points=_basis_points(c.coinsurance_percent),
                    waiting_period_days=c.waiting_period_days,
                )
                for c in version.coverages
            ),
            premium_lines=tuple(
                PremiumLine(line.code, line.description, line.amount.amount)
                for line in rating.lines
            ),
            net_premium=rating.net.amount,
            tax=rating.tax.amount,
            fee=rating.fee.amount,
            total=rating.total.amount,
            payment_frequency=row.payment_frequency,
            transactions=tuple(
                PremiumTransactionLine(
                    sequence=t.sequence,
                    kind=t.kind,
                    effective_date=t.effective_date,
                    end_date=t.end_date,
                    premium=t.premium,
                    tax=t.tax,
                    fee=t.fee,
                    amount=t.amount,
                )
                for t in transactions
            ),
            written_premium=row.written_premium if row.written_premium is not None else Decimal(0),
            terminated_from=row.cancel_effective_date or row.lapse_date,
        )

    async def _decision_facts(
        self, session: AsyncSession, row: ClaimRow, tenant: TenantFacts
    ) -> ClaimDecisionFacts:
        state = ClaimState(row.state)
        approved = state in APPROVED_STATES and row.approved_amount is not None
        if not approved and state is not ClaimState.DENIED:
            raise FailedPrecondition(
                f"the claim is {row.state}: it has no decision to write",
                reason=CLAIM_NOT_DECIDED,
                metadata={"state": row.state},
            )
        company = row.company_id
        action = ClaimAction.APPROVE if approved else ClaimAction.DENY
        entry = await last_log_entry(session, company, row.id, [action.value])
        decided_at = entry.create_time if entry is not None else row.update_time
        policy = await POLICIES.find(session, company, str(row.policy_id))
        if row.claimant_dependent_id is None:
            holder = await POLICYHOLDERS.find(session, company, str(policy.policyholder_id))
            claimant = _holder_name(holder)
        else:
            found = await dependents_by_id(session, company, [row.claimant_dependent_id])
            dependent = found.get(row.claimant_dependent_id)
            claimant = _dependent_name(dependent) if dependent is not None else ""
        version = await load_version(session, company, policy.product_id, policy.product_version)
        names = {c.code: c.name for c in version.coverages} if version is not None else {}
        coverage = names.get(row.coverage_code)
        zero = Decimal(0)
        approved_amount = (row.approved_amount or zero) if approved else zero
        if not approved:
            decision = ClaimDecision.DENIED
        elif approved_amount < row.claimed_amount:
            decision = ClaimDecision.PARTIALLY_APPROVED
        else:
            decision = ClaimDecision.APPROVED
        return ClaimDecisionFacts(
            company_name=tenant.legal_name,
            claim_number=row.claim_number or "",
            policy_number=policy.policy_number or "",
            claimant_name=claimant,
            coverage_name=f"{coverage} ({row.coverage_code})" if coverage else row.coverage_code,
            incident_date=row.incident_date,
            decision=decision,
            decision_date=local_date(decided_at, tenant.time_zone),
            currency=row.currency,
            claimed=row.benefit_claimed if row.benefit_claimed is not None else row.claimed_amount,
            deductible=row.benefit_deductible or zero,
            copay=row.benefit_copay or zero,
            coinsurance=row.benefit_coinsurance or zero,
            limit_cut=row.benefit_limit_cut or zero,
            payable=row.benefit_payable or zero,
            approved=approved_amount,
            reason="" if approved else row.deny_reason,
        )


def _check_locale(locale: str) -> None:
    if locale:
        invalid(
            "the request is not valid",
            []
            if is_locale_tag(locale)
            else [FieldViolation("locale", "must be a BCP 47 language tag such as en or de-DE")],
        )
