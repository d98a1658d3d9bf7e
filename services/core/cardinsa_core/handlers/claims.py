"""ClaimService servicer."""

from __future__ import annotations

from typing import Any

from cardinsa.core.v1 import claim_service_pb2 as pb
from cardinsa.core.v1 import claim_service_pb2_grpc, resources_pb2
from cardinsa_core.application.claim_payments import ClaimPayments, PaymentInput, RecoveryInput
from cardinsa_core.application.claims import ClaimInput, ClaimUseCases
from cardinsa_core.domain.claims import ClaimType, CostType, PaymentMethod, RecoveryKind
from cardinsa_core.handlers.convert import (
    bands_to_proto,
    claim_log_to_proto,
    claim_settings_in,
    claim_settings_to_proto,
    claim_to_proto,
    enum_in,
    from_date,
    from_money,
    mask_paths,
    member_in,
    payment_to_proto,
    recovery_to_proto,
)

_CL = resources_pb2.Claim
_PAY = resources_pb2.ClaimPayment
_REC = resources_pb2.ClaimRecovery


def payment_input(message: resources_pb2.ClaimPayment) -> PaymentInput:
    return PaymentInput(
        cost_type=enum_in(CostType, resources_pb2.CostType, message.cost_type),
        payee=message.payee,
        method=enum_in(PaymentMethod, _PAY.Method, message.method),
        reference=message.reference,
        amount=from_money(message, "amount"),
    )


def recovery_input(message: resources_pb2.ClaimRecovery) -> RecoveryInput:
    return RecoveryInput(
        kind=enum_in(RecoveryKind, _REC.Kind, message.kind),
        amount=from_money(message, "amount"),
        reference=message.reference,
        note=message.note,
    )


def claim_input(message: resources_pb2.Claim) -> ClaimInput:
    return ClaimInput(
        policy_id=message.policy_id,
        claimant=member_in(message.claimant) if message.HasField("claimant") else None,
        claim_type=enum_in(ClaimType, _CL.ClaimType, message.claim_type),
        description=message.description,
        coverage_code=message.coverage_code,
        incident_date=from_date(message, "incident_date", "claim.incident_date"),
        report_date=from_date(message, "report_date", "claim.report_date"),
        claimed_amount=from_money(message, "claimed_amount"),
    )


