"""Concurrency over gRPC: gap-free policy numbers under 50 concurrent binds,
one winner among transitions with the same etag, request ids that make a
retried transition happen once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import grpc
import pytest
from core_harness import TODAY, C, P, Tenant, gdate, money, new_request_id
from sqlalchemy import text
from support.grpc_errors import error_info

from cardinsa.core.v1 import claim_service_pb2 as cb
from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import resources_pb2

CONCURRENT_BINDS = 50


async def outcomes(calls: list) -> tuple[list, list[grpc.aio.AioRpcError]]:  # type: ignore[type-arg]
    results = await asyncio.gather(*calls, return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) + len(failed) == len(results), [r for r in results if isinstance(r, Exception)]
    return ok, failed


async def counter(tenant: Tenant, kind: str) -> int:
    """The company's counter row, read through the service's own (tenant-scoped) database."""
    db = tenant.harness.app.ctx.db
    async with db.unit_of_work(company_id=uuid.UUID(tenant.company_id)) as session:
        value = await session.scalar(
            text("SELECT last_value FROM core.number_counters WHERE company_id = :c AND kind = :k"),
            {"c": tenant.company_id, "k": kind},
        )
    return int(value or 0)


async def test_fifty_concurrent_binds_get_unique_gap_free_numbers(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    holder, product = await tenant.holder(dependents=0), await tenant.product()
    quoted = await asyncio.gather(
        *(tenant.quoted(holder, product) for _ in range(CONCURRENT_BINDS + 5))
    )
    binds = [
        policies.BindPolicy(pb.BindPolicyRequest(policy_id=q.id, etag=q.etag), metadata=md)
        for q in quoted[:CONCURRENT_BINDS]
    ]
    # Binds that fail (stale etag) in the same storm take no number.
    binds += [
        policies.BindPolicy(pb.BindPolicyRequest(policy_id=q.id, etag='"stale"'), metadata=md)
        for q in quoted[CONCURRENT_BINDS:]
    ]
    bound, failed = await outcomes(binds)
    assert len(bound) == CONCURRENT_BINDS
    assert {e.code() for e in failed} == {grpc.StatusCode.ABORTED}
    numbers = sorted(p.policy_number for p in bound)
    assert numbers == [f"POL-{n:08d}" for n in range(1, CONCURRENT_BINDS + 1)]
    assert await counter(tenant, "POLICY") == CONCURRENT_BINDS
    # Another company's sequence is its own.
    other = await tenant.harness.tenant()
    assert (await other.in_force()).policy_number == "POL-00000001"


async def test_the_same_etag_wins_once(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    policy = await tenant.in_force()
    calls = [
        policies.CancelPolicy(
            pb.CancelPolicyRequest(
                policy_id=policy.id,
                etag=policy.etag,
                reason=P.MEMBER_REQUEST,
                request_id=new_request_id(),
            ),
            metadata=md,
        )
        for _ in range(5)
    ]
    ok, failed = await outcomes(calls)
    assert len(ok) == 1 and ok[0].state == P.CANCELLED
    assert [e.code() for e in failed] == [grpc.StatusCode.ABORTED] * 4
    assert {error_info(e).reason for e in failed} == {"ETAG_MISMATCH"}
    log = await policies.ListPolicyStatusChanges(
        pb.ListPolicyStatusChangesRequest(policy_id=policy.id), metadata=md
    )
    assert [c.transition for c in log.policy_status_changes].count("cancel") == 1


async def test_concurrent_binds_with_one_etag_use_one_number(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    quoted = await tenant.quoted(await tenant.holder(), await tenant.product())
    ok, failed = await outcomes(
        [
            policies.BindPolicy(
                pb.BindPolicyRequest(policy_id=quoted.id, etag=quoted.etag), metadata=md
            )
            for _ in range(4)
        ]
    )
    assert len(ok) == 1 and len(failed) == 3
    assert {e.code() for e in failed} == {grpc.StatusCode.ABORTED}
    assert ok[0].policy_number == "POL-00000001"
    assert (await tenant.in_force()).policy_number == "POL-00000002"


async def test_a_retried_bind_happens_once(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    quoted = await tenant.quoted(await tenant.holder(), await tenant.product())
    request_id = new_request_id()
    request = pb.BindPolicyRequest(policy_id=quoted.id, etag=quoted.etag, request_id=request_id)
    # Concurrent duplicates wait for the first and then replay it.
    ok, failed = await outcomes([policies.BindPolicy(request, metadata=md) for _ in range(5)])
    assert not failed
    assert {p.policy_number for p in ok} == {"POL-00000001"}
    # A later retry (the etag is stale by now) returns the result, not ABORTED.
    again = await policies.BindPolicy(request, metadata=md)
    assert again.policy_number == "POL-00000001" and again.state == P.IN_FORCE
    log = await policies.ListPolicyStatusChanges(
        pb.ListPolicyStatusChangesRequest(policy_id=quoted.id), metadata=md
    )
    assert [c.transition for c in log.policy_status_changes].count("bind") == 1
    assert await counter(tenant, "POLICY") == 1
    # The same request id for another policy is refused.
    other = await tenant.quoted(await tenant.holder(), await tenant.product())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.BindPolicy(
            pb.BindPolicyRequest(policy_id=other.id, request_id=request_id), metadata=md
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "REQUEST_ID_REUSED"


async def test_a_failed_call_leaves_its_request_id_usable(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    policy = await tenant.in_force()
    request_id = new_request_id()

    def endorse(day: object) -> pb.EndorsePolicyRequest:
        return pb.EndorsePolicyRequest(
            policy_id=policy.id,
            request_id=request_id,
            effective_date=day,
            description="raise the sum insured",
            policy=resources_pb2.Policy(sum_insured=money("200000")),
            update_mask={"paths": ["sum_insured"]},
        )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.EndorsePolicy(endorse(gdate(TODAY + timedelta(days=900))), metadata=md)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    endorsed = await policies.EndorsePolicy(endorse(gdate(TODAY)), metadata=md)
    replayed = await policies.EndorsePolicy(endorse(gdate(TODAY)), metadata=md)
    assert endorsed.version == replayed.version == 2


async def test_a_retried_payment_pays_once(tenant: Tenant) -> None:
    claims, md = tenant.harness.claims, await tenant.md("claims-adjuster")
    claim = await tenant.claim_under_review(await tenant.in_force(), claimed="500")
    await claims.ApproveClaim(
        cb.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("400")), metadata=md
    )
    request = cb.PayClaimRequest(
        claim_id=claim.id, payment_reference="TRX-9", request_id=new_request_id()
    )
    ok, failed = await outcomes([claims.PayClaim(request, metadata=md) for _ in range(3)])
    assert not failed and {c.state for c in ok} == {C.PAID}
    log = await claims.ListClaimLogEntries(
        cb.ListClaimLogEntriesRequest(claim_id=claim.id), metadata=md
    )
    assert [e.action for e in log.claim_log_entries].count("pay") == 1
    payments = await claims.ListClaimPayments(
        cb.ListClaimPaymentsRequest(claim_id=claim.id), metadata=md
    )
    assert [p.amount.units for p in payments.payments] == [400]


async def test_concurrent_creates_with_one_request_id_create_once(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md()
    holder, product = await tenant.holder(), await tenant.product()
    request = pb.CreatePolicyRequest(
        policy=resources_pb2.Policy(
            policyholder_id=holder.id,
            product_id=product.id,
            effective_date=gdate(TODAY),
            sum_insured=money("1000"),
        ),
        request_id=new_request_id(),
    )
    ok, failed = await outcomes([policies.CreatePolicy(request, metadata=md) for _ in range(5)])
    assert not failed and len({p.id for p in ok}) == 1
    listed = await policies.ListPolicies(
        pb.ListPoliciesRequest(filter=f'policyholder_id = "{holder.id}"'), metadata=md
    )
    assert len(listed.policies) == 1
    claim_request = cb.CreateClaimRequest(
        claim=resources_pb2.Claim(
            policy_id=(await tenant.in_force()).id,
            claimant=resources_pb2.InsuredMember(policyholder=True),
            claim_type=C.MEDICAL,
            description="twice sent",
            coverage_code="OUTPATIENT",
            incident_date=gdate(TODAY - timedelta(days=1)),
            claimed_amount=money("10"),
        ),
        request_id=new_request_id(),
    )
    first = await tenant.harness.claims.CreateClaim(claim_request, metadata=md)
    second = await tenant.harness.claims.CreateClaim(claim_request, metadata=md)
    assert first.id == second.id


async def refused_with_other_arguments(
    call: Callable[..., Any], same: object, other: object, md: list[tuple[str, str]]
) -> None:
    """``same`` sent twice creates once; ``other`` under its request id is refused."""
    first = await call(same, metadata=md)
    assert (await call(same, metadata=md)).id == first.id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(other, metadata=md)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "REQUEST_ID_REUSED"


async def test_a_request_id_sent_again_with_other_arguments_is_refused(tenant: Tenant) -> None:
    """A replay answers with the first call's resource only when it repeats the
    first call; the same request id with other arguments is REQUEST_ID_REUSED
    and changes nothing (CreatePolicy and CreateClaim)."""
    policies, claims, md = tenant.harness.policies, tenant.harness.claims, await tenant.md()
    holder, product = await tenant.holder(), await tenant.product()
    in_force = await tenant.in_force()
    request_ids = new_request_id(), new_request_id()

    def policy(sum_insured: str) -> pb.CreatePolicyRequest:
        body = resources_pb2.Policy(
            policyholder_id=holder.id,
            product_id=product.id,
            effective_date=gdate(TODAY),
            sum_insured=money(sum_insured),
        )
        return pb.CreatePolicyRequest(policy=body, request_id=request_ids[0])

    def claim(amount: str) -> cb.CreateClaimRequest:
        body = resources_pb2.Claim(
            policy_id=in_force.id,
            claimant=resources_pb2.InsuredMember(policyholder=True),
            claim_type=C.MEDICAL,
            description="sent twice",
            coverage_code="OUTPATIENT",
            incident_date=gdate(TODAY - timedelta(days=1)),
            claimed_amount=money(amount),
        )
        return cb.CreateClaimRequest(claim=body, request_id=request_ids[1])

    await refused_with_other_arguments(policies.CreatePolicy, policy("1000"), policy("2000"), md)
    listed = await policies.ListPolicies(
        pb.ListPoliciesRequest(filter=f'policyholder_id = "{holder.id}"'), metadata=md
    )
    assert [p.sum_insured.units for p in listed.policies] == [1000]
    await refused_with_other_arguments(claims.CreateClaim, claim("10"), claim("99"), md)
    listed_claims = await claims.ListClaims(
        cb.ListClaimsRequest(filter=f'policy_id = "{in_force.id}"'), metadata=md
    )
    assert [c.claimed_amount.units for c in listed_claims.claims] == [10]
