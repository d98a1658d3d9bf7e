"""Protobuf ⇄ application values, in one place for every core handler.

Enums travel by name (the domain enums' values are the proto names); an
unset (``*_UNSPECIFIED``) enum becomes None so the application can say
"required". Money arrives as :class:`MoneyInput` (the currency may be empty
and is resolved by the use case) and leaves as google.type.Money.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from google.type import date_pb2, money_pb2

from cardinsa.core.v1 import resources_pb2
from cardinsa_core.application.billing import outstanding_of
from cardinsa_core.application.claim_authority import BandsView, SettingsView
from cardinsa_core.application.inputs import MemberRef, MoneyInput
from cardinsa_core.application.policyholders import PolicyholderView
from cardinsa_core.application.pricing import breakdown_of
from cardinsa_core.application.products import (
    CoverageInput,
    ProductInput,
    ProductView,
    RatingRulesInput,
    VersionView,
)
from cardinsa_core.domain.claim_authority import ClaimSettings
from cardinsa_core.domain.claims import APPROVED_STATES
from cardinsa_core.domain.money import Money, units_nanos
from cardinsa_core.domain.policyholders import (
    Address,
    DependentSpec,
    Gender,
    PartyKind,
    PolicyholderSpec,
    Relation,
    shown_national_id,
)
from cardinsa_core.domain.products import LimitPeriod, LineOfBusiness
from cardinsa_core.domain.rating import AgeBand, Rating, RatingRules, TermBasis
from cardinsa_core.repository.billing import PaymentView
from cardinsa_core.repository.models import (
    ClaimLogEntryRow,
    ClaimPaymentRow,
    ClaimRecoveryRow,
    ClaimRow,
    DependentRow,
    DocumentRow,
    InvoiceRow,
    PolicyRow,
    PolicyStatusChangeRow,
    PolicyVersionRow,
    PremiumTransactionRow,
    UnderwritingIssueRow,
)
from cardinsa_foundation.convert import timestamp
from cardinsa_foundation.errors import FieldViolation, InvalidArgument

E = TypeVar("E", bound=StrEnum)
#: Calendar dates outside these years are refused (date arithmetic stays in range).
MIN_YEAR, MAX_YEAR = 1900, 2200


# ------------------------------------------------------------------ scalars


def to_date(value: dt.date | None) -> date_pb2.Date | None:
    if value is None:
        return None
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def from_date(message: Any, field: str, path: str | None = None) -> dt.date | None:
    """A google.type.Date field as a date; None when unset or all zero."""
    if not message.HasField(field):
        return None
    value: date_pb2.Date = getattr(message, field)
    if value.year == value.month == value.day == 0:
        return None
    try:
        if not MIN_YEAR <= value.year <= MAX_YEAR:
            raise ValueError
        return dt.date(value.year, value.month, value.day)
    except ValueError:
        where = path or field
        raise InvalidArgument(
            f"{where} is not a valid calendar date",
            field_violations=[
                FieldViolation(where, f"a full date (year {MIN_YEAR} to {MAX_YEAR}, month, day)")
            ],
        ) from None


def to_money(amount: Decimal | None, currency: str) -> money_pb2.Money | None:
    """A stored amount as google.type.Money. Stored amounts were validated on the
    way in (Money.of), so this only splits them: units truncated toward zero and
    nanos of the same sign, as Money.units_nanos does."""
    if amount is None:
        return None
    units, nanos = units_nanos(amount)
    return money_pb2.Money(currency_code=currency, units=units, nanos=nanos)


def money_out(value: Money | None) -> money_pb2.Money | None:
    return None if value is None else to_money(value.amount, value.currency)


def from_money(message: Any, field: str) -> MoneyInput | None:
    if not message.HasField(field):
        return None
    value: money_pb2.Money = getattr(message, field)
    return MoneyInput(value.units, value.nanos, value.currency_code)


def enum_in(enum: type[E], proto_enum: Any, number: int) -> E | None:
    """The domain enum member named like the proto value; None for 0 (unspecified)
    and for numbers this server does not know."""
    if number == 0:
        return None
    try:
        return enum(proto_enum.Name(number))
    except ValueError:
        return None


def enum_out(value: str | None) -> str | None:
    """An enum field's value by name (None: unspecified)."""
    return value or None


