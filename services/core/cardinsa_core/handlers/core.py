"""CoreService servicer: server info and the audit log."""

from __future__ import annotations

from typing import Any

from cardinsa.common.v1 import common_pb2
from cardinsa.core.v1 import core_service_pb2, core_service_pb2_grpc
from cardinsa_core.application.audit_log import AuditLogUseCases
from cardinsa_foundation.convert import audit_event_to_proto
from cardinsa_foundation.server_info import ServerInfoProvider


class CoreServicer(core_service_pb2_grpc.CoreServiceServicer):
    def __init__(self, info: ServerInfoProvider, audit: AuditLogUseCases) -> None:
        self.info = info
        self.audit = audit

    async def GetServerInfo(
        self, request: core_service_pb2.GetServerInfoRequest, context: Any
    ) -> common_pb2.ServerInfo:
        return await self.info.build_message()

    async def ListAuditEvents(
        self, request: core_service_pb2.ListAuditEventsRequest, context: Any
    ) -> core_service_pb2.ListAuditEventsResponse:
        page = await self.audit.list_events(
            page_size=request.page_size, page_token=request.page_token, filter=request.filter
        )
        return core_service_pb2.ListAuditEventsResponse(
            audit_events=[audit_event_to_proto(e) for e in page.items],
            next_page_token=page.next_page_token,
        )
