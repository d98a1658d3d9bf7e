"""Every kind of error a REST client meets, through the gateway of the running suite.

Each answer is checked for its HTTP status and for the one JSON shape,
``{code, message, details}`` with an ErrorInfo and a RequestInfo naming the
request id the gateway returned — whether the gateway (401, 429) or a service
(400, 403, 404, 409) produced it. Further companies are added the operator's
way while the suite runs (company CLI register-company, identity CLI
seed-demo), one of them suspended and reactivated by a platform admin.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest

from e2e.suite_harness import (
    ADMIN_EMAIL,
    PASSWORD,
    TENANT_STATUS_TTL_S,
    Rest,
    SuiteProcess,
    assert_error,
    error_details,
    json_date,
    money,
    policyholder_body,
    product_body,
    unique_email,
)

pytestmark = pytest.mark.integration

SERVICE_DOMAIN = "cardinsa.io"
GATEWAY_DOMAIN = "gateway.cardinsa.io"


@dataclass
class CompanyOne:
    """The demo company with a policy in force; access tokens of its admin, an
    underwriter and a claims adjuster."""

    admin: str
    underwriter: str
    adjuster: str
    holder: dict[str, Any]
    product: dict[str, Any]
    policy: dict[str, Any]


@pytest.fixture(scope="module")
def company_one(suite: SuiteProcess) -> CompanyOne:
    rest = suite.rest()
    admin = rest.login(ADMIN_EMAIL)
    underwriter = rest.login(rest.create_user(admin, "underwriter", "err-uw")["email"])
    adjuster = rest.login(rest.create_user(admin, "claims-adjuster", "err-adj")["email"])
    holder = rest.call("POST", "/v1/policyholders", policyholder_body(), token=admin).ok()
    product = rest.call("POST", "/v1/products", product_body(), token=admin).ok()
    product = rest.call(
        "POST", f"/v1/products/{product['id']}:activate", {"etag": product["etag"]}, token=admin
    ).ok()
    policy = rest.call(
        "POST",
        "/v1/policies",
        {
            "policyholder_id": holder["id"],
            "product_id": product["id"],
            "effective_date": json_date(date.today() - timedelta(days=20)),
            "sum_insured": money(100000),
            "payment_frequency": "MONTHLY",
            "insured_members": [{"policyholder": True}],
        },
        token=admin,
    ).ok()
    for verb in ("quote", "bind"):
        policy = rest.call(
            "POST", f"/v1/policies/{policy['id']}:{verb}", {"etag": policy["etag"]}, token=admin
        ).ok()
    assert policy["state"] == "IN_FORCE"
    return CompanyOne(admin, underwriter, adjuster, holder, product, policy)


def register_company(suite: SuiteProcess, name: str) -> str:
    company_id = str(uuid.uuid4())
    done = suite.cli(
        "cardinsa_company.cli",
        "register-company",
        "--company-id",
        company_id,
        "--display-name",
        name,
        "--country",
        "DE",
        "--currency",
        "EUR",
        "--time-zone",
        "Europe/Berlin",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"company {company_id} registered" in done.stdout, done.stdout
    return company_id


def company_with_admin(suite: SuiteProcess, name: str) -> tuple[str, str]:
    """A company registered with the company CLI and its admin seeded with identity's
    (runbook, "Adding a tenant"), while the suite runs. The admin's password is
    CARDINSA_DEMO_ADMIN_PASSWORD, which the suite's environment sets."""
    company_id = register_company(suite, name)
    email = unique_email("tenant-admin")
    # With the suite's own environment: an explicit --email wins over
    # CARDINSA_DEMO_ADMIN_EMAIL (the runbook's way of adding a tenant).
    seeded = suite.cli(
        "cardinsa_identity.cli", "seed-demo", "--company-id", company_id, "--email", email
    )
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    assert f"{email} (created) in company {company_id}" in seeded.stdout, seeded.stdout
    return company_id, email


# ------------------------------------------------------------------------ 400


