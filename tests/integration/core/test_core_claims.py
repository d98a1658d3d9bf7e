"""Claims over gRPC: first notice of loss to payment and reopening, eligibility,
amounts, approval authority bands, and the action log."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal

import grpc
import pytest
from core_harness import TODAY, C, P, Tenant, amount, gdate, mask, money
from support.grpc_errors import error_info, field_violations

from cardinsa.core.v1 import claim_service_pb2 as cb
from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import resources_pb2


async def test_from_first_notice_of_loss_to_closure_and_reopening(tenant: Tenant) -> None:
    claims = tenant.harness.claims
    agent, adjuster = await tenant.md("agent"), await tenant.md("claims-adjuster")
    policy = await tenant.in_force()
    claim = await tenant.claim(policy, claimed="800")
    assert claim.state == C.DRAFT and claim.claim_number == "" and claim.policy_version == 1
    assert claim.report_date.year == TODAY.year and amount(claim.claimed_amount) == 800
    submitted = await claims.SubmitClaim(
        cb.SubmitClaimRequest(claim_id=claim.id, etag=claim.etag), metadata=agent
    )
    assert submitted.state == C.SUBMITTED and submitted.claim_number == "CLM-00000001"
    reviewed = await claims.ReviewClaim(cb.ReviewClaimRequest(claim_id=claim.id), metadata=adjuster)
    assert reviewed.state == C.UNDER_REVIEW and reviewed.assigned_adjuster_id
    # The harness coverage has 20 % co-insurance and no deductible: an estimate at review.
    estimate = reviewed.benefit
    assert (amount(estimate.claimed), amount(estimate.coinsurance)) == (800, 160)
    assert amount(estimate.payable) == 640 and not estimate.final
    approved = await claims.ApproveClaim(
        cb.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("600"), note="ok"),
        metadata=adjuster,
    )
    assert approved.state == C.APPROVED and amount(approved.approved_amount) == 600
    assert approved.benefit.final and amount(approved.indemnity_reserve) == 600
    paid = await claims.PayClaim(
        cb.PayClaimRequest(claim_id=claim.id, payment_reference="TRX-1"), metadata=adjuster
    )
    assert paid.state == C.PAID and amount(paid.paid_amount) == 600
    assert amount(paid.indemnity_reserve) == 0 and paid.payment_reference == "TRX-1"
    closed = await claims.CloseClaim(cb.CloseClaimRequest(claim_id=claim.id), metadata=adjuster)
    assert closed.state == C.CLOSED
    reopened = await claims.ReopenClaim(
        cb.ReopenClaimRequest(
            claim_id=claim.id, reason="late invoice", claimed_amount=money("900")
        ),
        metadata=adjuster,
    )
    assert reopened.state == C.UNDER_REVIEW and amount(reopened.claimed_amount) == 900
    assert amount(reopened.benefit.payable) == 720 and amount(reopened.paid_amount) == 600
    topped = await claims.ApproveClaim(
        cb.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("720")), metadata=adjuster
    )
    paid = await claims.PayClaim(
        cb.PayClaimRequest(claim_id=topped.id, payment_reference="TRX-2"), metadata=adjuster
    )
    assert amount(paid.paid_amount) == 720
    log = await claims.ListClaimLogEntries(
        cb.ListClaimLogEntriesRequest(claim_id=claim.id, page_size=100), metadata=adjuster
    )
    entries = list(reversed(log.claim_log_entries))
    assert [e.action for e in entries] == [
        "create",
        "submit",
        "review",
        "approve",
        "pay",
        "close",
        "reopen",
        "approve",
        "pay",
    ]
    pays = [e for e in entries if e.action == "pay"]
    assert [amount(e.amount) for e in pays] == [Decimal(600), Decimal(120)]
    assert pays[0].payment_reference == "TRX-1" and entries[6].note == "late invoice"
    assert all(e.actor_id for e in entries)


async def test_deny_and_reopen(tenant: Tenant) -> None:
    claims, md = tenant.harness.claims, await tenant.md("claims-adjuster")
    claim = await tenant.claim_under_review(await tenant.in_force())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await claims.DenyClaim(cb.DenyClaimRequest(claim_id=claim.id), metadata=md)
    assert field_violations(caught.value) == {"reason": "required"}
    denied = await claims.DenyClaim(
        cb.DenyClaimRequest(claim_id=claim.id, reason="not covered"), metadata=md
    )
    assert denied.state == C.DENIED and denied.deny_reason == "not covered"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await claims.PayClaim(
            cb.PayClaimRequest(claim_id=claim.id, payment_reference="x"), metadata=md
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dict(error_info(caught.value).metadata) == {
        "current_state": "DENIED",
        "transition": "pay",
    }
    reopened = await claims.ReopenClaim(
        cb.ReopenClaimRequest(claim_id=claim.id, reason="appeal"), metadata=md
    )
    assert reopened.state == C.UNDER_REVIEW and reopened.deny_reason == ""


async def test_approval_outside_the_approvers_band_is_permission_denied(tenant: Tenant) -> None:
    claims = tenant.harness.claims
    adjuster, admin = await tenant.md("claims-adjuster"), await tenant.md()
    claim = await tenant.claim_under_review(await tenant.in_force(), claimed="4000")
    # The claims-adjuster role holds band 1 (up to 1 000 by default).
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await claims.ApproveClaim(
            cb.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("3000")),
            metadata=adjuster,
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(caught.value)
    assert info.reason == "APPROVAL_AUTHORITY_EXCEEDED"
    assert info.metadata["required_permission"] == "claims.approve_band_2"
    # Permission before existence: the same answer for a claim that does not exist.
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await claims.ApproveClaim(
            cb.ApproveClaimRequest(
                claim_id="00000000-0000-4000-8000-000000000000", approved_amount=money("3000")
            ),
            metadata=adjuster,
        )
    assert missing.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The company admin holds every band.
    approved = await claims.ApproveClaim(
        cb.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("3000")), metadata=admin
    )
    assert approved.state == C.APPROVED


async def test_company_bands_move_the_authority(tenant: Tenant) -> None:
    claims, admin, adjuster = (
        tenant.harness.claims,
        await tenant.md(),
        await tenant.md("claims-adjuster"),
    )
    default = await claims.GetApprovalBands(cb.GetApprovalBandsRequest(), metadata=adjuster)
    assert (amount(default.band_1_limit), amount(default.band_2_limit)) == (1000, 5000)
    assert not default.configured and default.band_1_limit.currency_code == "USD"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await claims.UpdateApprovalBands(
            cb.UpdateApprovalBandsRequest(
                approval_bands=resources_pb2.ApprovalBands(
                    band_1_limit=money("5000"), band_2_limit=money("20000")
                )
            ),
            metadata=adjuster,
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await claims.UpdateApprovalBands(
            cb.UpdateApprovalBandsRequest(
                approval_bands=resources_pb2.ApprovalBands(
                    band_1_limit=money("5000"), band_2_limit=money("100")
                )
            ),
            metadata=admin,
        )
    assert "approval_bands.band_2_limit" in field_violations(caught.value)
    bands = await claims.UpdateApprovalBands(
        cb.UpdateApprovalBandsRequest(
            approval_bands=resources_pb2.ApprovalBands(
                band_1_limit=money("5000"), band_2_limit=money("20000")
            )
        ),
        metadata=admin,
    )
    assert bands.configured and bands.etag
    claim = await tenant.claim_under_review(await tenant.in_force(), claimed="4000")
    approved = await claims.ApproveClaim(
        cb.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("3200")),
        metadata=adjuster,
    )
    assert approved.state == C.APPROVED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await claims.UpdateApprovalBands(
            cb.UpdateApprovalBandsRequest(
                approval_bands=resources_pb2.ApprovalBands(
                    band_1_limit=money("1"), band_2_limit=money("2"), etag='"stale"'
                )
            ),
            metadata=admin,
        )
    assert caught.value.code() == grpc.StatusCode.ABORTED


async def test_approval_within_the_payable_amount(tenant: Tenant) -> None:
    claims, admin = tenant.harness.claims, await tenant.md()
    policy = await tenant.in_force(product=await tenant.product(limit="900"))
    claim = await tenant.claim_under_review(policy, claimed="1200")
    # 1 200 less 20 % co-insurance is 960, capped by the 900 limit.
    assert amount(claim.benefit.limit_cut) == 60 and amount(claim.benefit.payable) == 900
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await claims.ApproveClaim(
            cb.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("901")), metadata=admin
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "EXCEEDS_PAYABLE"
    assert field_violations(caught.value) == {
        "approved_amount": "must not exceed the payable amount 900.00 USD"
    }
    other = await tenant.claim_under_review(policy, claimed="100")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await claims.ApproveClaim(
            cb.ApproveClaimRequest(claim_id=other.id, approved_amount=money("100")),
            metadata=admin,
        )
    assert error_info(caught.value).metadata["payable_amount"] == "80.00"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await claims.ApproveClaim(
            cb.ApproveClaimRequest(claim_id=other.id, approved_amount=money("50", "EUR")),
            metadata=admin,
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "NO_APPROVAL_BANDS_FOR_CURRENCY"


async def test_eligibility_of_a_claim(tenant: Tenant) -> None:
    claims, policies, md = tenant.harness.claims, tenant.harness.policies, await tenant.md()
    holder = await tenant.holder(dependents=2)
    policy = await tenant.in_force(holder, effective=TODAY - timedelta(days=60))

    async def refused(claim: resources_pb2.Claim) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await claims.CreateClaim(cb.CreateClaimRequest(claim=claim), metadata=md)
        return caught.value

    def claim(**fields: object) -> resources_pb2.Claim:
        values: dict[str, object] = {
            "policy_id": policy.id,
            "claimant": resources_pb2.InsuredMember(policyholder=True),
            "claim_type": C.MEDICAL,
            "description": "fall",
            "coverage_code": "OUTPATIENT",
            "incident_date": gdate(TODAY - timedelta(days=3)),
            "claimed_amount": money("100"),
        }
        values.update(fields)
        return resources_pb2.Claim(**values)

    error = await refused(claim(incident_date=gdate(TODAY - timedelta(days=61))))
    assert error_info(error).reason == "POLICY_NOT_IN_FORCE"
    error = await refused(
        claim(
            incident_date=gdate(TODAY - timedelta(days=2)),
            report_date=gdate(TODAY - timedelta(days=3)),
        )
    )
    assert "claim.incident_date" in field_violations(error)
    error = await refused(claim(claimed_amount=money("100", "EUR")))
    assert "claim.claimed_amount.currency_code" in field_violations(error)
    error = await refused(claim(claimed_amount=money("0")))
    assert "claim.claimed_amount" in field_violations(error)
    error = await refused(claim(coverage_code="DENTAL"))
    assert error_info(error).reason == "UNKNOWN_COVERAGE"
    error = await refused(claim(policy_id="00000000-0000-4000-8000-000000000000"))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    # The second child leaves the policy ten days ago: insured before, not after.
    child = holder.dependents[1].id
    await policies.EndorsePolicy(
        pb.EndorsePolicyRequest(
            policy_id=policy.id,
            effective_date=gdate(TODAY - timedelta(days=10)),
            description="child leaves",
            policy=resources_pb2.Policy(
                insured_members=[
                    resources_pb2.InsuredMember(policyholder=True),
                    resources_pb2.InsuredMember(dependent_id=holder.dependents[0].id),
                ]
            ),
            update_mask=mask("insured_members"),
        ),
        metadata=md,
    )
    member = resources_pb2.InsuredMember(dependent_id=child)
    error = await refused(claim(claimant=member))
    assert error_info(error).reason == "CLAIMANT_NOT_INSURED"
    before = await claims.CreateClaim(
        cb.CreateClaimRequest(
            claim=claim(claimant=member, incident_date=gdate(TODAY - timedelta(days=20)))
        ),
        metadata=md,
    )
    assert before.policy_version == 1 and before.claimant.dependent_id == child

    # A cancellation ends cover from its date on.
    await policies.CancelPolicy(
        pb.CancelPolicyRequest(
            policy_id=policy.id,
            reason=P.FRAUD,
            effective_date=gdate(TODAY - timedelta(days=5)),
        ),
        metadata=md,
    )
    error = await refused(claim(incident_date=gdate(TODAY - timedelta(days=5))))
    assert error_info(error).reason == "POLICY_NOT_IN_FORCE"
    assert (
        await claims.CreateClaim(
            cb.CreateClaimRequest(claim=claim(incident_date=gdate(TODAY - timedelta(days=6)))),
            metadata=md,
        )
    ).state == C.DRAFT


async def test_waiting_period(tenant: Tenant) -> None:
    product = await tenant.product(waiting_days=30)
    policy = await tenant.in_force(product=product, effective=TODAY - timedelta(days=10))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.claim(policy)
    assert error_info(caught.value).reason == "WAITING_PERIOD"


async def test_only_drafts_are_updated_or_deleted(tenant: Tenant) -> None:
    claims, md = tenant.harness.claims, await tenant.md("agent")
    policy = await tenant.in_force()
    claim = await tenant.claim(policy)
    updated = await claims.UpdateClaim(
        cb.UpdateClaimRequest(
            claim=resources_pb2.Claim(id=claim.id, etag=claim.etag, claimed_amount=money("99.5")),
            update_mask=mask("claimed_amount"),
        ),
        metadata=md,
    )
    assert amount(updated.claimed_amount) == Decimal("99.5")
    submitted = await claims.SubmitClaim(cb.SubmitClaimRequest(claim_id=claim.id), metadata=md)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await claims.UpdateClaim(
            cb.UpdateClaimRequest(
                claim=resources_pb2.Claim(id=claim.id, description="changed"),
                update_mask=mask("description"),
            ),
            metadata=md,
        )
    assert dict(error_info(caught.value).metadata) == {
        "current_state": "SUBMITTED",
        "transition": "update",
    }
    admin = await tenant.md()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await claims.DeleteClaim(cb.DeleteClaimRequest(claim_id=submitted.id), metadata=admin)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    draft = await tenant.claim(policy)
    gone = await claims.DeleteClaim(cb.DeleteClaimRequest(claim_id=draft.id), metadata=admin)
    assert gone.delete_time.seconds
    listed = await claims.ListClaims(cb.ListClaimsRequest(), metadata=admin)
    assert draft.id not in {c.id for c in listed.claims}
    listed = await claims.ListClaims(cb.ListClaimsRequest(show_deleted=True), metadata=admin)
    assert draft.id in {c.id for c in listed.claims}
    back = await claims.UndeleteClaim(cb.UndeleteClaimRequest(claim_id=draft.id), metadata=admin)
    assert not back.HasField("delete_time")


async def test_submits_race_for_numbers_and_a_replay_takes_none(tenant: Tenant) -> None:
    """Claims submitted at once get consecutive numbers, each once; a submit
    repeated with its request id answers as the first did and takes no number;
    the request id with another etag is REQUEST_ID_REUSED; a stale etag is ABORTED."""
    claims = tenant.harness.claims
    agent = await tenant.md("agent")
    policy = await tenant.in_force()
    drafts = [await tenant.claim(policy, claimed="100") for _ in range(6)]
    request_ids = [str(uuid.uuid4()) for _ in drafts]
    submitted = await asyncio.gather(
        *(
            claims.SubmitClaim(
                cb.SubmitClaimRequest(claim_id=d.id, etag=d.etag, request_id=r), metadata=agent
            )
            for d, r in zip(drafts, request_ids, strict=True)
        )
    )
    numbers = sorted(s.claim_number for s in submitted)
    assert numbers == [f"CLM-{n:08d}" for n in range(1, 7)]
    again = await claims.SubmitClaim(
        cb.SubmitClaimRequest(
            claim_id=drafts[0].id, etag=drafts[0].etag, request_id=request_ids[0]
        ),
        metadata=agent,
    )
    assert (again.claim_number, again.etag) == (submitted[0].claim_number, submitted[0].etag)
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await claims.SubmitClaim(
            cb.SubmitClaimRequest(
                claim_id=drafts[0].id, etag=submitted[0].etag, request_id=request_ids[0]
            ),
            metadata=agent,
        )
    assert reused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(reused.value).reason == "REQUEST_ID_REUSED"
    late = await tenant.claim(policy, claimed="100")
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await claims.SubmitClaim(
            cb.SubmitClaimRequest(claim_id=late.id, etag=drafts[1].etag), metadata=agent
        )
    assert stale.value.code() == grpc.StatusCode.ABORTED
    fresh = await claims.SubmitClaim(
        cb.SubmitClaimRequest(claim_id=late.id, etag=late.etag), metadata=agent
    )
    assert fresh.claim_number == "CLM-00000007"  # the replay and the refusals took none
    log = await claims.ListClaimLogEntries(
        cb.ListClaimLogEntriesRequest(claim_id=drafts[0].id), metadata=agent
    )
    assert [e.action for e in reversed(log.claim_log_entries)] == ["create", "submit"]