class ClaimServicer(claim_service_pb2_grpc.ClaimServiceServicer):
    def __init__(self, claims: ClaimUseCases) -> None:
        self.claims = claims
        self.payments = ClaimPayments(claims)

    async def CreateClaim(
        self, request: pb.CreateClaimRequest, context: Any
    ) -> resources_pb2.Claim:
        row = await self.claims.create(claim_input(request.claim), request_id=request.request_id)
        return claim_to_proto(row)

    async def GetClaim(self, request: pb.GetClaimRequest, context: Any) -> resources_pb2.Claim:
        return claim_to_proto(await self.claims.get(request.claim_id))

    async def ListClaims(
        self, request: pb.ListClaimsRequest, context: Any
    ) -> pb.ListClaimsResponse:
        page = await self.claims.list_claims(
            page_size=request.page_size,
            page_token=request.page_token,
            filter=request.filter,
            order_by=request.order_by,
            show_deleted=request.show_deleted,
        )
        return pb.ListClaimsResponse(
            claims=[claim_to_proto(r) for r in page.items], next_page_token=page.next_page_token
        )

    async def UpdateClaim(
        self, request: pb.UpdateClaimRequest, context: Any
    ) -> resources_pb2.Claim:
        row = await self.claims.update(
            request.claim.id,
            claim_input(request.claim),
            mask_paths(request.update_mask),
            request.claim.etag,
        )
        return claim_to_proto(row)

    async def DeleteClaim(
        self, request: pb.DeleteClaimRequest, context: Any
    ) -> resources_pb2.Claim:
        return claim_to_proto(await self.claims.delete(request.claim_id, request.etag))

    async def UndeleteClaim(
        self, request: pb.UndeleteClaimRequest, context: Any
    ) -> resources_pb2.Claim:
        return claim_to_proto(await self.claims.undelete(request.claim_id, request.etag))

    async def SubmitClaim(
        self, request: pb.SubmitClaimRequest, context: Any
    ) -> resources_pb2.Claim:
        row = await self.claims.submit(request.claim_id, request.etag, request.request_id)
        return claim_to_proto(row)

    async def ReviewClaim(
        self, request: pb.ReviewClaimRequest, context: Any
    ) -> resources_pb2.Claim:
        row = await self.claims.review(request.claim_id, request.etag, request.request_id)
        return claim_to_proto(row)

    async def ApproveClaim(
        self, request: pb.ApproveClaimRequest, context: Any
    ) -> resources_pb2.Claim:
        row = await self.claims.approve(
            request.claim_id,
            request.etag,
            request.request_id,
            from_money(request, "approved_amount"),
            request.note,
        )
        return claim_to_proto(row)

    async def DenyClaim(self, request: pb.DenyClaimRequest, context: Any) -> resources_pb2.Claim:
        row = await self.claims.deny(
            request.claim_id, request.etag, request.request_id, request.reason
        )
        return claim_to_proto(row)

    async def PayClaim(self, request: pb.PayClaimRequest, context: Any) -> resources_pb2.Claim:
        row = await self.payments.pay_outstanding(
            request.claim_id, request.etag, request.request_id, request.payment_reference
        )
        return claim_to_proto(row)

    async def CloseClaim(self, request: pb.CloseClaimRequest, context: Any) -> resources_pb2.Claim:
        row = await self.claims.close(
            request.claim_id, request.etag, request.request_id, request.note
        )
        return claim_to_proto(row)

    async def ReopenClaim(
        self, request: pb.ReopenClaimRequest, context: Any
    ) -> resources_pb2.Claim:
        row = await self.claims.reopen(
            request.claim_id,
            request.etag,
            request.request_id,
            request.reason,
            from_money(request, "claimed_amount"),
        )
        return claim_to_proto(row)

    async def UnapproveClaim(
        self, request: pb.UnapproveClaimRequest, context: Any
    ) -> resources_pb2.Claim:
        row = await self.claims.unapprove(
            request.claim_id, request.etag, request.request_id, request.reason
        )
        return claim_to_proto(row)

    async def WithdrawClaim(
        self, request: pb.WithdrawClaimRequest, context: Any
    ) -> resources_pb2.Claim:
        row = await self.claims.withdraw(
            request.claim_id, request.etag, request.request_id, request.reason
        )
        return claim_to_proto(row)

    async def SetClaimReserve(
        self, request: pb.SetClaimReserveRequest, context: Any
    ) -> resources_pb2.Claim:
        row = await self.claims.set_reserve(
            request.claim_id,
            request.etag,
            request.request_id,
            cost_type=enum_in(CostType, resources_pb2.CostType, request.cost_type),
            amount=from_money(request, "amount"),
            note=request.note,
        )
        return claim_to_proto(row)

    async def CreateClaimPayment(
        self, request: pb.CreateClaimPaymentRequest, context: Any
    ) -> resources_pb2.ClaimPayment:
        row = await self.payments.create(
            request.claim_id, payment_input(request.payment), request_id=request.request_id
        )
        return payment_to_proto(row)

    async def GetClaimPayment(
        self, request: pb.GetClaimPaymentRequest, context: Any
    ) -> resources_pb2.ClaimPayment:
        return payment_to_proto(await self.payments.get(request.claim_id, request.payment_id))

    async def ListClaimPayments(
        self, request: pb.ListClaimPaymentsRequest, context: Any
    ) -> pb.ListClaimPaymentsResponse:
        page = await self.payments.list_payments(
            request.claim_id, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListClaimPaymentsResponse(
            payments=[payment_to_proto(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def IssueClaimPayment(
        self, request: pb.IssueClaimPaymentRequest, context: Any
    ) -> resources_pb2.ClaimPayment:
        row = await self.payments.issue(
            request.claim_id, request.payment_id, request.etag, request.request_id
        )
        return payment_to_proto(row)

    async def ClearClaimPayment(
        self, request: pb.ClearClaimPaymentRequest, context: Any
    ) -> resources_pb2.ClaimPayment:
        row = await self.payments.clear(
            request.claim_id, request.payment_id, request.etag, request.request_id
        )
        return payment_to_proto(row)

    async def VoidClaimPayment(
        self, request: pb.VoidClaimPaymentRequest, context: Any
    ) -> resources_pb2.ClaimPayment:
        row = await self.payments.void(
            request.claim_id, request.payment_id, request.etag, request.request_id, request.reason
        )
        return payment_to_proto(row)

    async def CreateClaimRecovery(
        self, request: pb.CreateClaimRecoveryRequest, context: Any
    ) -> resources_pb2.ClaimRecovery:
        row = await self.payments.recover(
            request.claim_id, recovery_input(request.recovery), request_id=request.request_id
        )
        return recovery_to_proto(row)

    async def ListClaimRecoveries(
        self, request: pb.ListClaimRecoveriesRequest, context: Any
    ) -> pb.ListClaimRecoveriesResponse:
        page = await self.payments.list_recoveries(
            request.claim_id, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListClaimRecoveriesResponse(
            recoveries=[recovery_to_proto(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def ListClaimLogEntries(
        self, request: pb.ListClaimLogEntriesRequest, context: Any
    ) -> pb.ListClaimLogEntriesResponse:
        page = await self.claims.list_log(
            request.claim_id, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListClaimLogEntriesResponse(
            claim_log_entries=[claim_log_to_proto(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def GetApprovalBands(
        self, request: pb.GetApprovalBandsRequest, context: Any
    ) -> resources_pb2.ApprovalBands:
        return bands_to_proto(await self.claims.authority.get_bands(request.currency_code))

    async def ListApprovalBands(
        self, request: pb.ListApprovalBandsRequest, context: Any
    ) -> pb.ListApprovalBandsResponse:
        views = await self.claims.authority.list_bands()
        return pb.ListApprovalBandsResponse(approval_bands=[bands_to_proto(v) for v in views])

    async def UpdateApprovalBands(
        self, request: pb.UpdateApprovalBandsRequest, context: Any
    ) -> resources_pb2.ApprovalBands:
        message = request.approval_bands
        view = await self.claims.authority.update_bands(
            from_money(message, "band_1_limit"), from_money(message, "band_2_limit"), message.etag
        )
        return bands_to_proto(view)

    async def GetClaimSettings(
        self, request: pb.GetClaimSettingsRequest, context: Any
    ) -> resources_pb2.ClaimSettings:
        return claim_settings_to_proto(await self.claims.authority.get_settings())

    async def UpdateClaimSettings(
        self, request: pb.UpdateClaimSettingsRequest, context: Any
    ) -> resources_pb2.ClaimSettings:
        message = request.claim_settings
        view = await self.claims.authority.update_settings(
            claim_settings_in(message), mask_paths(request.update_mask), message.etag
        )
        return claim_settings_to_proto(view)
