"""PolicyholderService servicer."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from cardinsa.core.v1 import (
    policyholder_service_pb2 as pb,
)
from cardinsa.core.v1 import (
    policyholder_service_pb2_grpc,
    resources_pb2,
)
from cardinsa_core.application.personal_data import DataSubjectRequests
from cardinsa_core.application.policyholders import PolicyholderUseCases
from cardinsa_core.handlers.convert import mask_paths, policyholder_spec, policyholder_to_proto
from cardinsa_foundation.convert import timestamp


class PolicyholderServicer(policyholder_service_pb2_grpc.PolicyholderServiceServicer):
    def __init__(
        self, policyholders: PolicyholderUseCases, data_subjects: DataSubjectRequests
    ) -> None:
        self.policyholders = policyholders
        self.data_subjects = data_subjects

    async def CreatePolicyholder(
        self, request: pb.CreatePolicyholderRequest, context: Any
    ) -> resources_pb2.Policyholder:
        view = await self.policyholders.create(
            policyholder_spec(request.policyholder), request_id=request.request_id
        )
        return policyholder_to_proto(view)

    async def GetPolicyholder(
        self, request: pb.GetPolicyholderRequest, context: Any
    ) -> resources_pb2.Policyholder:
        return policyholder_to_proto(await self.policyholders.get(request.policyholder_id))

    async def ListPolicyholders(
        self, request: pb.ListPolicyholdersRequest, context: Any
    ) -> pb.ListPolicyholdersResponse:
        page, _ = await self.policyholders.list_policyholders(
            page_size=request.page_size,
            page_token=request.page_token,
            filter=request.filter,
            order_by=request.order_by,
            show_deleted=request.show_deleted,
        )
        return pb.ListPolicyholdersResponse(
            policyholders=[policyholder_to_proto(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdatePolicyholder(
        self, request: pb.UpdatePolicyholderRequest, context: Any
    ) -> resources_pb2.Policyholder:
        view = await self.policyholders.update(
            request.policyholder.id,
            policyholder_spec(request.policyholder),
            mask_paths(request.update_mask),
            request.policyholder.etag,
        )
        return policyholder_to_proto(view)

    async def DeletePolicyholder(
        self, request: pb.DeletePolicyholderRequest, context: Any
    ) -> resources_pb2.Policyholder:
        view = await self.policyholders.delete(request.policyholder_id, request.etag)
        return policyholder_to_proto(view)

    async def UndeletePolicyholder(
        self, request: pb.UndeletePolicyholderRequest, context: Any
    ) -> resources_pb2.Policyholder:
        view = await self.policyholders.undelete(request.policyholder_id, request.etag)
        return policyholder_to_proto(view)

    async def ExportPersonalData(
        self, request: pb.ExportPersonalDataRequest, context: Any
    ) -> pb.ExportPersonalDataResponse:
        export = await self.data_subjects.export(request.policyholder_id)
        data = struct_pb2.Struct()
        data.update(export.data)
        return pb.ExportPersonalDataResponse(
            policyholder_id=export.policyholder_id,
            export_time=timestamp(export.export_time),
            data=data,
        )

    async def ErasePersonalData(
        self, request: pb.ErasePersonalDataRequest, context: Any
    ) -> resources_pb2.Policyholder:
        view = await self.data_subjects.erase(request.policyholder_id, request.etag)
        return policyholder_to_proto(view)
