"""The signed-webhook payment-provider adapter: who may confirm a payment, and when."""

from __future__ import annotations

import datetime
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardinsa_core.domain.money import Money
from cardinsa_core.domain.payment_provider import (
    SIGNATURE_HEADER,
    SignedWebhookProvider,
    parse_event,
    sign,
    signature_header,
)
from cardinsa_foundation.errors import InvalidArgument, Unauthenticated

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
T = int(NOW.timestamp())
SECRET = "prov_secret_current"
OLD_SECRET = "prov_secret_previous"
COMPANY = uuid.UUID("5b0c3a52-6f39-4a47-9d6e-7c0a4f1d2e11")
POLICY = uuid.UUID("0e8f3d5c-1b7a-4c2e-8f90-3a6b5c4d7e21")


def event(**data: Any) -> bytes:
    body = {
        "payment_id": "pay_1",
        "company_id": str(COMPANY),
        "policy_id": str(POLICY),
        "amount_minor": 8350,
        "currency": "EUR",
        "received_date": "2026-12-07",
        "reference": "SEPA 4711",
        **data,
    }
    return json.dumps({"id": "evt_1", "type": "payment.succeeded", "data": body}).encode()


PROVIDER = SignedWebhookProvider("acme-pay", (SECRET, OLD_SECRET))


def headers(body: bytes, *, secret: str = SECRET, t: int = T) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature_header([secret], t, body),
    }


def test_a_signed_fresh_event_confirms_the_exact_amount() -> None:
    body = event()
    confirmation = PROVIDER.confirmation(headers(body), body, NOW)
    assert confirmation is not None
    assert confirmation.amount == Money.of(Decimal("83.50"), "EUR")
    assert (confirmation.provider, confirmation.provider_payment_id) == ("acme-pay", "pay_1")
    assert (confirmation.company_id, confirmation.policy_id) == (COMPANY, POLICY)
    assert confirmation.received_date == datetime.date(2026, 12, 7)


@pytest.mark.parametrize(
    ("currency", "minor", "amount"), [("JPY", 8350, "8350"), ("KWD", 8350, "8.350")]
)
def test_minor_units_follow_the_currency(currency: str, minor: int, amount: str) -> None:
    body = event(currency=currency, amount_minor=minor)
    confirmation = PROVIDER.confirmation(headers(body), body, NOW)
    assert confirmation is not None and confirmation.amount == Money.of(Decimal(amount), currency)


def test_the_previous_secret_is_accepted_during_a_rotation() -> None:
    body = event()
    assert PROVIDER.confirmation(headers(body, secret=OLD_SECRET), body, NOW) is not None


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h, b: ({}, b), "SIGNATURE_MISSING"),
        (lambda h, b: ({SIGNATURE_HEADER: "v1=abc"}, b), "SIGNATURE_MALFORMED"),
        (lambda h, b: (headers(b, secret="someone-else"), b), "SIGNATURE_MISMATCH"),
        (lambda h, b: (h, b.replace(b"8350", b"9350")), "SIGNATURE_MISMATCH"),
        (lambda h, b: (headers(b, t=T - 301), b), "SIGNATURE_STALE"),
        (lambda h, b: (headers(b, t=T + 301), b), "SIGNATURE_STALE"),
    ],
    ids=["unsigned", "malformed", "forged", "tampered-body", "replayed-late", "from-the-future"],
)
def test_unsigned_forged_tampered_and_stale_calls_are_refused(mutate: Any, reason: str) -> None:
    body = event()
    sent_headers, sent_body = mutate(headers(body), body)
    with pytest.raises(Unauthenticated) as refused:
        PROVIDER.confirmation(sent_headers, sent_body, NOW)
    assert refused.value.reason == reason


def test_a_signature_at_the_edge_of_the_window_is_accepted() -> None:
    body = event()
    assert PROVIDER.confirmation(headers(body, t=T - 300), body, NOW) is not None


@settings(max_examples=200, deadline=None)
@given(
    body=st.binary(max_size=200),
    t=st.integers(min_value=T - 300, max_value=T + 300),
    flip=st.integers(min_value=0, max_value=63),
)
def test_any_changed_signature_character_is_refused(body: bytes, t: int, flip: int) -> None:
    good = sign(SECRET, t, body)
    bad = good[:flip] + ("0" if good[flip] != "0" else "1") + good[flip + 1 :]
    PROVIDER.verify({SIGNATURE_HEADER: f"t={t},v1={good}"}, body, NOW)
    with pytest.raises(Unauthenticated):
        PROVIDER.verify({SIGNATURE_HEADER: f"t={t},v1={bad}"}, body, NOW)


def test_other_event_types_record_nothing() -> None:
    body = json.dumps({"id": "evt_2", "type": "payment.created", "data": {}}).encode()
    assert PROVIDER.confirmation(headers(body), body, NOW) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"[]", "body"),
        (event(amount_minor=0), "data.amount_minor"),
        (event(amount_minor=-5), "data.amount_minor"),
        (event(amount_minor=1.5), "data.amount_minor"),
        (event(amount_minor=True), "data.amount_minor"),
        (event(currency="euro"), "data.amount.currency_code"),
        (event(company_id="acme"), "data.company_id"),
        (event(policy_id=None), "data.policy_id"),
        (event(received_date="07.12.2026"), "data.received_date"),
        (event(payment_id="x" * 300), "data.payment_id"),
    ],
)
def test_a_signed_but_malformed_event_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        PROVIDER.confirmation(headers(body), body, NOW)
    assert field in [v.field for v in refused.value.field_violations]


def test_the_event_id_is_required_for_every_type() -> None:
    with pytest.raises(InvalidArgument):
        parse_event("acme-pay", json.dumps({"type": "payment.created"}).encode())
