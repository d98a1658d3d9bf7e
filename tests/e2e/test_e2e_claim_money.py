"""Claims pay only what the cover allows (docs/claims.md), exercised
through the REST gateway alone, as a new front-end client would (JSON bodies,
google.type.Money as ``{currency_code, units, nanos}``, errors as
``google.rpc.Status`` with an ErrorInfo reason and field violations).

Each scenario runs on a product and policy of its own in the demo company, so
the limit accumulators of one test never touch another's. The demo admin holds
every approval band; a claims adjuster holds band 1 (up to 1 000 EUR).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from e2e.suite_harness import (
    ADMIN_EMAIL,
    Rest,
    SuiteProcess,
    assert_error,
    error_details,
    json_date,
    money,
    policyholder_body,
    product_body,
)

pytestmark = pytest.mark.integration

DOMAIN = "cardinsa.io"
TODAY = date.today()
INVALID_ARGUMENT, FAILED_PRECONDITION, PERMISSION_DENIED = 3, 9, 7


def amount(value: dict[str, Any] | None) -> Decimal:
    """A google.type.Money JSON value as a Decimal (absent or zero fields are 0)."""
    if not value:
        return Decimal(0)
    return Decimal(value.get("units", "0")) + Decimal(value.get("nanos", 0)) / 10**9


def breakdown(claim: dict[str, Any]) -> dict[str, Decimal]:
    """The claim's benefit as numbers; the parts always add up to the claimed amount."""
    benefit = claim["benefit"]
    parts = {
        name: amount(benefit.get(name))
        for name in ("claimed", "deductible", "copay", "coinsurance", "limit_cut", "payable")
    }
    assert parts["claimed"] == amount(claim["claimed_amount"]), claim
    assert parts["claimed"] == sum(v for k, v in parts.items() if k != "claimed"), benefit
    for money_value in benefit.values():
        if isinstance(money_value, dict):
            assert money_value["currency_code"] == "EUR", benefit
    return parts


def coverage(
    *, limit: int, period: str, deductible: int = 0, coinsurance_bp: int = 2000
) -> dict[str, Any]:
    return {
        "code": "OUTPATIENT",
        "name": "Outpatient care",
        "limit": money(limit),
        "limit_period": period,
        "deductible": money(deductible),
        "coinsurance_basis_points": coinsurance_bp,
    }


