"""Every illegal (state, transition) pair of the three lifecycles, over gRPC:
FAILED_PRECONDITION naming the current state and the transition, and the
resource unchanged (same etag). The allowed pairs are exercised by the flow
tests; the domain tests cover every pair in both directions."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import pytest
import pytest_asyncio
from core_harness import TODAY, CoreHarness, P, Tenant, gdate, mask, money
from support.grpc_errors import error_info

from cardinsa.core.v1 import claim_service_pb2 as cb
from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import product_service_pb2 as rb
from cardinsa.core.v1 import resources_pb2 as res
from cardinsa_core.domain.claims import CLAIM_LIFECYCLE, ClaimAction, ClaimState
from cardinsa_core.domain.policies import POLICY_LIFECYCLE, PolicyAction, PolicyState
from cardinsa_core.domain.products import PRODUCT_LIFECYCLE, ProductAction, ProductState


@dataclass
class Fixtures:
    tenant: Tenant
    policies: dict[str, str]
    claims: dict[str, str]
    products: dict[str, str]


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def fx(core: CoreHarness) -> Fixtures:
    t = await core.tenant()
    md = await t.md()
    holder, product = await t.holder(), await t.product(limit="100000")
    policies: dict[str, str] = {}
    policies["DRAFT"] = (await t.draft(holder, product)).id
    policies["QUOTED"] = (await t.quoted(holder, product)).id
    policies["BOUND"] = (await t.in_force(holder, product, effective=TODAY + timedelta(days=30))).id
    in_force = await t.in_force(holder, product)
    policies["IN_FORCE"] = in_force.id
    cancelled = await t.in_force(holder, product)
    await core.policies.CancelPolicy(
        pb.CancelPolicyRequest(policy_id=cancelled.id, reason=P.FRAUD), metadata=md
    )
    policies["CANCELLED"] = cancelled.id
    pending = await t.in_force(holder, product)
    await core.policies.CancelPolicy(
        pb.CancelPolicyRequest(
            policy_id=pending.id,
            reason=P.MEMBER_REQUEST,
            effective_date=gdate(TODAY + timedelta(days=20)),
            scheduled=True,
        ),
        metadata=md,
    )
    policies["CANCEL_PENDING"] = pending.id
    lapsed = await t.in_force(holder, product)
    await core.policies.LapsePolicy(pb.LapsePolicyRequest(policy_id=lapsed.id), metadata=md)
    policies["LAPSED"] = lapsed.id
    old = await t.in_force(
        holder, product, effective=TODAY - timedelta(days=400), expiry=TODAY - timedelta(days=40)
    )
    await core.policies.ExpirePolicy(pb.ExpirePolicyRequest(policy_id=old.id), metadata=md)
    policies["EXPIRED"] = old.id

    claims: dict[str, str] = {}
    claims["DRAFT"] = (await t.claim(in_force)).id
    submitted = await t.claim(in_force)
    await core.claims.SubmitClaim(cb.SubmitClaimRequest(claim_id=submitted.id), metadata=md)
    claims["SUBMITTED"] = submitted.id
    withdrawn = await t.claim(in_force)
    await core.claims.WithdrawClaim(
        cb.WithdrawClaimRequest(claim_id=withdrawn.id, reason="settled privately"), metadata=md
    )
    claims["WITHDRAWN"] = withdrawn.id
    claims["UNDER_REVIEW"] = (await t.claim_under_review(in_force)).id
    denied = await t.claim_under_review(in_force)
    await core.claims.DenyClaim(cb.DenyClaimRequest(claim_id=denied.id, reason="no"), metadata=md)
    claims["DENIED"] = denied.id
    for state in ("APPROVED", "PAID", "CLOSED"):
        claim = await t.claim_under_review(in_force)
        await core.claims.ApproveClaim(
            cb.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("100")), metadata=md
        )
        if state != "APPROVED":
            await core.claims.PayClaim(
                cb.PayClaimRequest(claim_id=claim.id, payment_reference="P"), metadata=md
            )
        if state == "CLOSED":
            await core.claims.CloseClaim(cb.CloseClaimRequest(claim_id=claim.id), metadata=md)
        claims[state] = claim.id

    products = {"DRAFT": (await t.product(activate=False)).id, "ACTIVE": (await t.product()).id}
    retired = await t.product()
    await core.products.RetireProduct(rb.RetireProductRequest(product_id=retired.id), metadata=md)
    products["RETIRED"] = retired.id
    return Fixtures(t, policies, claims, products)


Build = Callable[[str], Any]
POLICY_CALLS: dict[PolicyAction, tuple[str, Build]] = {
    PolicyAction.UPDATE: (
        "UpdatePolicy",
        lambda i: pb.UpdatePolicyRequest(
            policy=res.Policy(id=i, payment_frequency=P.ANNUAL),
            update_mask=mask("payment_frequency"),
        ),
    ),
    PolicyAction.QUOTE: ("QuotePolicy", lambda i: pb.QuotePolicyRequest(policy_id=i)),
    PolicyAction.BIND: ("BindPolicy", lambda i: pb.BindPolicyRequest(policy_id=i)),
    PolicyAction.ACTIVATE: ("ActivatePolicy", lambda i: pb.ActivatePolicyRequest(policy_id=i)),
    PolicyAction.ENDORSE: (
        "EndorsePolicy",
        lambda i: pb.EndorsePolicyRequest(
            policy_id=i,
            effective_date=gdate(TODAY),
            description="more cover",
            policy=res.Policy(sum_insured=money("123456")),
            update_mask=mask("sum_insured"),
        ),
    ),
    PolicyAction.RENEW: ("RenewPolicy", lambda i: pb.RenewPolicyRequest(policy_id=i)),
    PolicyAction.CANCEL: (
        "CancelPolicy",
        lambda i: pb.CancelPolicyRequest(policy_id=i, reason=P.MEMBER_REQUEST),
    ),
    # A scheduled cancellation is asked for through CancelPolicy with a later date.
    PolicyAction.SCHEDULE_CANCEL: (
        "CancelPolicy",
        lambda i: pb.CancelPolicyRequest(
            policy_id=i,
            reason=P.MEMBER_REQUEST,
            effective_date=gdate(TODAY + timedelta(days=5)),
            scheduled=True,
        ),
    ),
    PolicyAction.REINSTATE: ("ReinstatePolicy", lambda i: pb.ReinstatePolicyRequest(policy_id=i)),
    PolicyAction.LAPSE: ("LapsePolicy", lambda i: pb.LapsePolicyRequest(policy_id=i)),
    PolicyAction.EXPIRE: ("ExpirePolicy", lambda i: pb.ExpirePolicyRequest(policy_id=i)),
    PolicyAction.DELETE: ("DeletePolicy", lambda i: pb.DeletePolicyRequest(policy_id=i)),
}
CLAIM_CALLS: dict[ClaimAction, tuple[str, Build]] = {
    ClaimAction.UPDATE: (
        "UpdateClaim",
        lambda i: cb.UpdateClaimRequest(
            claim=res.Claim(id=i, description="changed"), update_mask=mask("description")
        ),
    ),
    ClaimAction.SUBMIT: ("SubmitClaim", lambda i: cb.SubmitClaimRequest(claim_id=i)),
    ClaimAction.REVIEW: ("ReviewClaim", lambda i: cb.ReviewClaimRequest(claim_id=i)),
    ClaimAction.APPROVE: (
        "ApproveClaim",
        lambda i: cb.ApproveClaimRequest(claim_id=i, approved_amount=money("50")),
    ),
    ClaimAction.UNAPPROVE: (
        "UnapproveClaim",
        lambda i: cb.UnapproveClaimRequest(claim_id=i, reason="r"),
    ),
    ClaimAction.DENY: ("DenyClaim", lambda i: cb.DenyClaimRequest(claim_id=i, reason="r")),
    ClaimAction.WITHDRAW: (
        "WithdrawClaim",
        lambda i: cb.WithdrawClaimRequest(claim_id=i, reason="r"),
    ),
    ClaimAction.PAY: ("PayClaim", lambda i: cb.PayClaimRequest(claim_id=i, payment_reference="p")),
    ClaimAction.CLOSE: ("CloseClaim", lambda i: cb.CloseClaimRequest(claim_id=i)),
    ClaimAction.REOPEN: ("ReopenClaim", lambda i: cb.ReopenClaimRequest(claim_id=i, reason="r")),
    ClaimAction.DELETE: ("DeleteClaim", lambda i: cb.DeleteClaimRequest(claim_id=i)),
}
PRODUCT_CALLS: dict[ProductAction, tuple[str, Build]] = {
    ProductAction.UPDATE: (
        "UpdateProduct",
        lambda i: rb.UpdateProductRequest(
            product=res.Product(id=i, name="n"), update_mask=mask("name")
        ),
    ),
    ProductAction.ACTIVATE: ("ActivateProduct", lambda i: rb.ActivateProductRequest(product_id=i)),
    ProductAction.RETIRE: ("RetireProduct", lambda i: rb.RetireProductRequest(product_id=i)),
    ProductAction.DELETE: ("DeleteProduct", lambda i: rb.DeleteProductRequest(product_id=i)),
}

#: Not reachable through the API: completing a scheduled cancellation is the
#: lifecycle scheduler's step (its own tests), and a policy not yet in force is
#: cancelled flat, never scheduled (INVALID_ARGUMENT, test_core_policies).
NOT_AN_RPC = {(PolicyState.BOUND, PolicyAction.SCHEDULE_CANCEL)} | {
    (state, PolicyAction.COMPLETE_CANCEL) for state in PolicyState
}
ILLEGAL = (
    [
        ("policies", state.value, action)
        for state, action in itertools.product(PolicyState, PolicyAction)
        if not POLICY_LIFECYCLE.allows(state, action) and (state, action) not in NOT_AN_RPC
    ]
    + [
        ("claims", state.value, action)
        for state, action in itertools.product(ClaimState, ClaimAction)
        if not CLAIM_LIFECYCLE.allows(state, action)
    ]
    + [
        ("products", state.value, action)
        for state, action in itertools.product(ProductState, ProductAction)
        if not PRODUCT_LIFECYCLE.allows(state, action)
    ]
)
GETS: dict[str, tuple[str, Build]] = {
    "policies": ("GetPolicy", lambda i: pb.GetPolicyRequest(policy_id=i)),
    "claims": ("GetClaim", lambda i: cb.GetClaimRequest(claim_id=i)),
    "products": ("GetProduct", lambda i: rb.GetProductRequest(product_id=i)),
}


def test_every_illegal_pair_is_probed() -> None:
    # 8 policy states x 13 actions, 22 allowed, 8 not reachable through an RPC.
    assert len(ILLEGAL) == (104 - 22 - 8) + (88 - 17) + (12 - 6)


@pytest.mark.parametrize(
    ("kind", "state", "action"), ILLEGAL, ids=[f"{k}-{s}-{a.value}" for k, s, a in ILLEGAL]
)
async def test_an_illegal_transition_fails_and_changes_nothing(
    fx: Fixtures, kind: str, state: str, action: Any
) -> None:
    stub = getattr(fx.tenant.harness, kind)
    md = await fx.tenant.md()
    resource_id = getattr(fx, kind)[state]
    get_name, get_request = GETS[kind]
    before = await getattr(stub, get_name)(get_request(resource_id), metadata=md)
    calls = {"policies": POLICY_CALLS, "claims": CLAIM_CALLS, "products": PRODUCT_CALLS}[kind]
    method, build = calls[action]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, method)(build(resource_id), metadata=md)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, caught.value.details()
    info = error_info(caught.value)
    shown = "cancel" if action is PolicyAction.SCHEDULE_CANCEL else action.value
    assert info.reason == "INVALID_STATE_TRANSITION"
    assert dict(info.metadata) == {"current_state": state, "transition": shown}
    assert state in caught.value.details() and shown in caught.value.details()
    after = await getattr(stub, get_name)(get_request(resource_id), metadata=md)
    assert after.etag == before.etag and after == before
