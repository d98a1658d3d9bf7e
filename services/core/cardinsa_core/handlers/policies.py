"""PolicyService servicer."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import policy_service_pb2_grpc, resources_pb2
from cardinsa_core.application.policies import PolicyInput, PolicyUseCases
from cardinsa_core.application.underwriting import UnderwritingUseCases
from cardinsa_core.domain.policies import CancelReason, PaymentFrequency
from cardinsa_core.handlers.convert import (
    enum_in,
    from_date,
    from_money,
    mask_paths,
    member_in,
    policy_to_proto,
    policy_version_to_proto,
    premium_transaction_to_proto,
    status_change_to_proto,
    underwriting_issue_to_proto,
)

_PO = resources_pb2.Policy


def policy_input(message: resources_pb2.Policy) -> PolicyInput:
    return PolicyInput(
        policyholder_id=message.policyholder_id,
        product_id=message.product_id,
        effective_date=from_date(message, "effective_date", "policy.effective_date"),
        expiry_date=from_date(message, "expiry_date", "policy.expiry_date"),
        payment_frequency=enum_in(
            PaymentFrequency, _PO.PaymentFrequency, message.payment_frequency
        ),
        sum_insured=from_money(message, "sum_insured"),
        premium=from_money(message, "premium"),
        insured_members=tuple(member_in(m) for m in message.insured_members),
        do_not_renew=message.do_not_renew,
    )


class PolicyServicer(policy_service_pb2_grpc.PolicyServiceServicer):
    def __init__(self, policies: PolicyUseCases) -> None:
        self.policies = policies

    async def CreatePolicy(
        self, request: pb.CreatePolicyRequest, context: Any
    ) -> resources_pb2.Policy:
        row = await self.policies.create(
            policy_input(request.policy), request_id=request.request_id
        )
        return policy_to_proto(row)

    async def GetPolicy(self, request: pb.GetPolicyRequest, context: Any) -> resources_pb2.Policy:
        return policy_to_proto(await self.policies.get(request.policy_id))

    async def ListPolicies(
        self, request: pb.ListPoliciesRequest, context: Any
    ) -> pb.ListPoliciesResponse:
        page = await self.policies.list_policies(
            page_size=request.page_size,
            page_token=request.page_token,
            filter=request.filter,
            order_by=request.order_by,
            show_deleted=request.show_deleted,
        )
        return pb.ListPoliciesResponse(
            policies=[policy_to_proto(r) for r in page.items], next_page_token=page.next_page_token
        )

    async def UpdatePolicy(
        self, request: pb.UpdatePolicyRequest, context: Any
    ) -> resources_pb2.Policy:
        row = await self.policies.update(
            request.policy.id,
            policy_input(request.policy),
            mask_paths(request.update_mask),
            request.policy.etag,
        )
        return policy_to_proto(row)

    async def DeletePolicy(
        self, request: pb.DeletePolicyRequest, context: Any
    ) -> resources_pb2.Policy:
        return policy_to_proto(await self.policies.delete(request.policy_id, request.etag))

    async def UndeletePolicy(
        self, request: pb.UndeletePolicyRequest, context: Any
    ) -> resources_pb2.Policy:
        return policy_to_proto(await self.policies.undelete(request.policy_id, request.etag))

    async def QuotePolicy(
        self, request: pb.QuotePolicyRequest, context: Any
    ) -> resources_pb2.Policy:
        row = await self.policies.quote(request.policy_id, request.etag, request.request_id)
        return policy_to_proto(row)

    async def BindPolicy(self, request: pb.BindPolicyRequest, context: Any) -> resources_pb2.Policy:
        row = await self.policies.bind(request.policy_id, request.etag, request.request_id)
        return policy_to_proto(row)

    async def ActivatePolicy(
        self, request: pb.ActivatePolicyRequest, context: Any
    ) -> resources_pb2.Policy:
        row = await self.policies.activate(request.policy_id, request.etag, request.request_id)
        return policy_to_proto(row)

    async def EndorsePolicy(
        self, request: pb.EndorsePolicyRequest, context: Any
    ) -> resources_pb2.Policy:
        row = await self.policies.endorse(
            request.policy_id,
            etag=request.etag,
            request_id=request.request_id,
            effective_date=from_date(request, "effective_date"),
            description=request.description,
            data=policy_input(request.policy),
            mask=mask_paths(request.update_mask),
            override_reason=request.override_reason,
        )
        return policy_to_proto(row)

    async def RenewPolicy(
        self, request: pb.RenewPolicyRequest, context: Any
    ) -> pb.RenewPolicyResponse:
        row, successor = await self.policies.renew(
            request.policy_id, request.etag, request.request_id
        )
        return pb.RenewPolicyResponse(
            policy=policy_to_proto(row), successor=policy_to_proto(successor)
        )

    async def CancelPolicy(
        self, request: pb.CancelPolicyRequest, context: Any
    ) -> resources_pb2.Policy:
        row = await self.policies.cancel(
            request.policy_id,
            etag=request.etag,
            request_id=request.request_id,
            reason=enum_in(CancelReason, _PO.CancelReason, request.reason),
            effective_date=from_date(request, "effective_date"),
            scheduled=request.scheduled,
            note=request.note,
            override_reason=request.override_reason,
        )
        return policy_to_proto(row)

    async def ReinstatePolicy(
        self, request: pb.ReinstatePolicyRequest, context: Any
    ) -> resources_pb2.Policy:
        row = await self.policies.reinstate(
            request.policy_id, request.etag, request.request_id, request.note
        )
        return policy_to_proto(row)

    async def LapsePolicy(
        self, request: pb.LapsePolicyRequest, context: Any
    ) -> resources_pb2.Policy:
        row = await self.policies.lapse(
            request.policy_id,
            request.etag,
            request.request_id,
            from_date(request, "lapse_date"),
            request.note,
            override_reason=request.override_reason,
        )
        return policy_to_proto(row)

    async def ExpirePolicy(
        self, request: pb.ExpirePolicyRequest, context: Any
    ) -> resources_pb2.Policy:
        row = await self.policies.expire(request.policy_id, request.etag, request.request_id)
        return policy_to_proto(row)

    async def ListPolicyVersions(
        self, request: pb.ListPolicyVersionsRequest, context: Any
    ) -> pb.ListPolicyVersionsResponse:
        page = await self.policies.list_versions(
            request.policy_id, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListPolicyVersionsResponse(
            policy_versions=[policy_version_to_proto(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def ListPolicyStatusChanges(
        self, request: pb.ListPolicyStatusChangesRequest, context: Any
    ) -> pb.ListPolicyStatusChangesResponse:
        page = await self.policies.list_status_changes(
            request.policy_id, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListPolicyStatusChangesResponse(
            policy_status_changes=[status_change_to_proto(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def ListPremiumTransactions(
        self, request: pb.ListPremiumTransactionsRequest, context: Any
    ) -> pb.ListPremiumTransactionsResponse:
        page = await self.policies.list_premium_transactions(
            request.policy_id, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListPremiumTransactionsResponse(
            premium_transactions=[premium_transaction_to_proto(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    # ------------------------------------------------------------- underwriting

    @cached_property
    def underwriting(self) -> UnderwritingUseCases:
        return UnderwritingUseCases(self.policies.ctx)

    async def ListUnderwritingIssues(
        self, request: pb.ListUnderwritingIssuesRequest, context: Any
    ) -> pb.ListUnderwritingIssuesResponse:
        page = await self.underwriting.list_issues(
            request.policy_id, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListUnderwritingIssuesResponse(
            underwriting_issues=[underwriting_issue_to_proto(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def ApproveUnderwritingIssue(
        self, request: pb.ApproveUnderwritingIssueRequest, context: Any
    ) -> resources_pb2.UnderwritingIssue:
        row = await self.underwriting.approve(
            request.policy_id, request.issue_id, note=request.note, request_id=request.request_id
        )
        return underwriting_issue_to_proto(row)

    async def DeclineUnderwritingIssue(
        self, request: pb.DeclineUnderwritingIssueRequest, context: Any
    ) -> resources_pb2.UnderwritingIssue:
        row = await self.underwriting.decline(
            request.policy_id, request.issue_id, note=request.note, request_id=request.request_id
        )
        return underwriting_issue_to_proto(row)
