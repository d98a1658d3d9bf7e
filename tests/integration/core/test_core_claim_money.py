"""Claim money over gRPC on real PostgreSQL: the benefit against the cover and
its accumulators, cover checked again at money steps, reserves, payments as
resources, voids, recoveries, the extended lifecycle and request ids."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from core_harness import TODAY, C, P, Tenant, amount, gdate, money, new_request_id
from sqlalchemy import text
from support.grpc_errors import error_info, field_violations

from cardinsa.core.v1 import claim_service_pb2 as cb
from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import product_service_pb2 as rb
from cardinsa.core.v1 import resources_pb2 as res

PAY = res.ClaimPayment


async def money_product(
    tenant: Tenant,
    *,
    limit: str = "5000",
    deductible: str = "500",
    coinsurance_bp: int | None = 2000,
    period: Any = res.Coverage.PER_TERM,
) -> res.Product:
    """A product whose one coverage (OUTPATIENT) has the given cost sharing."""
    md = await tenant.md()
    coverage = res.Coverage(
        code="OUTPATIENT",
        name="Outpatient care",
        limit=money(limit),
        limit_period=period,
        deductible=money(deductible),
    )
    if coinsurance_bp is not None:
        coverage.coinsurance_basis_points = coinsurance_bp
    product = await tenant.harness.products.CreateProduct(
        rb.CreateProductRequest(
            product=res.Product(
                code=f"M-{uuid.uuid4().hex[:8].upper()}",
                line_of_business=res.Product.MEDICAL,
                name="Health Money",
                currency_code="USD",
                base_premium=money("500"),
                term_months=12,
                coverages=[coverage],
            )
        ),
        metadata=md,
    )
    return await tenant.harness.products.ActivateProduct(
        rb.ActivateProductRequest(product_id=product.id), metadata=md
    )


async def approve(tenant: Tenant, claim_id: str, value: str, **kwargs: Any) -> res.Claim:
    return await tenant.harness.claims.ApproveClaim(
        cb.ApproveClaimRequest(claim_id=claim_id, approved_amount=money(value), **kwargs),
        metadata=await tenant.md(),
    )


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def get(tenant: Tenant, claim_id: str) -> res.Claim:
    return await tenant.harness.claims.GetClaim(
        cb.GetClaimRequest(claim_id=claim_id), metadata=await tenant.md()
    )


async def accumulators(tenant: Tenant, policy_id: str) -> dict[str, tuple[Decimal, Decimal]]:
    """The policy's accumulators by coverage code: (deductible used, limit used)."""
    db = tenant.harness.app.ctx.db
    async with db.unit_of_work(company_id=uuid.UUID(tenant.company_id)) as session:
        rows = await session.execute(
            text(
                "SELECT coverage_code, deductible_used, limit_used FROM core.claim_accumulators "
                "WHERE scope_id = :p"
            ),
            {"p": policy_id},
        )
        return {code: (Decimal(d), Decimal(u)) for code, d, u in rows}


def parts(benefit: res.ClaimBenefit) -> tuple[Decimal, ...]:
    return tuple(
        amount(getattr(benefit, name))
        for name in ("claimed", "deductible", "copay", "coinsurance", "limit_cut", "payable")
    )


