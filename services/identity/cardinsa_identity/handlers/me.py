"""MeService servicer: the caller's own profile, password and sessions."""

from __future__ import annotations

from typing import Any

from google.api import httpbody_pb2
from google.protobuf import empty_pb2

from cardinsa.identity.v1 import me_service_pb2, me_service_pb2_grpc, resources_pb2
from cardinsa_foundation.convert import timestamp
from cardinsa_identity.application.me import MeUseCases
from cardinsa_identity.application.mfa import MfaUseCases
from cardinsa_identity.handlers.convert import (
    profile_from_proto,
    session_to_proto,
    user_to_proto,
)


class MeServicer(me_service_pb2_grpc.MeServiceServicer):
    def __init__(self, me: MeUseCases, mfa: MfaUseCases) -> None:
        self.me = me
        self.mfa = mfa

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

    async def GetMyMfa(
        self, request: me_service_pb2.GetMyMfaRequest, context: Any
    ) -> me_service_pb2.MfaState:
        state = await self.mfa.state()
        return me_service_pb2.MfaState(
            enabled=state.enabled,
            enrolment_pending=state.enrolment_pending,
            confirm_time=timestamp(state.confirm_time),
            recovery_codes_remaining=state.recovery_codes_remaining,
        )

    async def EnrollMyMfa(
        self, request: me_service_pb2.EnrollMyMfaRequest, context: Any
    ) -> me_service_pb2.MfaEnrolment:
        secret, uri = await self.mfa.enroll()
        return me_service_pb2.MfaEnrolment(secret=secret, provisioning_uri=uri)

    async def GetMyMfaQrCode(
        self, request: me_service_pb2.GetMyMfaQrCodeRequest, context: Any
    ) -> httpbody_pb2.HttpBody:
        return httpbody_pb2.HttpBody(content_type="image/png", data=await self.mfa.qr_code())

    async def ConfirmMyMfa(
        self, request: me_service_pb2.ConfirmMyMfaRequest, context: Any
    ) -> me_service_pb2.ConfirmMyMfaResponse:
        return me_service_pb2.ConfirmMyMfaResponse(
            recovery_codes=await self.mfa.confirm(request.totp_code)
        )

    async def DisableMyMfa(
        self, request: me_service_pb2.DisableMyMfaRequest, context: Any
    ) -> empty_pb2.Empty:
        await self.mfa.disable(request.current_password)
        return empty_pb2.Empty()