def test_400_with_field_violations(suite: SuiteProcess, company_one: CompanyOne) -> None:
    rest = suite.rest()
    reply = rest.call(
        "POST",
        "/v1/users",
        {"user": {"email": "not-an-email"}, "password": "short"},
        token=company_one.admin,
    )
    body = assert_error(reply, 400, 3, reason="INVALID_ARGUMENT", domain=SERVICE_DOMAIN)
    [bad] = error_details(body, "BadRequest")
    fields = {v["field"] for v in bad["field_violations"]}
    assert {"user.email", "password"} <= fields, bad
    assert all(v["description"] for v in bad["field_violations"]), bad

    # core: a claim without what it needs, on a policy that exists.
    reply = rest.call(
        "POST",
        "/v1/claims",
        {"policy_id": company_one.policy["id"], "claimed_amount": money(-5)},
        token=company_one.adjuster,
    )
    body = assert_error(reply, 400, 3, reason="INVALID_ARGUMENT", domain=SERVICE_DOMAIN)
    [bad] = error_details(body, "BadRequest")
    assert bad["field_violations"], body
    assert all(v["field"].startswith("claim.") for v in bad["field_violations"]), bad


def test_400_when_a_cancellation_would_take_a_claims_cover(
    suite: SuiteProcess, company_one: CompanyOne
) -> None:
    """FAILED_PRECONDITION with its PreconditionFailure as JSON, the override's
    403 for an underwriter, and the override by the admin (JSON name
    ``overrideReason``)."""
    rest, admin = suite.rest(), company_one.admin
    policy = rest.call(
        "POST",
        "/v1/policies",
        {
            "policyholder_id": company_one.holder["id"],
            "product_id": company_one.product["id"],
            "effective_date": json_date(date.today() - timedelta(days=20)),
            "sum_insured": money(100000),
            "insured_members": [{"policyholder": True}],
        },
        token=admin,
    ).ok()
    for verb in ("quote", "bind"):
        policy = rest.call(
            "POST", f"/v1/policies/{policy['id']}:{verb}", {"etag": policy["etag"]}, token=admin
        ).ok()
    claim = rest.call(
        "POST",
        "/v1/claims",
        {
            "policy_id": policy["id"],
            "claimant": {"policyholder": True},
            "claim_type": "MEDICAL",
            "description": "surgery",
            "coverage_code": "OUTPATIENT",
            "incident_date": json_date(date.today() - timedelta(days=10)),
            "claimed_amount": money(400),
        },
        token=admin,
    ).ok()
    for verb, body in (
        ("submit", {}),
        ("review", {}),
        ("approve", {"approved_amount": money(300)}),
    ):
        claim = rest.call("POST", f"/v1/claims/{claim['id']}:{verb}", body, token=admin).ok()
    cancel = {
        "reason": "FRAUD",
        "effective_date": json_date(date.today() - timedelta(days=20)),
    }
    path = f"/v1/policies/{policy['id']}:cancel"
    reply = rest.call("POST", path, cancel, token=company_one.underwriter)
    body = assert_error(reply, 400, 9, reason="CLAIMS_WOULD_LOSE_COVER", domain=SERVICE_DOMAIN)
    [info] = error_details(body, "ErrorInfo")
    assert info["metadata"]["claim_ids"] == claim["id"], info
    assert info["metadata"]["claim_numbers"] == claim["claim_number"], info
    [failure] = error_details(body, "PreconditionFailure")
    assert [(v["type"], v["subject"]) for v in failure["violations"]] == [
        ("CLAIM_COVER", f"claims/{claim['id']}")
    ], failure

    override = {**cancel, "overrideReason": "fraud finding: void from the start"}
    reply = rest.call("POST", path, override, token=company_one.underwriter)
    assert_error(reply, 403, 7, reason="OVERRIDE_NOT_PERMITTED", domain=SERVICE_DOMAIN)
    cancelled = rest.call("POST", path, override, token=admin).ok()
    assert cancelled["state"] == "CANCELLED", cancelled


# ------------------------------------------------------------------------ 401