@dataclass
class Desk:
    """One REST client with the demo admin's and a claims adjuster's tokens."""

    rest: Rest
    admin: str
    adjuster: str
    adjuster_id: str

    # --- plumbing ----------------------------------------------------------------------

    def ok(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        return self.rest.call(method, path, body, token=token or self.admin).ok()

    def refused(
        self,
        path: str,
        body: Any,
        *,
        status: int,
        code: int,
        reason: str,
        token: str | None = None,
    ) -> dict[str, Any]:
        """A POST that must fail with exactly this HTTP status, gRPC code and reason."""
        reply = self.rest.call("POST", path, body, token=token or self.admin)
        return assert_error(reply, status, code, reason=reason, domain=DOMAIN)

    # --- set-up ------------------------------------------------------------------------

    def product(self, cover: dict[str, Any]) -> dict[str, Any]:
        product = self.ok("POST", "/v1/products", {**product_body(), "coverages": [cover]})
        assert product["coverages"][0]["limit_period"] == cover["limit_period"], product
        return self.ok("POST", f"/v1/products/{product['id']}:activate", {"etag": product["etag"]})

    def policy(
        self, product: dict[str, Any], *, dependent: bool = False, days_ago: int = 25
    ) -> tuple[dict[str, Any], str]:
        """A policy in force since ``days_ago`` days; with ``dependent`` the
        policyholder's child is insured too (its id is returned, else "")."""
        holder_body = policyholder_body()
        if dependent:
            holder_body["dependents"] = [
                {
                    "relation": "CHILD",
                    "given_name": "Lina",
                    "family_name": holder_body["family_name"],
                    "date_of_birth": {"year": 2015, "month": 5, "day": 1},
                }
            ]
        holder = self.ok("POST", "/v1/policyholders", holder_body)
        child = holder["dependents"][0]["id"] if dependent else ""
        members: list[dict[str, Any]] = [{"policyholder": True}]
        if child:
            members.append({"dependent_id": child})
        policy = self.ok(
            "POST",
            "/v1/policies",
            {
                "policyholder_id": holder["id"],
                "product_id": product["id"],
                "effective_date": json_date(TODAY - timedelta(days=days_ago)),
                "sum_insured": money(100000),
                "payment_frequency": "MONTHLY",
                "insured_members": members,
            },
        )
        for verb in ("quote", "bind"):
            policy = self.ok(
                "POST", f"/v1/policies/{policy['id']}:{verb}", {"etag": policy["etag"]}
            )
        assert policy["state"] == "IN_FORCE", policy
        return policy, child

    def claim(
        self,
        policy: dict[str, Any],
        claimed: int,
        *,
        until: str = "UNDER_REVIEW",
        dependent: str = "",
        incident_days_ago: int = 2,
    ) -> dict[str, Any]:
        """A claim filed by the adjuster, taken to SUBMITTED or UNDER_REVIEW."""
        claimant = {"dependent_id": dependent} if dependent else {"policyholder": True}
        claim = self.ok(
            "POST",
            "/v1/claims",
            {
                "policy_id": policy["id"],
                "claimant": claimant,
                "claim_type": "MEDICAL",
                "description": "outpatient treatment",
                "coverage_code": "OUTPATIENT",
                "incident_date": json_date(TODAY - timedelta(days=incident_days_ago)),
                "claimed_amount": money(claimed),
            },
            self.adjuster,
        )
        verbs = ["submit"] + (["review"] if until == "UNDER_REVIEW" else [])
        for verb in verbs:
            claim = self.ok("POST", f"/v1/claims/{claim['id']}:{verb}", {}, self.adjuster)
        assert claim["state"] == until, claim
        return claim

    def get(self, claim: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = self.ok("GET", f"/v1/claims/{claim['id']}")
        return found

    def approve(
        self, claim: dict[str, Any], units: int | str, token: str | None = None
    ) -> dict[str, Any]:
        approved: dict[str, Any] = self.ok(
            "POST",
            f"/v1/claims/{claim['id']}:approve",
            {"approved_amount": money(units), "request_id": str(uuid.uuid4())},
            token,
        )
        assert approved["state"] in ("APPROVED", "PAID"), approved
        assert amount(approved["approved_amount"]) == Decimal(units), approved
        assert approved["benefit"]["final"] is True, approved
        return approved

    def exceeds_payable(
        self, claim: dict[str, Any], units: int | str, payable: str, token: str | None = None
    ) -> None:
        """Approving ``units`` is refused, naming the payable amount (e.g. "1400.00")."""
        body = self.refused(
            f"/v1/claims/{claim['id']}:approve",
            {"approved_amount": money(units)},
            status=400,
            code=INVALID_ARGUMENT,
            reason="EXCEEDS_PAYABLE",
            token=token,
        )
        [bad] = error_details(body, "BadRequest")
        assert bad["field_violations"] == [
            {
                "field": "approved_amount",
                "description": f"must not exceed the payable amount {payable} EUR",
            }
        ], bad
        [info] = error_details(body, "ErrorInfo")
        assert Decimal(info["metadata"]["payable_amount"]) == Decimal(payable), info

    def payment(
        self,
        claim: dict[str, Any],
        units: int | str,
        *,
        token: str | None = None,
        request_id: str | None = None,
        currency: str = "EUR",
        cost_type: str = "INDEMNITY",
    ) -> Any:
        """The reply of CreateClaimPayment (not yet checked). The body is the
        payment itself (``body: "payment"``): the request id is a query parameter."""
        return self.rest.call(
            "POST",
            f"/v1/claims/{claim['id']}/payments?request_id={request_id or uuid.uuid4()}",
            {
                "cost_type": cost_type,
                "payee": "Amira Haddad",
                "method": "BANK_TRANSFER",
                "reference": "E2E-TRX",
                "amount": money(units, currency),
            },
            token=token or self.admin,
        )

    def pay(self, claim: dict[str, Any], units: int | str, token: str | None = None) -> Any:
        payment = self.payment(claim, units, token=token).ok()
        assert payment["state"] == "PENDING" and amount(payment["amount"]) == Decimal(units)
        return payment

    def void(self, claim: dict[str, Any], payment: dict[str, Any], token: str | None = None) -> Any:
        return self.rest.call(
            "POST",
            f"/v1/claims/{claim['id']}/payments/{payment['id']}:void",
            {"reason": "wrong account"},
            token=token or self.admin,
        )

    def payments(self, claim: dict[str, Any]) -> list[dict[str, Any]]:
        listed = self.ok("GET", f"/v1/claims/{claim['id']}/payments?page_size=100")
        found: list[dict[str, Any]] = listed.get("payments", [])
        return found

    def paid_by_payments(self, claim: dict[str, Any]) -> Decimal:
        """The sum of the claim's indemnity payments that are not voided."""
        return sum(
            (
                amount(p["amount"])
                for p in self.payments(claim)
                if p["cost_type"] == "INDEMNITY" and p["state"] != "VOIDED"
            ),
            Decimal(0),
        )


@pytest.fixture(scope="module")
def desk(suite: SuiteProcess) -> Desk:
    rest = suite.rest()  # one client address: two logins for the whole module
    admin = rest.login(ADMIN_EMAIL)
    adjuster = rest.create_user(admin, "claims-adjuster", "money-adj")
    return Desk(rest, admin, rest.login(adjuster["email"]), adjuster["id"])


# ------------------------------------------------------------------- a. limits


def test_three_claims_share_one_term_limit_with_deductible_and_coinsurance(desk: Desk) -> None:
    """5 000 PER_TERM, 500 deductible, 20 % co-insurance; three claims of 5 000."""
    product = desk.product(coverage(limit=5000, period="PER_TERM", deductible=500))
    policy, _ = desk.policy(product)

    first = desk.claim(policy, 5000)
    assert breakdown(desk.get(first)) == {
        "claimed": 5000,
        "deductible": 500,
        "copay": 0,
        "coinsurance": 900,
        "limit_cut": 0,
        "payable": 3600,
    }
    assert desk.get(first)["benefit"].get("final", False) is False  # an estimate
    desk.exceeds_payable(first, 5000, "3600.00")
    desk.exceeds_payable(first, 4500, "3600.00")  # the claim less the deductible
    first = desk.approve(first, 3600)

    second = desk.claim(policy, 5000)
    assert breakdown(desk.get(second)) == {
        "claimed": 5000,
        "deductible": 0,  # consumed by the first claim in this term
        "copay": 0,
        "coinsurance": 1000,
        "limit_cut": 2600,
        "payable": 1400,  # what remains of the 5 000 limit
    }
    desk.exceeds_payable(second, 1401, "1400.00")
    body = desk.refused(
        f"/v1/claims/{second['id']}:approve",
        {"approved_amount": {"currency_code": "EUR", "units": "1400", "nanos": 10_000_000}},
        status=400,
        code=INVALID_ARGUMENT,
        reason="EXCEEDS_PAYABLE",
    )
    assert "1400.00 EUR" in str(body)  # a cent more is refused too
    second = desk.approve(second, 1400)

    third = desk.claim(policy, 5000)
    assert breakdown(desk.get(third)) == {
        "claimed": 5000,
        "deductible": 0,
        "copay": 0,
        "coinsurance": 1000,
        "limit_cut": 4000,
        "payable": 0,
    }
    desk.exceeds_payable(third, 1, "0.00")
    third = desk.approve(third, 0)  # the cover is exhausted: nothing is owed
    assert amount(third.get("indemnity_reserve")) == 0
    assert_error(
        desk.rest.call(
            "POST", f"/v1/claims/{third['id']}:pay", {"payment_reference": "X"}, token=desk.admin
        ),
        400,
        FAILED_PRECONDITION,
        reason="NOTHING_TO_PAY",
    )
    closed = desk.ok("POST", f"/v1/claims/{third['id']}:close", {"note": "limit exhausted"})
    assert closed["state"] == "CLOSED"

    for claim in (first, second):
        paid = desk.ok("POST", f"/v1/claims/{claim['id']}:pay", {"payment_reference": "E2E"})
        assert paid["state"] == "PAID" and paid["paid_amount"] == paid["approved_amount"]
    claims = [desk.get(c) for c in (first, second, third)]
    approved = sum((amount(c.get("approved_amount")) for c in claims), Decimal(0))
    paid_total = sum((desk.paid_by_payments(c) for c in claims), Decimal(0))
    # Exactly what the cover allows: the 5 000 limit, never more.
    assert approved == paid_total == 5000
    assert [amount(c.get("paid_amount")) for c in claims] == [3600, 1400, 0]
    # What the insured bore and what the limit cut off make up the rest of 15 000.
    borne = sum(
        (b["deductible"] + b["coinsurance"] + b["limit_cut"] for b in map(breakdown, claims)),
        Decimal(0),
    )
    assert borne + paid_total == 15000


# ------------------------------------------------------------------- b. cover


def test_approval_rechecks_the_cover_after_cancellation_lapse_and_endorsement(
    desk: Desk,
) -> None:
    """A claim under review may still be cancelled, lapsed or endorsed under; the
    approval afterwards finds the cover gone and is refused."""
    product = desk.product(coverage(limit=10000, period="PER_YEAR"))

    # Cancelled back to before the incident date.
    cancelled, _ = desk.policy(product)
    claim = desk.claim(cancelled, 800, incident_days_ago=10)
    assert breakdown(claim)["payable"] == 640
    policy = desk.ok(
        "POST",
        f"/v1/policies/{cancelled['id']}:cancel",
        {"reason": "MEMBER_REQUEST", "effective_date": json_date(TODAY - timedelta(days=20))},
    )
    assert policy["state"] == "CANCELLED", policy
    body = desk.refused(
        f"/v1/claims/{claim['id']}:approve",
        {"approved_amount": money(640)},
        status=400,
        code=FAILED_PRECONDITION,
        reason="POLICY_NOT_IN_FORCE",
    )
    [info] = error_details(body, "ErrorInfo")
    assert info["metadata"]["incident_date"] == (TODAY - timedelta(days=10)).isoformat(), info
    after = desk.get(claim)
    assert after["state"] == "UNDER_REVIEW" and "approved_amount" not in after, after

    # Lapsed back to before the incident date.
    lapsed, _ = desk.policy(product)
    claim = desk.claim(lapsed, 800, incident_days_ago=10)
    policy = desk.ok(
        "POST",
        f"/v1/policies/{lapsed['id']}:lapse",
        {"lapse_date": json_date(TODAY - timedelta(days=20)), "note": "premium unpaid"},
    )
    assert policy["state"] == "LAPSED", policy
    desk.refused(
        f"/v1/claims/{claim['id']}:approve",
        {"approved_amount": money(640)},
        status=400,
        code=FAILED_PRECONDITION,
        reason="POLICY_NOT_IN_FORCE",
    )
    assert desk.get(claim)["state"] == "UNDER_REVIEW"

    # The claimant (a dependent) endorsed away before the incident date.
    endorsed, child = desk.policy(product, dependent=True)
    child_claim = desk.claim(endorsed, 800, dependent=child, incident_days_ago=10)
    assert breakdown(child_claim)["payable"] == 640
    policy = desk.ok(
        "POST",
        f"/v1/policies/{endorsed['id']}:endorse",
        {
            "effective_date": json_date(TODAY - timedelta(days=20)),
            "description": "the child leaves the policy",
            "policy": {"insured_members": [{"policyholder": True}]},
            "update_mask": "insuredMembers",
        },
    )
    assert policy["version"] == 2 and policy["insured_members"] == [{"policyholder": True}]
    body = desk.refused(
        f"/v1/claims/{child_claim['id']}:approve",
        {"approved_amount": money(640)},
        status=400,
        code=FAILED_PRECONDITION,
        reason="CLAIMANT_NOT_INSURED",
    )
    [info] = error_details(body, "ErrorInfo")
    assert info["metadata"]["policy_version"] == "2", info
    # The policyholder is still insured on the same policy: the cover is checked per member.
    holder_claim = desk.claim(endorsed, 800, incident_days_ago=10)
    assert desk.approve(holder_claim, 640)["state"] == "APPROVED"
    assert desk.get(child_claim)["state"] == "UNDER_REVIEW"


# ------------------------------------------------------------------- c. payments


def test_partial_payments_void_close_reopen_overpayment_and_deny(desk: Desk) -> None:
    product = desk.product(coverage(limit=1000, period="PER_YEAR"))
    policy, _ = desk.policy(product)
    claim = desk.claim(policy, 1000)
    claim = desk.approve(claim, 800, desk.adjuster)
    path = f"/v1/claims/{claim['id']}"

    first = desk.pay(claim, 300, desk.adjuster)
    second = desk.pay(claim, 200, desk.adjuster)
    now = desk.get(claim)
    assert (now["state"], amount(now["paid_amount"]), amount(now["indemnity_reserve"])) == (
        "APPROVED",
        500,
        300,
    )
    body = assert_error(
        desk.payment(claim, 301, token=desk.adjuster),
        400,
        FAILED_PRECONDITION,
        reason="EXCEEDS_RESERVE",
        domain=DOMAIN,
    )
    [info] = error_details(body, "ErrorInfo")
    assert Decimal(info["metadata"]["open_reserve"]) == 300, info

    voided = desk.void(claim, first, desk.adjuster).ok()
    assert voided["state"] == "VOIDED" and voided["void_reason"] == "wrong account"
    now = desk.get(claim)
    assert (amount(now["paid_amount"]), amount(now["indemnity_reserve"])) == (200, 600)
    issued = desk.ok("POST", f"{path}/payments/{second['id']}:issue", {}, desk.adjuster)
    cleared = desk.ok("POST", f"{path}/payments/{second['id']}:clear", {}, desk.adjuster)
    assert (issued["state"], cleared["state"]) == ("ISSUED", "CLEARED")
    # Cleared money comes back only as a recovery, not as a void.
    assert_error(desk.void(claim, second, desk.adjuster), 400, 9, reason="INVALID_STATE_TRANSITION")
    desk.pay(claim, 600, desk.adjuster)
    now = desk.get(claim)
    assert now["state"] == "PAID" and amount(now["paid_amount"]) == 800
    assert amount(now.get("indemnity_reserve")) == 0
    assert [(p["state"], amount(p["amount"])) for p in desk.payments(claim)] == [
        ("VOIDED", 300),
        ("CLEARED", 200),
        ("PENDING", 600),
    ]
    assert desk.paid_by_payments(claim) == 800

    assert desk.ok("POST", f"{path}:close", {"note": "settled"}, desk.adjuster)["state"] == "CLOSED"
    reopened = desk.ok(
        "POST",
        f"{path}:reopen",
        {"reason": "invoice corrected", "claimed_amount": money(900)},
        desk.adjuster,
    )
    assert reopened["state"] == "UNDER_REVIEW" and "approved_amount" not in reopened
    assert amount(reopened["paid_amount"]) == 800  # paid money stays counted
    assert breakdown(reopened)["payable"] == 720  # 900 less 20 %
    # Denying a claim with money paid is refused until it is recovered.
    desk.refused(
        f"{path}:deny",
        {"reason": "fraud suspected"},
        status=400,
        code=FAILED_PRECONDITION,
        reason="CLAIM_HAS_PAYMENTS",
        token=desk.adjuster,
    )
    # Approving below what is paid is refused: the overpayment is recovered first.
    desk.refused(
        f"{path}:approve",
        {"approved_amount": money(720)},
        status=400,
        code=FAILED_PRECONDITION,
        reason="APPROVED_BELOW_PAID",
        token=desk.adjuster,
    )
    recovery = desk.ok(
        "POST",
        f"{path}/recoveries",
        {"kind": "OVERPAYMENT", "amount": money(80), "reference": "REFUND-1"},
        desk.adjuster,
    )
    assert recovery["kind"] == "OVERPAYMENT" and amount(recovery["amount"]) == 80
    assert amount(desk.get(claim)["paid_amount"]) == 720
    relowered = desk.approve(claim, 720, desk.adjuster)
    assert relowered["state"] == "PAID"  # the new, lower total is already paid
    assert amount(relowered["paid_amount"]) == 720

    # Once more: closed, reopened, and this time denied after the refund of it all.
    desk.ok("POST", f"{path}:close", {"note": "settled again"}, desk.adjuster)
    desk.ok("POST", f"{path}:reopen", {"reason": "fraud review"}, desk.adjuster)
    # Reopened, the claim still holds the 720 paid in the limit: another claim sees 280.
    assert breakdown(desk.claim(policy, 1000))["payable"] == 280
    desk.refused(
        f"{path}:deny",
        {"reason": "fraud"},
        status=400,
        code=FAILED_PRECONDITION,
        reason="CLAIM_HAS_PAYMENTS",
        token=desk.adjuster,
    )
    desk.ok(
        "POST", f"{path}/recoveries", {"kind": "OVERPAYMENT", "amount": money(720)}, desk.adjuster
    )
    denied = desk.ok("POST", f"{path}:deny", {"reason": "fraud"}, desk.adjuster)
    assert denied["state"] == "DENIED" and amount(denied.get("paid_amount")) == 0
    recoveries = desk.ok("GET", f"{path}/recoveries")["recoveries"]
    assert [amount(r["amount"]) for r in recoveries] == [80, 720]
    # Refunded and denied, the claim holds nothing of the 1 000 limit any more.
    assert breakdown(desk.claim(policy, 1000))["payable"] == 800


# ------------------------------------------------------------------- d. withdraw, deny, unapprove


def test_withdraw_and_deny_from_submitted_and_unapprove_gives_the_limit_back(desk: Desk) -> None:
    product = desk.product(coverage(limit=1000, period="PER_YEAR"))
    policy, _ = desk.policy(product)

    withdrawn = desk.claim(policy, 400, until="SUBMITTED")
    withdrawn = desk.ok(
        "POST",
        f"/v1/claims/{withdrawn['id']}:withdraw",
        {"reason": "paid privately"},
        desk.adjuster,
    )
    assert withdrawn["state"] == "WITHDRAWN" and withdrawn["withdraw_reason"] == "paid privately"
    desk.refused(
        f"/v1/claims/{withdrawn['id']}:review",
        {},
        status=400,
        code=FAILED_PRECONDITION,
        reason="INVALID_STATE_TRANSITION",
        token=desk.adjuster,
    )
    denied = desk.claim(policy, 400, until="SUBMITTED")
    denied = desk.ok(
        "POST", f"/v1/claims/{denied['id']}:deny", {"reason": "not covered"}, desk.adjuster
    )
    assert denied["state"] == "DENIED" and denied["deny_reason"] == "not covered"

    first = desk.claim(policy, 1000)
    assert breakdown(first)["payable"] == 800
    desk.approve(first, 800, desk.adjuster)
    second = desk.claim(policy, 1000)
    assert breakdown(second)["payable"] == 200  # 1 000 limit, 800 taken by the first
    desk.exceeds_payable(second, 800, "200.00", desk.adjuster)

    unapproved = desk.ok(
        "POST", f"/v1/claims/{first['id']}:unapprove", {"reason": "documents missing"}
    )
    assert unapproved["state"] == "UNDER_REVIEW" and "approved_amount" not in unapproved
    # The first claim's 800 is back in the limit: the second may now have it.
    second = desk.approve(second, 800, desk.adjuster)
    assert breakdown(second)["payable"] == 800
    desk.exceeds_payable(first, 800, "200.00", desk.adjuster)
    # Unapproving a claim with money paid is refused (void the payments first).
    desk.pay(second, 100, desk.adjuster)
    desk.refused(
        f"/v1/claims/{second['id']}:unapprove",
        {"reason": "second thoughts"},
        status=400,
        code=FAILED_PRECONDITION,
        reason="CLAIM_HAS_PAYMENTS",
    )


# ------------------------------------------------------------------- e. request ids


def test_a_request_id_replayed_with_other_arguments_is_refused(desk: Desk) -> None:
    product = desk.product(coverage(limit=10000, period="PER_YEAR"))
    policy, _ = desk.policy(product)
    claim = desk.claim(policy, 1000)
    path = f"/v1/claims/{claim['id']}"

    approve_id = str(uuid.uuid4())
    body = {"approved_amount": money(500), "request_id": approve_id}
    approved = desk.ok("POST", f"{path}:approve", body, desk.adjuster)
    again = desk.ok("POST", f"{path}:approve", body, desk.adjuster)  # a retry: the same
    assert again["etag"] == approved["etag"] and amount(again["approved_amount"]) == 500
    # The same request in the JSON mapping's lowerCamelCase names is the same request.
    camel = {"approvedAmount": {"currencyCode": "EUR", "units": "500"}, "requestId": approve_id}
    assert desk.ok("POST", f"{path}:approve", camel, desk.adjuster)["etag"] == approved["etag"]
    desk.refused(
        f"{path}:approve",
        {"approved_amount": money(800), "request_id": approve_id},
        status=400,
        code=INVALID_ARGUMENT,
        reason="REQUEST_ID_REUSED",
        token=desk.adjuster,
    )
    assert amount(desk.get(claim)["approved_amount"]) == 500

    pay_id = str(uuid.uuid4())
    payment = desk.payment(claim, 100, token=desk.adjuster, request_id=pay_id).ok()
    retried = desk.payment(claim, 100, token=desk.adjuster, request_id=pay_id)
    assert retried.ok()["id"] == payment["id"]
    assert_error(
        desk.payment(claim, 400, token=desk.adjuster, request_id=pay_id),
        400,
        INVALID_ARGUMENT,
        reason="REQUEST_ID_REUSED",
        domain=DOMAIN,
    )
    assert [p["id"] for p in desk.payments(claim)] == [payment["id"]]
    assert amount(desk.get(claim)["paid_amount"]) == 100


# ------------------------------------------------------------------- f. an attacker


def test_an_adjuster_cannot_get_more_paid_than_the_cover_allows(desk: Desk) -> None:
    """Every trick of a band-1 claims adjuster is refused with a precise 4xx; in
    the end what is paid <= what is approved <= the 1 000 limit."""
    adj = desk.adjuster
    product = desk.product(coverage(limit=1000, period="PER_YEAR"))
    policy, _ = desk.policy(product)
    claim = desk.claim(policy, 1000)
    path = f"/v1/claims/{claim['id']}"

    def refused(
        target: str, body: Any, reason: str, *, code: int = FAILED_PRECONDITION, status: int = 400
    ) -> dict[str, Any]:
        return desk.refused(target, body, status=status, code=code, reason=reason, token=adj)

    # Approvals above the payable, in pieces of cents, outside the band, in dollars, negative.
    desk.exceeds_payable(claim, 1000, "800.00", adj)
    body = refused(
        f"{path}:approve",
        {"approved_amount": {"currency_code": "EUR", "units": "799", "nanos": 999_999_999}},
        "INVALID_ARGUMENT",
        code=INVALID_ARGUMENT,
    )
    assert error_details(body, "BadRequest")[0]["field_violations"] == [
        {"field": "approved_amount", "description": "EUR amounts have at most 2 decimals"}
    ]
    body = refused(
        f"{path}:approve",
        {"approved_amount": money(1200)},
        "APPROVAL_AUTHORITY_EXCEEDED",
        code=PERMISSION_DENIED,
        status=403,
    )
    assert error_details(body, "ErrorInfo")[0]["metadata"]["band"] == "2"
    refused(
        f"{path}:approve",
        {"approved_amount": money(800, "USD")},
        "NO_APPROVAL_BANDS_FOR_CURRENCY",
    )
    refused(
        f"{path}:approve",
        {"approved_amount": money(-800)},
        "INVALID_ARGUMENT",
        code=INVALID_ARGUMENT,
    )
    # Paying before the approval.
    assert_error(
        desk.payment(claim, 100, token=adj),
        400,
        FAILED_PRECONDITION,
        reason="INVALID_STATE_TRANSITION",
    )
    desk.approve(claim, 800, adj)

    # Payments above the outstanding, in dollars, negative, beyond the approval.
    assert_error(desk.payment(claim, 801, token=adj), 400, 9, reason="EXCEEDS_RESERVE")
    assert_error(
        desk.payment(claim, 100, token=adj, currency="USD"), 400, 3, reason="CURRENCY_MISMATCH"
    )
    body = assert_error(desk.payment(claim, -100, token=adj), 400, 3, reason="INVALID_ARGUMENT")
    assert [v["field"] for v in error_details(body, "BadRequest")[0]["field_violations"]] == [
        "payment.amount"
    ]
    desk.pay(claim, 500, adj)
    second = desk.pay(claim, 300, adj)
    assert desk.get(claim)["state"] == "PAID"
    assert_error(desk.payment(claim, 1, token=adj), 400, 9, reason="INVALID_STATE_TRANSITION")
    # A void gives the money back once only.
    assert desk.void(claim, second, adj).ok()["state"] == "VOIDED"
    assert_error(desk.void(claim, second, adj), 400, 9, reason="INVALID_STATE_TRANSITION")
    assert_error(desk.payment(claim, 301, token=adj), 400, 9, reason="EXCEEDS_RESERVE")
    desk.pay(claim, 300, adj)
    # Raising the approval, or making room for more through recoveries.
    desk.exceeds_payable(claim, 900, "800.00", adj)
    refused(
        f"{path}/recoveries",
        {"kind": "OVERPAYMENT", "amount": money(-300)},
        "INVALID_ARGUMENT",
        code=INVALID_ARGUMENT,
    )
    refused(
        f"{path}/recoveries",
        {"kind": "OVERPAYMENT", "amount": money(300)},
        "RECOVERY_NOT_ALLOWED",
    )
    refused(
        f"{path}/recoveries",
        {"kind": "SALVAGE", "amount": money(801)},
        "RECOVERY_EXCEEDS_PAID",
    )
    refused(f"{path}:unapprove", {"reason": "again"}, "INVALID_STATE_TRANSITION")  # PAID

    # A second claim for the same year gets only what remains of the limit.
    other = desk.claim(policy, 1000)
    assert breakdown(other)["payable"] == 200
    desk.exceeds_payable(other, 800, "200.00", adj)
    desk.approve(other, 200, adj)
    # Reopening the first with a larger claimed amount does not make room either.
    desk.ok("POST", f"{path}:close", {}, adj)
    reopened = desk.ok(
        "POST", f"{path}:reopen", {"reason": "more", "claimed_amount": money(5000)}, adj
    )
    assert breakdown(reopened)["payable"] == 800
    desk.exceeds_payable(claim, 1000, "800.00", adj)
    desk.approve(claim, 800, adj)

    # A denied claim is paid nothing.
    denied = desk.claim(policy, 500)
    desk.ok("POST", f"/v1/claims/{denied['id']}:deny", {"reason": "excluded"}, adj)
    assert_error(desk.payment(denied, 100, token=adj), 400, 9, reason="INVALID_STATE_TRANSITION")
    refused(
        f"/v1/claims/{denied['id']}:approve",
        {"approved_amount": money(100)},
        "INVALID_STATE_TRANSITION",
    )

    claims = [desk.get(c) for c in (claim, other, denied)]
    paid = sum((desk.paid_by_payments(c) for c in claims), Decimal(0))
    approved = sum((amount(c.get("approved_amount")) for c in claims), Decimal(0))
    assert [amount(c.get("paid_amount")) for c in claims] == [800, 0, 0]
    assert paid == 800 and approved == 1000  # paid <= approved <= the 1 000 limit
