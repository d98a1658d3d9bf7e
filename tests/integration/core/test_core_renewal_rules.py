"""Renewal and reinstatement rules over gRPC: a cancelled or lapsed policy's
pending renewal is withdrawn, do-not-renew, waiting periods carried over for
members insured without a break, and the priced transactions of a
cancellation and its reinstatement."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import grpc
import pytest
from core_harness import TODAY, P, Tenant, amount, clock_at, gdate, mask, money, pydate
from support.grpc_errors import error_info

from cardinsa.core.v1 import claim_service_pb2 as cb
from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import resources_pb2

T = resources_pb2.PremiumTransaction


async def _transactions(tenant: Tenant, policy_id: str) -> list[resources_pb2.PremiumTransaction]:
    reply = await tenant.harness.policies.ListPremiumTransactions(
        pb.ListPremiumTransactionsRequest(policy_id=policy_id, page_size=100),
        metadata=await tenant.md(),
    )
    return list(reply.premium_transactions)


async def _transitions(tenant: Tenant, policy_id: str) -> list[str]:
    reply = await tenant.harness.policies.ListPolicyStatusChanges(
        pb.ListPolicyStatusChangesRequest(policy_id=policy_id, page_size=100),
        metadata=await tenant.md(),
    )
    return [c.transition for c in reversed(reply.policy_status_changes)]


async def test_cancelling_a_policy_withdraws_its_quoted_renewal(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    policy = await tenant.in_force()
    renewed = await policies.RenewPolicy(pb.RenewPolicyRequest(policy_id=policy.id), metadata=md)
    successor = renewed.successor
    cancelled = await policies.CancelPolicy(
        pb.CancelPolicyRequest(policy_id=policy.id, reason=P.MEMBER_REQUEST), metadata=md
    )
    assert cancelled.successor_policy_id == ""
    gone = await policies.GetPolicy(pb.GetPolicyRequest(policy_id=successor.id), metadata=md)
    assert gone.delete_time.seconds > 0
    assert (await _transitions(tenant, successor.id))[-1] == "renewal_withdrawn"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.BindPolicy(pb.BindPolicyRequest(policy_id=successor.id), metadata=md)
    assert caught.value.code() in (
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
    )
    # Reinstated, the policy can be renewed again.
    await policies.ReinstatePolicy(pb.ReinstatePolicyRequest(policy_id=policy.id), metadata=md)
    again = await policies.RenewPolicy(pb.RenewPolicyRequest(policy_id=policy.id), metadata=md)
    assert again.successor.id != successor.id


async def test_lapsing_a_policy_cancels_its_bound_renewal_flat(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    policy = await tenant.in_force()
    successor = (
        await policies.RenewPolicy(pb.RenewPolicyRequest(policy_id=policy.id), metadata=md)
    ).successor
    bound = await policies.BindPolicy(pb.BindPolicyRequest(policy_id=successor.id), metadata=md)
    assert bound.state == P.BOUND
    await policies.LapsePolicy(
        pb.LapsePolicyRequest(policy_id=policy.id, note="premium unpaid"), metadata=md
    )
    after = await policies.GetPolicy(pb.GetPolicyRequest(policy_id=successor.id), metadata=md)
    assert after.state == P.CANCELLED
    assert pydate(after.cancel_effective_date) == pydate(bound.effective_date)  # flat
    history = await _transactions(tenant, successor.id)
    assert [t.kind for t in history] == [T.RENEW, T.CANCEL]
    # Nothing of it was ever on risk: all the premium and its tax come back.
    assert amount(history[1].premium) == -amount(history[0].premium)
    assert amount(history[1].tax) == -amount(history[0].tax)
    assert sum(amount(t.amount) for t in history) == amount(after.written_premium)


async def test_do_not_renew(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    policy = await tenant.in_force()
    marked = await policies.UpdatePolicy(
        pb.UpdatePolicyRequest(
            policy=resources_pb2.Policy(id=policy.id, do_not_renew=True),
            update_mask=mask("do_not_renew"),
        ),
        metadata=md,
    )
    assert marked.do_not_renew and marked.state == P.IN_FORCE
    # An agent may edit quotes (policies.update) but not decide on renewals.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await policies.UpdatePolicy(
            pb.UpdatePolicyRequest(
                policy=resources_pb2.Policy(id=policy.id, do_not_renew=False),
                update_mask=mask("do_not_renew"),
            ),
            metadata=await tenant.md("agent"),
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(refused.value).reason == "DO_NOT_RENEW_NOT_PERMITTED"
    unchanged = await policies.GetPolicy(pb.GetPolicyRequest(policy_id=policy.id), metadata=md)
    assert unchanged.do_not_renew and unchanged.etag == marked.etag
    assert marked.premium == policy.premium  # the sold terms are untouched
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.RenewPolicy(pb.RenewPolicyRequest(policy_id=policy.id), metadata=md)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "DO_NOT_RENEW"
    cleared = await policies.UpdatePolicy(
        pb.UpdatePolicyRequest(
            policy=resources_pb2.Policy(id=policy.id, do_not_renew=False),
            update_mask=mask("do_not_renew"),
        ),
        metadata=md,
    )
    assert not cleared.do_not_renew
    renewed = await policies.RenewPolicy(pb.RenewPolicyRequest(policy_id=policy.id), metadata=md)
    assert renewed.successor.previous_policy_id == policy.id
    # The other terms of a sold policy still cannot change.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.UpdatePolicy(
            pb.UpdatePolicyRequest(
                policy=resources_pb2.Policy(id=policy.id, payment_frequency=P.ANNUAL),
                update_mask=mask("payment_frequency"),
            ),
            metadata=md,
        )
    assert error_info(caught.value).reason == "INVALID_STATE_TRANSITION"


async def test_waiting_periods_carry_over_for_members_insured_without_a_break(
    tenant: Tenant,
) -> None:
    policies, md = tenant.harness.policies, await tenant.md()
    holder = await tenant.holder(dependents=1)
    product = await tenant.product(waiting_days=90)
    first = await tenant.in_force(
        holder,
        product,
        effective=TODAY - timedelta(days=300),
        expiry=TODAY + timedelta(days=20),
        with_dependents=False,
    )
    successor = (
        await policies.RenewPolicy(pb.RenewPolicyRequest(policy_id=first.id), metadata=md)
    ).successor
    # The child joins at renewal: their waiting period starts with the renewal.
    draft = await policies.UpdatePolicy(
        pb.UpdatePolicyRequest(
            policy=resources_pb2.Policy(
                id=successor.id,
                insured_members=[
                    resources_pb2.InsuredMember(policyholder=True),
                    resources_pb2.InsuredMember(dependent_id=holder.dependents[0].id),
                ],
            ),
            update_mask=mask("insured_members"),
        ),
        metadata=md,
    )
    quoted = await policies.QuotePolicy(pb.QuotePolicyRequest(policy_id=draft.id), metadata=md)
    await policies.BindPolicy(pb.BindPolicyRequest(policy_id=quoted.id), metadata=md)
    start = pydate(successor.effective_date)
    incident = start + timedelta(days=10)
    moment = datetime.combine(incident + timedelta(days=1), time(9), tzinfo=UTC)
    with clock_at(tenant.harness, moment):
        await policies.ActivatePolicy(pb.ActivatePolicyRequest(policy_id=quoted.id), metadata=md)

        async def claim(claimant: resources_pb2.InsuredMember) -> resources_pb2.Claim:
            return await tenant.harness.claims.CreateClaim(
                cb.CreateClaimRequest(
                    claim=resources_pb2.Claim(
                        policy_id=quoted.id,
                        claimant=claimant,
                        claim_type=resources_pb2.Claim.MEDICAL,
                        description="sprained wrist",
                        coverage_code="OUTPATIENT",
                        incident_date=gdate(incident),
                        claimed_amount=money("300"),
                    )
                ),
                metadata=md,
            )

        # The holder has been insured for 300+ days: no waiting any more.
        accepted = await claim(resources_pb2.InsuredMember(policyholder=True))
        assert accepted.state == resources_pb2.Claim.DRAFT
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await claim(resources_pb2.InsuredMember(dependent_id=holder.dependents[0].id))
    assert error_info(caught.value).reason == "WAITING_PERIOD"
    assert (
        error_info(caught.value).metadata["waiting_period_ends"]
        == (start + timedelta(days=90)).isoformat()
    )


async def test_cancel_and_reinstate_are_priced_and_sum_to_the_written_premium(
    tenant: Tenant,
) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    policy = await tenant.in_force(effective=TODAY - timedelta(days=10))
    written = amount(policy.written_premium)
    assert written == amount(policy.premium) > 0
    later = TODAY + timedelta(days=100)
    pending = await policies.CancelPolicy(
        pb.CancelPolicyRequest(
            policy_id=policy.id,
            reason=P.BUSINESS_DECISION,
            effective_date=gdate(later),
            scheduled=True,
        ),
        metadata=md,
    )
    assert pending.state == P.CANCEL_PENDING
    history = await _transactions(tenant, policy.id)
    assert [t.kind for t in history] == [T.NEW, T.CANCEL]
    cancel = history[1]
    assert cancel.refund_method == T.PRO_RATA
    # Pro rata: the return is the premium of the days from the cancellation on.
    term_days = (pydate(policy.expiry_date) - pydate(policy.effective_date)).days + 1
    unearned_days = (pydate(policy.expiry_date) - later).days + 1
    expected = (amount(history[0].premium) * unearned_days / term_days).quantize(Decimal("0.01"))
    assert -amount(cancel.premium) == expected
    assert amount(pending.written_premium) == written + amount(cancel.amount)
    back = await policies.ReinstatePolicy(
        pb.ReinstatePolicyRequest(policy_id=policy.id, note="changed their mind"), metadata=md
    )
    assert back.state == P.IN_FORCE
    history = await _transactions(tenant, policy.id)
    assert [t.kind for t in history] == [T.NEW, T.CANCEL, T.REINSTATE]
    assert amount(history[2].amount) == -amount(cancel.amount)
    assert amount(back.written_premium) == written == amount(history[2].written_premium)
    # Fraud returns nothing.
    fraud = await tenant.in_force()
    flat = await policies.CancelPolicy(
        pb.CancelPolicyRequest(policy_id=fraud.id, reason=P.FRAUD), metadata=md
    )
    last = (await _transactions(tenant, fraud.id))[-1]
    assert last.refund_method == T.FLAT and amount(last.amount) == 0
    assert flat.written_premium == fraud.written_premium


async def test_a_renewal_checks_entry_ages_only_of_members_who_join(tenant: Tenant) -> None:
    """Coverage entry ages up to 60, dependents without a date of birth (an
    AGE_LIMIT finding each on a new policy): on the renewal, the child insured
    since the first term continues without a new issue; the one who joins at
    renewal is checked like on a new policy."""
    policies, md = tenant.harness.policies, await tenant.md()
    holder = await tenant.holder(dependents=2)
    stays, joins = holder.dependents[0].id, holder.dependents[1].id
    product = await tenant.product(max_entry_age=60)
    quoted = await tenant.quoted(holder, product, with_dependents=False)
    first = await policies.UpdatePolicy(
        pb.UpdatePolicyRequest(
            policy=resources_pb2.Policy(
                id=quoted.id,
                insured_members=[
                    resources_pb2.InsuredMember(policyholder=True),
                    resources_pb2.InsuredMember(dependent_id=stays),
                ],
            ),
            update_mask=mask("insured_members"),
        ),
        metadata=md,
    )
    first = await policies.QuotePolicy(pb.QuotePolicyRequest(policy_id=first.id), metadata=md)
    assert first.open_underwriting_issues == 1  # the child's unknown date of birth
    [issue] = (
        await policies.ListUnderwritingIssues(
            pb.ListUnderwritingIssuesRequest(policy_id=first.id), metadata=md
        )
    ).underwriting_issues
    await policies.ApproveUnderwritingIssue(
        pb.ApproveUnderwritingIssueRequest(
            policy_id=first.id, issue_id=issue.id, note="school records seen"
        ),
        metadata=md,
    )
    await policies.BindPolicy(pb.BindPolicyRequest(policy_id=first.id), metadata=md)
    successor = (
        await policies.RenewPolicy(pb.RenewPolicyRequest(policy_id=first.id), metadata=md)
    ).successor
    assert successor.open_underwriting_issues == 0  # the insured child continues
    grown = await policies.UpdatePolicy(
        pb.UpdatePolicyRequest(
            policy=resources_pb2.Policy(
                id=successor.id,
                insured_members=[
                    resources_pb2.InsuredMember(policyholder=True),
                    resources_pb2.InsuredMember(dependent_id=stays),
                    resources_pb2.InsuredMember(dependent_id=joins),
                ],
            ),
            update_mask=mask("insured_members"),
        ),
        metadata=md,
    )
    requoted = await policies.QuotePolicy(pb.QuotePolicyRequest(policy_id=grown.id), metadata=md)
    issues = (
        await policies.ListUnderwritingIssues(
            pb.ListUnderwritingIssuesRequest(policy_id=requoted.id), metadata=md
        )
    ).underwriting_issues
    assert [(i.code, joins in i.description) for i in issues] == [("AGE_LIMIT", True)]
    assert requoted.open_underwriting_issues == 1
