"""Attack suite: a claims adjuster of band 1 tries to get more paid on a claim
than the cover and the authority allow, by every sequence of calls at hand."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from decimal import Decimal
from typing import Any

import grpc
from google.type import money_pb2
from hostile_attacks import AttackLog
from hostile_harness import Tenants, strong_password
from support.grpc_errors import error_info
from support.identity_harness import IdentityHarness, unique_email

from cardinsa.core.v1 import claim_service_pb2 as cb
from cardinsa.core.v1 import claim_service_pb2_grpc, resources_pb2
from cardinsa_identity.application.bootstrap import ensure_user_with_role

Metadata = list[tuple[str, str]]


def eur(value: str, currency: str = "EUR") -> money_pb2.Money:
    amount = Decimal(value)
    units = int(amount)
    return money_pb2.Money(
        currency_code=currency, units=units, nanos=int((amount - units) * 1_000_000_000)
    )


def value(money: money_pb2.Money) -> Decimal:
    return Decimal(money.units) + Decimal(money.nanos) / 1_000_000_000


async def answer(call: Awaitable[Any]) -> tuple[str, str]:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code().name, error_info(error).reason
    return "OK", ""


async def adjuster(identity: IdentityHarness, tenants: Tenants) -> Metadata:
    password = strong_password()
    account = await ensure_user_with_role(
        identity.app.ctx,
        email=unique_email("hostile-adjuster"),
        password=password,
        company_id=uuid.UUID(tenants.attacker.company_id),
        role_name="claims-adjuster",
    )
    token = (await identity.login(account.email, password)).access_token
    return [("authorization", f"Bearer {token}")]


async def test_a_band_1_adjuster_cannot_get_more_paid_than_allowed(
    identity: IdentityHarness,
    core_channel: grpc.aio.Channel,
    tenants: Tenants,
    attacks: AttackLog,
    core_target: Any,
) -> None:
    claims = claim_service_pb2_grpc.ClaimServiceStub(core_channel)
    admin, me = tenants.attacker.bearer, await adjuster(identity, tenants)
    existing = await claims.GetClaim(
        cb.GetClaimRequest(claim_id=tenants.attacker.ids["claim_id"]), metadata=admin
    )
    claim = await claims.CreateClaim(
        cb.CreateClaimRequest(
            claim=resources_pb2.Claim(
                policy_id=existing.policy_id,
                claimant=resources_pb2.InsuredMember(policyholder=True),
                claim_type=resources_pb2.Claim.MEDICAL,
                description="hostile: the biggest bill",
                coverage_code="OUTPATIENT",
                incident_date=existing.incident_date,
                claimed_amount=eur("5000"),
            )
        ),
        metadata=me,
    )
    claim_id = claim.id
    bands = await claims.GetApprovalBands(cb.GetApprovalBandsRequest(), metadata=admin)
    if bands.band_1_limit.currency_code != "EUR":
        await claims.UpdateApprovalBands(
            cb.UpdateApprovalBandsRequest(
                approval_bands=resources_pb2.ApprovalBands(
                    band_1_limit=eur("1000"), band_2_limit=eur("5000")
                )
            ),
            metadata=admin,
        )
    await claims.SubmitClaim(cb.SubmitClaimRequest(claim_id=claim_id), metadata=me)
    reviewed = await claims.ReviewClaim(cb.ReviewClaimRequest(claim_id=claim_id), metadata=me)
    payable = value(reviewed.benefit.payable)

    def approve(amount: str, currency: str = "EUR") -> Awaitable[Any]:
        return claims.ApproveClaim(
            cb.ApproveClaimRequest(claim_id=claim_id, approved_amount=eur(amount, currency)),
            metadata=me,
        )

    def pay(amount: str) -> Awaitable[Any]:
        return claims.CreateClaimPayment(
            cb.CreateClaimPaymentRequest(
                claim_id=claim_id,
                payment=resources_pb2.ClaimPayment(
                    cost_type=resources_pb2.INDEMNITY,
                    payee="attacker's friend",
                    method=resources_pb2.ClaimPayment.BANK_TRANSFER,
                    amount=eur(amount),
                ),
            ),
            metadata=me,
        )

    with attacks.attempt("approve beyond one's authority band", "core"):
        assert await answer(approve("5000")) == ("PERMISSION_DENIED", "APPROVAL_AUTHORITY_EXCEEDED")
        assert await answer(approve("1000.01")) == (
            "PERMISSION_DENIED",
            "APPROVAL_AUTHORITY_EXCEEDED",
        )
        assert (await answer(approve("1000", "USD")))[0] in {
            "INVALID_ARGUMENT",
            "FAILED_PRECONDITION",
        }
        assert (await approve("1000")).state == resources_pb2.Claim.APPROVED
        # A bigger total through a second approval needs the bigger band too.
        assert (await answer(approve("1000.01")))[0] == "PERMISSION_DENIED"

    with attacks.attempt("pay more than approved", "core"):
        assert (await answer(pay("1000.01")))[0] in {"PERMISSION_DENIED", "FAILED_PRECONDITION"}
        assert (await answer(pay("-5")))[0] == "INVALID_ARGUMENT"
        # Five payments of 600 at once against 1 000 outstanding: one gets through.
        results = [await answer(c) for c in asyncio.as_completed([pay("600") for _ in range(5)])]
        assert sorted(results).count(("OK", "")) == 1, results
        payments = await claims.ListClaimPayments(
            cb.ListClaimPaymentsRequest(claim_id=claim_id), metadata=me
        )
        [first] = payments.payments
        void = cb.VoidClaimPaymentRequest(claim_id=claim_id, payment_id=first.id, reason="oops")
        await claims.VoidClaimPayment(void, metadata=me)
        assert (await answer(claims.VoidClaimPayment(void, metadata=me)))[0] == (
            "FAILED_PRECONDITION"
        )
        await pay("400")
        await pay("600")
        assert await answer(pay("0.01")) == ("FAILED_PRECONDITION", "INVALID_STATE_TRANSITION")
        # Fully paid: un-approving (to approve afresh) is refused.
        unapprove = cb.UnapproveClaimRequest(claim_id=claim_id, reason="again")
        assert (await answer(claims.UnapproveClaim(unapprove, metadata=me)))[0] == (
            "FAILED_PRECONDITION"
        )
        salvage = cb.CreateClaimRecoveryRequest(
            claim_id=claim_id,
            recovery=resources_pb2.ClaimRecovery(
                kind=resources_pb2.ClaimRecovery.SALVAGE, amount=eur("1000.01")
            ),
        )
        assert await answer(claims.CreateClaimRecovery(salvage, metadata=me)) == (
            "FAILED_PRECONDITION",
            "RECOVERY_EXCEEDS_PAID",
        )

    with attacks.attempt("paid beyond the cover in the end", "core"):
        final = await claims.GetClaim(cb.GetClaimRequest(claim_id=claim_id), metadata=me)
        listed = await claims.ListClaimPayments(
            cb.ListClaimPaymentsRequest(claim_id=claim_id), metadata=me
        )
        live = [
            value(p.amount) for p in listed.payments if p.state != resources_pb2.ClaimPayment.VOIDED
        ]
        assert sum(live) == value(final.paid_amount) == value(final.approved_amount) == 1000
        assert value(final.approved_amount) <= payable
        assert final.state == resources_pb2.Claim.PAID