def member_in(member: resources_pb2.InsuredMember) -> MemberRef:
    if member.WhichOneof("member") == "policyholder" and member.policyholder:
        return MemberRef(policyholder=True)
    return MemberRef(policyholder=False, dependent_id=member.dependent_id)


def members_out(holder: bool, dependents: Iterable[Any]) -> list[resources_pb2.InsuredMember]:
    out = [resources_pb2.InsuredMember(policyholder=True)] if holder else []
    return out + [resources_pb2.InsuredMember(dependent_id=str(d)) for d in sorted(dependents)]


# ------------------------------------------------------------------ policyholders

_P = resources_pb2.Policyholder
_D = resources_pb2.Dependent


def _dependent_out(row: DependentRow, reveal: bool) -> resources_pb2.Dependent:
    national_id, masked = shown_national_id(
        row.national_id, {"policyholders.read_national_id"} if reveal else ()
    )
    return _D(
        id=str(row.id),
        relation=enum_out(row.relation),
        given_name=row.given_name,
        family_name=row.family_name,
        date_of_birth=to_date(row.date_of_birth),
        gender=enum_out(row.gender),
        national_id=national_id,
        national_id_masked=masked,
        create_time=timestamp(row.create_time),
    )


def policyholder_to_proto(view: PolicyholderView) -> resources_pb2.Policyholder:
    row = view.row
    national_id, masked = shown_national_id(
        row.national_id, {"policyholders.read_national_id"} if view.reveal_national_id else ()
    )
    return _P(
        id=str(row.id),
        kind=enum_out(row.kind),
        given_name=row.given_name,
        family_name=row.family_name,
        date_of_birth=to_date(row.date_of_birth),
        gender=enum_out(row.gender),
        legal_name=row.legal_name,
        registration_number=row.registration_number,
        national_id=national_id,
        national_id_masked=masked,
        email=row.email,
        phone=row.phone,
        address=resources_pb2.Address(
            line1=row.address_line1,
            line2=row.address_line2,
            city=row.address_city,
            region=row.address_region,
            postal_code=row.address_postal_code,
            country_code=row.address_country_code,
        ),
        dependents=[_dependent_out(d, view.reveal_national_id) for d in view.dependents],
        display_name=row.display_name,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        delete_time=timestamp(row.delete_time),
        etag=row.etag,
    )


def policyholder_spec(message: resources_pb2.Policyholder) -> PolicyholderSpec:
    address = message.address
    return PolicyholderSpec(
        kind=enum_in(PartyKind, _P.Kind, message.kind),
        given_name=message.given_name,
        family_name=message.family_name,
        date_of_birth=from_date(message, "date_of_birth", "policyholder.date_of_birth"),
        gender=enum_in(Gender, _P.Gender, message.gender) or Gender.UNSPECIFIED,
        legal_name=message.legal_name,
        registration_number=message.registration_number,
        national_id=message.national_id,
        email=message.email,
        phone=message.phone,
        address=Address(
            line1=address.line1,
            line2=address.line2,
            city=address.city,
            region=address.region,
            postal_code=address.postal_code,
            country_code=address.country_code,
        ),
        dependents=tuple(
            DependentSpec(
                relation=enum_in(Relation, _D.Relation, dep.relation),
                given_name=dep.given_name,
                family_name=dep.family_name,
                date_of_birth=from_date(dep, "date_of_birth", f"policyholder.dependents[{i}]"),
                gender=enum_in(Gender, _P.Gender, dep.gender) or Gender.UNSPECIFIED,
                national_id=dep.national_id,
                id=dep.id,
            )
            for i, dep in enumerate(message.dependents)
        ),
    )


# ------------------------------------------------------------------ products

_C = resources_pb2.Coverage
_PR = resources_pb2.Product
_RR = resources_pb2.RatingRules
#: Relation factors are shown in the order of the Relation enum.
_RELATION_ORDER = {relation.value: index for index, relation in enumerate(Relation)}


def _coverages_out(view: VersionView) -> list[resources_pb2.Coverage]:
    currency = view.row.currency
    out = []
    for row in view.coverages:
        coverage = _C(
            code=row.code,
            name=row.name,
            limit=to_money(row.limit_amount, currency),
            limit_period=enum_out(row.limit_period),
            deductible=to_money(row.deductible, currency),
            copay=to_money(row.copay, currency),
            waiting_period_days=row.waiting_period_days,
            min_entry_age=row.min_entry_age,
            max_entry_age=row.max_entry_age,
        )
        if row.coinsurance_percent is not None:
            coverage.coinsurance_basis_points = int(row.coinsurance_percent * 100)
        out.append(coverage)
    return out


