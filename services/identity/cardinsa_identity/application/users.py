"""Users: standard methods, lifecycle transitions and sessions.

Tenancy: every query is scoped to the company the call acts in (the caller's,
or the one a platform admin names), and row-level security backs that up in
the database. Another company's user behaves exactly like one that does not
exist.

Privilege: every call that acts on an existing user (update, lock, unlock,
deactivate, reactivate, delete, undelete, list or revoke sessions) needs at
least that user's power (application/privilege.py), checked after the user is
found and before anything else, in the transaction that makes the change. A
caller acting on itself has equal power and passes. Changing the phone revokes
every session of the user and notifies the previous address. A new email only
opens a pending change (application/email_change.py): the address changes, the
sessions are revoked and the old address is told when the new one confirms.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation.context import Principal
from cardinsa_foundation.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
)
from cardinsa_foundation.models import check_etag
from cardinsa_foundation.paging import OrderTerm, Page
from cardinsa_foundation.use_cases import (
    check_mask,
    check_request_id,
    lookup_uuid,
    not_found,
    require_principal,
)
from cardinsa_identity.application.auth import revoke_user_sessions, void_password_resets
from cardinsa_identity.application.context import (
    IdentityContext,
    email_in_use,
    email_taken_error,
    flush_unique,
    roles_and_permissions,
    target_company,
)
from cardinsa_identity.application.email_change import (
    PendingEmailChange,
    open_email_change,
    send_confirmation,
)
from cardinsa_identity.application.events import ACTION_CHANGES
from cardinsa_identity.application.privilege import require_may_act_on, user_power
from cardinsa_identity.application.revocations import revoke_sessions
from cardinsa_identity.domain.password_policy import check_password
from cardinsa_identity.domain.users import (
    PROFILE_FIELDS,
    UserAction,
    UserProfile,
    UserState,
    check_profile,
    default_display_name,
    normalize_profile,
    revokes_sessions,
    transition,
)
from cardinsa_identity.repository.idempotency import claim
from cardinsa_identity.repository.models import SessionRow, UserRow
from cardinsa_identity.repository.users import (
    find_user,
    list_sessions_query,
    list_users_query,
    void_invitations,
)

log = logging.getLogger(__name__)

#: Profile fields through which the user is reached (password resets go to the
#: email): changing one revokes every session and notifies the old address.
CONTACT_FIELDS: Final = frozenset({"email", "phone"})

#: Longest reason LockUser and DeactivateUser accept (it goes into the audit log).
MAX_REASON_LENGTH = 500

CREATE_USER = "CreateUser"


def new_user_row(
    user_id: uuid.UUID,
    company: uuid.UUID,
    profile: UserProfile,
    *,
    state: UserState,
    password_hash: str,
    password_change_time: datetime | None,
    must_change_password: bool = False,
) -> UserRow:
    """A new user of ``company`` from a normalised, checked ``profile``."""
    return UserRow(
        id=user_id,
        company_id=company,
        email=profile.email,
        given_name=profile.given_name,
        family_name=profile.family_name,
        display_name=profile.display_name
        or default_display_name(profile.given_name, profile.family_name, profile.email),
        phone=profile.phone,
        locale=profile.locale,
        state=state.value,
        password_hash=password_hash,
        password_change_time=password_change_time,
        must_change_password=must_change_password,
    )


class UserUseCases:
    def __init__(self, ctx: IdentityContext) -> None:
        self.ctx = ctx

    async def create(
        self,
        profile: UserProfile,
        password: str,
        *,
        company_id: str,
        request_id: str,
        password_permanent: bool = False,
    ) -> tuple[UserRow, list[str]]:
        principal = require_principal()
        company = target_company(principal, company_id, "user.company_id")
        profile = normalize_profile(profile)
        violations = list(check_profile(profile, prefix="user"))
        if not profile.email:
            violations.append(FieldViolation("user.email", "required"))
        if not password:
            violations.append(FieldViolation("password", "required"))
        else:
            violations.extend(
                check_password(
                    password,
                    email=profile.email,
                    field="password",
                    min_length=self.ctx.settings.password_min_length,
                )
            )
        violations.extend(check_request_id(request_id))
        if violations:
            raise InvalidArgument("the user is not valid", field_violations=violations)
        password_hash = await self.ctx.hasher.hash_password_async(password)
        user_id = uuid.uuid4()
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            # The profile defines the call; the password never goes into the
            # stored fingerprint (an unsalted hash of it would be a secret at rest).
            seen = await claim(session, company, CREATE_USER, request_id, str(user_id), profile)
            if seen is not None:
                user = await self._get_scoped(session, company, seen)
                return user, (await roles_and_permissions(session, user.id))[0]
            taken = email_taken_error()
            if await email_in_use(self.ctx, profile.email):
                raise taken
            user = new_user_row(
                user_id,
                company,
                profile,
                state=UserState.ACTIVE,
                password_hash=password_hash,
                password_change_time=datetime.now(UTC),
                # An administrator chose this password: the user replaces it
                # at first login (unless it is declared their own).
                must_change_password=not password_permanent,
            )
            session.add(user)
            await flush_unique(session, taken)  # a concurrent call took the address
            await self.ctx.audit.record(
                session,
                action="user.create",
                entity_type="user",
                entity_id=user.id,
                company_id=company,
                changed_fields=sorted(PROFILE_FIELDS),
            )
            self.ctx.events.user_changed(session, user, [], change="created", from_state=None)
        return user, []

    async def get(self, user_id: str) -> tuple[UserRow, list[str]]:
        principal = require_principal()
        company = target_company(principal, "") if not principal.is_platform_admin else None
        async with self.ctx.db.unit_of_work(
            company_id=company, cross_tenant=principal.is_platform_admin
        ) as session:
            user = await self._get_scoped(session, company, user_id)
            roles, _ = await roles_and_permissions(session, user.id)
            return user, roles

    async def list_users(
        self,
        *,
        page_size: int,
        page_token: str,
        filter: str,
        order_by: str,
        show_deleted: bool,
        company_id: str,
    ) -> Page[UserRow]:
        principal = require_principal()
        company = target_company(principal, company_id)
        stmt, order = list_users_query(
            company, filter=filter, order_by=order_by, show_deleted=show_deleted
        )
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await self.ctx.page(
                session,
                stmt,
                order=order,
                page_size=page_size,
                page_token=page_token,
                filter=filter,
                order_by=order_by,
                show_deleted=show_deleted,
                company_id=str(company),
            )

    async def update(
        self, user_id: str, profile: UserProfile, mask: list[str], etag: str
    ) -> tuple[UserRow, list[str]]:
        principal = require_principal()
        check_mask(mask, PROFILE_FIELDS)
        profile = normalize_profile(profile)
        violations = check_profile(profile, prefix="user", fields=frozenset(mask))
        if violations:
            raise InvalidArgument("the user is not valid", field_violations=violations)
        company = target_company(principal, "") if not principal.is_platform_admin else None
        async with self.ctx.db.unit_of_work(
            company_id=company, cross_tenant=principal.is_platform_admin
        ) as session:
            user = await self._get_scoped(session, company, user_id, lock=True)
            await self._require_power(session, principal, user)
            check_etag(user, etag)
            old_email = user.email
            new_email = "email" in mask and profile.email != user.email
            if new_email and await email_in_use(self.ctx, profile.email):
                raise email_taken_error()
            # A new email takes effect only once the new address confirmed it
            # (application/email_change.py) -- except for an INVITED user, who
            # never confirmed any address: its invitations die instead.
            pending: PendingEmailChange | None = None
            if new_email and user.state != UserState.INVITED:
                pending = await open_email_change(
                    self.ctx, session, user, profile.email, by="admin"
                )
            elif new_email:
                await void_invitations(session, user.id, datetime.now(UTC))
            changed = []
            for path in mask:
                value = getattr(profile, path)
                if path == "email" and pending is not None:
                    continue
                if getattr(user, path) != value:
                    setattr(user, path, value)
                    changed.append(path)
            contact = sorted(CONTACT_FIELDS.intersection(changed))
            if changed:
                detail: dict[str, Any] = {}
                if contact:
                    # Whoever changed how the user is reached may not also keep
                    # (or have stolen) their sessions: every one is revoked.
                    detail["sessions_revoked"] = await revoke_user_sessions(
                        session, user.id, "contact_changed"
                    )
                if "email" in changed:
                    # Reset tokens mailed to the old address no longer reach the user.
                    await void_password_resets(session, user.id)
                await session.flush()
                await self.ctx.audit.record(
                    session,
                    action="user.update",
                    entity_type="user",
                    entity_id=user.id,
                    company_id=user.company_id,
                    changed_fields=changed,
                    detail=detail or None,
                )
            roles, _ = await roles_and_permissions(session, user.id)
            if changed:
                self.ctx.events.user_changed(
                    session, user, roles, change="updated", from_state=user.state
                )
        if contact and user.state != UserState.INVITED:
            await self._notify_contact_changed(old_email, contact, user)
        if pending is not None:
            await send_confirmation(self.ctx, pending)
        return user, roles

    async def _notify_contact_changed(
        self, old_email: str, fields: list[str], user: UserRow
    ) -> None:
        """Tell the address the account had before the change (after the commit;
        a failed notification does not undo the change, it is logged). The SMTP
        notifier only queues the message: the call does not wait for the server."""
        try:
            await self.ctx.notifier.send_contact_changed(
                email=old_email,
                changed_fields=fields,
                change_time=datetime.now(UTC),
                locale=await self.ctx.message_locale(user.locale, user.company_id),
            )
        except Exception:
            log.exception("notifying a contact change failed")

    @staticmethod
    async def _require_power(session: AsyncSession, principal: Principal, user: UserRow) -> None:
        """The caller must hold every permission ``user`` holds (application/privilege.py);
        called in the transaction that makes the change, the user's row locked."""
        require_may_act_on(principal, await user_power(session, user.id), resource="user")

    async def _get_scoped(
        self, session: AsyncSession, company: uuid.UUID | None, user_id: str, *, lock: bool = False
    ) -> UserRow:
        key = lookup_uuid(user_id)
        user = await find_user(session, company, key, lock=lock) if key else None
        if user is None:
            raise not_found("user", user_id)
        return user

    async def _mutate(
        self,
        user_id: str,
        etag: str,
        action: str,
        apply: Callable[[UserRow], dict[str, Any]],
        *,
        reason: str = "",
    ) -> tuple[UserRow, list[str]]:
        principal = require_principal()
        company = target_company(principal, "") if not principal.is_platform_admin else None
        async with self.ctx.db.unit_of_work(
            company_id=company, cross_tenant=principal.is_platform_admin
        ) as session:
            user = await self._get_scoped(session, company, user_id, lock=True)
            await self._require_power(session, principal, user)
            check_etag(user, etag)
            from_state = user.state
            detail = apply(user) or {}
            if reason:
                detail["reason"] = reason
            if detail.pop("revoke", False):
                detail["sessions_revoked"] = await revoke_user_sessions(session, user.id, action)
            await session.flush()
            await self.ctx.audit.record(
                session,
                action=f"user.{action}",
                entity_type="user",
                entity_id=user.id,
                company_id=user.company_id,
                changed_fields=detail.pop("changed", []),
                detail=detail,
            )
            roles, _ = await roles_and_permissions(session, user.id)
            self.ctx.events.user_changed(
                session, user, roles, change=ACTION_CHANGES[action], from_state=from_state
            )
            return user, roles

    async def transition(
        self, user_id: str, action: UserAction, etag: str, reason: str = ""
    ) -> tuple[UserRow, list[str]]:
        if len(reason) > MAX_REASON_LENGTH:
            raise InvalidArgument(
                "the reason is too long",
                reason="INVALID_REASON",
                field_violations=[
                    FieldViolation("reason", f"at most {MAX_REASON_LENGTH} characters")
                ],
            )

        def apply(user: UserRow) -> dict[str, Any]:
            if action is UserAction.UNLOCK and user.state == UserState.ACTIVE:
                # Not locked by an admin, perhaps by failed logins: clearing
                # that temporary lock is what the caller wants.
                return {"cleared": "login_lock"}
            new_state = transition(UserState(user.state), action)
            detail: dict[str, Any] = {
                "from_state": user.state,
                "to_state": new_state.value,
                "changed": ["state"],
            }
            user.state = new_state.value
            if revokes_sessions(action):
                detail["revoke"] = True
            return detail

        result = await self._mutate(user_id, etag, action.value.lower(), apply, reason=reason)
        if action is UserAction.UNLOCK:
            await self._clear_login_lock(result[0].email)
        return result

    async def _clear_login_lock(self, email: str) -> None:
        from cardinsa_identity.application import throttle

        async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            await throttle.clear(session, throttle.ACCOUNT, email)

    async def delete(self, user_id: str, etag: str) -> tuple[UserRow, list[str]]:
        def apply(user: UserRow) -> dict[str, Any]:
            if user.delete_time is None:
                user.soft_delete()
            return {"changed": ["delete_time"], "revoke": True}

        return await self._mutate(user_id, etag, "delete", apply)

    async def undelete(self, user_id: str, etag: str) -> tuple[UserRow, list[str]]:
        def apply(user: UserRow) -> dict[str, Any]:
            if user.delete_time is None:
                raise FailedPrecondition(
                    "the user is not deleted",
                    reason="NOT_DELETED",
                    metadata={"user_id": str(user.id)},
                )
            user.undelete()
            return {"changed": ["delete_time"]}

        return await self._mutate(user_id, etag, "undelete", apply)

    # ---------------------------------------------------------------- sessions

    async def list_sessions(
        self, user_id: str, *, page_size: int, page_token: str, show_revoked: bool
    ) -> Page[SessionRow]:
        principal = require_principal()
        company = target_company(principal, "") if not principal.is_platform_admin else None
        async with self.ctx.db.unit_of_work(
            company_id=company, cross_tenant=principal.is_platform_admin
        ) as session:
            user = await self._get_scoped(session, company, user_id)
            await self._require_power(session, principal, user)
            stmt = list_sessions_query(user.id, show_revoked=show_revoked, now=datetime.now(UTC))
            return await self.ctx.page(
                session,
                stmt,
                order=[OrderTerm(SessionRow.create_time, True)],
                page_size=page_size,
                page_token=page_token,
                parent=str(user.id),
                show_revoked=show_revoked,
            )

    async def revoke_session(self, user_id: str, session_id: str, *, by_self: bool = False) -> None:
        """Revokes one session of the user; ``by_self``: the user ends their own
        (MeService), recorded as ``revoked_by_user``."""
        principal = require_principal()
        revoke_reason, audit_reason = (
            ("revoked_by_user", "self") if by_self else ("revoked_by_admin", "admin")
        )
        company = target_company(principal, "") if not principal.is_platform_admin else None
        async with self.ctx.db.unit_of_work(
            company_id=company, cross_tenant=principal.is_platform_admin
        ) as session:
            user = await self._get_scoped(session, company, user_id, lock=True)
            await self._require_power(session, principal, user)
            key = lookup_uuid(session_id)
            family = await session.get(SessionRow, key, with_for_update=True) if key else None
            if family is None or family.user_id != user.id:
                raise not_found("session", session_id)
            if family.revoke_time is None:
                family.revoke_time = datetime.now(UTC)
                family.revoke_reason = revoke_reason
                await revoke_sessions(session, [family.id], revoke_reason)
                await self.ctx.audit.record(
                    session,
                    action="session.revoke",
                    entity_type="session",
                    entity_id=family.id,
                    company_id=family.company_id,
                    detail={"user_id": str(user.id), "reason": audit_reason},
                )
