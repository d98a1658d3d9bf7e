"""Invitations: an administrator invites a user by e-mail; the user sets their
password with the token mailed to them (docs/invitations.md).

- InviteUser creates the user in state ``INVITED`` with a password hash of 256
  random bits nobody knows: Login answers an invited user exactly as a wrong
  password (same error, same hashing work), and a password reset is never
  issued to one (only ACTIVE users get one).
- The invitation token is an opaque ``cdi_`` token (256 bits), stored as its
  SHA-256 only, single-use, expiring after ``invitation_ttl_s`` (72 h by
  default); it goes to the invited address through the notifier, after the
  commit, never to a log or a response.
- ResendInvitation marks every outstanding token of the user used and mails a
  new one; only an INVITED user has invitations (FAILED_PRECONDITION
  ``NOT_INVITED`` otherwise). It needs the target's power, as every call on an
  existing user (application/privilege.py).
- AcceptInvitation (public) answers an unknown, malformed, used or expired
  token, or one of a user no longer INVITED (deleted, accepted), with the same
  UNAUTHENTICATED ``INVALID_INVITATION_TOKEN``; a malformed one costs nothing, a
  well-formed one an indexed read, and neither writes. With a valid token the
  new password must meet the policy; then, in one transaction, the token is
  claimed (only one concurrent UPDATE finds it unused), every other invitation
  of the user dies, the password is set and the user becomes ACTIVE.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation.context import Principal, PrincipalKind, principal_var
from cardinsa_foundation.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Unauthenticated,
)
from cardinsa_foundation.use_cases import check_request_id, require_principal
from cardinsa_identity.application.context import (
    IdentityContext,
    email_in_use,
    email_taken_error,
    flush_unique,
    roles_and_permissions,
    target_company,
)
from cardinsa_identity.application.users import UserUseCases, new_user_row
from cardinsa_identity.domain.password_policy import check_password
from cardinsa_identity.domain.tokens import (
    OpaqueTokenKind,
    hash_opaque_token,
    is_well_formed_opaque_token,
    new_opaque_token,
)
from cardinsa_identity.domain.users import (
    PROFILE_FIELDS,
    UserProfile,
    UserState,
    check_profile,
    normalize_profile,
)
from cardinsa_identity.repository.idempotency import claim
from cardinsa_identity.repository.models import InvitationRow, UserRow
from cardinsa_identity.repository.users import void_invitations

__all__ = ["INVALID_INVITATION_TOKEN", "NOT_INVITED", "InvitationUseCases"]

INVALID_INVITATION_TOKEN = "INVALID_INVITATION_TOKEN"  # noqa: S105 (an error reason)
NOT_INVITED = "NOT_INVITED"
INVITE_USER = "InviteUser"


async def _use_invitation(session: AsyncSession, token_hash: str, now: datetime) -> bool:
    """Claim one unexpired invitation token; False when it was used (or expired)
    meanwhile."""
    claimed = await session.execute(
        update(InvitationRow)
        .where(
            InvitationRow.token_hash == token_hash,
            InvitationRow.use_time.is_(None),
            InvitationRow.expire_time > now,
        )
        .values(use_time=now)
    )
    return bool(claimed.rowcount)  # type: ignore[attr-defined]


def _invalid() -> Unauthenticated:
    return Unauthenticated(
        "the invitation token is not valid or has expired; ask for a new invitation",
        reason=INVALID_INVITATION_TOKEN,
    )


class InvitationUseCases:
    def __init__(self, ctx: IdentityContext, users: UserUseCases) -> None:
        self.ctx = ctx
        self.users = users

    def _new_invitation(self, user: UserRow, now: datetime) -> tuple[InvitationRow, str, datetime]:
        token = new_opaque_token(OpaqueTokenKind.INVITATION)
        expire = now + timedelta(seconds=self.ctx.settings.invitation_ttl_s)
        row = InvitationRow(
            token_hash=token.token_hash,
            company_id=user.company_id,
            user_id=user.id,
            expire_time=expire,
        )
        return row, token.token, expire

    async def _send(self, user: UserRow, token: str, expire: datetime) -> None:
        # After the commit; the SMTP notifier only queues it (application/mail.py).
        await self.ctx.notifier.send_invitation(
            email=user.email,
            name=user.display_name,
            token=token,
            expire_time=expire,
            locale=await self.ctx.message_locale(user.locale, user.company_id),
        )

    async def invite(
        self, profile: UserProfile, *, company_id: str, request_id: str
    ) -> tuple[UserRow, list[str]]:
        principal = require_principal()
        company = target_company(principal, company_id, "user.company_id")
        profile = normalize_profile(profile)
        violations = list(check_profile(profile, prefix="user"))
        if not profile.email:
            violations.append(FieldViolation("user.email", "required"))
        violations.extend(check_request_id(request_id))
        if violations:
            raise InvalidArgument("the user is not valid", field_violations=violations)
        # A password nobody knows (not even this process after the call): the
        # invited user cannot log in, and a login attempt costs the usual hash.
        unusable = await self.ctx.hasher.hash_password_async(secrets.token_urlsafe(32))
        user_id = uuid.uuid4()
        now = datetime.now(UTC)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            seen = await claim(session, company, INVITE_USER, request_id, str(user_id), profile)
            if seen is not None:
                # A retry: the first call's user, and no second invitation.
                user = await self.users._get_scoped(session, company, seen)
                return user, (await roles_and_permissions(session, user.id))[0]
            taken = email_taken_error()
            if await email_in_use(self.ctx, profile.email):
                raise taken
            user = new_user_row(
                user_id,
                company,
                profile,
                state=UserState.INVITED,
                password_hash=unusable,
                password_change_time=None,
            )
            session.add(user)
            await flush_unique(session, taken)  # a concurrent call took the address
            invitation, token, expire = self._new_invitation(user, now)
            session.add(invitation)
            await self.ctx.audit.record(
                session,
                action="user.invite",
                entity_type="user",
                entity_id=user.id,
                company_id=company,
                changed_fields=sorted(PROFILE_FIELDS),
                detail={"expire_time": expire.isoformat()},
            )
            self.ctx.events.user_changed(session, user, [], change="created", from_state=None)
        await self._send(user, token, expire)
        return user, []

    async def resend(self, user_id: str) -> tuple[UserRow, list[str]]:
        principal = require_principal()
        company = target_company(principal, "") if not principal.is_platform_admin else None
        now = datetime.now(UTC)
        async with self.ctx.db.unit_of_work(
            company_id=company, cross_tenant=principal.is_platform_admin
        ) as session:
            user = await self.users._get_scoped(session, company, user_id, lock=True)
            await self.users._require_power(session, principal, user)
            if user.state != UserState.INVITED or user.delete_time is not None:
                raise FailedPrecondition(
                    "the user has no open invitation (only an INVITED user has one)",
                    reason=NOT_INVITED,
                    metadata={"user_id": str(user.id), "state": user.state},
                )
            await void_invitations(session, user.id, now)
            invitation, token, expire = self._new_invitation(user, now)
            session.add(invitation)
            await self.ctx.audit.record(
                session,
                action="user.resend_invitation",
                entity_type="user",
                entity_id=user.id,
                company_id=user.company_id,
                detail={"expire_time": expire.isoformat()},
            )
            roles, _ = await roles_and_permissions(session, user.id)
        await self._send(user, token, expire)
        return user, roles

    async def accept(self, invitation_token: str, new_password: str) -> None:
        missing = [
            FieldViolation(name, "required")
            for name, value in (
                ("invitation_token", invitation_token),
                ("new_password", new_password),
            )
            if not value
        ]
        if missing:
            raise InvalidArgument("required fields are missing", field_violations=missing)
        if not is_well_formed_opaque_token(invitation_token, OpaqueTokenKind.INVITATION):
            raise _invalid()
        token_hash = hash_opaque_token(invitation_token)
        async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            row = await session.get(InvitationRow, token_hash)
            now = datetime.now(UTC)
            if row is None or row.use_time is not None or row.expire_time <= now:
                raise _invalid()
            user = await session.get(UserRow, row.user_id)
            if user is None or user.delete_time is not None or user.state != UserState.INVITED:
                raise _invalid()
            email, user_id, company_id = user.email, user.id, user.company_id
        violations = check_password(
            new_password,
            email=email,
            field="new_password",
            min_length=self.ctx.settings.password_min_length,
        )
        if violations:
            raise InvalidArgument(
                "the new password does not meet the password policy", field_violations=violations
            )
        new_hash = await self.ctx.hasher.hash_password_async(new_password)
        async with self.ctx.db.unit_of_work(company_id=company_id) as session:
            now = datetime.now(UTC)
            if not await _use_invitation(session, token_hash, now):
                raise _invalid()
            user = await session.get(UserRow, user_id, with_for_update=True, populate_existing=True)
            if user is None or user.delete_time is not None or user.state != UserState.INVITED:
                raise _invalid()  # rolls the claim back with it
            await void_invitations(session, user_id, now)
            principal_var.set(
                Principal(
                    subject=str(user.id), kind=PrincipalKind.USER, company_id=str(user.company_id)
                )
            )
            user.password_hash = new_hash
            user.password_change_time = now
            user.state = UserState.ACTIVE.value
            await session.flush()
            await self.ctx.audit.record(
                session,
                action="user.accept_invitation",
                entity_type="user",
                entity_id=user_id,
                changed_fields=["password", "state"],
                detail={"from_state": UserState.INVITED.value, "to_state": UserState.ACTIVE.value},
            )
            roles, _ = await roles_and_permissions(session, user_id)
            self.ctx.events.user_changed(
                session, user, roles, change="activated", from_state=UserState.INVITED.value
            )
