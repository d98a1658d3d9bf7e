"""Claim cover over gRPC: a cancellation, lapse or endorsement that would leave
approved or paid claims without cover is refused, unless an admin overrides it
with a reason, which the status log and the audit log keep."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import grpc
import pytest
from core_harness import TODAY, C, P, Tenant, gdate, mask, money, new_request_id
from support.grpc_errors import error_info, field_violations, precondition_violations

from cardinsa.core.v1 import claim_service_pb2 as cb
from cardinsa.core.v1 import core_service_pb2 as xb
from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import resources_pb2

INCIDENT = TODAY - timedelta(days=10)
OVERRIDE = "court order 2026-117: cover ends with the fraud finding"


async def claim_in(
    tenant: Tenant,
    policy: resources_pb2.Policy,
    *,
    state: int = C.APPROVED,
    incident: date = INCIDENT,
    dependent_id: str = "",
) -> resources_pb2.Claim:
    """A claim of the policyholder (or of ``dependent_id``) taken to ``state``."""
    claims, md = tenant.harness.claims, await tenant.md()
    claimant = (
        resources_pb2.InsuredMember(dependent_id=dependent_id)
        if dependent_id
        else resources_pb2.InsuredMember(policyholder=True)
    )
    claim = await claims.CreateClaim(
        cb.CreateClaimRequest(
            claim=resources_pb2.Claim(
                policy_id=policy.id,
                claimant=claimant,
                claim_type=C.MEDICAL,
                description="broken arm",
                coverage_code="OUTPATIENT",
                incident_date=gdate(incident),
                claimed_amount=money("800"),
            )
        ),
        metadata=md,
    )
    steps: list[tuple[int, Any]] = [
        (
            C.SUBMITTED,
            lambda: claims.SubmitClaim(cb.SubmitClaimRequest(claim_id=claim.id), metadata=md),
        ),
        (
            C.UNDER_REVIEW,
            lambda: claims.ReviewClaim(cb.ReviewClaimRequest(claim_id=claim.id), metadata=md),
        ),
        (
            C.APPROVED,
            lambda: claims.ApproveClaim(
                cb.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("500")),
                metadata=md,
            ),
        ),
        (
            C.PAID,
            lambda: claims.PayClaim(
                cb.PayClaimRequest(claim_id=claim.id, payment_reference="TRX-1"), metadata=md
            ),
        ),
    ]
    for reached, step in steps:
        if claim.state == state:
            break
        claim = await step()
        assert claim.state == reached
    assert claim.state == state
    return claim


async def cancel(
    tenant: Tenant,
    policy: resources_pb2.Policy,
    *,
    effective: date,
    role: str = "underwriter",
    override_reason: str = "",
    request_id: str = "",
) -> resources_pb2.Policy:
    return await tenant.harness.policies.CancelPolicy(
        pb.CancelPolicyRequest(
            policy_id=policy.id,
            reason=P.FRAUD,
            effective_date=gdate(effective),
            note="fraud finding",
            override_reason=override_reason,
            request_id=request_id,
        ),
        metadata=await tenant.md(role),
    )


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def state_of(tenant: Tenant, policy: resources_pb2.Policy) -> int:
    found = await tenant.harness.policies.GetPolicy(
        pb.GetPolicyRequest(policy_id=policy.id), metadata=await tenant.md()
    )
    return int(found.state)


def assert_would_lose_cover(error: grpc.aio.AioRpcError, *claims: resources_pb2.Claim) -> None:
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(error)
    assert info.reason == "CLAIMS_WOULD_LOSE_COVER"
    assert info.metadata["count"] == str(len(claims))
    assert info.metadata["claim_ids"].split(",") == [c.id for c in claims]
    assert info.metadata["claim_numbers"].split(",") == [c.claim_number for c in claims]
    assert info.metadata["override_permission"] == "policies.override_claim_cover"
    violations = precondition_violations(error)
    assert [(t, s) for t, s, _ in violations] == [("CLAIM_COVER", f"claims/{c.id}") for c in claims]
    assert all(c.claim_number in d for c, (_, _, d) in zip(claims, violations, strict=True))
    assert "override_reason" in (error.details() or "")


async def test_a_cancellation_back_before_an_approved_claim_is_refused(tenant: Tenant) -> None:
    policy = await tenant.in_force()
    claim = await claim_in(tenant, policy)
    error = await refused(cancel(tenant, policy, effective=INCIDENT - timedelta(days=3)))
    assert_would_lose_cover(error, claim)
    assert await state_of(tenant, policy) == P.IN_FORCE
    # The incident day itself is not covered by a cancellation from that day either.
    error = await refused(cancel(tenant, policy, effective=INCIDENT))
    assert_would_lose_cover(error, claim)


async def test_an_override_without_the_permission_is_permission_denied_first(
    tenant: Tenant,
) -> None:
    policy = await tenant.in_force()
    await claim_in(tenant, policy)
    error = await refused(
        cancel(tenant, policy, effective=INCIDENT - timedelta(days=3), override_reason=OVERRIDE)
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(error)
    assert info.reason == "OVERRIDE_NOT_PERMITTED"
    assert dict(info.metadata) == {"required_permission": "policies.override_claim_cover"}
    # The same answer for a policy without claims, an invalid request and an unknown
    # policy: it says nothing about claims.
    bare = await tenant.in_force()
    for call in (
        cancel(tenant, bare, effective=INCIDENT, override_reason=OVERRIDE),
        tenant.harness.policies.LapsePolicy(
            pb.LapsePolicyRequest(
                policy_id=str(uuid.uuid4()), note="n" * 5000, override_reason=OVERRIDE
            ),
            metadata=await tenant.md("underwriter"),
        ),
        tenant.harness.policies.EndorsePolicy(
            pb.EndorsePolicyRequest(policy_id=policy.id, override_reason=OVERRIDE),
            metadata=await tenant.md("underwriter"),
        ),
    ):
        other = await refused(call)
        assert other.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(other).reason == "OVERRIDE_NOT_PERMITTED"
        assert other.details() == error.details()
    assert await state_of(tenant, policy) == P.IN_FORCE


async def test_an_admin_overrides_with_a_reason_that_the_logs_keep(tenant: Tenant) -> None:
    policy = await tenant.in_force()
    approved, paid = await claim_in(tenant, policy), await claim_in(tenant, policy, state=C.PAID)
    effective, request_id = INCIDENT - timedelta(days=3), new_request_id()
    for bad, problem in (("x" * 1001, "at most 1000 characters"), ("   ", "must not be blank")):
        error = await refused(
            cancel(tenant, policy, effective=effective, role="company-admin", override_reason=bad)
        )
        assert field_violations(error) == {"override_reason": problem}
    cancelled = await cancel(
        tenant,
        policy,
        effective=effective,
        role="company-admin",
        override_reason=OVERRIDE,
        request_id=request_id,
    )
    assert cancelled.state == P.CANCELLED
    # A replay must repeat the override reason.
    again = await cancel(
        tenant,
        policy,
        effective=effective,
        role="company-admin",
        override_reason=OVERRIDE,
        request_id=request_id,
    )
    assert again.etag == cancelled.etag
    error = await refused(
        cancel(
            tenant,
            policy,
            effective=effective,
            role="company-admin",
            override_reason="another reason",
            request_id=request_id,
        )
    )
    assert error_info(error).reason == "REQUEST_ID_REUSED"

    md = await tenant.md()
    log = await tenant.harness.policies.ListPolicyStatusChanges(
        pb.ListPolicyStatusChangesRequest(policy_id=policy.id), metadata=md
    )
    last = log.policy_status_changes[0]
    assert last.transition == "cancel" and last.reason.startswith("FRAUD: fraud finding [")
    assert OVERRIDE in last.reason
    for claim in (approved, paid):
        assert claim.id in last.reason and claim.claim_number in last.reason
    events = await tenant.harness.core.ListAuditEvents(
        xb.ListAuditEventsRequest(filter=f'entity_id = "{policy.id}"'), metadata=md
    )
    event = events.audit_events[0]
    assert event.action == "policy.cancel"
    used = event.detail["claim_cover_override"]
    assert used["reason"] == OVERRIDE
    assert sorted(used["claim_ids"]) == sorted([approved.id, paid.id])
    assert sorted(used["claim_numbers"]) == sorted([approved.claim_number, paid.claim_number])


async def test_a_cancellation_after_the_incident_needs_no_override(tenant: Tenant) -> None:
    policy = await tenant.in_force()
    await claim_in(tenant, policy, state=C.PAID)
    cancelled = await cancel(tenant, policy, effective=INCIDENT + timedelta(days=1))
    assert cancelled.state == P.CANCELLED
    md = await tenant.md()
    log = await tenant.harness.policies.ListPolicyStatusChanges(
        pb.ListPolicyStatusChangesRequest(policy_id=policy.id), metadata=md
    )
    assert log.policy_status_changes[0].reason == "FRAUD: fraud finding"
    events = await tenant.harness.core.ListAuditEvents(
        xb.ListAuditEventsRequest(filter=f'entity_id = "{policy.id}"'), metadata=md
    )
    assert "claim_cover_override" not in events.audit_events[0].detail


async def test_a_lapse_back_before_the_incident_is_refused(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    policy = await tenant.in_force()
    paid = await claim_in(tenant, policy, state=C.PAID)
    error = await refused(
        policies.LapsePolicy(
            pb.LapsePolicyRequest(
                policy_id=policy.id, lapse_date=gdate(INCIDENT - timedelta(days=1))
            ),
            metadata=md,
        )
    )
    assert_would_lose_cover(error, paid)
    assert await state_of(tenant, policy) == P.IN_FORCE
    lapsed = await policies.LapsePolicy(
        pb.LapsePolicyRequest(policy_id=policy.id, lapse_date=gdate(INCIDENT + timedelta(days=1))),
        metadata=md,
    )
    assert lapsed.state == P.LAPSED


async def test_a_reopened_claim_with_money_paid_out_still_counts(tenant: Tenant) -> None:
    claims, policies, md = tenant.harness.claims, tenant.harness.policies, await tenant.md()
    policy = await tenant.in_force()
    paid = await claim_in(tenant, policy, state=C.PAID)
    await claims.CloseClaim(cb.CloseClaimRequest(claim_id=paid.id), metadata=md)
    reopened = await claims.ReopenClaim(
        cb.ReopenClaimRequest(claim_id=paid.id, reason="late invoice"), metadata=md
    )
    assert reopened.state == C.UNDER_REVIEW
    error = await refused(
        policies.LapsePolicy(
            pb.LapsePolicyRequest(policy_id=policy.id, lapse_date=gdate(INCIDENT)),
            metadata=await tenant.md("underwriter"),
        )
    )
    assert_would_lose_cover(error, reopened)
    # With the override the lapse goes through and its log names the claim.
    lapsed = await policies.LapsePolicy(
        pb.LapsePolicyRequest(
            policy_id=policy.id, lapse_date=gdate(INCIDENT), override_reason=OVERRIDE
        ),
        metadata=md,
    )
    assert lapsed.state == P.LAPSED
    log = await policies.ListPolicyStatusChanges(
        pb.ListPolicyStatusChangesRequest(policy_id=policy.id), metadata=md
    )
    assert log.policy_status_changes[0].reason.startswith("[claim cover override: ")
    assert paid.id in log.policy_status_changes[0].reason


async def test_an_endorsement_removing_the_claimant_before_the_incident_is_refused(
    tenant: Tenant,
) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    holder = await tenant.holder(dependents=2)
    policy = await tenant.in_force(holder)
    child = holder.dependents[0].id
    child_claim = await claim_in(tenant, policy, dependent_id=child)
    await claim_in(tenant, policy)  # the holder's, unaffected

    def without_child(effective: date) -> pb.EndorsePolicyRequest:
        return pb.EndorsePolicyRequest(
            policy_id=policy.id,
            effective_date=gdate(effective),
            description="first child leaves the policy",
            policy=resources_pb2.Policy(
                insured_members=[
                    resources_pb2.InsuredMember(policyholder=True),
                    resources_pb2.InsuredMember(dependent_id=holder.dependents[1].id),
                ]
            ),
            update_mask=mask("insured_members"),
        )

    for effective in (INCIDENT - timedelta(days=5), INCIDENT):
        error = await refused(policies.EndorsePolicy(without_child(effective), metadata=md))
        assert_would_lose_cover(error, child_claim)
    current = await policies.GetPolicy(pb.GetPolicyRequest(policy_id=policy.id), metadata=md)
    assert current.version == 1
    # From the day after the incident on: the claim stays under version 1.
    endorsed = await policies.EndorsePolicy(
        without_child(INCIDENT + timedelta(days=1)), metadata=md
    )
    assert endorsed.version == 2 and len(endorsed.insured_members) == 2


async def test_claims_not_yet_approved_or_denied_do_not_block(tenant: Tenant) -> None:
    claims, md = tenant.harness.claims, await tenant.md()
    policy = await tenant.in_force()
    for state in (C.DRAFT, C.SUBMITTED, C.UNDER_REVIEW):
        await claim_in(tenant, policy, state=state)
    denied = await claim_in(tenant, policy, state=C.UNDER_REVIEW)
    await claims.DenyClaim(cb.DenyClaimRequest(claim_id=denied.id, reason="no"), metadata=md)
    cancelled = await cancel(tenant, policy, effective=INCIDENT - timedelta(days=3))
    assert cancelled.state == P.CANCELLED


async def test_a_claim_approved_after_the_cancellation_is_refused(tenant: Tenant) -> None:
    claims, md = tenant.harness.claims, await tenant.md()
    policy = await tenant.in_force()
    claim = await claim_in(tenant, policy, state=C.UNDER_REVIEW)
    await cancel(tenant, policy, effective=INCIDENT - timedelta(days=3))
    error = await refused(
        claims.ApproveClaim(
            cb.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("500")), metadata=md
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "POLICY_NOT_IN_FORCE"
