"""AuthService and UserService servicers."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from cardinsa.identity.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    resources_pb2,
    user_service_pb2,
    user_service_pb2_grpc,
)
from cardinsa_foundation.convert import timestamp
from cardinsa_identity.application.auth import AuthUseCases
from cardinsa_identity.application.email_change import EmailChangeUseCases
from cardinsa_identity.application.invitations import InvitationUseCases
from cardinsa_identity.application.mfa import MfaPolicy, MfaUseCases
from cardinsa_identity.application.users import UserUseCases
from cardinsa_identity.domain.users import UserAction
from cardinsa_identity.handlers.convert import (
    login_result_to_proto,
    profile_from_proto,
    session_to_proto,
    tokens_to_proto,
    user_to_proto,
)


def _policy_to_proto(policy: MfaPolicy) -> user_service_pb2.MfaPolicy:
    return user_service_pb2.MfaPolicy(
        company_id=str(policy.company_id),
        required_roles=policy.required_roles,
        update_time=timestamp(policy.update_time),
    )


def _user_agent(context: Any) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "user-agent":
            return str(value)
    return None


class AuthServicer(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        auth: AuthUseCases,
        invitations: InvitationUseCases,
        email_changes: EmailChangeUseCases,
    ) -> None:
        self.auth = auth
        self.invitations = invitations
        self.email_changes = email_changes

    async def Login(
        self, request: auth_service_pb2.LoginRequest, context: Any
    ) -> auth_service_pb2.TokenPair:
        return login_result_to_proto(
            await self.auth.login(request.email, request.password, _user_agent(context))
        )

    async def RespondToAuthChallenge(
        self, request: auth_service_pb2.RespondToAuthChallengeRequest, context: Any
    ) -> auth_service_pb2.TokenPair:
        return login_result_to_proto(
            await self.auth.respond_to_challenge(
                request.session,
                totp_code=request.totp_code,
                recovery_code=request.recovery_code,
                new_password=request.new_password,
            )
        )

    async def RefreshToken(
        self, request: auth_service_pb2.RefreshTokenRequest, context: Any
    ) -> auth_service_pb2.TokenPair:
        return tokens_to_proto(await self.auth.refresh(request.refresh_token))

    async def Logout(
        self, request: auth_service_pb2.LogoutRequest, context: Any
    ) -> empty_pb2.Empty:
        await self.auth.logout(request.refresh_token)
        return empty_pb2.Empty()

    async def ChangePassword(
        self, request: auth_service_pb2.ChangePasswordRequest, context: Any
    ) -> empty_pb2.Empty:
        await self.auth.change_password(request.current_password, request.new_password)
        return empty_pb2.Empty()

    async def RequestPasswordReset(
        self, request: auth_service_pb2.RequestPasswordResetRequest, context: Any
    ) -> empty_pb2.Empty:
        await self.auth.request_password_reset(request.email)
        return empty_pb2.Empty()

    async def ConfirmPasswordReset(
        self, request: auth_service_pb2.ConfirmPasswordResetRequest, context: Any
    ) -> empty_pb2.Empty:
        await self.auth.confirm_password_reset(request.reset_token, request.new_password)
        return empty_pb2.Empty()

    async def AcceptInvitation(
        self, request: auth_service_pb2.AcceptInvitationRequest, context: Any
    ) -> empty_pb2.Empty:
        await self.invitations.accept(request.invitation_token, request.new_password)
        return empty_pb2.Empty()

    async def ConfirmEmailChange(
        self, request: auth_service_pb2.ConfirmEmailChangeRequest, context: Any
    ) -> empty_pb2.Empty:
        await self.email_changes.confirm(request.email_change_token)
        return empty_pb2.Empty()

    async def ExchangeApiKey(
        self, request: auth_service_pb2.ExchangeApiKeyRequest, context: Any
    ) -> auth_service_pb2.TokenPair:
        return tokens_to_proto(await self.auth.exchange_api_key(request.api_key))


class UserServicer(user_service_pb2_grpc.UserServiceServicer):
    def __init__(
        self, users: UserUseCases, invitations: InvitationUseCases, mfa: MfaUseCases
    ) -> None:
        self.users = users
        self.invitations = invitations
        self.mfa = mfa

    async def ResetUserMfa(
        self, request: user_service_pb2.ResetUserMfaRequest, context: Any
    ) -> empty_pb2.Empty:
        await self.mfa.reset(request.user_id)
        return empty_pb2.Empty()

    async def GetMfaPolicy(
        self, request: user_service_pb2.GetMfaPolicyRequest, context: Any
    ) -> user_service_pb2.MfaPolicy:
        return _policy_to_proto(await self.mfa.get_policy(request.company_id))

    async def UpdateMfaPolicy(
        self, request: user_service_pb2.UpdateMfaPolicyRequest, context: Any
    ) -> user_service_pb2.MfaPolicy:
        return _policy_to_proto(
            await self.mfa.update_policy(list(request.policy.required_roles), request.company_id)
        )

    async def CreateUser(
        self, request: user_service_pb2.CreateUserRequest, context: Any
    ) -> resources_pb2.User:
        user, roles = await self.users.create(
            profile_from_proto(request.user),
            request.password,
            company_id=request.user.company_id,
            request_id=request.request_id,
            password_permanent=request.password_permanent,
        )
        return user_to_proto(user, roles)

    async def GetUser(
        self, request: user_service_pb2.GetUserRequest, context: Any
    ) -> resources_pb2.User:
        return user_to_proto(*await self.users.get(request.user_id))

    async def ListUsers(
        self, request: user_service_pb2.ListUsersRequest, context: Any
    ) -> user_service_pb2.ListUsersResponse:
        page = await self.users.list_users(
            page_size=request.page_size,
            page_token=request.page_token,
            filter=request.filter,
            order_by=request.order_by,
            show_deleted=request.show_deleted,
            company_id=request.company_id,
        )
        return user_service_pb2.ListUsersResponse(
            users=[user_to_proto(u, []) for u in page.items], next_page_token=page.next_page_token
        )

    async def UpdateUser(
        self, request: user_service_pb2.UpdateUserRequest, context: Any
    ) -> resources_pb2.User:
        user, roles = await self.users.update(
            request.user.id,
            profile_from_proto(request.user),
            list(request.update_mask.paths),
            request.user.etag,
        )
        return user_to_proto(user, roles)

    async def DeleteUser(
        self, request: user_service_pb2.DeleteUserRequest, context: Any
    ) -> resources_pb2.User:
        return user_to_proto(*await self.users.delete(request.user_id, request.etag))

    async def UndeleteUser(
        self, request: user_service_pb2.UndeleteUserRequest, context: Any
    ) -> resources_pb2.User:
        return user_to_proto(*await self.users.undelete(request.user_id, request.etag))

    async def LockUser(
        self, request: user_service_pb2.LockUserRequest, context: Any
    ) -> resources_pb2.User:
        return user_to_proto(
            *await self.users.transition(
                request.user_id, UserAction.LOCK, request.etag, request.reason
            )
        )

    async def UnlockUser(
        self, request: user_service_pb2.UnlockUserRequest, context: Any
    ) -> resources_pb2.User:
        return user_to_proto(
            *await self.users.transition(request.user_id, UserAction.UNLOCK, request.etag)
        )

    async def DeactivateUser(
        self, request: user_service_pb2.DeactivateUserRequest, context: Any
    ) -> resources_pb2.User:
        return user_to_proto(
            *await self.users.transition(
                request.user_id, UserAction.DEACTIVATE, request.etag, request.reason
            )
        )

    async def ReactivateUser(
        self, request: user_service_pb2.ReactivateUserRequest, context: Any
    ) -> resources_pb2.User:
        return user_to_proto(
            *await self.users.transition(request.user_id, UserAction.REACTIVATE, request.etag)
        )

    async def ListSessions(
        self, request: user_service_pb2.ListSessionsRequest, context: Any
    ) -> user_service_pb2.ListSessionsResponse:
        page = await self.users.list_sessions(
            request.user_id,
            page_size=request.page_size,
            page_token=request.page_token,
            show_revoked=request.show_revoked,
        )
        return user_service_pb2.ListSessionsResponse(
            sessions=[session_to_proto(s) for s in page.items], next_page_token=page.next_page_token
        )

    async def RevokeSession(
        self, request: user_service_pb2.RevokeSessionRequest, context: Any
    ) -> empty_pb2.Empty:
        await self.users.revoke_session(request.user_id, request.session_id)
        return empty_pb2.Empty()

    async def InviteUser(
        self, request: user_service_pb2.InviteUserRequest, context: Any
    ) -> resources_pb2.User:
        user, roles = await self.invitations.invite(
            profile_from_proto(request.user),
            company_id=request.user.company_id,
            request_id=request.request_id,
        )
        return user_to_proto(user, roles)

    async def ResendInvitation(
        self, request: user_service_pb2.ResendInvitationRequest, context: Any
    ) -> resources_pb2.User:
        return user_to_proto(*await self.invitations.resend(request.user_id))