def rating_rules_to_proto(rules: RatingRules) -> resources_pb2.RatingRules:
    return _RR(
        term_basis=rules.term_basis.value,
        age_bands=[
            resources_pb2.AgeBand(
                min_age=b.min_age, max_age=b.max_age, factor_basis_points=b.factor_basis_points
            )
            for b in rules.age_bands
        ],
        relation_factors=[
            resources_pb2.RelationFactor(relation=relation, factor_basis_points=factor)
            for relation, factor in sorted(
                rules.relation_factors.items(), key=lambda item: _RELATION_ORDER.get(item[0], 0)
            )
        ],
        sum_insured_rate_basis_points=rules.sum_insured_rate_basis_points,
        tax_basis_points=rules.tax_basis_points,
        policy_fee=money_out(rules.policy_fee),
        short_rate_penalty_basis_points=rules.short_rate_penalty_basis_points,
        manual_underwriting=rules.manual_underwriting,
        referral_sum_insured=money_out(rules.referral_sum_insured),
    )


def rating_rules_input(message: resources_pb2.RatingRules, path: str) -> RatingRulesInput:
    """The rules as sent: an unset term basis is DAYS_OVER_365, an unset amount None."""
    term_basis = TermBasis.DAYS_OVER_365
    if message.term_basis:
        known = enum_in(TermBasis, _RR.TermBasis, message.term_basis)
        if known is None:
            raise InvalidArgument(
                "the term basis is not known",
                field_violations=[
                    FieldViolation(f"{path}.term_basis", "DAYS_OVER_365 or PRODUCT_TERM")
                ],
            )
        term_basis = known
    return RatingRulesInput(
        term_basis=term_basis,
        age_bands=tuple(
            AgeBand(b.min_age, b.max_age, b.factor_basis_points) for b in message.age_bands
        ),
        relation_factors=tuple(
            (enum_in(Relation, _D.Relation, f.relation), f.factor_basis_points)
            for f in message.relation_factors
        ),
        sum_insured_rate_basis_points=message.sum_insured_rate_basis_points,
        tax_basis_points=message.tax_basis_points,
        policy_fee=from_money(message, "policy_fee"),
        short_rate_penalty_basis_points=message.short_rate_penalty_basis_points,
        manual_underwriting=message.manual_underwriting,
        referral_sum_insured=from_money(message, "referral_sum_insured"),
    )


def product_to_proto(view: ProductView) -> resources_pb2.Product:
    row, version = view.row, view.version.row
    return _PR(
        id=str(row.id),
        code=row.code,
        line_of_business=enum_out(row.line_of_business),
        state=enum_out(row.state),
        version=row.current_version,
        name=version.name,
        description=version.description,
        currency_code=version.currency,
        base_premium=to_money(version.base_premium, version.currency),
        term_months=version.term_months,
        coverages=_coverages_out(view.version),
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        delete_time=timestamp(row.delete_time),
        etag=row.etag,
        rating_rules=rating_rules_to_proto(view.version.rating_rules()),
        grace_period_days=version.grace_period_days,
    )


def product_version_to_proto(view: VersionView) -> resources_pb2.ProductVersion:
    row = view.row
    return resources_pb2.ProductVersion(
        product_id=str(row.product_id),
        version=row.version,
        name=row.name,
        description=row.description,
        currency_code=row.currency,
        base_premium=to_money(row.base_premium, row.currency),
        term_months=row.term_months,
        coverages=_coverages_out(view),
        create_time=timestamp(row.create_time),
        created_by=str(row.created_by) if row.created_by else "",
        rating_rules=rating_rules_to_proto(view.rating_rules()),
        grace_period_days=row.grace_period_days,
    )


