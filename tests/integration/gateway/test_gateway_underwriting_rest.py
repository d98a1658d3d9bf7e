"""Underwriting issues over REST through the real gateway: the list's JSON, the
``:approve`` / ``:decline`` bodies (``note``, ``request_id``) and their
refusals as JSON. The servers, Envoy and the company are the schemathesis
module's ``suite``; its seed holds a bound policy (``ids["policy_id"]``)."""

from __future__ import annotations

import datetime
import inspect
import uuid
from typing import Any

import pytest
from test_gateway_schemathesis import Suite, suite

from cardinsa_core.application import policies as policy_use_cases

pytestmark = pytest.mark.asyncio(loop_scope="session")

__all__ = ["suite"]  # the fixture, shared with the schemathesis module


def reason(body: dict[str, Any]) -> str:
    infos = [d for d in body.get("details", []) if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert len(infos) == 1, body
    return str(infos[0]["reason"])


def violations(body: dict[str, Any]) -> dict[str, str]:
    return {
        v["field"]: v["description"]
        for d in body.get("details", [])
        if d["@type"].endswith("google.rpc.BadRequest")
        for v in d["field_violations"]
    }


async def test_issue_decisions_refused_as_json(suite: Suite) -> None:
    gateway, token = suite.gateway, suite.token
    policy = suite.ids["policy_id"]
    listed = await gateway.request("GET", f"/v1/policies/{policy}/underwritingIssues", token=token)
    assert listed.status == 200, listed.body
    # No issues: the default JSON of an empty list.
    assert listed.json().get("underwriting_issues", []) == []

    issue = str(uuid.uuid4())
    path = f"/v1/policies/{policy}/underwritingIssues/{issue}"
    blank = await gateway.request("POST", f"{path}:approve", {"note": "  "}, token=token)
    assert blank.status == 400, blank.body
    assert violations(blank.json()) == {"note": "required"}
    bad_id = await gateway.request(
        "POST", f"{path}:decline", {"note": "no", "request_id": "x"}, token=token
    )
    assert bad_id.status == 400, bad_id.body
    assert violations(bad_id.json()) == {"request_id": "must be a UUID"}
    missing = await gateway.request("POST", f"{path}:approve", {"note": "ok"}, token=token)
    assert missing.status == 404, missing.body
    assert reason(missing.json()) == "UNDERWRITING_ISSUE_NOT_FOUND"
    elsewhere = await gateway.request(
        "POST",
        f"/v1/policies/{uuid.uuid4()}/underwritingIssues/{issue}:decline",
        {"note": "no"},
        token=token,
    )
    assert elsewhere.status == 404, elsewhere.body
    assert reason(elsewhere.json()) == "POLICY_NOT_FOUND"


@pytest.mark.skipif(
    "raise_issues" not in inspect.getsource(policy_use_cases),
    reason="QuotePolicy does not call application.underwriting.raise_issues yet",
)
async def test_a_manual_underwriting_quote_is_approved_over_rest(suite: Suite) -> None:
    gateway, token = suite.gateway, suite.token

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = await gateway.request("POST", path, body, token=token)
        assert reply.status == 200, (path, reply.status, reply.body)
        made: dict[str, Any] = reply.json()
        return made

    def money(units: int) -> dict[str, Any]:
        return {"currency_code": "EUR", "units": str(units)}

    tag = uuid.uuid4().hex[:8].upper()
    product = await post(
        "/v1/products",
        {
            "code": f"UW-{tag}",
            "line_of_business": "MEDICAL",
            "name": "Underwritten health",
            "currency_code": "EUR",
            "base_premium": money(500),
            "term_months": 12,
            "coverages": [
                {
                    "code": "OUTPATIENT",
                    "name": "Outpatient care",
                    "limit": money(10_000),
                    "limit_period": "PER_YEAR",
                    "deductible": money(0),
                }
            ],
            "rating_rules": {"manual_underwriting": True},
        },
    )
    await post(f"/v1/products/{product['id']}:activate", {})
    start = datetime.date.today() + datetime.timedelta(days=5)
    policy = await post(
        "/v1/policies",
        {
            "policyholder_id": suite.ids["policyholder_id"],
            "product_id": product["id"],
            "effective_date": {"year": start.year, "month": start.month, "day": start.day},
            "sum_insured": money(100_000),
            "insured_members": [{"policyholder": True}],
        },
    )
    policy = await post(f"/v1/policies/{policy['id']}:quote", {"etag": policy["etag"]})
    assert policy["open_underwriting_issues"] == 1
    listed = await gateway.request(
        "GET", f"/v1/policies/{policy['id']}/underwritingIssues", token=token
    )
    (issue,) = listed.json()["underwriting_issues"]
    assert issue["code"] == "MANUAL_UNDERWRITING" and issue["state"] == "OPEN"

    refused = await gateway.request(
        "POST", f"/v1/policies/{policy['id']}:bind", {"etag": policy["etag"]}, token=token
    )
    assert refused.status == 400, refused.body
    assert reason(refused.json()) == "UNDERWRITING_ISSUES_OPEN"

    request_id = str(uuid.uuid4())
    body = {"note": "seen the medical report", "request_id": request_id}
    path = f"/v1/policies/{policy['id']}/underwritingIssues/{issue['id']}:approve"
    approved = await post(path, body)
    assert approved["state"] == "APPROVED"
    assert approved["decision_note"] == "seen the medical report" and approved["decided_by"]
    assert await post(path, body) == approved
    again = await gateway.request(
        "POST", path, {"note": "again", "request_id": str(uuid.uuid4())}, token=token
    )
    assert again.status == 400, again.body
    assert reason(again.json()) == "ISSUE_DECIDED"

    current = await gateway.request("GET", f"/v1/policies/{policy['id']}", token=token)
    bound = await post(f"/v1/policies/{policy['id']}:bind", {"etag": current.json()["etag"]})
    assert bound["state"] == "BOUND"