async def test_three_claims_of_5000_pay_what_the_cover_allows(tenant: Tenant) -> None:
    """The issue's example: 5 000 per term, 500 deductible, 20 % co-insurance."""
    policy = await tenant.in_force(product=await money_product(tenant))
    claims = [await tenant.claim_under_review(policy, claimed="5000") for _ in range(3)]
    assert parts(claims[0].benefit) == (5000, 500, 0, 900, 0, 3600)
    error = await refused(approve(tenant, claims[0].id, "3600.01"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error) == {
        "approved_amount": "must not exceed the payable amount 3600.00 USD"
    }
    first = await approve(tenant, claims[0].id, "3600")
    assert first.benefit.final and parts(first.benefit)[-1] == 3600
    # The second: the deductible is used up, 1 400 of the limit is left.
    error = await refused(approve(tenant, claims[1].id, "4000"))
    assert error_info(error).metadata["payable_amount"] == "1400.00"
    second = await approve(tenant, claims[1].id, "1400")
    assert parts(second.benefit) == (5000, 0, 0, 1000, 2600, 1400)
    third = await refused(approve(tenant, claims[2].id, "0.01"))
    assert error_info(third).metadata["payable_amount"] == "0.00"
    assert await accumulators(tenant, policy.id) == {
        "OUTPATIENT": (Decimal(500), Decimal(5000)),
        "*SUM_INSURED": (Decimal(0), Decimal(5000)),
    }
    md = await tenant.md()
    for claim in (first, second):
        paid = await tenant.harness.claims.PayClaim(
            cb.PayClaimRequest(claim_id=claim.id, payment_reference="TRX"), metadata=md
        )
        assert paid.state == C.PAID
    total = sum([amount((await get(tenant, c.id)).paid_amount) for c in claims], Decimal(0))
    assert total == 5000


async def test_unapprove_gives_the_limit_and_the_deductible_back(tenant: Tenant) -> None:
    policy = await tenant.in_force(product=await money_product(tenant))
    a = await tenant.claim_under_review(policy, claimed="5000")
    b = await tenant.claim_under_review(policy, claimed="5000")
    await approve(tenant, a.id, "3600")
    before = await accumulators(tenant, policy.id)
    md = await tenant.md()
    back = await tenant.harness.claims.UnapproveClaim(
        cb.UnapproveClaimRequest(claim_id=a.id, reason="wrong invoice"), metadata=md
    )
    assert back.state == C.UNDER_REVIEW and not back.HasField("approved_amount")
    assert await accumulators(tenant, policy.id) == {
        "OUTPATIENT": (Decimal(0), Decimal(0)),
        "*SUM_INSURED": (Decimal(0), Decimal(0)),
    }
    # b now gets what a had: the deductible once, the limit in full.
    second = await approve(tenant, b.id, "3600")
    assert parts(second.benefit) == (5000, 500, 0, 900, 0, 3600)
    assert await accumulators(tenant, policy.id) == before


async def test_cover_is_checked_again_when_approving(tenant: Tenant) -> None:
    md = await tenant.md()
    policy = await tenant.in_force(effective=TODAY - timedelta(days=60))
    claim = await tenant.claim_under_review(policy, incident=TODAY - timedelta(days=10))
    await tenant.harness.policies.CancelPolicy(
        pb.CancelPolicyRequest(
            policy_id=policy.id, reason=P.FRAUD, effective_date=gdate(TODAY - timedelta(days=20))
        ),
        metadata=md,
    )
    error = await refused(approve(tenant, claim.id, "100"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "POLICY_NOT_IN_FORCE"
    assert (await get(tenant, claim.id)).state == C.UNDER_REVIEW


async def test_a_removed_claimant_is_not_paid(tenant: Tenant) -> None:
    md = await tenant.md()
    holder = await tenant.holder(dependents=1)
    policy = await tenant.in_force(holder, effective=TODAY - timedelta(days=60))
    child = res.InsuredMember(dependent_id=holder.dependents[0].id)
    claim = await tenant.harness.claims.CreateClaim(
        cb.CreateClaimRequest(
            claim=res.Claim(
                policy_id=policy.id,
                claimant=child,
                claim_type=C.MEDICAL,
                description="fever",
                coverage_code="OUTPATIENT",
                incident_date=gdate(TODAY - timedelta(days=5)),
                claimed_amount=money("100"),
            )
        ),
        metadata=md,
    )
    for step in (cb.SubmitClaimRequest, cb.ReviewClaimRequest):
        name = step.DESCRIPTOR.name.removesuffix("Request")
        await getattr(tenant.harness.claims, name)(step(claim_id=claim.id), metadata=md)
    await tenant.harness.policies.EndorsePolicy(
        pb.EndorsePolicyRequest(
            policy_id=policy.id,
            effective_date=gdate(TODAY - timedelta(days=30)),
            description="child leaves",
            policy=res.Policy(insured_members=[res.InsuredMember(policyholder=True)]),
            update_mask={"paths": ["insured_members"]},
        ),
        metadata=md,
    )
    error = await refused(approve(tenant, claim.id, "50"))
    assert error_info(error).reason == "CLAIMANT_NOT_INSURED"


async def test_payments_are_resources_within_the_approved_amount(tenant: Tenant) -> None:
    claims, md = tenant.harness.claims, await tenant.md()
    claim = await tenant.claim_under_review(await tenant.in_force(), claimed="1000")
    approved = await approve(tenant, claim.id, "800")

    async def pay(value: str, **kwargs: Any) -> res.ClaimPayment:
        return await claims.CreateClaimPayment(
            cb.CreateClaimPaymentRequest(
                claim_id=claim.id,
                payment=res.ClaimPayment(
                    cost_type=res.INDEMNITY,
                    payee="Dr. Weber",
                    method=PAY.BANK_TRANSFER,
                    reference="TRX-A",
                    amount=money(value),
                ),
                **kwargs,
            ),
            metadata=md,
        )

    first = await pay("300")
    assert first.state == PAY.PENDING and first.created_by
    second = await pay("400")
    now = await get(tenant, claim.id)
    assert now.state == C.APPROVED and amount(now.paid_amount) == 700
    assert amount(now.indemnity_reserve) == 100
    error = await refused(pay("100.01"))
    assert error_info(error).reason == "EXCEEDS_RESERVE"
    assert error_info(error).metadata["open_reserve"] == "100.00"
    # Close refuses while a reserve is open.
    error = await refused(claims.CloseClaim(cb.CloseClaimRequest(claim_id=claim.id), metadata=md))
    assert error_info(error).reason == "OPEN_RESERVE"
    issued = await claims.IssueClaimPayment(
        cb.IssueClaimPaymentRequest(claim_id=claim.id, payment_id=second.id, etag=second.etag),
        metadata=md,
    )
    assert issued.state == PAY.ISSUED
    cleared = await claims.ClearClaimPayment(
        cb.ClearClaimPaymentRequest(claim_id=claim.id, payment_id=second.id), metadata=md
    )
    assert cleared.state == PAY.CLEARED
    error = await refused(
        claims.VoidClaimPayment(
            cb.VoidClaimPaymentRequest(claim_id=claim.id, payment_id=second.id, reason="x"),
            metadata=md,
        )
    )
    assert error_info(error).reason == "INVALID_STATE_TRANSITION"
    voided = await claims.VoidClaimPayment(
        cb.VoidClaimPaymentRequest(claim_id=claim.id, payment_id=first.id, reason="wrong IBAN"),
        metadata=md,
    )
    assert voided.state == PAY.VOIDED and voided.void_reason == "wrong IBAN"
    now = await get(tenant, claim.id)
    assert amount(now.paid_amount) == 400 and amount(now.indemnity_reserve) == 400
    error = await refused(
        claims.VoidClaimPayment(
            cb.VoidClaimPaymentRequest(claim_id=claim.id, payment_id=first.id, reason="again"),
            metadata=md,
        )
    )
    assert error_info(error).reason == "INVALID_STATE_TRANSITION"
    last = await pay("400")
    paid = await get(tenant, claim.id)
    assert paid.state == C.PAID and amount(paid.paid_amount) == 800
    listed = await claims.ListClaimPayments(
        cb.ListClaimPaymentsRequest(claim_id=claim.id), metadata=md
    )
    assert [p.id for p in listed.payments] == [first.id, second.id, last.id]
    fetched = await claims.GetClaimPayment(
        cb.GetClaimPaymentRequest(claim_id=claim.id, payment_id=last.id), metadata=md
    )
    assert fetched == last
    closed = await claims.CloseClaim(cb.CloseClaimRequest(claim_id=claim.id), metadata=md)
    assert closed.state == C.CLOSED and approved.approved_amount == closed.approved_amount
    log = await claims.ListClaimLogEntries(
        cb.ListClaimLogEntriesRequest(claim_id=claim.id, page_size=100), metadata=md
    )
    actions = [e.action for e in reversed(log.claim_log_entries)]
    assert actions[-7:] == [
        "payment.create",
        "payment.create",
        "payment.issue",
        "payment.clear",
        "payment.void",
        "payment.create",
        "close",
    ]


async def test_expense_reserve_and_payments(tenant: Tenant) -> None:
    claims, md = tenant.harness.claims, await tenant.md()
    claim = await tenant.claim_under_review(await tenant.in_force(), claimed="100")
    expense = res.ClaimPayment(
        cost_type=res.EXPENSE, payee="Expert GmbH", method=PAY.CHEQUE, amount=money("250")
    )
    error = await refused(
        claims.CreateClaimPayment(
            cb.CreateClaimPaymentRequest(claim_id=claim.id, payment=expense), metadata=md
        )
    )
    assert error_info(error).reason == "EXCEEDS_RESERVE"
    reserved = await claims.SetClaimReserve(
        cb.SetClaimReserveRequest(
            claim_id=claim.id, cost_type=res.EXPENSE, amount=money("300"), note="expert"
        ),
        metadata=md,
    )
    assert amount(reserved.expense_reserve) == 300
    await claims.CreateClaimPayment(
        cb.CreateClaimPaymentRequest(claim_id=claim.id, payment=expense), metadata=md
    )
    now = await get(tenant, claim.id)
    assert amount(now.expense_paid) == 250 and amount(now.expense_reserve) == 50
    # Expenses are not limited by the cover: the claim's benefit is untouched.
    assert amount(now.benefit.payable) == 80
    # A reserve change needs the band of its amount: the adjuster holds band 1.
    adjuster = await tenant.md("claims-adjuster")
    error = await refused(
        claims.SetClaimReserve(
            cb.SetClaimReserveRequest(
                claim_id=claim.id, cost_type=res.EXPENSE, amount=money("1000.01")
            ),
            metadata=adjuster,
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(error).reason == "APPROVAL_AUTHORITY_EXCEEDED"


async def test_withdraw_deny_and_recoveries(tenant: Tenant) -> None:
    claims, md = tenant.harness.claims, await tenant.md()
    agent = await tenant.md("agent")
    policy = await tenant.in_force()
    draft = await tenant.claim(policy)
    withdrawn = await claims.WithdrawClaim(
        cb.WithdrawClaimRequest(claim_id=draft.id, reason="paid it myself"), metadata=agent
    )
    assert withdrawn.state == C.WITHDRAWN and withdrawn.withdraw_reason == "paid it myself"
    submitted = await claims.SubmitClaim(
        cb.SubmitClaimRequest(claim_id=(await tenant.claim(policy)).id), metadata=md
    )
    denied = await claims.DenyClaim(
        cb.DenyClaimRequest(claim_id=submitted.id, reason="duplicate"), metadata=md
    )
    assert denied.state == C.DENIED

    claim = await tenant.claim_under_review(policy, claimed="1000")
    await approve(tenant, claim.id, "800")
    await claims.PayClaim(cb.PayClaimRequest(claim_id=claim.id, payment_reference="T"), metadata=md)
    salvage = await claims.CreateClaimRecovery(
        cb.CreateClaimRecoveryRequest(
            claim_id=claim.id,
            recovery=res.ClaimRecovery(kind=res.ClaimRecovery.SALVAGE, amount=money("150")),
        ),
        metadata=md,
    )
    assert salvage.id and salvage.kind == res.ClaimRecovery.SALVAGE
    now = await get(tenant, claim.id)
    assert amount(now.recovered_amount) == 150 and amount(now.net_paid) == 650
    await claims.CloseClaim(cb.CloseClaimRequest(claim_id=claim.id), metadata=md)
    reopened = await claims.ReopenClaim(
        cb.ReopenClaimRequest(claim_id=claim.id, reason="fraud suspected"), metadata=md
    )
    error = await refused(
        claims.DenyClaim(cb.DenyClaimRequest(claim_id=claim.id, reason="fraud"), metadata=md)
    )
    assert error_info(error).reason == "CLAIM_HAS_PAYMENTS"
    error = await refused(approve(tenant, claim.id, "500"))
    assert error_info(error).reason == "APPROVED_BELOW_PAID"
    await claims.CreateClaimRecovery(
        cb.CreateClaimRecoveryRequest(
            claim_id=claim.id,
            recovery=res.ClaimRecovery(
                kind=res.ClaimRecovery.OVERPAYMENT, amount=money("800"), reference="REFUND-1"
            ),
        ),
        metadata=md,
    )
    assert await accumulators(tenant, policy.id) == {
        "OUTPATIENT": (Decimal(0), Decimal(0)),
        "*SUM_INSURED": (Decimal(0), Decimal(0)),
    }
    final = await claims.DenyClaim(
        cb.DenyClaimRequest(claim_id=reopened.id, reason="fraud"), metadata=md
    )
    assert final.state == C.DENIED and amount(final.paid_amount) == 0
    listed = await claims.ListClaimRecoveries(
        cb.ListClaimRecoveriesRequest(claim_id=claim.id), metadata=md
    )
    assert [r.kind for r in listed.recoveries] == [
        res.ClaimRecovery.SALVAGE,
        res.ClaimRecovery.OVERPAYMENT,
    ]


async def test_a_request_id_replayed_with_other_arguments_is_refused(tenant: Tenant) -> None:
    claims, md = tenant.harness.claims, await tenant.md()
    claim = await tenant.claim_under_review(await tenant.in_force(), claimed="1000")
    request_id = new_request_id()
    first = await approve(tenant, claim.id, "500", request_id=request_id)
    again = await approve(tenant, claim.id, "500", request_id=request_id)
    assert again.etag == first.etag
    error = await refused(approve(tenant, claim.id, "600", request_id=request_id))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "REQUEST_ID_REUSED"
    payment = res.ClaimPayment(
        cost_type=res.INDEMNITY, payee="X", method=PAY.CASH, amount=money("100")
    )
    pay_id = new_request_id()
    request = cb.CreateClaimPaymentRequest(claim_id=claim.id, payment=payment, request_id=pay_id)
    made = await claims.CreateClaimPayment(request, metadata=md)
    replay = await claims.CreateClaimPayment(request, metadata=md)
    assert replay.id == made.id
    payment.amount.CopyFrom(money("200"))
    error = await refused(
        claims.CreateClaimPayment(
            cb.CreateClaimPaymentRequest(claim_id=claim.id, payment=payment, request_id=pay_id),
            metadata=md,
        )
    )
    assert error_info(error).reason == "REQUEST_ID_REUSED"
    assert amount((await get(tenant, claim.id)).paid_amount) == 100


async def test_bad_payment_input_is_a_precise_error(tenant: Tenant) -> None:
    claims, md = tenant.harness.claims, await tenant.md()
    claim = await tenant.claim_under_review(await tenant.in_force())
    error = await refused(
        claims.CreateClaimPayment(
            cb.CreateClaimPaymentRequest(claim_id=claim.id, payment=res.ClaimPayment()),
            metadata=md,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(error)) == {
        "payment.payee",
        "payment.cost_type",
        "payment.method",
        "payment.amount",
    }
    error = await refused(
        claims.CreateClaimPayment(
            cb.CreateClaimPaymentRequest(
                claim_id=claim.id,
                payment=res.ClaimPayment(
                    cost_type=res.INDEMNITY,
                    payee="x" * 201,
                    method=PAY.CASH,
                    amount=money("-5"),
                ),
            ),
            metadata=md,
        )
    )
    assert "payment.payee" in field_violations(error)
    error = await refused(
        claims.GetClaimPayment(
            cb.GetClaimPaymentRequest(claim_id=claim.id, payment_id=str(uuid.uuid4())),
            metadata=md,
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_cover_is_checked_again_at_each_indemnity_payment(tenant: Tenant) -> None:
    """An admin overrides the cover check to cancel back past an approved claim: the
    claim's outstanding indemnity is then not paid, though money can still come back."""
    claims, md = tenant.harness.claims, await tenant.md()
    policy = await tenant.in_force(effective=TODAY - timedelta(days=60))
    claim = await tenant.claim_under_review(
        policy, claimed="1000", incident=TODAY - timedelta(days=10)
    )
    await approve(tenant, claim.id, "800")
    payment = res.ClaimPayment(
        cost_type=res.INDEMNITY, payee="Clinic", method=PAY.BANK_TRANSFER, amount=money("300")
    )
    made = await claims.CreateClaimPayment(
        cb.CreateClaimPaymentRequest(claim_id=claim.id, payment=payment), metadata=md
    )
    await tenant.harness.policies.CancelPolicy(
        pb.CancelPolicyRequest(
            policy_id=policy.id,
            reason=P.FRAUD,
            effective_date=gdate(TODAY - timedelta(days=20)),
            override_reason="fraud established by the court",
        ),
        metadata=md,
    )
    error = await refused(
        claims.CreateClaimPayment(
            cb.CreateClaimPaymentRequest(claim_id=claim.id, payment=payment), metadata=md
        )
    )
    assert error_info(error).reason == "POLICY_NOT_IN_FORCE"
    error = await refused(
        claims.PayClaim(cb.PayClaimRequest(claim_id=claim.id, payment_reference="T"), metadata=md)
    )
    assert error_info(error).reason == "POLICY_NOT_IN_FORCE"
    voided = await claims.VoidClaimPayment(
        cb.VoidClaimPaymentRequest(claim_id=claim.id, payment_id=made.id, reason="fraud"),
        metadata=md,
    )
    assert voided.state == PAY.VOIDED
    back = await claims.UnapproveClaim(
        cb.UnapproveClaimRequest(claim_id=claim.id, reason="no cover"), metadata=md
    )
    assert back.state == C.UNDER_REVIEW and amount(back.paid_amount) == 0
    assert await accumulators(tenant, policy.id) == {
        "OUTPATIENT": (Decimal(0), Decimal(0)),
        "*SUM_INSURED": (Decimal(0), Decimal(0)),
    }