def product_input(message: resources_pb2.Product) -> ProductInput:
    return ProductInput(
        code=message.code,
        line_of_business=enum_in(LineOfBusiness, _PR.LineOfBusiness, message.line_of_business),
        name=message.name,
        description=message.description,
        currency=message.currency_code,
        base_premium=from_money(message, "base_premium"),
        term_months=message.term_months,
        coverages=tuple(
            CoverageInput(
                code=c.code,
                name=c.name,
                limit=from_money(c, "limit"),
                limit_period=enum_in(LimitPeriod, _C.LimitPeriod, c.limit_period),
                deductible=from_money(c, "deductible"),
                copay=from_money(c, "copay"),
                coinsurance_basis_points=c.coinsurance_basis_points
                if c.HasField("coinsurance_basis_points")
                else None,
                waiting_period_days=c.waiting_period_days,
                min_entry_age=c.min_entry_age,
                max_entry_age=c.max_entry_age,
            )
            for c in message.coverages
        ),
        rating_rules=rating_rules_input(message.rating_rules, "product.rating_rules"),
        grace_period_days=message.grace_period_days
        if message.HasField("grace_period_days")
        else None,
    )


# ------------------------------------------------------------------ policies

_PO = resources_pb2.Policy


def policy_to_proto(row: PolicyRow) -> resources_pb2.Policy:
    currency = row.currency
    return _PO(
        id=str(row.id),
        policy_number=row.policy_number or "",
        policyholder_id=str(row.policyholder_id),
        product_id=str(row.product_id),
        product_version=row.product_version,
        state=enum_out(row.state),
        effective_date=to_date(row.effective_date),
        expiry_date=to_date(row.expiry_date),
        currency_code=currency,
        premium=to_money(row.premium, currency),
        sum_insured=to_money(row.sum_insured, currency),
        payment_frequency=enum_out(row.payment_frequency),
        insured_members=members_out(row.insures_holder, row.insured_dependent_ids),
        version=row.current_version,
        version_effective_date=to_date(row.version_effective_date),
        cancel_reason=enum_out(row.cancel_reason),
        cancel_effective_date=to_date(row.cancel_effective_date),
        lapse_date=to_date(row.lapse_date),
        termination_note=row.termination_note,
        previous_policy_id=str(row.previous_policy_id) if row.previous_policy_id else "",
        successor_policy_id=str(row.successor_policy_id) if row.successor_policy_id else "",
        bind_time=timestamp(row.bind_time),
        activate_time=timestamp(row.activate_time),
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        delete_time=timestamp(row.delete_time),
        etag=row.etag,
        premium_breakdown=breakdown_to_proto(breakdown_of(row)),
        written_premium=to_money(row.written_premium, currency),
        do_not_renew=row.do_not_renew,
        cancel_processed_date=to_date(row.cancel_processed_date),
        open_underwriting_issues=row.open_underwriting_issues,
        paid_to_date=to_date(row.paid_to_date),
    )


def breakdown_to_proto(rating: Rating | None) -> resources_pb2.PremiumBreakdown | None:
    if rating is None:
        return None
    currency = rating.net.currency
    return resources_pb2.PremiumBreakdown(
        strategy=rating.strategy,
        term_days=rating.term_days,
        lines=[
            resources_pb2.PremiumLine(
                code=line.code,
                description=line.description,
                amount=to_money(line.amount.amount, currency),
                member=_member_key_out(line.member_key),
            )
            for line in rating.lines
        ],
        net_premium=to_money(rating.net.amount, currency),
        tax=to_money(rating.tax.amount, currency),
        fee=to_money(rating.fee.amount, currency),
        total=to_money(rating.total.amount, currency),
    )


def _member_key_out(key: str | None) -> resources_pb2.InsuredMember | None:
    if key is None:
        return None
    if key == "holder":
        return resources_pb2.InsuredMember(policyholder=True)
    return resources_pb2.InsuredMember(dependent_id=key)


def premium_transaction_to_proto(row: PremiumTransactionRow) -> resources_pb2.PremiumTransaction:
    currency = row.currency
    return resources_pb2.PremiumTransaction(
        id=str(row.id),
        policy_id=str(row.policy_id),
        sequence=row.sequence,
        kind=enum_out(row.kind),
        effective_date=to_date(row.effective_date),
        end_date=to_date(row.end_date),
        premium=to_money(row.premium, currency),
        tax=to_money(row.tax, currency),
        fee=to_money(row.fee, currency),
        amount=to_money(row.amount, currency),
        written_premium=to_money(row.written_premium, currency),
        policy_version=row.policy_version,
        refund_method=enum_out(row.refund_method),
        description=row.description,
        create_time=timestamp(row.create_time),
        created_by=row.created_by or "",
    )


