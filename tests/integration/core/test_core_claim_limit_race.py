"""Claim money under concurrency, over gRPC against real PostgreSQL.

Approvals racing for the last of a coverage limit: the accumulator rows are
locked ``FOR UPDATE`` at approval, so exactly what fits is approved, never
more, and the accumulator equals the sum of what is approved. Approve /
pay / void / unapprove cycles running at once on several claims of one member
leave no drift. An approval racing a cancellation back to before the incident
never leaves an approved claim the policy no longer covers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import grpc
from core_harness import TODAY, C, P, Tenant, amount, gdate, money, new_request_id, pydate
from sqlalchemy import text
from support.grpc_errors import error_info

from cardinsa.core.v1 import claim_service_pb2 as cb
from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import resources_pb2

PER_TERM = resources_pb2.Coverage.PER_TERM
LIMIT = Decimal(5000)
APPROVED = (C.APPROVED, C.PAID)


async def accumulators(tenant: Tenant, policy_id: str) -> dict[str, tuple[Decimal, Decimal]]:
    """coverage code -> (limit_used, deductible_used) of the policy's accumulator rows,
    read through the service's own (tenant-scoped) database."""
    db = tenant.harness.app.ctx.db
    async with db.unit_of_work(company_id=uuid.UUID(tenant.company_id)) as session:
        rows = (
            await session.execute(
                text(
                    "SELECT coverage_code, limit_used, deductible_used "
                    "FROM core.claim_accumulators WHERE company_id = :c AND scope_id = :p"
                ),
                {"c": tenant.company_id, "p": policy_id},
            )
        ).all()
    found = {code: (Decimal(limit), Decimal(deductible)) for code, limit, deductible in rows}
    assert len(found) == len(rows), rows
    return found


async def limited_policy(tenant: Tenant, *, limit: Decimal = LIMIT) -> resources_pb2.Policy:
    """A policy whose OUTPATIENT coverage pays up to ``limit`` per term: no
    deductible, no co-insurance (the claimed amount is payable until the limit)."""
    product = await tenant.product(
        limit=str(limit), limit_period=PER_TERM, coinsurance_basis_points=None
    )
    return await tenant.in_force(await tenant.holder(dependents=0), product)


async def reviewed_claims(
    tenant: Tenant, policy: resources_pb2.Policy, count: int, claimed: str
) -> list[resources_pb2.Claim]:
    claims = [await tenant.claim_under_review(policy, claimed=claimed) for _ in range(count)]
    for claim in claims:
        assert claim.state == C.UNDER_REVIEW and amount(claim.benefit.payable) == Decimal(claimed)
    return claims


async def approve(tenant: Tenant, claim_id: str, value: Decimal) -> resources_pb2.Claim:
    return await tenant.harness.claims.ApproveClaim(
        cb.ApproveClaimRequest(
            claim_id=claim_id, approved_amount=money(value), request_id=new_request_id()
        ),
        metadata=await tenant.md(),
    )