def test_401_without_a_token_and_with_a_bad_one(
    suite: SuiteProcess, company_one: CompanyOne
) -> None:
    rest = suite.rest()
    path = f"/v1/policies/{company_one.policy['id']}"
    missing = rest.call("GET", path)
    assert_error(missing, 401, 16, reason="UNAUTHENTICATED", domain=GATEWAY_DOMAIN)
    assert (missing.header("www-authenticate") or "").startswith("Bearer")

    garbage = rest.call("GET", path, token="not.a.jwt")
    assert_error(garbage, 401, 16, reason="UNAUTHENTICATED", domain=GATEWAY_DOMAIN)
    assert "invalid_token" in (garbage.header("www-authenticate") or "")

    # A real token whose signature was changed.
    header, payload, signature = company_one.admin.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    forged = rest.call("GET", path, token=f"{header}.{payload}.{flipped}")
    assert_error(forged, 401, 16, reason="UNAUTHENTICATED", domain=GATEWAY_DOMAIN)

    # Not a bearer token at all (Basic): no token as far as the gateway is concerned.
    basic = rest.call("GET", path, headers={"authorization": "Basic YWRtaW46YWRtaW4="})
    assert_error(basic, 401, 16, domain=GATEWAY_DOMAIN)


# ------------------------------------------------------------------------ 403


def test_403_without_the_permission(suite: SuiteProcess, company_one: CompanyOne) -> None:
    rest = suite.rest()
    # Underwriters do not create products.
    reply = rest.call("POST", "/v1/products", product_body(), token=company_one.underwriter)
    body = assert_error(reply, 403, 7, reason="PERMISSION_MISSING", domain=SERVICE_DOMAIN)
    assert "products.create" in str(body), body

    # A claims adjuster approves up to band 1 only (1 000 EUR by default).
    claim = rest.call(
        "POST",
        "/v1/claims",
        {
            "policy_id": company_one.policy["id"],
            "claimant": {"policyholder": True},
            "claim_type": "MEDICAL",
            "description": "surgery",
            "coverage_code": "OUTPATIENT",
            "incident_date": json_date(date.today() - timedelta(days=1)),
            "claimed_amount": money(4000),
        },
        token=company_one.adjuster,
    ).ok()
    for verb in ("submit", "review"):
        rest.call("POST", f"/v1/claims/{claim['id']}:{verb}", {}, token=company_one.adjuster).ok()
    reply = rest.call(
        "POST",
        f"/v1/claims/{claim['id']}:approve",
        {"approved_amount": money(3000)},
        token=company_one.adjuster,
    )
    body = assert_error(reply, 403, 7, reason="APPROVAL_AUTHORITY_EXCEEDED", domain=SERVICE_DOMAIN)
    [info] = error_details(body, "ErrorInfo")
    assert info["metadata"]["required_permission"] == "claims.approve_band_2", info
    # The admin holds every band, but not more than the cover allows: of 4000
    # claimed the product's 20 % co-insurance leaves 3200 payable.
    reply = rest.call(
        "POST",
        f"/v1/claims/{claim['id']}:approve",
        {"approved_amount": money(4000)},
        token=company_one.admin,
    )
    body = assert_error(reply, 400, 3, reason="EXCEEDS_PAYABLE", domain=SERVICE_DOMAIN)
    [bad] = error_details(body, "BadRequest")
    assert bad["field_violations"] == [
        {
            "field": "approved_amount",
            "description": "must not exceed the payable amount 3200.00 EUR",
        }
    ], bad
    approved = rest.call(
        "POST",
        f"/v1/claims/{claim['id']}:approve",
        {"approved_amount": money(3200)},
        token=company_one.admin,
    ).ok()
    assert approved["state"] == "APPROVED"
    assert approved["approved_amount"] == {"currency_code": "EUR", "units": "3200"}
    assert approved["benefit"]["payable"] == approved["approved_amount"]


# ------------------------------------------------------------------------ 404


