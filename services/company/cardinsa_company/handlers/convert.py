"""Protobuf ⇄ domain/repository values, in one place for every company handler.

Conversions never judge a value: a malformed date or amount travels to the
domain as it came, and the domain's rules report it as a field violation
together with everything else wrong with the request.
"""

from __future__ import annotations

from typing import Any

from google.type import date_pb2, money_pb2

from cardinsa.company.v1 import resources_pb2, webhooks_pb2
from cardinsa_company.application.context import ListQuery
from cardinsa_company.domain.companies import (
    BAND_FIELDS,
    ApprovalBands,
    CompanyProfile,
    CompanySettings,
    Contact,
    DateParts,
    MoneyAmount,
)
from cardinsa_company.domain.lifecycle import CompanyState, is_active
from cardinsa_company.domain.organization import OrgNodeSpec
from cardinsa_company.domain.subscriptions import SubscriptionSpec
from cardinsa_company.repository.documents import profile_of
from cardinsa_company.repository.models import (
    CompanyRow,
    DepartmentRow,
    UnitRow,
    WebhookDeliveryAttemptRow,
    WebhookDeliveryRow,
    WebhookSubscriptionRow,
)
from cardinsa_foundation.convert import timestamp

# ------------------------------------------------------------------ money, dates


def money_from_proto(message: Any, field: str) -> MoneyAmount | None:
    if not message.HasField(field):
        return None
    money: money_pb2.Money = getattr(message, field)
    return MoneyAmount(money.currency_code, money.units, money.nanos)


def money_to_proto(money: MoneyAmount | None) -> money_pb2.Money | None:
    if money is None:
        return None
    return money_pb2.Money(currency_code=money.currency_code, units=money.units, nanos=money.nanos)


def _bands_from_proto(message: resources_pb2.ClaimApprovalBands) -> ApprovalBands:
    return ApprovalBands(
        line_of_business=message.line_of_business,
        band_1_limit=money_from_proto(message, "band_1_limit"),
        band_2_limit=money_from_proto(message, "band_2_limit"),
        band_3_limit=money_from_proto(message, "band_3_limit"),
    )


def _bands_to_proto(bands: ApprovalBands) -> resources_pb2.ClaimApprovalBands:
    return resources_pb2.ClaimApprovalBands(
        line_of_business=bands.line_of_business,
        **{name: money_to_proto(getattr(bands, name)) for name in BAND_FIELDS},
    )


# ------------------------------------------------------------------ companies


def profile_from_proto(company: resources_pb2.Company) -> CompanyProfile:
    expiry = None
    if company.HasField("licence_expiry_date"):
        date = company.licence_expiry_date
        expiry = DateParts(date.year, date.month, date.day)
    contact = company.contact
    settings = company.settings
    return CompanyProfile(
        display_name=company.display_name,
        legal_name=company.legal_name,
        registration_number=company.registration_number,
        tax_id=company.tax_id,
        licence_number=company.licence_number,
        licence_expiry_date=expiry,
        country=company.country,
        default_currency=company.default_currency,
        time_zone=company.time_zone,
        locale=company.locale,
        contact=Contact(
            email=contact.email,
            phone=contact.phone,
            address_line_1=contact.address_line_1,
            address_line_2=contact.address_line_2,
            city=contact.city,
            postal_code=contact.postal_code,
            website=contact.website,
        ),
        settings=CompanySettings(
            fiscal_year_start_month=settings.fiscal_year_start_month,
            default_claim_approval_bands=_bands_from_proto(settings.default_claim_approval_bands)
            if settings.HasField("default_claim_approval_bands")
            else None,
            claim_approval_bands=tuple(_bands_from_proto(b) for b in settings.claim_approval_bands),
            max_backdate_days=settings.max_backdate_days
            if settings.HasField("max_backdate_days")
            else None,
            renewal_offer_days=settings.renewal_offer_days
            if settings.HasField("renewal_offer_days")
            else None,
        ),
        feature_flags=dict(company.feature_flags),
    )


def company_to_proto(row: CompanyRow) -> resources_pb2.Company:
    profile = profile_of(row)
    settings = profile.settings
    contact = profile.contact
    expiry = profile.licence_expiry_date
    return resources_pb2.Company(
        id=str(row.id),
        display_name=profile.display_name,
        legal_name=profile.legal_name,
        registration_number=profile.registration_number,
        tax_id=profile.tax_id,
        licence_number=profile.licence_number,
        licence_expiry_date=date_pb2.Date(year=expiry.year, month=expiry.month, day=expiry.day)
        if expiry is not None
        else None,
        country=profile.country,
        default_currency=profile.default_currency,
        time_zone=profile.time_zone,
        locale=profile.locale,
        contact=resources_pb2.Contact(
            email=contact.email,
            phone=contact.phone,
            address_line_1=contact.address_line_1,
            address_line_2=contact.address_line_2,
            city=contact.city,
            postal_code=contact.postal_code,
            website=contact.website,
        ),
        settings=resources_pb2.CompanySettings(
            fiscal_year_start_month=settings.fiscal_year_start_month,
            default_claim_approval_bands=_bands_to_proto(settings.default_claim_approval_bands)
            if settings.default_claim_approval_bands is not None
            else None,
            claim_approval_bands=[_bands_to_proto(b) for b in settings.claim_approval_bands],
            max_backdate_days=settings.max_backdate_days,
            renewal_offer_days=settings.renewal_offer_days,
        ),
        feature_flags=dict(profile.feature_flags),
        state=row.state,  # the enum value's name
        state_reason=row.state_reason,
        state_change_time=timestamp(row.state_change_time),
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        delete_time=timestamp(row.delete_time),
        etag=row.etag,
    )