def payable_of(error: grpc.aio.AioRpcError) -> Decimal:
    """The payable amount an EXCEEDS_PAYABLE refusal names."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    info = error_info(error)
    assert info.reason == "EXCEEDS_PAYABLE", info
    return Decimal(info.metadata["payable_amount"])


async def test_concurrent_approvals_approve_exactly_what_the_limit_holds(tenant: Tenant) -> None:
    policy = await limited_policy(tenant)
    claims = await reviewed_claims(tenant, policy, 12, "1000")
    results = await asyncio.gather(
        *(approve(tenant, c.id, Decimal(1000)) for c in claims), return_exceptions=True
    )
    approved = [r for r in results if isinstance(r, resources_pb2.Claim)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(approved) + len(refused) == 12, results
    assert len(approved) == 5
    assert all(c.state == C.APPROVED and amount(c.approved_amount) == 1000 for c in approved)
    # The refused ones were measured after the five: nothing was left.
    assert [payable_of(e) for e in refused] == [Decimal(0)] * 7
    usage = await accumulators(tenant, policy.id)
    assert usage["OUTPATIENT"] == (LIMIT, Decimal(0))
    assert usage["*SUM_INSURED"][0] == LIMIT
    for claim in claims:
        now = await tenant.harness.claims.GetClaim(
            cb.GetClaimRequest(claim_id=claim.id), metadata=await tenant.md()
        )
        assert now.state in (C.APPROVED, C.UNDER_REVIEW)
        assert (now.state == C.APPROVED) == (claim.id in {c.id for c in approved})


async def test_approvals_that_retry_with_their_payable_fill_the_limit_exactly(
    tenant: Tenant,
) -> None:
    """Twelve claims of 700 against 5 000: each approver asks for the payable it
    read, and on EXCEEDS_PAYABLE retries with the payable the refusal names,
    until it is 0. Exactly the limit is approved: seven claims of 700 and one
    of the 100 left, whatever the interleaving."""
    policy = await limited_policy(tenant)
    claims = await reviewed_claims(tenant, policy, 12, "700")

    async def approver(claim: resources_pb2.Claim) -> Decimal:
        current = await tenant.harness.claims.GetClaim(
            cb.GetClaimRequest(claim_id=claim.id), metadata=await tenant.md()
        )
        ask = amount(current.benefit.payable)
        while ask > 0:
            try:
                return amount((await approve(tenant, claim.id, ask)).approved_amount)
            except grpc.aio.AioRpcError as error:
                left = payable_of(error)
                assert left < ask
                ask = left
        return Decimal(0)

    approved = await asyncio.gather(*(approver(c) for c in claims))
    assert sum(approved) == LIMIT
    assert sorted(approved, reverse=True) == [Decimal(700)] * 7 + [Decimal(100)] + [0] * 4
    usage = await accumulators(tenant, policy.id)
    assert usage["OUTPATIENT"] == (LIMIT, Decimal(0))
    assert usage["*SUM_INSURED"][0] == LIMIT


async def test_approve_pay_void_unapprove_cycles_do_not_drift_the_accumulator(
    tenant: Tenant,
) -> None:
    """Six claims of 1 000 against 5 000, each cycled at once: approve (what is
    payable), pay part, void it, unapprove; then approved again where the limit
    allows. The accumulator is the sum of what the approved claims hold."""
    service, md = tenant.harness.claims, await tenant.md()
    policy = await limited_policy(tenant)
    claims = await reviewed_claims(tenant, policy, 6, "1000")

    async def try_approve(claim_id: str) -> bool:
        ask = Decimal(1000)
        while ask > 0:
            try:
                await approve(tenant, claim_id, ask)
                return True
            except grpc.aio.AioRpcError as error:
                ask = payable_of(error)
        return False

    async def cycle(claim: resources_pb2.Claim, rounds: int) -> None:
        for step in range(rounds):
            if not await try_approve(claim.id):
                await asyncio.sleep(0.01)
                continue
            payment = await service.CreateClaimPayment(
                cb.CreateClaimPaymentRequest(
                    claim_id=claim.id,
                    payment=resources_pb2.ClaimPayment(
                        cost_type=resources_pb2.INDEMNITY,
                        payee="clinic",
                        method=resources_pb2.ClaimPayment.BANK_TRANSFER,
                        amount=money(100 + step),
                    ),
                    request_id=new_request_id(),
                ),
                metadata=md,
            )
            await service.VoidClaimPayment(
                cb.VoidClaimPaymentRequest(
                    claim_id=claim.id,
                    payment_id=payment.id,
                    reason="wrong account",
                    request_id=new_request_id(),
                ),
                metadata=md,
            )
            await service.UnapproveClaim(
                cb.UnapproveClaimRequest(
                    claim_id=claim.id, reason="recheck", request_id=new_request_id()
                ),
                metadata=md,
            )
        await try_approve(claim.id)

    await asyncio.gather(*(cycle(c, 3) for c in claims))
    final = [await service.GetClaim(cb.GetClaimRequest(claim_id=c.id), metadata=md) for c in claims]
    held = sum((amount(c.approved_amount) for c in final if c.state in APPROVED), Decimal(0))
    assert all(c.state in (*APPROVED, C.UNDER_REVIEW) for c in final)
    assert all(amount(c.paid_amount) == 0 for c in final)
    usage = await accumulators(tenant, policy.id)
    assert usage["OUTPATIENT"] == (held, Decimal(0))
    assert usage["*SUM_INSURED"][0] == held
    # Every claim tried last: the limit is filled (each asked what was payable).
    assert held == LIMIT


#: Both at once, or one a little ahead: (approval delay, cancellation delay) in seconds.
HEAD_STARTS = [(0.0, 0.0), (0.0, 0.3), (0.3, 0.0), (0.0, 0.01), (0.01, 0.0)] * 2


async def later(delay: float, start: Callable[[], Awaitable[Any]]) -> Any:
    """``start()`` after ``delay`` (a gRPC aio call is sent when it is created)."""
    await asyncio.sleep(delay)
    return await start()


async def test_an_approval_racing_a_backdated_cancellation_never_leaves_it_uncovered(
    tenant: Tenant,
) -> None:
    claims, policies, md = tenant.harness.claims, tenant.harness.policies, await tenant.md()
    product = await tenant.product(limit="5000", limit_period=PER_TERM)
    incident = TODAY - timedelta(days=2)
    cancelled_from = TODAY - timedelta(days=10)  # before the incident
    outcomes: list[tuple[str, str]] = []
    for approval_delay, cancel_delay in HEAD_STARTS:
        policy = await tenant.in_force(await tenant.holder(dependents=0), product)
        claim = await tenant.claim_under_review(policy, claimed="500", incident=incident)
        cancel = partial(
            policies.CancelPolicy,
            pb.CancelPolicyRequest(
                policy_id=policy.id,
                reason=P.MEMBER_REQUEST,
                effective_date=gdate(cancelled_from),
                request_id=new_request_id(),
            ),
            metadata=md,
        )
        results = await asyncio.gather(
            later(approval_delay, partial(approve, tenant, claim.id, Decimal(400))),
            later(cancel_delay, cancel),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                assert isinstance(result, grpc.aio.AioRpcError), result
                assert result.code() == grpc.StatusCode.FAILED_PRECONDITION, result
                assert error_info(result).reason in (
                    "POLICY_NOT_IN_FORCE",
                    "CLAIMS_WOULD_LOSE_COVER",
                ), error_info(result)
        now = await claims.GetClaim(cb.GetClaimRequest(claim_id=claim.id), metadata=md)
        ended = await policies.GetPolicy(pb.GetPolicyRequest(policy_id=policy.id), metadata=md)
        outcomes.append((C.State.Name(now.state), P.State.Name(ended.state)))
        uncovered = ended.state == P.CANCELLED and pydate(ended.cancel_effective_date) <= incident
        assert not (now.state in APPROVED and uncovered), outcomes
        if now.state not in APPROVED:
            assert (await accumulators(tenant, policy.id)).get("OUTPATIENT", (0, 0))[0] == 0


REOPEN_ROUNDS = 4


async def test_concurrent_reopens_bear_the_deductible_once(tenant: Tenant) -> None:
    """A reopened claim that keeps money paid holds its estimated deductible. Two
    such claims reopened at once, after the claim that bore the deductible was
    unapproved, must not both take the whole deductible of the period."""
    service, md = tenant.harness.claims, await tenant.md()
    product = await tenant.product(
        limit="5000", limit_period=PER_TERM, deductible="300", coinsurance_basis_points=None
    )
    for _ in range(REOPEN_ROUNDS):
        policy = await tenant.in_force(await tenant.holder(dependents=0), product)
        bearer, first, second = await reviewed_deductible_claims(tenant, policy)
        await approve(tenant, bearer.id, Decimal(700))  # bears the deductible of 300
        for claim in (first, second):
            await approve(tenant, claim.id, Decimal(1000))  # nothing left to bear
            await service.PayClaim(
                cb.PayClaimRequest(claim_id=claim.id, payment_reference="TRX"), metadata=md
            )
            await service.CloseClaim(cb.CloseClaimRequest(claim_id=claim.id), metadata=md)
        await service.UnapproveClaim(
            cb.UnapproveClaimRequest(claim_id=bearer.id, reason="recheck"), metadata=md
        )
        assert (await accumulators(tenant, policy.id))["OUTPATIENT"] == (Decimal(2000), 0)
        reopened = await asyncio.gather(
            *(
                service.ReopenClaim(
                    cb.ReopenClaimRequest(claim_id=c.id, reason="late invoice"), metadata=md
                )
                for c in (first, second)
            )
        )
        borne = [amount(c.benefit.deductible) for c in reopened]
        assert sorted(borne) == [Decimal(0), Decimal(300)]
        limit_used, deductible_used = (await accumulators(tenant, policy.id))["OUTPATIENT"]
        assert (limit_used, deductible_used) == (Decimal(2000), Decimal(300))


async def reviewed_deductible_claims(
    tenant: Tenant, policy: resources_pb2.Policy
) -> list[resources_pb2.Claim]:
    """Three claims of 1 000 under review, each estimated before any approval
    (so each shows the whole deductible of 300 and 700 payable)."""
    claims = [await tenant.claim_under_review(policy, claimed="1000") for _ in range(3)]
    assert all(amount(c.benefit.deductible) == 300 for c in claims)
    return claims