def test_404_for_another_companys_resource(suite: SuiteProcess, company_one: CompanyOne) -> None:
    """Company 2 (registered and seeded with the operator CLIs while the suite
    runs) asks for company 1's policy: exactly the answer for a policy that does
    not exist."""
    _, other_email = company_with_admin(suite, "Other Insurance")
    rest = suite.rest()
    other = rest.login(other_email)
    policy_id = company_one.policy["id"]
    theirs = rest.call("GET", f"/v1/policies/{policy_id}", token=other)
    body = assert_error(theirs, 404, 5, reason="POLICY_NOT_FOUND", domain=SERVICE_DOMAIN)
    nobody = str(uuid.uuid4())
    missing = assert_error(
        rest.call("GET", f"/v1/policies/{nobody}", token=other), 404, 5, reason="POLICY_NOT_FOUND"
    )
    assert body["message"] == missing["message"]
    [info], [missing_info] = error_details(body, "ErrorInfo"), error_details(missing, "ErrorInfo")
    assert info["metadata"] == {"id": policy_id} and missing_info["metadata"] == {"id": nobody}

    holder = rest.call("GET", f"/v1/policyholders/{company_one.holder['id']}", token=other)
    assert_error(holder, 404, 5, domain=SERVICE_DOMAIN)
    # Company 1 is not visible either; company 2's own lists hold nothing of company 1.
    assert_error(rest.call("GET", f"/v1/companies/{suite.demo_company_id}", token=other), 404, 5)
    listed = rest.call("GET", "/v1/policies?page_size=100", token=other).ok()
    assert listed.get("policies", []) == []
    # And company 1 still reads its own policy.
    mine = rest.call("GET", f"/v1/policies/{policy_id}", token=company_one.admin).ok()
    assert mine["id"] == policy_id


def test_seed_demo_with_email_in_the_suites_environment(suite: SuiteProcess) -> None:
    other_company = register_company(suite, "Third Insurance")
    other_email = unique_email("third-admin")
    seeded = suite.cli(
        "cardinsa_identity.cli",
        "seed-demo",
        "--company-id",
        other_company,
        "--email",
        other_email,
    )
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    assert f"{other_email} (created) in company {other_company}" in seeded.stdout, seeded.stdout


