"""Premium over REST through the real gateway: a product with rating rules, a
policy's premium breakdown in ``GET /v1/policies/{policy_id}`` and its premium
transactions (``GET /v1/policies/{policy_id}/premiumTransactions``) after bind,
endorsement, a scheduled cancellation and a reinstatement, every amount as the
gateway prints ``google.type.Money`` (``units`` an int64 string, ``nanos`` of
the same sign, zero fields left out); the underwriting-issue routes reach core
(``GET .../underwritingIssues``, ``POST .../underwritingIssues/{issue_id}:approve``);
and the OpenAPI description the gateway serves documents the three routes. The
servers, Envoy and the company are the schemathesis module's ``suite``."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

import pytest
from test_gateway_schemathesis import Suite, suite

pytestmark = pytest.mark.asyncio(loop_scope="session")

__all__ = ["suite"]  # the fixture, shared with the schemathesis module

CENT = Decimal("0.01")


def money(units: int) -> dict[str, Any]:
    return {"currency_code": "EUR", "units": str(units)}


def json_date(day: date) -> dict[str, int]:
    return {"year": day.year, "month": day.month, "day": day.day}


def decimal(value: dict[str, Any] | None) -> Decimal:
    """google.type.Money as the gateway prints it."""
    if not value:
        return Decimal(0)
    assert value["currency_code"] == "EUR", value
    assert set(value) <= {"currency_code", "units", "nanos"}, value
    units = Decimal(value.get("units", "0"))
    nanos = int(value.get("nanos", 0))
    assert units * nanos >= 0, value  # the same sign
    return units + Decimal(nanos) / 10**9


def rounded(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(
        CENT, rounding=ROUND_HALF_EVEN
    )


def utc_today() -> date:
    """The policies' first day: the date in UTC, never after the company's today
    (its zone, Europe/Berlin, is ahead of UTC), so a bound policy is in force."""
    return datetime.now(UTC).date()


def reason(body: dict[str, Any]) -> str:
    infos = [d for d in body.get("details", []) if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert len(infos) == 1, body
    return str(infos[0]["reason"])


class Client:
    def __init__(self, suite: Suite) -> None:
        self.gateway, self.token = suite.gateway, suite.token

    async def ok(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        reply = await self.gateway.request(method, path, body, token=self.token)
        assert reply.status == 200, (method, path, reply.status, reply.body[:2000])
        assert reply.grpc_headers() == [], reply.headers
        found: dict[str, Any] = reply.json()
        return found


async def priced_policy(client: Client, today: date) -> tuple[dict[str, Any], dict[str, str]]:
    """A product with rating rules on sale, a holder with a spouse (30) and a
    child (7) and a quoted policy for the holder (45) and the spouse."""
    product = await client.ok(
        "POST",
        "/v1/products",
        {
            "code": f"PREM-{uuid.uuid4().hex[:8].upper()}",
            "line_of_business": "MEDICAL",
            "name": "Priced family health",
            "currency_code": "EUR",
            "base_premium": money(1200),
            "term_months": 12,
            "coverages": [
                {
                    "code": "OUTPATIENT",
                    "name": "Outpatient care",
                    "limit": money(10_000),
                    "limit_period": "PER_YEAR",
                }
            ],
            "rating_rules": {
                "term_basis": "PRODUCT_TERM",
                "age_bands": [
                    {"min_age": 0, "max_age": 17, "factor_basis_points": 5000},
                    {"min_age": 18, "max_age": 39, "factor_basis_points": 10000},
                    {"min_age": 40, "max_age": 64, "factor_basis_points": 14000},
                ],
                "relation_factors": [{"relation": "CHILD", "factor_basis_points": 8000}],
                "sum_insured_rate_basis_points": 10,
                "tax_basis_points": 1900,
                "policy_fee": money(25),
                "short_rate_penalty_basis_points": 1000,
            },
        },
    )
    rules = product["rating_rules"]
    assert rules["policy_fee"] == money(25) and rules["term_basis"] == "PRODUCT_TERM", rules
    await client.ok("POST", f"/v1/products/{product['id']}:activate", {"etag": product["etag"]})
    holder = await client.ok(
        "POST",
        "/v1/policyholders",
        {
            "kind": "PERSON",
            "given_name": "Nadia",
            "family_name": f"Rahman{uuid.uuid4().hex[:6]}",
            "date_of_birth": json_date(date(today.year - 45, 1, 1)),
            "dependents": [
                {
                    "relation": "SPOUSE",
                    "given_name": "Omar",
                    "family_name": "Rahman",
                    "date_of_birth": json_date(date(today.year - 30, 1, 1)),
                },
                {
                    "relation": "CHILD",
                    "given_name": "Sara",
                    "family_name": "Rahman",
                    "date_of_birth": json_date(date(today.year - 7, 1, 1)),
                },
            ],
        },
    )
    members = {d["relation"]: d["id"] for d in holder["dependents"]}
    policy = await client.ok(
        "POST",
        "/v1/policies",
        {
            "policyholder_id": holder["id"],
            "product_id": product["id"],
            "effective_date": json_date(today),
            "sum_insured": money(100_000),
            "insured_members": [{"policyholder": True}, {"dependent_id": members["SPOUSE"]}],
        },
    )
    policy = await client.ok("POST", f"/v1/policies/{policy['id']}:quote", {"etag": policy["etag"]})
    return policy, members


async def test_premium_breakdown_and_transactions_over_rest(suite: Suite) -> None:
    client = Client(suite)
    today = utc_today()
    policy, members = await priced_policy(client, today)
    path = f"/v1/policies/{policy['id']}"
    policy = await client.ok("POST", f"{path}:bind", {"etag": policy["etag"]})
    assert policy["state"] == "IN_FORCE", policy

    # --- the breakdown, as GET /v1/policies/{id} prints it ---------------------------
    got = await client.ok("GET", path)
    breakdown = got["premium_breakdown"]
    end = date(**got["expiry_date"])
    days = (end - today).days + 1
    assert breakdown["strategy"] == "standard" and breakdown["term_days"] == days, breakdown
    lines = breakdown["lines"]
    assert [line["code"] for line in lines] == ["MEMBER", "MEMBER", "SUM_INSURED", "TAX", "FEE"]
    holder_line = next(line for line in lines if line["member"] == {"policyholder": True})
    spouse_line = next(
        line for line in lines if line["member"] == {"dependent_id": members["SPOUSE"]}
    )
    assert holder_line["description"] == "policyholder, age 45: 1200.00 x 1.4000", holder_line
    # Whole units: no nanos field; a fraction: nanos of the same sign as units.
    assert holder_line["amount"] == money(1680)
    assert spouse_line["amount"] == money(1200)
    assert lines[2]["amount"] == money(100)
    assert lines[3] == {
        "code": "TAX",
        "description": "premium tax 19 %",
        "amount": {"currency_code": "EUR", "units": "566", "nanos": 200_000_000},
    }
    assert lines[4]["amount"] == money(25) and "member" not in lines[4]
    assert breakdown["net_premium"] == money(2980)
    assert decimal(breakdown["tax"]) == Decimal("566.20")
    assert breakdown["fee"] == money(25)
    total = {"currency_code": "EUR", "units": "3571", "nanos": 200_000_000}
    assert breakdown["total"] == total
    assert got["premium"] == total and got["written_premium"] == total

    # --- endorse (the child joins), cancel (scheduled), reinstate --------------------
    endorse_from = today + timedelta(days=60)
    policy = await client.ok(
        "POST",
        f"{path}:endorse",
        {
            "etag": policy["etag"],
            "effective_date": json_date(endorse_from),
            "description": "the child joins",
            "policy": {
                "insured_members": [
                    {"policyholder": True},
                    {"dependent_id": members["SPOUSE"]},
                    {"dependent_id": members["CHILD"]},
                ]
            },
            "update_mask": "insuredMembers",
        },
    )
    assert policy["premium_breakdown"]["net_premium"] == money(3460), policy  # + 1200 x 0.4
    cancel_from = today + timedelta(days=120)
    policy = await client.ok(
        "POST",
        f"{path}:cancel",
        {
            "etag": policy["etag"],
            "reason": "MEMBER_REQUEST",
            "effective_date": json_date(cancel_from),
            "scheduled": True,
        },
    )
    assert policy["state"] == "CANCEL_PENDING", policy
    after_cancel = decimal(policy["written_premium"])
    policy = await client.ok("POST", f"{path}:reinstate", {"etag": policy["etag"], "note": "ok"})
    assert policy["state"] == "IN_FORCE", policy

    # --- the transactions, over two pages --------------------------------------------
    first = await client.ok("GET", f"{path}/premiumTransactions?page_size=2")
    assert len(first["premium_transactions"]) == 2 and first["next_page_token"], first
    second = await client.ok(
        "GET", f"{path}/premiumTransactions?page_size=2&page_token={first['next_page_token']}"
    )
    assert not second.get("next_page_token"), second
    rows = first["premium_transactions"] + second["premium_transactions"]
    assert [r["kind"] for r in rows] == ["NEW", "ENDORSE", "CANCEL", "REINSTATE"], rows
    assert [r["sequence"] for r in rows] == [1, 2, 3, 4]
    assert {r["policy_id"] for r in rows} == {policy["id"]}
    assert [r.get("refund_method", "") for r in rows] == ["", "", "SHORT_RATE", ""], rows
    assert [r["policy_version"] for r in rows] == [1, 2, 2, 2], rows
    spans = [(date(**r["effective_date"]), date(**r["end_date"])) for r in rows]
    assert spans == [(today, end), (endorse_from, end), (cancel_from, end), (cancel_from, end)]

    # The amounts, worked out here from the rules (PRODUCT_TERM: the whole term
    # costs the yearly rate; an endorsement the difference over the remaining days).
    remaining = (end - endorse_from).days + 1
    endorse = rounded(Fraction(480) * remaining / days)
    earned = rounded(Fraction(2980) * 120 / days + Fraction(endorse) * 60 / remaining)
    unearned = Decimal(2980) + endorse - earned
    returned = unearned - rounded(Fraction(unearned) / 10)
    expected = [
        (Decimal(2980), Decimal("566.20"), Decimal(25)),
        (endorse, rounded(Fraction(endorse) * 19 / 100), Decimal(0)),
        (-returned, rounded(Fraction(-returned) * 19 / 100), Decimal(0)),
        (returned, -rounded(Fraction(-returned) * 19 / 100), Decimal(0)),
    ]
    found = [(decimal(r["premium"]), decimal(r["tax"]), decimal(r.get("fee"))) for r in rows]
    assert found == expected, (found, expected)
    running = Decimal(0)
    for row, (net, tax, fee) in zip(rows, expected, strict=True):
        assert decimal(row["amount"]) == net + tax + fee, row
        running += net + tax + fee
        assert decimal(row["written_premium"]) == running, row
    assert rows[2]["amount"]["units"].startswith("-") and rows[2]["amount"].get("nanos", 0) <= 0
    assert decimal(rows[2]["written_premium"]) == after_cancel
    # The transactions sum to the policy's written premium.
    assert decimal(policy["written_premium"]) == running
    assert (await client.ok("GET", path))["written_premium"] == policy["written_premium"]

    # Another id, the same answer as a missing one.
    missing = await suite.gateway.request(
        "GET", f"/v1/policies/{uuid.uuid4()}/premiumTransactions", token=suite.token
    )
    assert missing.status == 404, missing.body


async def test_underwriting_issue_routes_reach_core(suite: Suite) -> None:
    """Each route is transcoded to its RPC and routed to core (the access log
    names the gRPC method and the cluster); the answer is core's: the list of a
    policy whose quote raised no issue is empty, and an issue id that does not
    exist is core's NOT_FOUND naming that id (the path's two ids reach the
    request)."""
    client = Client(suite)
    policy, _ = await priced_policy(client, utc_today())
    issue_id = str(uuid.uuid4())
    calls = [
        (
            "GET",
            f"/v1/policies/{policy['id']}/underwritingIssues?page_size=5",
            None,
            "ListUnderwritingIssues",
        ),
        (
            "POST",
            f"/v1/policies/{policy['id']}/underwritingIssues/{issue_id}:approve",
            {"note": "acceptable risk"},
            "ApproveUnderwritingIssue",
        ),
    ]
    answers = []
    for method, path, body, rpc in calls:
        request_id = f"uw-route-{uuid.uuid4().hex}"
        reply = await suite.gateway.request(
            method, path, body, {"x-request-id": request_id}, token=suite.token
        )
        line = await suite.gateway.log_line(request_id)
        assert line["grpc_method"] == f"/cardinsa.core.v1.PolicyService/{rpc}", line
        assert line["upstream"] == "core" and line["method"] == method, line
        assert reply.header("content-type") == "application/json", reply.headers
        assert reply.grpc_headers() == [], reply.headers
        answers.append(reply)
    listed, approved = answers
    assert listed.status == 200, listed.body
    assert listed.json().get("underwriting_issues", []) == [], listed.body
    assert approved.status == 404, approved.body
    error = approved.json()
    assert error["code"] == 5 and reason(error).endswith("_NOT_FOUND"), error
    info = next(d for d in error["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))
    assert info["metadata"]["id"] == issue_id, info


async def test_the_openapi_description_documents_the_routes(suite: Suite) -> None:
    reply = await suite.gateway.request("GET", "/openapi.json")
    assert reply.status == 200, reply.status
    paths = reply.json()["paths"]
    expected = {
        "/v1/policies/{policy_id}/premiumTransactions": (
            "get",
            "ListPremiumTransactions",
            "policies.get",
        ),
        "/v1/policies/{policy_id}/underwritingIssues": (
            "get",
            "ListUnderwritingIssues",
            "policies.get",
        ),
        "/v1/policies/{policy_id}/underwritingIssues/{issue_id}:approve": (
            "post",
            "ApproveUnderwritingIssue",
            "policies.underwrite",
        ),
    }
    for path, (method, rpc, permission) in expected.items():
        operation = paths[path][method]
        assert operation["x-grpc-method"] == f"/cardinsa.core.v1.PolicyService/{rpc}", operation
        assert permission in operation["description"], operation
        assert {p["name"] for p in operation["parameters"] if p["in"] == "path"} == {
            name for name in ("policy_id", "issue_id") if f"{{{name}}}" in path
        }
    schemas = reply.json()["components"]["schemas"]
    transaction = schemas["cardinsa.core.v1.PremiumTransaction"]["properties"]
    assert {"kind", "premium", "tax", "fee", "amount", "written_premium", "refund_method"} <= set(
        transaction
    )
    policy = schemas["cardinsa.core.v1.Policy"]["properties"]
    assert {"premium_breakdown", "written_premium"} <= set(policy)
