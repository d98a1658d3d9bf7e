"""Documents over REST through the real gateway: ``GET
/v1/policies/{policy_id}/schedule`` answers with the PDF itself (Content-Type
application/pdf, the bytes of the ``google.api.HttpBody``), whose text shows the
policy number, the coverages with their limits and deductibles, the premium
figures and the period; asked again, the same bytes. Errors stay JSON. The
OpenAPI description documents the responses as application/pdf. The servers,
Envoy and the company are the schemathesis module's ``suite``."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pypdf
import pytest
from test_gateway_schemathesis import Suite, suite

pytestmark = pytest.mark.asyncio(loop_scope="session")

__all__ = ["suite"]  # the fixture, shared with the schemathesis module


def money(units: int) -> dict[str, Any]:
    return {"currency_code": "EUR", "units": str(units)}


def decimal(value: dict[str, Any] | None) -> Decimal:
    if not value:
        return Decimal(0)
    return Decimal(value.get("units", "0")) + Decimal(int(value.get("nanos", 0))) / 10**9


def en_money(value: Decimal) -> str:
    return f"EUR {value:,.2f}"


def en_date(day: date) -> str:
    return f"{day.day} {day.strftime('%B')} {day.year}"


def text_of(pdf: bytes) -> str:
    pages = pypdf.PdfReader(io.BytesIO(pdf)).pages
    return " ".join(" ".join(page.extract_text().split()) for page in pages)


async def bound_policy(suite: Suite) -> dict[str, Any]:
    """A product with a deductible, premium tax and a policy fee; a policy on it, bound."""

    async def ok(path: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = await suite.gateway.request("POST", path, body, token=suite.token)
        assert reply.status == 200, (path, reply.status, reply.body[:2000])
        found: dict[str, Any] = reply.json()
        return found

    tag = uuid.uuid4().hex[:8].upper()
    product = await ok(
        "/v1/products",
        {
            "code": f"DOC-{tag}",
            "line_of_business": "MEDICAL",
            "name": "Documented health",
            "currency_code": "EUR",
            "base_premium": money(2400),
            "term_months": 12,
            "coverages": [
                {
                    "code": "OUTPATIENT",
                    "name": "Outpatient care",
                    "limit": money(10_000),
                    "limit_period": "PER_YEAR",
                    "deductible": money(150),
                },
                {
                    "code": "DENTAL",
                    "name": "Dental care",
                    "limit": money(1_500),
                    "limit_period": "PER_CLAIM",
                    "deductible": money(50),
                },
            ],
            "rating_rules": {
                "term_basis": "PRODUCT_TERM",
                "tax_basis_points": 1900,
                "policy_fee": money(25),
            },
        },
    )
    await ok(f"/v1/products/{product['id']}:activate", {"etag": product["etag"]})
    holder = await ok(
        "/v1/policyholders",
        {"kind": "PERSON", "given_name": "Greta", "family_name": f"Schedule{tag.lower()}"},
    )
    # The date in UTC is never after the company's today (Europe/Berlin is ahead).
    start = datetime.now(UTC).date() - timedelta(days=1)
    policy = await ok(
        "/v1/policies",
        {
            "policyholder_id": holder["id"],
            "product_id": product["id"],
            "effective_date": {"year": start.year, "month": start.month, "day": start.day},
            "sum_insured": money(100_000),
            "payment_frequency": "QUARTERLY",
            "insured_members": [{"policyholder": True}],
        },
    )
    policy = await ok(f"/v1/policies/{policy['id']}:quote", {"etag": policy["etag"]})
    return await ok(f"/v1/policies/{policy['id']}:bind", {"etag": policy["etag"]})


async def test_the_schedule_of_a_bound_policy_is_a_pdf(suite: Suite) -> None:
    policy = await bound_policy(suite)
    path = f"/v1/policies/{policy['id']}/schedule"
    reply = await suite.gateway.request("GET", path, token=suite.token)
    assert reply.status == 200, (reply.status, reply.body[:2000])
    assert reply.header("content-type") == "application/pdf", reply.headers
    assert reply.grpc_headers() == [], reply.headers
    assert reply.body.startswith(b"%PDF-")

    text = text_of(reply.body)
    breakdown = policy["premium_breakdown"]
    effective = date(**policy["effective_date"])
    expiry = date(**policy["expiry_date"])
    expected = [
        "Policy schedule",
        policy["policy_number"],
        "Greta Schedule",
        "Documented health",
        f"{en_date(effective)} to {en_date(expiry)}",
        "Outpatient care (OUTPATIENT) EUR 10,000.00 per policy year EUR 150.00",
        "Dental care (DENTAL) EUR 1,500.00 per claim EUR 50.00",
        f"Net premium {en_money(decimal(breakdown['net_premium']))}",
        f"Premium tax {en_money(decimal(breakdown['tax']))}",
        "Policy fee EUR 25.00",
        f"Total premium {en_money(decimal(breakdown['total']))}",
        "quarterly",
        f"Written premium {en_money(decimal(policy['written_premium']))}",
    ]
    for part in expected:
        assert part in text, (part, text)
    assert decimal(breakdown["tax"]) > 0

    again = await suite.gateway.request("GET", path, token=suite.token)
    assert again.status == 200 and again.body == reply.body

    german = await suite.gateway.request("GET", f"{path}?locale=de", token=suite.token)
    assert german.status == 200 and german.header("content-type") == "application/pdf"
    german_text = text_of(german.body)
    assert "Versicherungsschein" in german_text
    assert "10.000,00 €" in german_text and "150,00 €" in german_text
    assert f"{effective:%d.%m.%Y} bis {expiry:%d.%m.%Y}" in german_text


async def test_errors_of_the_document_routes_stay_json(suite: Suite) -> None:
    missing = await suite.gateway.request(
        "GET", f"/v1/policies/{uuid.uuid4()}/schedule", token=suite.token
    )
    assert missing.status == 404, missing.body
    assert missing.header("content-type") == "application/json"
    assert missing.json()["code"] == 5
    undecided = await suite.gateway.request(
        "GET", f"/v1/claims/{suite.ids['claim_id']}/decisionLetter", token=suite.token
    )
    assert undecided.status == 400, undecided.body
    assert undecided.json()["code"] == 9, undecided.body
    anonymous = await suite.gateway.request(
        "GET", f"/v1/policies/{suite.ids['policy_id']}/schedule"
    )
    assert anonymous.status == 401


async def test_the_openapi_description_documents_pdf_responses(suite: Suite) -> None:
    reply = await suite.gateway.request("GET", "/openapi.json")
    assert reply.status == 200, reply.status
    paths = reply.json()["paths"]
    for path, name, permission in [
        ("/v1/policies/{policy_id}/schedule", "GetPolicySchedule", "policies.get_schedule"),
        (
            "/v1/claims/{claim_id}/decisionLetter",
            "GetClaimDecisionLetter",
            "claims.get_decision_letter",
        ),
        (
            "/v1/policies/{policy_id}/invoices/{invoice_id}/document",
            "GetInvoiceDocument",
            "invoices.get_document",
        ),
    ]:
        operation = paths[path]["get"]
        assert operation["x-grpc-method"] == f"/cardinsa.core.v1.DocumentService/{name}"
        assert operation["x-cardinsa-authorization"]["permission"] == permission
        assert operation["responses"]["200"]["content"] == {
            "application/pdf": {"schema": {"type": "string", "format": "binary"}}
        }
        assert {p["name"] for p in operation["parameters"]} >= {"locale"}


async def test_an_invoice_is_a_pdf_for_its_payer(suite: Suite) -> None:
    """``GET /v1/policies/{policy_id}/invoices/{invoice_id}/document``: the
    invoice's number, amount, due date, period, the policy number and the payer,
    in the requested locale; the same bytes again; an invoice of another
    policy is not found there."""
    policy = await bound_policy(suite)
    path = f"/v1/policies/{policy['id']}"
    listed = await suite.gateway.request("GET", f"{path}/invoices?page_size=100", token=suite.token)
    assert listed.status == 200, listed.body
    invoice = listed.json()["invoices"][-1]
    url = f"{path}/invoices/{invoice['id']}/document"

    reply = await suite.gateway.request("GET", f"{url}?locale=en", token=suite.token)
    assert reply.status == 200, reply.body[:500]
    assert reply.header("content-type") == "application/pdf"
    text = text_of(reply.body)
    due = invoice["due_date"]
    for fact in [
        invoice["number"],
        policy["policy_number"],
        en_money(decimal(invoice["amount"])),
        en_date(date(due["year"], due["month"], due["day"])),
    ]:
        assert fact in text, (fact, text)
    again = await suite.gateway.request("GET", f"{url}?locale=en", token=suite.token)
    assert again.body == reply.body

    german = await suite.gateway.request("GET", f"{url}?locale=de", token=suite.token)
    assert german.status == 200 and german.body != reply.body
    assert f"{due['day']:02d}.{due['month']:02d}.{due['year']}" in text_of(german.body)

    elsewhere = await suite.gateway.request(
        "GET",
        f"/v1/policies/{suite.ids['policy_id']}/invoices/{invoice['id']}/document",
        token=suite.token,
    )
    assert elsewhere.status == 404, elsewhere.body
