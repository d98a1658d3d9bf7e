"""A REST client's whole journey through the gateway of the running suite.

The demo admin (seeded by `make up`) creates an underwriter and a claims
adjuster (CreateUser, then CreateRoleBinding); the underwriter registers a
policyholder, the admin a product with a coverage and puts it on sale, the
underwriter drafts, quotes and binds a policy; the adjuster files a claim and
takes it through submit, review, approval within band 1, payment and closure.
The audit logs of core and identity then name every step with the right actor,
and each core event carries the request id the gateway returned for its call.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import date, timedelta
from typing import Any

import pytest

from e2e.suite_harness import (
    ADMIN_EMAIL,
    Rest,
    SuiteProcess,
    json_date,
    money,
    policyholder_body,
    product_body,
)

pytestmark = pytest.mark.integration


def token_subject(token: str) -> str:
    """The ``sub`` of an access token (read without verifying: the server did)."""
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return str(claims["sub"])


def all_audit_events(rest: Rest, path: str, token: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    page = ""
    while True:
        reply = rest.call("GET", f"{path}?page_size=100&page_token={page}", token=token).ok()
        events += reply.get("audit_events", [])
        page = reply.get("next_page_token", "")
        if not page:
            return events


class Journey:
    """Calls through one REST client; remembers the request id of every change."""

    def __init__(self, rest: Rest) -> None:
        self.rest = rest
        self.request_ids: dict[tuple[str, str], str] = {}

    def change(self, action: str, method: str, path: str, body: Any, token: str) -> dict[str, Any]:
        reply = self.rest.call(method, path, body, token=token)
        result: dict[str, Any] = reply.ok()
        request_id = reply.header("x-request-id")
        assert request_id, reply.headers
        self.request_ids[(action, result["id"])] = request_id
        return result


def test_rest_journey_from_new_users_to_a_closed_claim_and_its_audit_trail(
    suite: SuiteProcess,
) -> None:
    rest = suite.rest()
    journey = Journey(rest)
    admin = rest.login(ADMIN_EMAIL)
    admin_id = token_subject(admin)

    # --- users with roles: CreateUser, then CreateRoleBinding ------------------------
    underwriter = rest.create_user(admin, "underwriter", "underwriter")
    adjuster = rest.create_user(admin, "claims-adjuster", "adjuster")
    assert underwriter["company_id"] == adjuster["company_id"] == suite.demo_company_id
    uw = rest.login(underwriter["email"])
    adj = rest.login(adjuster["email"])
    assert (token_subject(uw), token_subject(adj)) == (underwriter["id"], adjuster["id"])
    bindings = rest.call("GET", f"/v1/roleBindings?user_id={adjuster['id']}", token=admin).ok()
    assert [b["role_id"] for b in bindings["role_bindings"]] == [
        rest.role_ids(admin)["claims-adjuster"]
    ]

    # --- policyholder (underwriter) and product (admin: underwriters cannot) ---------
    holder = journey.change(
        "policyholder.create", "POST", "/v1/policyholders", policyholder_body(), uw
    )
    product = journey.change("product.create", "POST", "/v1/products", product_body(), admin)
    assert product["state"] == "DRAFT" and product["coverages"][0]["code"] == "OUTPATIENT"
    product = journey.change(
        "product.activate",
        "POST",
        f"/v1/products/{product['id']}:activate",
        {"etag": product["etag"]},
        admin,
    )
    assert product["state"] == "ACTIVE"

    # --- policy: draft, quote, bind (underwriter) ------------------------------------
    effective = date.today() - timedelta(days=20)
    policy = journey.change(
        "policy.create",
        "POST",
        "/v1/policies",
        {
            "policyholder_id": holder["id"],
            "product_id": product["id"],
            "effective_date": json_date(effective),
            "sum_insured": money(100000),
            "payment_frequency": "MONTHLY",
            "insured_members": [{"policyholder": True}],
        },
        uw,
    )
    assert policy["state"] == "DRAFT" and "policy_number" not in policy
    policy = journey.change(
        "policy.quote",
        "POST",
        f"/v1/policies/{policy['id']}:quote",
        {"etag": policy["etag"]},
        uw,
    )
    assert policy["state"] == "QUOTED" and policy["premium"]["currency_code"] == "EUR"
    # A request id chosen by the client travels to the service and into its audit log.
    chosen = f"e2e-bind-{uuid.uuid4().hex}"
    bound = rest.call(
        "POST",
        f"/v1/policies/{policy['id']}:bind",
        {"etag": policy["etag"]},
        token=uw,
        headers={"x-request-id": chosen},
    )
    policy = bound.ok()
    assert bound.header("x-request-id") == chosen
    journey.request_ids[("policy.bind", policy["id"])] = chosen
    assert policy["state"] == "IN_FORCE" and policy["policy_number"].startswith("POL-")

    # --- claim: file, submit, review, approve within band 1, pay, close (adjuster) ---
    claim = journey.change(
        "claim.create",
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
        adj,
    )
    assert claim["state"] == "DRAFT"
    # The product's 20 % co-insurance: of 800 claimed, 640 is payable (the most
    # that can be approved), 160 is the insured's share.
    steps = [
        ("submit", {"etag": claim["etag"]}, "SUBMITTED"),
        ("review", {}, "UNDER_REVIEW"),
        ("approve", {"approved_amount": money(640), "note": "within band 1"}, "APPROVED"),
        ("pay", {"payment_reference": "E2E-TRX-1"}, "PAID"),
        ("close", {"note": "done"}, "CLOSED"),
    ]
    for verb, body, state in steps:
        claim = journey.change(
            f"claim.{verb}", "POST", f"/v1/claims/{claim['id']}:{verb}", body, adj
        )
        assert claim["state"] == state, claim
        if verb == "review":  # the estimate the adjuster sees
            assert claim["benefit"]["coinsurance"] == {"currency_code": "EUR", "units": "160"}
            assert claim["benefit"]["payable"] == {"currency_code": "EUR", "units": "640"}
            assert not claim["benefit"].get("final"), claim["benefit"]
    assert claim["claim_number"].startswith("CLM-")
    assert claim["benefit"]["claimed"] == {"currency_code": "EUR", "units": "800"}
    assert claim["benefit"]["final"] is True
    assert claim["approved_amount"] == {"currency_code": "EUR", "units": "640"}
    assert claim["paid_amount"] == {"currency_code": "EUR", "units": "640"}
    log = rest.call("GET", f"/v1/claims/{claim['id']}/logEntries?page_size=50", token=adj).ok()
    entries = list(reversed(log["claim_log_entries"]))
    assert [e["action"] for e in entries] == ["create", *[step[0] for step in steps]]
    assert {e["actor_id"] for e in entries} == {adjuster["id"]}

    # --- the audit trail of core: every change, its actor and its request id ---------
    actors = {
        "policyholder.create": underwriter["id"],
        "product.create": admin_id,
        "product.activate": admin_id,
        "policy.create": underwriter["id"],
        "policy.quote": underwriter["id"],
        "policy.bind": underwriter["id"],
        **{f"claim.{verb}": adjuster["id"] for verb in ("create", *[s[0] for s in steps])},
    }
    ours = {holder["id"], product["id"], policy["id"], claim["id"]}
    core_events = [
        e for e in all_audit_events(rest, "/v1/core/auditEvents", admin) if e["entity_id"] in ours
    ]
    found = {(e["action"], e["entity_id"]): e for e in core_events}
    assert sorted(found) == sorted(journey.request_ids), sorted(found)
    for key, event in found.items():
        assert event["actor_id"] == actors[key[0]], event
        assert event["company_id"] == suite.demo_company_id, event
        assert event["request_id"] == journey.request_ids[key], event

    # --- the audit trail of identity: users, bindings and logins ---------------------
    identity_events = all_audit_events(rest, "/v1/identity/auditEvents", admin)
    seen = {(e["action"], e.get("entity_id"), e.get("actor_id")) for e in identity_events}
    for user in (underwriter, adjuster):
        assert ("user.create", user["id"], admin_id) in seen
        assert ("login.succeeded", user["id"], user["id"]) in seen
    bindings_made = [
        e
        for e in identity_events
        if e["action"] == "role_binding.create" and e["actor_id"] == admin_id
    ]
    bound_users = {e.get("detail", {}).get("user_id") for e in bindings_made}
    assert {underwriter["id"], adjuster["id"]} <= bound_users, bindings_made
    assert all(e["company_id"] == suite.demo_company_id for e in identity_events)
    # The client address identity saw is this client's, forwarded by the gateway
    # (which proves itself with the per-run gateway secret).
    logins = [
        e
        for e in identity_events
        if e["action"] == "login.succeeded" and e["entity_id"] == underwriter["id"]
    ]
    assert [e["detail"]["client_address"] for e in logins] == [rest.source]