def policy_version_to_proto(row: PolicyVersionRow) -> resources_pb2.PolicyVersion:
    return resources_pb2.PolicyVersion(
        policy_id=str(row.policy_id),
        version=row.version,
        effective_date=to_date(row.effective_date),
        premium=to_money(row.premium, row.currency),
        sum_insured=to_money(row.sum_insured, row.currency),
        insured_members=members_out(row.insures_holder, row.insured_dependent_ids),
        description=row.description,
        changed_fields=row.changed_fields,
        create_time=timestamp(row.create_time),
        created_by=str(row.created_by) if row.created_by else "",
    )


def status_change_to_proto(row: PolicyStatusChangeRow) -> resources_pb2.PolicyStatusChange:
    return resources_pb2.PolicyStatusChange(
        id=str(row.id),
        policy_id=str(row.policy_id),
        from_state=enum_out(row.from_state),
        to_state=enum_out(row.to_state),
        transition=row.transition,
        reason=row.reason,
        effective_date=to_date(row.effective_date),
        actor_id=row.actor_id or "",
        request_id=row.request_id or "",
        create_time=timestamp(row.create_time),
    )


def underwriting_issue_to_proto(row: UnderwritingIssueRow) -> resources_pb2.UnderwritingIssue:
    return resources_pb2.UnderwritingIssue(
        id=str(row.id),
        policy_id=str(row.policy_id),
        code=row.code,
        description=row.description,
        state=enum_out(row.state),
        decided_by=row.decided_by or "",
        decide_time=timestamp(row.decide_time),
        decision_note=row.decision_note,
        create_time=timestamp(row.create_time),
    )


# ------------------------------------------------------------------ claims

_CL = resources_pb2.Claim


def claim_to_proto(row: ClaimRow) -> resources_pb2.Claim:
    currency = row.currency
    claimant = (
        resources_pb2.InsuredMember(dependent_id=str(row.claimant_dependent_id))
        if row.claimant_dependent_id
        else resources_pb2.InsuredMember(policyholder=True)
    )
    return _CL(
        id=str(row.id),
        claim_number=row.claim_number or "",
        policy_id=str(row.policy_id),
        policy_version=row.policy_version,
        claimant=claimant,
        claim_type=enum_out(row.claim_type),
        description=row.description,
        coverage_code=row.coverage_code,
        incident_date=to_date(row.incident_date),
        report_date=to_date(row.report_date),
        claimed_amount=to_money(row.claimed_amount, currency),
        state=enum_out(row.state),
        approved_amount=to_money(row.approved_amount, currency),
        paid_amount=to_money(row.paid_amount, currency),
        payment_reference=row.payment_reference,
        deny_reason=row.deny_reason,
        assigned_adjuster_id=str(row.assigned_adjuster_id) if row.assigned_adjuster_id else "",
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        delete_time=timestamp(row.delete_time),
        etag=row.etag,
        benefit=_benefit(row),
        indemnity_reserve=to_money(row.indemnity_reserve, currency),
        expense_reserve=to_money(row.expense_reserve, currency),
        expense_paid=to_money(row.expense_paid, currency),
        recovered_amount=to_money(row.recovered_amount, currency),
        net_paid=to_money((row.paid_amount or Decimal(0)) - row.recovered_amount, currency),
        approved_by=str(row.approved_by) if row.approved_by else "",
        withdraw_reason=row.withdraw_reason,
    )


def _benefit(row: ClaimRow) -> resources_pb2.ClaimBenefit | None:
    if row.benefit_payable is None:
        return None
    currency = row.currency
    return resources_pb2.ClaimBenefit(
        claimed=to_money(row.benefit_claimed, currency),
        deductible=to_money(row.benefit_deductible, currency),
        copay=to_money(row.benefit_copay, currency),
        coinsurance=to_money(row.benefit_coinsurance, currency),
        limit_cut=to_money(row.benefit_limit_cut, currency),
        payable=to_money(row.benefit_payable, currency),
        final=row.state in APPROVED_STATES,
    )


def payment_to_proto(row: ClaimPaymentRow) -> resources_pb2.ClaimPayment:
    return resources_pb2.ClaimPayment(
        id=str(row.id),
        claim_id=str(row.claim_id),
        cost_type=enum_out(row.cost_type),
        payee=row.payee,
        method=enum_out(row.method),
        reference=row.reference,
        amount=to_money(row.amount, row.currency),
        state=enum_out(row.state),
        void_reason=row.void_reason,
        created_by=row.created_by or "",
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        etag=row.etag,
    )


