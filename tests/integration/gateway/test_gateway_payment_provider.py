"""A payment provider's signed webhook through the real gateway: no access
token, the raw body and the signature header reach core, the payment is
recorded on its policy (paid-to date moves) once, however often the provider
sends the event; unsigned, forged, tampered and stale calls, an unknown
provider and a suspended company are refused. The servers, Envoy and the
company are the schemathesis module's ``suite`` (its core trusts ``PROVIDER``)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from test_gateway_billing_rest import Client, decimal, monthly_policy
from test_gateway_schemathesis import PROVIDER, PROVIDER_SECRET, Suite, suite

from cardinsa_core.domain.payment_provider import SIGNATURE_HEADER, signature_header

pytestmark = pytest.mark.asyncio(loop_scope="session")

__all__ = ["suite"]  # the fixture, shared with the schemathesis module

PATH = f"/v1/paymentProviders/{PROVIDER}/events"


def payment_event(
    company_id: str, policy_id: str, amount: Decimal, *, payment_id: str, event_id: str
) -> bytes:
    data = {
        "payment_id": payment_id,
        "company_id": company_id,
        "policy_id": policy_id,
        "amount_minor": int(amount * 100),
        "currency": "EUR",
        "received_date": datetime.now(UTC).date().isoformat(),
        "reference": "card 4242",
    }
    event = {"id": event_id, "type": "payment.succeeded", "data": data}
    return json.dumps(event).encode()


def signed(body: bytes, *, secret: str = PROVIDER_SECRET, at: int | None = None) -> dict[str, str]:
    at = int(time.time()) if at is None else at
    return {
        "content-type": "application/json",
        SIGNATURE_HEADER: signature_header([secret], at, body),
    }


async def send(suite: Suite, body: bytes, headers: dict[str, str], path: str = PATH) -> Any:
    return await suite.gateway.request("POST", path, body, headers)


async def test_a_signed_payment_is_recorded_once_and_moves_the_paid_to_date(suite: Suite) -> None:
    client = Client(suite)
    policy = await monthly_policy(client, datetime.now(UTC).date())
    path = f"/v1/policies/{policy['id']}"
    first = (await client.ok("GET", f"{path}/invoices?page_size=100"))["invoices"][0]
    body = payment_event(
        suite.ids["company_id"],
        policy["id"],
        decimal(first["amount"]),
        payment_id=f"pay_{uuid.uuid4().hex[:10]}",
        event_id=f"evt_{uuid.uuid4().hex[:10]}",
    )

    reply = await send(suite, body, signed(body))
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert answer["recorded"] is True and answer["payment"].startswith(f"policies/{policy['id']}/")
    got = await client.ok("GET", path)
    assert got["paid_to_date"] == first["period_end"], got

    # The provider retries (a new delivery, a fresh signature): the same payment.
    again = await send(suite, body, signed(body))
    assert again.status == 200 and again.json()["payment"] == answer["payment"], again.body
    payments = (await client.ok("GET", f"{path}/payments"))["payments"]
    assert len(payments) == 1, payments
    assert decimal(payments[0]["amount"]) == decimal(first["amount"])
    assert payments[0]["reference"].startswith(PROVIDER), payments[0]

    # The same provider payment id with another amount is refused, not recorded.
    changed = body.replace(b'"amount_minor": ', b'"amount_minor": 1')
    refused = await send(suite, changed, signed(changed))
    assert 400 <= refused.status < 500, (refused.status, refused.body)
    assert len((await client.ok("GET", f"{path}/payments"))["payments"]) == 1

    # Other event types are acknowledged and record nothing.
    other = json.dumps({"id": "evt_refund_1", "type": "payment.refunded", "data": {}}).encode()
    ack = await send(suite, other, signed(other))
    assert ack.status == 200 and ack.json().get("recorded", False) is False, ack.body
    assert len((await client.ok("GET", f"{path}/payments"))["payments"]) == 1


async def test_unsigned_forged_tampered_stale_and_unknown_calls_are_refused(suite: Suite) -> None:
    client = Client(suite)
    policy = await monthly_policy(client, datetime.now(UTC).date())
    body = payment_event(
        suite.ids["company_id"],
        policy["id"],
        Decimal("10.00"),
        payment_id="pay_x",
        event_id="evt_x",
    )
    now = int(time.time())
    cases = {
        "SIGNATURE_MISSING": (body, {"content-type": "application/json"}, PATH),
        "SIGNATURE_MISMATCH": (body, signed(body, secret="x" * 40), PATH),
        "SIGNATURE_STALE": (body, signed(body, at=now - 600), PATH),
    }
    for reason, (sent, headers, path) in cases.items():
        reply = await send(suite, sent, headers, path)
        assert reply.status == 401, (reason, reply.status, reply.body)
        assert reply.json()["details"][0]["reason"] == reason, reply.body
    tampered = await send(suite, body.replace(b"1000", b"9000"), signed(body))
    assert tampered.status == 401, tampered.body
    unknown = await send(suite, body, signed(body), "/v1/paymentProviders/nobody/events")
    assert unknown.status == 404, unknown.body
    # Nothing of it was recorded.
    payments = await client.ok("GET", f"/v1/policies/{policy['id']}/payments")
    assert payments.get("payments", []) == [], payments


async def test_a_signed_event_for_another_company_finds_no_policy(suite: Suite) -> None:
    """A provider names the company; a policy of another company stays out of
    reach (row-level security in that company's context): NOT_FOUND."""
    client = Client(suite)
    policy = await monthly_policy(client, datetime.now(UTC).date())
    stranger = str(uuid.uuid4())
    body = payment_event(
        stranger, policy["id"], Decimal("10.00"), payment_id="pay_y", event_id="evt_y"
    )
    reply = await send(suite, body, signed(body))
    assert reply.status in (403, 404), reply.body
    payments = await client.ok("GET", f"/v1/policies/{policy['id']}/payments")
    assert payments.get("payments", []) == [], payments
