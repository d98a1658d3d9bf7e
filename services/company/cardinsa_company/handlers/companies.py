"""CompanyService servicer: server info, companies, tenant status, audit log."""

from __future__ import annotations

from typing import Any

from cardinsa.common.v1 import common_pb2
from cardinsa.company.v1 import company_service_pb2, company_service_pb2_grpc, resources_pb2
from cardinsa_company.application.audit_log import AuditLogUseCases
from cardinsa_company.application.companies import CompanyUseCases
from cardinsa_company.domain.lifecycle import CompanyTransition
from cardinsa_company.handlers.convert import (
    company_to_proto,
    list_query,
    profile_from_proto,
    status_to_proto,
)
from cardinsa_foundation.convert import audit_event_to_proto
from cardinsa_foundation.server_info import ServerInfoProvider


class CompanyServicer(company_service_pb2_grpc.CompanyServiceServicer):
    def __init__(
        self, companies: CompanyUseCases, audit: AuditLogUseCases, info: ServerInfoProvider
    ) -> None:
        self.companies = companies
        self.audit = audit
        self.info = info

    async def GetServerInfo(
        self, request: company_service_pb2.GetServerInfoRequest, context: Any
    ) -> common_pb2.ServerInfo:
        return await self.info.build_message()

    async def CreateCompany(
        self, request: company_service_pb2.CreateCompanyRequest, context: Any
    ) -> resources_pb2.Company:
        row = await self.companies.create(
            profile_from_proto(request.company),
            company_id=request.company_id,
            request_id=request.request_id,
        )
        return company_to_proto(row)

    async def GetCompany(
        self, request: company_service_pb2.GetCompanyRequest, context: Any
    ) -> resources_pb2.Company:
        return company_to_proto(await self.companies.get(request.company_id))

    async def ListCompanies(
        self, request: company_service_pb2.ListCompaniesRequest, context: Any
    ) -> company_service_pb2.ListCompaniesResponse:
        page = await self.companies.list_companies(list_query(request))
        return company_service_pb2.ListCompaniesResponse(
            companies=[company_to_proto(c) for c in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateCompany(
        self, request: company_service_pb2.UpdateCompanyRequest, context: Any
    ) -> resources_pb2.Company:
        row = await self.companies.update(
            request.company.id,
            profile_from_proto(request.company),
            list(request.update_mask.paths),
            request.company.etag,
        )
        return company_to_proto(row)

    async def DeleteCompany(
        self, request: company_service_pb2.DeleteCompanyRequest, context: Any
    ) -> resources_pb2.Company:
        return company_to_proto(await self.companies.delete(request.company_id, request.etag))

    async def UndeleteCompany(
        self, request: company_service_pb2.UndeleteCompanyRequest, context: Any
    ) -> resources_pb2.Company:
        return company_to_proto(await self.companies.undelete(request.company_id, request.etag))

    async def _transition(self, request: Any, action: CompanyTransition) -> resources_pb2.Company:
        row = await self.companies.transition(
            request.company_id,
            action,
            etag=request.etag,
            reason=request.reason,
            request_id=request.request_id,
        )
        return company_to_proto(row)

    async def SuspendCompany(
        self, request: company_service_pb2.SuspendCompanyRequest, context: Any
    ) -> resources_pb2.Company:
        return await self._transition(request, CompanyTransition.SUSPEND)

    async def ReactivateCompany(
        self, request: company_service_pb2.ReactivateCompanyRequest, context: Any
    ) -> resources_pb2.Company:
        return await self._transition(request, CompanyTransition.REACTIVATE)

    async def CloseCompany(
        self, request: company_service_pb2.CloseCompanyRequest, context: Any
    ) -> resources_pb2.Company:
        return await self._transition(request, CompanyTransition.CLOSE)

    async def GetCompanyStatus(
        self, request: company_service_pb2.GetCompanyStatusRequest, context: Any
    ) -> resources_pb2.CompanyStatus:
        return status_to_proto(await self.companies.status(request.company_id))

    async def ListAuditEvents(
        self, request: company_service_pb2.ListAuditEventsRequest, context: Any
    ) -> company_service_pb2.ListAuditEventsResponse:
        page = await self.audit.list(list_query(request), company_id=request.company_id)
        return company_service_pb2.ListAuditEventsResponse(
            audit_events=[audit_event_to_proto(e) for e in page.items],
            next_page_token=page.next_page_token,
        )
