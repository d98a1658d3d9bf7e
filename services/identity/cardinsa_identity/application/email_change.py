"""Verified e-mail changes: a new address takes effect only once it confirmed
the change (docs/self-service.md, "Changing the e-mail address").

A change is asked for by the user (MeService.ChangeMyEmail, with the current
password) or by an administrator (UserService.UpdateUser naming ``email``).
Either opens a *pending change*: an ``email_changes`` row with the new address
and the SHA-256 of an opaque ``cde_`` token (256 bits), single-use, expiring
after ``email_change_ttl_s``. The token goes to the NEW address (notifier,
after the commit); the user's email stays as it is. A newer request voids the
older pending one.

AuthService.ConfirmEmailChange (public) with the token makes the change: the
address is checked to be free again (it may have been taken meanwhile:
ALREADY_EXISTS ``EMAIL_TAKEN``, told only to whoever holds the token, that is
the new address), the email changes, every other pending change and every
password-reset token of the user die, every session is revoked, and the OLD
address is told (no token, not the new address). An unknown, malformed, used
or expired token, or one of a deleted user, gets one answer: UNAUTHENTICATED
``INVALID_EMAIL_CHANGE_TOKEN``.

Self-service answers the same whether or not the new address is free: a taken
one just gets no mail (a user could otherwise probe every address for an
account). The current password is checked under the login throttle, like
ChangeMyPassword: a wrong one counts as a failed login.

An INVITED user has never confirmed any address: an administrator's change of
its email applies at once and voids its invitations (the new address proves
itself by accepting a new invitation, ResendInvitation).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation import metrics
from cardinsa_foundation.context import (
    Principal,
    PrincipalKind,
    client_address_var,
    principal_var,
)
from cardinsa_foundation.errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    Unauthenticated,
)
from cardinsa_foundation.use_cases import require_principal
from cardinsa_identity.application import throttle
from cardinsa_identity.application.auth import (
    AuthUseCases,
    revoke_user_sessions,
    void_password_resets,
)
from cardinsa_identity.application.context import (
    IdentityContext,
    email_in_use,
    flush_unique,
    roles_and_permissions,
)
from cardinsa_identity.domain.tokens import (
    OpaqueTokenKind,
    hash_opaque_token,
    is_well_formed_opaque_token,
    new_opaque_token,
)
from cardinsa_identity.domain.users import check_email, normalize_email
from cardinsa_identity.repository.models import EmailChangeRow, UserRow

__all__ = [
    "INVALID_EMAIL_CHANGE_TOKEN",
    "EmailChangeUseCases",
    "PendingEmailChange",
    "open_email_change",
]

log = logging.getLogger(__name__)

INVALID_EMAIL_CHANGE_TOKEN = "INVALID_EMAIL_CHANGE_TOKEN"  # noqa: S105 (an error reason)


@dataclass(frozen=True)
class PendingEmailChange:
    """What to mail once the transaction that opened the change committed."""

    new_email: str
    token: str
    expire_time: datetime
    locale: str
    company_id: uuid.UUID


async def _void_email_changes(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(EmailChangeRow)
        .where(EmailChangeRow.user_id == user_id, EmailChangeRow.use_time.is_(None))
        .values(use_time=now)
        .execution_options(synchronize_session=False)
    )


async def open_email_change(
    ctx: IdentityContext, session: AsyncSession, user: UserRow, new_email: str, *, by: str
) -> PendingEmailChange:
    """Open a pending change of ``user``'s email to ``new_email`` (normalised,
    valid, not the current one), in the caller's transaction with the user's
    row locked; older pending changes die. ``by``: ``self`` or ``admin``
    (audited). Mail the result with :func:`send_confirmation` after the commit."""
    now = datetime.now(UTC)
    await _void_email_changes(session, user.id, now)
    token = new_opaque_token(OpaqueTokenKind.EMAIL_CHANGE)
    expire = now + timedelta(seconds=ctx.settings.email_change_ttl_s)
    session.add(
        EmailChangeRow(
            token_hash=token.token_hash,
            company_id=user.company_id,
            user_id=user.id,
            new_email=new_email,
            expire_time=expire,
        )
    )
    # The audit names neither the token nor the new address.
    await ctx.audit.record(
        session,
        action="user.email_change.request",
        entity_type="user",
        entity_id=user.id,
        company_id=user.company_id,
        detail={"by": by, "expire_time": expire.isoformat()},
    )
    return PendingEmailChange(new_email, token.token, expire, user.locale, user.company_id)


async def send_confirmation(ctx: IdentityContext, pending: PendingEmailChange) -> None:
    """Mail the confirmation token to the new address (after the commit; a failed
    notification is logged, never the caller's failure)."""
    try:
        await ctx.notifier.send_email_change(
            email=pending.new_email,
            token=pending.token,
            expire_time=pending.expire_time,
            locale=await ctx.message_locale(pending.locale, pending.company_id),
        )
    except Exception:
        log.exception("sending an e-mail change confirmation failed")


def _invalid() -> Unauthenticated:
    return Unauthenticated(
        "the e-mail change token is not valid or has expired; ask for the change again",
        reason=INVALID_EMAIL_CHANGE_TOKEN,
    )


class EmailChangeUseCases:
    def __init__(self, ctx: IdentityContext, auth: AuthUseCases) -> None:
        self.ctx = ctx
        self.auth = auth

    async def _verify_current_password(self, user_id: uuid.UUID, password: str) -> None:
        """As ChangeMyPassword: under the login throttle (a lock on the account or
        this address refuses; a wrong password counts as a failed login)."""
        async with self.ctx.db.unit_of_work() as session:
            user = await session.get(UserRow, user_id)
            if user is None or user.delete_time is not None:
                raise Unauthenticated("the account no longer exists", reason="ACCOUNT_NOT_FOUND")
            address = client_address_var.get() or "unknown"
            keys = [
                (throttle.ACCOUNT, user.email),
                (throttle.ACCOUNT_ADDRESS, throttle.pair_key(user.email, address)),
            ]
            verdict = await throttle.reserve_attempt(session, self.auth.policy, keys)
            stored_hash = user.password_hash
        if verdict.locked_until is not None:
            raise throttle.locked_error(verdict.locked_until)
        if verdict.busy:
            raise throttle.busy_error()
        decided = False
        try:
            ok, _ = await self.ctx.hasher.verify_password_async(password, stored_hash)
            if not ok:
                metrics.IDENTITY_LOGIN_FAILURES.inc()
                async with self.ctx.db.unit_of_work() as session:
                    await throttle.record_failure(session, keys)
                decided = True
                raise InvalidArgument(
                    "the current password is not correct",
                    reason="WRONG_CURRENT_PASSWORD",
                    field_violations=[FieldViolation("current_password", "is not correct")],
                )
        finally:
            if not decided:  # the right password (or an error): the attempt is given back
                with contextlib.suppress(Exception):
                    async with self.ctx.db.unit_of_work() as session:
                        await throttle.give_back(session, keys)

    async def request_by_self(self, current_password: str, new_email: str) -> None:
        """MeService.ChangeMyEmail (the caller is a user: checked by MeUseCases)."""
        principal = require_principal()
        missing = [
            FieldViolation(name, "required")
            for name, value in (("current_password", current_password), ("new_email", new_email))
            if not value
        ]
        if missing:
            raise InvalidArgument("required fields are missing", field_violations=missing)
        email = normalize_email(new_email)
        violations = check_email(email, field="new_email")
        if violations:
            raise InvalidArgument("the new email is not valid", field_violations=violations)
        user_id = uuid.UUID(principal.subject)
        await self._verify_current_password(user_id, current_password)
        taken = await email_in_use(self.ctx, email)
        pending: PendingEmailChange | None = None
        async with self.ctx.db.unit_of_work() as session:
            user = await session.get(UserRow, user_id, with_for_update=True)
            if user is None or user.delete_time is not None:
                raise Unauthenticated("the account no longer exists", reason="ACCOUNT_NOT_FOUND")
            if email == user.email:
                raise InvalidArgument(
                    "the new email is the current one",
                    reason="EMAIL_UNCHANGED",
                    field_violations=[FieldViolation("new_email", "is the current email")],
                )
            if taken:
                # The same answer as for a free address; no mail, audited.
                await self.ctx.audit.record(
                    session,
                    action="user.email_change.request",
                    entity_type="user",
                    entity_id=user.id,
                    company_id=user.company_id,
                    detail={"by": "self", "outcome": "email_taken"},
                )
            else:
                pending = await open_email_change(self.ctx, session, user, email, by="self")
        if pending is not None:
            await send_confirmation(self.ctx, pending)

    async def confirm(self, email_change_token: str) -> None:
        if not email_change_token:
            raise InvalidArgument(
                "required fields are missing",
                field_violations=[FieldViolation("email_change_token", "required")],
            )
        if not is_well_formed_opaque_token(email_change_token, OpaqueTokenKind.EMAIL_CHANGE):
            raise _invalid()
        token_hash = hash_opaque_token(email_change_token)
        async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            row = await session.get(EmailChangeRow, token_hash)
            if row is None or row.use_time is not None or row.expire_time <= datetime.now(UTC):
                raise _invalid()
            company_id, user_id = row.company_id, row.user_id
        async with self.ctx.db.unit_of_work(company_id=company_id) as session:
            # The row locked: a concurrent confirmation of the same token waits
            # and then finds it used.
            row = await session.get(
                EmailChangeRow, token_hash, with_for_update=True, populate_existing=True
            )
            now = datetime.now(UTC)
            if row is None or row.use_time is not None or row.expire_time <= now:
                raise _invalid()
            user = await session.get(UserRow, user_id, with_for_update=True)
            if user is None or user.delete_time is not None:
                raise _invalid()
            new_email = row.new_email
            taken = AlreadyExists(
                "a user with this email already exists",
                reason="EMAIL_TAKEN",
                field_violations=[FieldViolation("email_change_token", "address in use")],
            )
            if new_email != user.email and await email_in_use(self.ctx, new_email):
                raise taken
            principal_var.set(
                Principal(
                    subject=str(user.id), kind=PrincipalKind.USER, company_id=str(user.company_id)
                )
            )
            old_email, locale = user.email, user.locale
            row.use_time = now
            await _void_email_changes(session, user.id, now)
            user.email = new_email
            # Taken by a concurrent change or creation after the check: the same answer.
            await flush_unique(session, taken)
            # Reset tokens mailed to the old address no longer reach the user, and
            # whoever changed how the user is reached keeps no session.
            await void_password_resets(session, user.id)
            revoked = await revoke_user_sessions(session, user.id, "email_changed")
            await session.flush()
            await self.ctx.audit.record(
                session,
                action="user.email_change.confirm",
                entity_type="user",
                entity_id=user.id,
                changed_fields=["email"],
                detail={"sessions_revoked": revoked},
            )
            roles, _ = await roles_and_permissions(session, user.id)
            self.ctx.events.user_changed(
                session, user, roles, change="updated", from_state=user.state
            )
        try:
            await self.ctx.notifier.send_email_changed(
                email=old_email,
                change_time=now,
                locale=await self.ctx.message_locale(locale, company_id),
            )
        except Exception:
            log.exception("notifying an e-mail change failed")
