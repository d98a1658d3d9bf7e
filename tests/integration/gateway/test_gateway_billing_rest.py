"""Billing over REST through the real gateway: a bound MONTHLY policy shows its
12 instalments (``GET /v1/policies/{policy_id}/invoices``) summing to its
written premium; a payment for the first (``POST
/v1/policies/{policy_id}/payments``) settles it and moves the policy's
``paid_to_date``; bad input is INVALID_ARGUMENT with the field named; the
OpenAPI description documents the routes. The servers, Envoy and the company
are the schemathesis module's ``suite``."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from test_gateway_schemathesis import Suite, suite

pytestmark = pytest.mark.asyncio(loop_scope="session")

__all__ = ["suite"]  # the fixture, shared with the schemathesis module


def money(units: int, nanos: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = {"currency_code": "EUR", "units": str(units)}
    if nanos:
        found["nanos"] = nanos
    return found


def decimal(value: dict[str, Any] | None) -> Decimal:
    if not value:
        return Decimal(0)
    assert value["currency_code"] == "EUR", value
    return Decimal(value.get("units", "0")) + Decimal(int(value.get("nanos", 0))) / 10**9


def as_money(amount: Decimal) -> dict[str, Any]:
    units = int(amount)
    return money(units, int((amount - units) * 10**9))


def json_date(day: date) -> dict[str, int]:
    return {"year": day.year, "month": day.month, "day": day.day}


class Client:
    def __init__(self, suite: Suite) -> None:
        self.gateway, self.token = suite.gateway, suite.token

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        reply = await self.gateway.request(method, path, body, token=self.token)
        return reply.status, reply.json()

    async def ok(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        status, found = await self.call(method, path, body)
        assert status == 200, (method, path, status, found)
        return found


async def monthly_policy(client: Client, today: date) -> dict[str, Any]:
    product = await client.ok(
        "POST",
        "/v1/products",
        {
            "code": f"BILL-{uuid.uuid4().hex[:8].upper()}",
            "line_of_business": "MEDICAL",
            "name": "Monthly health",
            "currency_code": "EUR",
            "base_premium": money(1000),
            "term_months": 12,
            "grace_period_days": 15,
            "coverages": [
                {
                    "code": "OUTPATIENT",
                    "name": "Outpatient care",
                    "limit": money(10_000),
                    "limit_period": "PER_YEAR",
                }
            ],
        },
    )
    assert product["grace_period_days"] == 15, product
    await client.ok("POST", f"/v1/products/{product['id']}:activate", {"etag": product["etag"]})
    holder = await client.ok(
        "POST",
        "/v1/policyholders",
        {
            "kind": "PERSON",
            "given_name": "Layla",
            "family_name": f"Nasser{uuid.uuid4().hex[:6]}",
            "date_of_birth": json_date(date(today.year - 35, 1, 1)),
        },
    )
    policy = await client.ok(
        "POST",
        "/v1/policies",
        {
            "policyholder_id": holder["id"],
            "product_id": product["id"],
            "effective_date": json_date(today),
            "sum_insured": money(50_000),
            "payment_frequency": "MONTHLY",
            "insured_members": [{"policyholder": True}],
        },
    )
    path = f"/v1/policies/{policy['id']}"
    policy = await client.ok("POST", f"{path}:quote", {"etag": policy["etag"]})
    return await client.ok("POST", f"{path}:bind", {"etag": policy["etag"]})


async def test_a_monthly_policy_bills_twelve_instalments_and_a_payment_moves_paid_to(
    suite: Suite,
) -> None:
    client = Client(suite)
    today = datetime.now(UTC).date()
    policy = await monthly_policy(client, today)
    assert policy["state"] == "IN_FORCE", policy
    assert "paid_to_date" not in policy, policy
    path = f"/v1/policies/{policy['id']}"

    listed = await client.ok("GET", f"{path}/invoices?page_size=100")
    invoices = listed["invoices"]
    assert len(invoices) == 12, invoices
    assert {i["kind"] for i in invoices} == {"INSTALMENT"}
    assert [i["instalment"] for i in invoices] == list(range(1, 13))
    assert sum(decimal(i["amount"]) for i in invoices) == decimal(policy["written_premium"])
    first = invoices[0]
    assert first["due_date"] == json_date(today) and first["state"] == "ISSUED", first

    payment = await client.ok(
        "POST",
        f"{path}/payments",
        {"amount": first["amount"], "reference": "SEPA 0001", "received_date": json_date(today)},
    )
    assert [a["invoice_number"] for a in payment["allocations"]] == [first["number"]], payment
    assert payment["allocated"] == first["amount"], payment
    assert decimal(payment.get("unallocated")) == 0, payment

    got = await client.ok("GET", path)
    assert got["paid_to_date"] == first["period_end"], got
    paid = await client.ok("GET", f"{path}/invoices/{first['id']}")
    assert paid["state"] == "PAID" and decimal(paid.get("outstanding")) == 0, paid
    payments = await client.ok("GET", f"{path}/payments")
    assert [p["id"] for p in payments["payments"]] == [payment["id"]]

    # bad input: the field is named
    status, body = await client.call("POST", f"{path}/payments", {"amount": money(0)})
    assert status == 400, body
    violations = [
        v["field"]
        for d in body["details"]
        if d["@type"].endswith("BadRequest")
        for v in d["field_violations"]
    ]
    assert violations == ["payment.amount"], body
    status, body = await client.call(
        "POST", f"/v1/policies/{uuid.uuid4()}/payments", {"amount": money(5)}
    )
    assert status == 404, body


async def test_the_openapi_description_documents_the_billing_routes(suite: Suite) -> None:
    reply = await suite.gateway.request("GET", "/openapi.json")
    assert reply.status == 200, reply.status
    paths = reply.json()["paths"]
    expected = {
        ("/v1/policies/{policy_id}/invoices", "get"): ("ListInvoices", "invoices.list"),
        ("/v1/policies/{policy_id}/invoices/{invoice_id}", "get"): (
            "GetInvoice",
            "invoices.get",
        ),
        ("/v1/policies/{policy_id}/payments", "post"): ("RecordPayment", "payments.record"),
        ("/v1/policies/{policy_id}/payments", "get"): ("ListPayments", "payments.list"),
    }
    for (path, method), (rpc, permission) in expected.items():
        operation = paths[path][method]
        assert operation["x-grpc-method"] == f"/cardinsa.core.v1.BillingService/{rpc}", operation
        assert permission in operation["description"], operation
    policy = reply.json()["components"]["schemas"]["cardinsa.core.v1.Policy"]["properties"]
    assert "paid_to_date" in policy
