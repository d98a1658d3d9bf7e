"""Documents in the running suite: core learns the demo company's language and
name from the company service, so the demo admin's schedule and decision
letter come in German, in the company's name, without asking; `?locale=en`
asks for English."""

from __future__ import annotations

import io
from datetime import date, timedelta

import pypdf
import pytest

from e2e.suite_harness import (
    ADMIN_EMAIL,
    SuiteProcess,
    json_date,
    money,
    policyholder_body,
    product_body,
)

pytestmark = pytest.mark.integration


def text_of(pdf: bytes) -> str:
    pages = pypdf.PdfReader(io.BytesIO(pdf)).pages
    return " ".join(" ".join(page.extract_text().split()) for page in pages)


def test_the_demo_company_issues_german_documents_in_its_name(suite: SuiteProcess) -> None:
    rest = suite.rest()
    admin = rest.login(ADMIN_EMAIL)
    holder = rest.call("POST", "/v1/policyholders", policyholder_body(), token=admin).ok()
    product = rest.call("POST", "/v1/products", product_body(), token=admin).ok()
    rest.call(
        "POST", f"/v1/products/{product['id']}:activate", {"etag": product["etag"]}, token=admin
    ).ok()
    effective = date.today() - timedelta(days=10)
    policy = rest.call(
        "POST",
        "/v1/policies",
        {
            "policyholder_id": holder["id"],
            "product_id": product["id"],
            "effective_date": json_date(effective),
            "sum_insured": money(100000),
            "insured_members": [{"policyholder": True}],
        },
        token=admin,
    ).ok()
    policy = rest.call(
        "POST", f"/v1/policies/{policy['id']}:quote", {"etag": policy["etag"]}, token=admin
    ).ok()
    policy = rest.call(
        "POST", f"/v1/policies/{policy['id']}:bind", {"etag": policy["etag"]}, token=admin
    ).ok()

    reply = rest.call("GET", f"/v1/policies/{policy['id']}/schedule", token=admin)
    assert reply.status == 200, reply.body[:2000]
    assert reply.header("content-type") == "application/pdf"
    text = text_of(reply.body)
    assert "Demo Insurance" in text and "Versicherungsschein" in text, text
    assert f"Versicherungsnummer {policy['policy_number']}" in text
    assert "10.000,00 €" in text
    english = rest.call("GET", f"/v1/policies/{policy['id']}/schedule?locale=en", token=admin)
    assert english.status == 200 and "Policy schedule" in text_of(english.body)

    claim = rest.call(
        "POST",
        "/v1/claims",
        {
            "policy_id": policy["id"],
            "claimant": {"policyholder": True},
            "claim_type": "MEDICAL",
            "description": "broken arm",
            "coverage_code": "OUTPATIENT",
            "incident_date": json_date(date.today() - timedelta(days=2)),
            "claimed_amount": money(800),
        },
        token=admin,
    ).ok()
    for verb, body in [("submit", {}), ("review", {}), ("deny", {"reason": "nicht versichert"})]:
        claim = rest.call("POST", f"/v1/claims/{claim['id']}:{verb}", body, token=admin).ok()
    letter = rest.call("GET", f"/v1/claims/{claim['id']}/decisionLetter", token=admin)
    assert letter.status == 200 and letter.header("content-type") == "application/pdf"
    letter_text = text_of(letter.body)
    assert "Leistungsentscheidung" in letter_text and "abgelehnt" in letter_text
    assert "Begründung nicht versichert" in letter_text
    assert claim["claim_number"] in letter_text