def recovery_to_proto(row: ClaimRecoveryRow) -> resources_pb2.ClaimRecovery:
    return resources_pb2.ClaimRecovery(
        id=str(row.id),
        claim_id=str(row.claim_id),
        kind=enum_out(row.kind),
        amount=to_money(row.amount, row.currency),
        reference=row.reference,
        note=row.note,
        created_by=row.created_by or "",
        create_time=timestamp(row.create_time),
    )


def claim_log_to_proto(row: ClaimLogEntryRow) -> resources_pb2.ClaimLogEntry:
    return resources_pb2.ClaimLogEntry(
        id=str(row.id),
        claim_id=str(row.claim_id),
        action=row.action,
        from_state=enum_out(row.from_state),
        to_state=enum_out(row.to_state),
        amount=to_money(row.amount, row.currency) if row.currency else None,
        note=row.note,
        payment_reference=row.payment_reference,
        actor_id=row.actor_id or "",
        request_id=row.request_id or "",
        create_time=timestamp(row.create_time),
    )


def bands_to_proto(view: BandsView) -> resources_pb2.ApprovalBands:
    bands, row = view.bands, view.row
    currency = bands.currency or ""
    return resources_pb2.ApprovalBands(
        band_1_limit=to_money(bands.limits[0], currency),
        band_2_limit=to_money(bands.limits[1], currency),
        configured=row is not None,
        update_time=timestamp(row.update_time) if row else None,
        etag=row.etag if row else "",
        currency_code=currency,
    )


def claim_settings_in(message: resources_pb2.ClaimSettings) -> ClaimSettings:
    return ClaimSettings(require_segregation_of_duties=message.require_segregation_of_duties)


def claim_settings_to_proto(view: SettingsView) -> resources_pb2.ClaimSettings:
    row = view.row
    return resources_pb2.ClaimSettings(
        require_segregation_of_duties=view.settings.require_segregation_of_duties,
        update_time=timestamp(row.update_time) if row else None,
        etag=row.etag if row else "",
    )


# ------------------------------------------------------------------ audit


def mask_paths(mask: Any) -> Sequence[str]:
    return list(mask.paths)


# ------------------------------------------------------------------ billing


def invoice_to_proto(row: InvoiceRow) -> resources_pb2.Invoice:
    currency = row.currency
    return resources_pb2.Invoice(
        id=str(row.id),
        policy_id=str(row.policy_id),
        number=row.number,
        sequence=row.sequence,
        kind=enum_out(row.kind),
        state=enum_out(row.state),
        instalment=row.instalment or 0,
        amount=to_money(row.amount, currency),
        settled=to_money(row.settled, currency),
        outstanding=money_out(outstanding_of(row)),
        issue_date=to_date(row.issue_date),
        due_date=to_date(row.due_date),
        period_start=to_date(row.period_start),
        period_end=to_date(row.period_end),
        transaction_sequence=row.transaction_sequence,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        etag=row.etag,
    )


def billing_payment_to_proto(view: PaymentView) -> resources_pb2.Payment:
    row = view.row
    currency = row.currency
    return resources_pb2.Payment(
        id=str(row.id),
        policy_id=str(row.policy_id),
        amount=to_money(row.amount, currency),
        received_date=to_date(row.received_date),
        reference=row.reference,
        allocated=to_money(row.allocated, currency),
        unallocated=to_money(row.amount - row.allocated, currency),
        allocations=[
            resources_pb2.PaymentAllocation(
                invoice_id=str(a.invoice_id),
                invoice_number=number,
                amount=to_money(a.amount, a.currency),
            )
            for a, number in view.allocations
        ],
    )


def document_to_proto(row: DocumentRow) -> resources_pb2.Document:
    """A stored document's description (not its bytes)."""
    return resources_pb2.Document(
        id=str(row.id),
        kind=row.kind,
        subject=row.subject,
        locale=row.locale,
        content_type="application/pdf",
        facts_sha256=row.facts_sha256,
        content_sha256=row.content_sha256,
        size_bytes=len(row.content),
        created_by=row.created_by or "",
        create_time=timestamp(row.create_time),
    )
