"""Self-service (MeService): the calling user's own profile, password and sessions.

The user acted on is always the caller: the access token's subject, in the
token's company (platform admins: their own row, wherever it is). No request
names a user, so there is nothing to enumerate: a session id that is not one of
the caller's own is NOT_FOUND, exactly like one that does not exist.

Each method reuses the administrators' code path on the caller's own user
(:class:`UserUseCases`, :class:`AuthUseCases`): the same validation, etag check,
audit records, events and session revocation. What self-service adds:

- only users: a service account (an API key's token) has no profile, password
  or login session, so every method refuses it with PERMISSION_DENIED, reason
  ``NOT_A_USER`` (as ``AuthService.ChangePassword`` always has);
- UpdateMe changes only :data:`SELF_EDITABLE` fields. ``email`` and ``phone``
  are how the account is reached (password resets go to the email): they are
  refused with INVALID_ARGUMENT (reason ``FIELD_NOT_SELF_EDITABLE``), as is
  every other field (state, roles, company, ...). A new email goes through
  ChangeMyEmail instead (application/email_change.py): the current password,
  then a confirmation by the new address before anything changes;
- ChangeMyPassword is ``AuthService.ChangePassword``: the current password is
  verified under the login throttle (a wrong one counts as a failed login; too
  many → RESOURCE_EXHAUSTED with RetryInfo), the new one meets the password
  policy, and every session of the user is revoked, the current one included
  (as a password reset does); the audit event is ``user.change_password``;
- RevokeMySession records the reason ``revoked_by_user``.
"""

from __future__ import annotations

import uuid
from typing import Final

from cardinsa_foundation.context import Principal, PrincipalKind
from cardinsa_foundation.errors import FieldViolation, InvalidArgument, PermissionDenied
from cardinsa_foundation.paging import Page
from cardinsa_foundation.use_cases import require_principal
from cardinsa_identity.application.auth import AuthUseCases
from cardinsa_identity.application.email_change import EmailChangeUseCases
from cardinsa_identity.application.users import CONTACT_FIELDS, UserUseCases
from cardinsa_identity.domain.users import UserProfile
from cardinsa_identity.repository.models import SessionRow, UserRow

__all__ = ["FIELD_NOT_SELF_EDITABLE", "NOT_A_USER", "SELF_EDITABLE", "MeUseCases"]

#: Profile fields a user may change about themselves.
SELF_EDITABLE: Final = frozenset({"given_name", "family_name", "display_name", "locale"})

NOT_A_USER: Final = "NOT_A_USER"
FIELD_NOT_SELF_EDITABLE: Final = "FIELD_NOT_SELF_EDITABLE"


def _caller() -> tuple[Principal, str]:
    principal = require_principal()
    if principal.kind is not PrincipalKind.USER:
        raise PermissionDenied(
            "only users have a profile, a password and login sessions; a service account has none",
            reason=NOT_A_USER,
        )
    return principal, str(uuid.UUID(principal.subject))


def check_self_mask(mask: list[str]) -> None:
    """INVALID_ARGUMENT unless ``mask`` is non-empty and names only self-editable
    fields; a contact field gets its own explanation."""
    if not mask:
        raise InvalidArgument(
            "update_mask is required", field_violations=[FieldViolation("update_mask", "required")]
        )
    allowed = ", ".join(sorted(SELF_EDITABLE))
    violations = []
    for index, path in enumerate(mask):
        field = f"update_mask.paths[{index}]"
        if path in SELF_EDITABLE:
            continue
        if path == "email":
            violations.append(
                FieldViolation(
                    field,
                    "'email' is not changed through UpdateMe: use ChangeMyEmail "
                    "(POST /v1/me:changeEmail), which the new address confirms",
                )
            )
        elif path in CONTACT_FIELDS:
            violations.append(
                FieldViolation(
                    field,
                    f"'{path}' is not self-editable yet: a new {path} must be verified "
                    "before it replaces the old one; an administrator can change it "
                    "(UpdateUser)",
                )
            )
        else:
            violations.append(
                FieldViolation(
                    field,
                    f"'{path[:64]}' cannot be changed through UpdateMe; self-editable: {allowed}",
                )
            )
    if violations:
        raise InvalidArgument(
            "update_mask names fields you cannot change about yourself",
            reason=FIELD_NOT_SELF_EDITABLE,
            field_violations=violations,
        )


class MeUseCases:
    def __init__(
        self, users: UserUseCases, auth: AuthUseCases, email_changes: EmailChangeUseCases
    ) -> None:
        self.users = users
        self.auth = auth
        self.email_changes = email_changes

    async def get(self) -> tuple[UserRow, list[str]]:
        _, user_id = _caller()
        return await self.users.get(user_id)

    async def update(
        self, profile: UserProfile, mask: list[str], etag: str
    ) -> tuple[UserRow, list[str]]:
        _, user_id = _caller()
        check_self_mask(mask)
        return await self.users.update(user_id, profile, mask, etag)

    async def change_password(self, current_password: str, new_password: str) -> None:
        _caller()
        await self.auth.change_password(current_password, new_password)

    async def change_email(self, current_password: str, new_email: str) -> None:
        _caller()
        await self.email_changes.request_by_self(current_password, new_email)

    async def list_sessions(
        self, *, page_size: int, page_token: str, show_revoked: bool
    ) -> Page[SessionRow]:
        _, user_id = _caller()
        return await self.users.list_sessions(
            user_id, page_size=page_size, page_token=page_token, show_revoked=show_revoked
        )

    async def revoke_session(self, session_id: str) -> None:
        _, user_id = _caller()
        await self.users.revoke_session(user_id, session_id, by_self=True)
