"""A user's second factor (TOTP): enrolment, confirmation, removal, reset by an
administrator; the company's MFA policy.

- Enrolment writes a new secret (encrypted at rest with the signing keys'
  cipher, bound to the user id) and nothing changes at login until a first
  code confirms it. Confirmation issues the recovery codes (shown once, stored
  as SHA-256) and from then on login answers with an MFA_TOTP challenge.
- A wrong confirmation code and a wrong password when removing the factor
  count as failed logins of the account (the login throttle), like a wrong
  current password of ChangePassword.
- The QR code is only shown for an enrolment still pending: a stolen access
  token cannot copy a confirmed factor.
- Removing the factor (self or administrator) revokes every session of the
  user: no session that passed the second factor outlives it.
- The MFA policy lists role names; a user's token from a login without
  ``otp`` carries nothing of those roles but self-service
  (``context.grants_under_policy``), and calls needing what only they grant
  are PERMISSION_DENIED with reason MFA_REQUIRED (cardinsa_foundation.authorization).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation.context import Principal, PrincipalKind
from cardinsa_foundation.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from cardinsa_foundation.use_cases import require_principal
from cardinsa_identity.application.auth import AuthUseCases, revoke_user_sessions
from cardinsa_identity.application.context import IdentityContext, target_company
from cardinsa_identity.application.second_factor import accept_totp_code, totp_secret
from cardinsa_identity.application.users import UserUseCases
from cardinsa_identity.domain.mfa import (
    hash_recovery_code,
    new_recovery_codes,
    new_totp_secret,
    provisioning_uri,
    qr_code_png,
    totp_context,
)
from cardinsa_identity.repository.models import (
    MfaPolicyRow,
    MfaRecoveryCodeRow,
    RoleRow,
    UserMfaRow,
    UserRow,
)

__all__ = ["MfaPolicy", "MfaState", "MfaUseCases"]

MAX_POLICY_ROLES: Final = 50
NOT_A_USER: Final = "NOT_A_USER"


@dataclass(frozen=True)
class MfaState:
    enabled: bool
    enrolment_pending: bool
    confirm_time: datetime | None
    recovery_codes_remaining: int


@dataclass(frozen=True)
class MfaPolicy:
    company_id: uuid.UUID
    required_roles: list[str]
    update_time: datetime | None


def _caller() -> tuple[Principal, uuid.UUID]:
    principal = require_principal()
    if principal.kind is not PrincipalKind.USER:
        raise PermissionDenied(
            "only users have a second factor; a service account has none", reason=NOT_A_USER
        )
    return principal, uuid.UUID(principal.subject)


def _not_enrolling() -> FailedPrecondition:
    return FailedPrecondition(
        "no enrolment is pending; start one with EnrollMyMfa", reason="MFA_NOT_ENROLLING"
    )


class MfaUseCases:
    def __init__(self, ctx: IdentityContext, users: UserUseCases, auth: AuthUseCases) -> None:
        self.ctx = ctx
        self.users = users
        self.auth = auth

    async def _own_user(self, session: AsyncSession, user_id: uuid.UUID) -> UserRow:
        user = await session.get(UserRow, user_id)
        if user is None or user.delete_time is not None:
            raise Unauthenticated("the account no longer exists", reason="ACCOUNT_NOT_FOUND")
        return user

    # ------------------------------------------------------------ self-service

    async def state(self) -> MfaState:
        _, user_id = _caller()
        async with self.ctx.db.unit_of_work() as session:
            factor = await session.get(UserMfaRow, user_id)
            remaining = await session.scalar(
                select(func.count())
                .select_from(MfaRecoveryCodeRow)
                .where(MfaRecoveryCodeRow.user_id == user_id, MfaRecoveryCodeRow.use_time.is_(None))
            )
        confirmed = factor is not None and factor.confirm_time is not None
        return MfaState(
            enabled=confirmed,
            enrolment_pending=factor is not None and not confirmed,
            confirm_time=factor.confirm_time if factor is not None else None,
            recovery_codes_remaining=int(remaining or 0) if confirmed else 0,
        )

    async def enroll(self) -> tuple[str, str]:
        """A new secret and its ``otpauth://`` URI (a pending enrolment is replaced)."""
        _, user_id = _caller()
        secret = new_totp_secret()
        sealed = self.ctx.secrets_cipher.seal(secret.encode("ascii"), totp_context(user_id))
        async with self.ctx.db.unit_of_work() as session:
            user = await self._own_user(session, user_id)
            factor = await session.get(UserMfaRow, user_id, with_for_update=True)
            if factor is not None and factor.confirm_time is not None:
                raise FailedPrecondition(
                    "a second factor is already enabled; disable it first",
                    reason="MFA_ALREADY_ENABLED",
                )
            if factor is None:
                session.add(
                    UserMfaRow(user_id=user_id, company_id=user.company_id, secret_encrypted=sealed)
                )
            else:
                factor.secret_encrypted = sealed
                factor.last_used_step = None
            await self.ctx.audit.record(
                session, action="mfa.enroll", entity_type="user", entity_id=user_id
            )
            email = user.email
        return secret, provisioning_uri(secret, email, self.ctx.settings.mfa_issuer)

    async def qr_code(self) -> bytes:
        _, user_id = _caller()
        async with self.ctx.db.unit_of_work() as session:
            user = await self._own_user(session, user_id)
            factor = await session.get(UserMfaRow, user_id)
            if factor is None or factor.confirm_time is not None:
                raise _not_enrolling()
            uri = provisioning_uri(
                totp_secret(self.ctx.secrets_cipher, factor),
                user.email,
                self.ctx.settings.mfa_issuer,
            )
        return qr_code_png(uri)

    async def confirm(self, code: str) -> list[str]:
        """Enable the pending factor with a first code; the recovery codes, once."""
        _, user_id = _caller()
        if not code:
            raise InvalidArgument(
                "a code is required", field_violations=[FieldViolation("totp_code", "required")]
            )
        async with self.ctx.db.unit_of_work() as session:
            user = await self._own_user(session, user_id)
            factor = await session.get(UserMfaRow, user_id)
            if factor is None or factor.confirm_time is not None:
                raise _not_enrolling()
            email = user.email
        codes = new_recovery_codes()

        async def check() -> bool:
            async with self.ctx.db.unit_of_work() as session:
                now = datetime.now(UTC)
                if not await accept_totp_code(
                    session, self.ctx.secrets_cipher, user_id, code, now, confirmed=False
                ):
                    return False
                factor = await session.get(UserMfaRow, user_id)
                assert factor is not None
                factor.confirm_time = now
                await session.execute(
                    delete(MfaRecoveryCodeRow).where(MfaRecoveryCodeRow.user_id == user_id)
                )
                session.add_all(
                    MfaRecoveryCodeRow(
                        user_id=user_id,
                        company_id=factor.company_id,
                        code_hash=hash_recovery_code(c),
                    )
                    for c in codes
                )
                await self.ctx.audit.record(
                    session, action="mfa.confirm", entity_type="user", entity_id=user_id
                )
                return True

        if not await self.auth.guess_under_throttle(email, check):
            raise InvalidArgument(
                "the code is not correct",
                reason="INVALID_MFA_CODE",
                field_violations=[FieldViolation("totp_code", "is not correct")],
            )
        return codes

    async def disable(self, current_password: str) -> None:
        """Remove the caller's factor (the current password is needed)."""
        _, user_id = _caller()
        if not current_password:
            raise InvalidArgument(
                "the current password is required",
                field_violations=[FieldViolation("current_password", "required")],
            )
        async with self.ctx.db.unit_of_work() as session:
            user = await self._own_user(session, user_id)
            email, stored_hash = user.email, user.password_hash
            if await session.get(UserMfaRow, user_id) is None:
                raise FailedPrecondition("no second factor is enrolled", reason="MFA_NOT_ENABLED")

        async def check() -> bool:
            ok, _ = await self.ctx.hasher.verify_password_async(current_password, stored_hash)
            return ok

        if not await self.auth.guess_under_throttle(email, check):
            raise InvalidArgument(
                "the current password is not correct",
                reason="WRONG_CURRENT_PASSWORD",
                field_violations=[FieldViolation("current_password", "is not correct")],
            )
        async with self.ctx.db.unit_of_work() as session:
            await self._remove(session, user_id, "mfa_disabled", action="mfa.disable")

    async def _remove(
        self, session: AsyncSession, user_id: uuid.UUID, reason: str, *, action: str
    ) -> None:
        await session.execute(delete(UserMfaRow).where(UserMfaRow.user_id == user_id))
        await session.execute(
            delete(MfaRecoveryCodeRow).where(MfaRecoveryCodeRow.user_id == user_id)
        )
        revoked = await revoke_user_sessions(session, user_id, reason)
        await self.ctx.audit.record(
            session,
            action=action,
            entity_type="user",
            entity_id=user_id,
            detail={"sessions_revoked": revoked},
        )

    # ---------------------------------------------------------- administrators

    async def reset(self, user_id: str) -> None:
        """Remove a user's factor (a lost device); the caller must hold at least
        the user's power (as for every action on an account)."""
        principal = require_principal()
        company = target_company(principal, "") if not principal.is_platform_admin else None
        async with self.ctx.db.unit_of_work(
            company_id=company, cross_tenant=principal.is_platform_admin
        ) as session:
            user = await self.users._get_scoped(session, company, user_id, lock=True)
            await self.users._require_power(session, principal, user)
            await self._remove(session, user.id, "mfa_reset", action="mfa.reset")

    async def get_policy(self, company_id: str) -> MfaPolicy:
        principal = require_principal()
        company = target_company(principal, company_id)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            row = await session.get(MfaPolicyRow, company)
        if row is None:
            return MfaPolicy(company, [], None)
        return MfaPolicy(company, sorted(row.required_roles), row.update_time)

    async def update_policy(self, required_roles: list[str], company_id: str) -> MfaPolicy:
        principal = require_principal()
        company = target_company(principal, company_id)
        names = sorted(set(required_roles))
        if len(names) > MAX_POLICY_ROLES:
            raise InvalidArgument(
                "too many roles",
                field_violations=[
                    FieldViolation("policy.required_roles", f"at most {MAX_POLICY_ROLES}")
                ],
            )
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            known = set(
                await session.scalars(
                    select(RoleRow.name).where(
                        RoleRow.name.in_(names),
                        RoleRow.delete_time.is_(None),
                        (RoleRow.company_id == company) | RoleRow.company_id.is_(None),
                    )
                )
            )
            unknown = [n for n in names if n not in known]
            if unknown:
                raise InvalidArgument(
                    "the policy names roles that do not exist",
                    reason="UNKNOWN_ROLE",
                    field_violations=[
                        FieldViolation(
                            f"policy.required_roles[{required_roles.index(n)}]",
                            f"no role named '{n[:64]}'",
                        )
                        for n in unknown
                    ],
                )
            row = await session.get(MfaPolicyRow, company, with_for_update=True)
            now = datetime.now(UTC)
            if row is None:
                row = MfaPolicyRow(company_id=company)
                session.add(row)
            row.required_roles = names
            row.update_time = now
            row.updated_by = uuid.UUID(principal.subject)
            await self.ctx.audit.record(
                session,
                action="mfa_policy.update",
                entity_type="mfa_policy",
                entity_id=company,
                company_id=company,
                changed_fields=["required_roles"],
                detail={"required_roles": names},
            )
        return MfaPolicy(company, names, now)