def test_a_suspended_company_is_refused_by_every_service_within_the_ttl(
    suite: SuiteProcess,
) -> None:
    """A platform admin suspends a company through the gateway; within
    CARDINSA_TENANT_STATUS_TTL_S (1 s here) identity, company and core refuse its
    users' tokens and logins; reactivated, they work again."""
    platform = (suite.state_dir / "platform-company-id").read_text().strip()
    operator = unique_email("ops")
    made = suite.cli(
        "cardinsa_identity.cli",
        "create-platform-admin",
        "--email",
        operator,
        "--company-id",
        platform,
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert made.returncode == 0, made.stdout + made.stderr
    company_id, email = company_with_admin(suite, "Suspended Insurance")
    rest = suite.rest()
    ops, tenant = rest.login(operator), rest.login(email)
    reads = ["/v1/users?page_size=1", f"/v1/companies/{company_id}", "/v1/policies?page_size=1"]

    def answers() -> list[int]:
        return [rest.call("GET", path, token=tenant).status for path in reads]

    assert answers() == [200, 200, 200]
    suspended = rest.call(
        "POST", f"/v1/companies/{company_id}:suspend", {"reason": "e2e: unpaid"}, token=ops
    ).ok()
    assert suspended["state"] == "SUSPENDED"
    deadline = time.monotonic() + TENANT_STATUS_TTL_S + 5
    while answers() != [403, 403, 403] and time.monotonic() < deadline:
        time.sleep(0.2)
    for path in reads:
        assert_error(rest.call("GET", path, token=tenant), 403, 7, reason="TENANT_NOT_ACTIVE")
    login = rest.call("POST", "/v1/auth:login", {"email": email, "password": PASSWORD})
    assert_error(login, 403, 7, reason="TENANT_NOT_ACTIVE")

    rest.call("POST", f"/v1/companies/{company_id}:reactivate", {"reason": "paid"}, token=ops).ok()
    deadline = time.monotonic() + TENANT_STATUS_TTL_S + 5
    while answers() != [200, 200, 200] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert answers() == [200, 200, 200]


# ------------------------------------------------------------------------ 409


def test_409_for_a_duplicate(suite: SuiteProcess, company_one: CompanyOne) -> None:
    rest = suite.rest()
    for email in (ADMIN_EMAIL, ADMIN_EMAIL.upper()):  # emails are unique regardless of case
        reply = rest.call(
            "POST",
            "/v1/users",
            {"user": {"email": email}, "password": PASSWORD},
            token=company_one.admin,
        )
        body = assert_error(reply, 409, 6, reason="EMAIL_TAKEN", domain=SERVICE_DOMAIN)
        [bad] = error_details(body, "BadRequest")
        assert [v["field"] for v in bad["field_violations"]] == ["user.email"], bad
    # core: a second product with the same code in the same company.
    duplicate = {**product_body(), "code": company_one.product["code"]}
    reply = rest.call("POST", "/v1/products", duplicate, token=company_one.admin)
    body = assert_error(reply, 409, 6, reason="PRODUCT_CODE_TAKEN", domain=SERVICE_DOMAIN)
    [bad] = error_details(body, "BadRequest")
    assert [v["field"] for v in bad["field_violations"]] == ["product.code"], bad


def test_409_for_a_stale_etag(suite: SuiteProcess, company_one: CompanyOne) -> None:
    """ABORTED (the etag no longer matches) — the transcoder maps it to 409."""
    rest = suite.rest()
    holder = rest.call(
        "POST", "/v1/policyholders", policyholder_body(), token=company_one.underwriter
    ).ok()
    path = f"/v1/policyholders/{holder['id']}?update_mask=given_name"
    first = rest.call(
        "PATCH",
        path,
        {"given_name": "First", "etag": holder["etag"]},
        token=company_one.underwriter,
    ).ok()
    assert first["given_name"] == "First" and first["etag"] != holder["etag"]
    stale = rest.call(
        "PATCH",
        path,
        {"given_name": "Second", "etag": holder["etag"]},
        token=company_one.underwriter,
    )
    assert_error(stale, 409, 10, reason="ETAG_MISMATCH", domain=SERVICE_DOMAIN)
    # A lifecycle call with a stale etag answers the same.
    product = company_one.product
    retired = rest.call(
        "POST",
        f"/v1/products/{product['id']}:retire",
        {"etag": '"not-the-current-etag"'},
        token=company_one.admin,
    )
    assert_error(retired, 409, 10, reason="ETAG_MISMATCH", domain=SERVICE_DOMAIN)
    current = rest.call("GET", f"/v1/policyholders/{holder['id']}", token=company_one.admin).ok()
    assert current["given_name"] == "First"


# ------------------------------------------------------------------------ 429


def test_429_after_too_many_logins(suite: SuiteProcess) -> None:
    if not suite.aliases:
        pytest.skip("needs a second loopback address (127.0.0.2) as a client of its own")
    rest: Rest = suite.rest()  # a client address no other test uses
    for attempt in range(suite.login_limit):
        reply = rest.call("POST", "/v1/auth:login", {"email": ADMIN_EMAIL, "password": PASSWORD})
        assert reply.status == 200, (attempt, reply.status, reply.body)
    limited = rest.call("POST", "/v1/auth:login", {"email": ADMIN_EMAIL, "password": PASSWORD})
    assert_error(limited, 429, 8, reason="RATE_LIMITED", domain=GATEWAY_DOMAIN)
    assert limited.header("x-ratelimit-limit") == str(suite.login_limit)
    assert limited.header("x-ratelimit-remaining") == "0"
    # Per client address: another client still logs in; and only login is limited.
    token = suite.rest().login(ADMIN_EMAIL)
    assert rest.call("GET", "/v1/users?page_size=1", token=token).status == 200
