"""MeService servicer: the caller's own profile, password and sessions."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from cardinsa.identity.v1 import me_service_pb2, me_service_pb2_grpc, resources_pb2
from cardinsa_identity.application.me import MeUseCases
from cardinsa_identity.handlers.convert import profile_from_proto, session_to_proto, user_to_proto


class MeServicer(me_service_pb2_grpc.MeServiceServicer):
    def __init__(self, me: MeUseCases) -> None:
        self.me = me

    async def GetMe(self, request: me_service_pb2.GetMeRequest, context: Any) -> resources_pb2.User:
        return user_to_proto(*await self.me.get())

    async def UpdateMe(
        self, request: me_service_pb2.UpdateMeRequest, context: Any
    ) -> resources_pb2.User:
        return user_to_proto(
            *await self.me.update(
                profile_from_proto(request.user), list(request.update_mask.paths), request.user.etag
            )
        )

    async def ChangeMyPassword(
        self, request: me_service_pb2.ChangeMyPasswordRequest, context: Any
    ) -> empty_pb2.Empty:
        await self.me.change_password(request.current_password, request.new_password)
        return empty_pb2.Empty()

    async def ChangeMyEmail(
        self, request: me_service_pb2.ChangeMyEmailRequest, context: Any
    ) -> empty_pb2.Empty:
        await self.me.change_email(request.current_password, request.new_email)
        return empty_pb2.Empty()

    async def ListMySessions(
        self, request: me_service_pb2.ListMySessionsRequest, context: Any
    ) -> me_service_pb2.ListMySessionsResponse:
        page = await self.me.list_sessions(
            page_size=request.page_size,
            page_token=request.page_token,
            show_revoked=request.show_revoked,
        )
        return me_service_pb2.ListMySessionsResponse(
            sessions=[session_to_proto(s) for s in page.items], next_page_token=page.next_page_token
        )

    async def RevokeMySession(
        self, request: me_service_pb2.RevokeMySessionRequest, context: Any
    ) -> empty_pb2.Empty:
        await self.me.revoke_session(request.session_id)
        return empty_pb2.Empty()