def status_to_proto(row: CompanyRow) -> resources_pb2.CompanyStatus:
    """The tenant's status, with the defaults of unset settings filled in."""
    profile = profile_of(row)
    return resources_pb2.CompanyStatus(
        company_id=str(row.id),
        state=row.state,
        active=is_active(CompanyState(row.state), deleted=row.delete_time is not None),
        default_currency=row.default_currency,
        time_zone=row.time_zone,
        locale=row.locale,
        delete_time=timestamp(row.delete_time),
        update_time=timestamp(row.update_time),
        feature_flags=dict(profile.feature_flags),
        max_backdate_days=profile.settings.effective_max_backdate_days,
        renewal_offer_days=profile.settings.effective_renewal_offer_days,
        legal_name=row.legal_name or row.display_name,
        country=row.country,
    )


# ------------------------------------------------------------------ org structure


def department_spec(message: resources_pb2.Department) -> OrgNodeSpec:
    return OrgNodeSpec(
        display_name=message.display_name,
        code=message.code,
        description=message.description,
        parent_department_id=message.parent_department_id,
    )


def unit_spec(message: resources_pb2.Unit) -> OrgNodeSpec:
    return OrgNodeSpec(
        display_name=message.display_name, code=message.code, description=message.description
    )


def department_to_proto(row: DepartmentRow) -> resources_pb2.Department:
    return resources_pb2.Department(
        id=str(row.id),
        company_id=str(row.company_id),
        parent_department_id=str(row.parent_department_id) if row.parent_department_id else "",
        display_name=row.display_name,
        code=row.code,
        description=row.description,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        delete_time=timestamp(row.delete_time),
        etag=row.etag,
    )


def unit_to_proto(row: UnitRow) -> resources_pb2.Unit:
    return resources_pb2.Unit(
        id=str(row.id),
        company_id=str(row.company_id),
        department_id=str(row.department_id),
        display_name=row.display_name,
        code=row.code,
        description=row.description,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        delete_time=timestamp(row.delete_time),
        etag=row.etag,
    )


# ------------------------------------------------------------------ webhooks

_Subscription = webhooks_pb2.WebhookSubscription
_Delivery = webhooks_pb2.WebhookDelivery


def subscription_spec(message: webhooks_pb2.WebhookSubscription) -> SubscriptionSpec:
    """The client-set fields; a state number this build does not know travels as
    its number, for the domain to refuse."""
    try:
        state = _Subscription.State.Name(message.state)
    except ValueError:
        state = str(message.state)
    return SubscriptionSpec(
        url=message.url,
        event_types=tuple(message.event_types),
        description=message.description,
        state=state,
    )


def subscription_to_proto(
    row: WebhookSubscriptionRow, secret: str = ""
) -> webhooks_pb2.WebhookSubscription:
    """The subscription; ``secret`` only in the answers that just made it."""
    return _Subscription(
        id=str(row.id),
        company_id=str(row.company_id),
        url=row.url,
        event_types=list(row.event_types),
        description=row.description,
        state=row.state,  # the enum value's name
        secret=secret,
        secret_hint=row.secret_hint,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        delete_time=timestamp(row.delete_time),
        etag=row.etag,
    )


def delivery_to_proto(row: WebhookDeliveryRow) -> webhooks_pb2.WebhookDelivery:
    pending = row.state == "PENDING"
    return _Delivery(
        id=str(row.id),
        subscription_id=str(row.subscription_id),
        company_id=str(row.company_id),
        event_id=str(row.event_id),
        event_type=row.event_type,
        subject=row.subject,
        event_time=timestamp(row.event_time),
        state=row.state,  # the enum value's name
        attempt_count=row.attempt_count,
        next_attempt_time=timestamp(row.next_attempt_time) if pending else None,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        create_time=timestamp(row.create_time),
        deliver_time=timestamp(row.deliver_time),
        dead_letter_time=timestamp(row.dead_letter_time),
    )


def attempt_to_proto(row: WebhookDeliveryAttemptRow) -> webhooks_pb2.WebhookDeliveryAttempt:
    return webhooks_pb2.WebhookDeliveryAttempt(
        number=row.number,
        start_time=timestamp(row.start_time),
        duration_ms=row.duration_ms,
        status_code=row.status_code,
        succeeded=row.succeeded,
        error=row.error,
        response_excerpt=row.response_excerpt,
    )


# ------------------------------------------------------------------ lists


def list_query(request: Any) -> ListQuery:
    """The paging and query of a List request (the audit log has no ordering and
    no deleted events, webhook lists no ordering and some no filter, so those
    fields may be missing)."""
    return ListQuery(
        page_size=request.page_size,
        page_token=request.page_token,
        filter=getattr(request, "filter", ""),
        order_by=getattr(request, "order_by", ""),
        show_deleted=getattr(request, "show_deleted", False),
    )
