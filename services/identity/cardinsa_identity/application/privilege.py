"""Acting on an account needs at least that account's power (domain/privilege.py).

Every use case that acts on another user or service account reads the target's
power in the transaction that makes the change, with the target's row locked
(``SELECT ... FOR UPDATE``; ListSessions and ListApiKeys, which change nothing,
read without the lock), and calls :func:`require_may_act_on` before writing.
CreateRoleBinding locks the user's row the same way (and its foreign key would
wait for that lock anyway), CreateApiKey the account's row: a grant to the
target waits for a change in flight, or the change sees the grant; none slips
between the check and the write.

Order of answers: the RPC's permission (interceptor), then the target's
existence in the caller's scope (another company's account is NOT_FOUND, like
one that does not exist), then this check, then everything else (etag, state):
a refused caller learns nothing about the target's state. The refusal names no
permission of the target: PERMISSION_DENIED, reason ``TARGET_MORE_PRIVILEGED``.

The caller's power is what its access token carries (``principal.permissions``
and its roles), as for the grant rule; the target's is read live.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation.context import PLATFORM_ADMIN_ROLE, Principal
from cardinsa_foundation.errors import PermissionDenied
from cardinsa_identity.application.context import grants_of
from cardinsa_identity.domain.privilege import Power, shortfall
from cardinsa_identity.repository.roles import bound_roles
from cardinsa_identity.repository.service_accounts import usable_key_permissions

__all__ = [
    "TARGET_MORE_PRIVILEGED",
    "caller_power",
    "require_may_act_on",
    "service_account_power",
    "user_power",
]

TARGET_MORE_PRIVILEGED: Final = "TARGET_MORE_PRIVILEGED"


def caller_power(principal: Principal) -> Power:
    return Power.of(principal.permissions, platform_admin=principal.is_platform_admin)


async def user_power(session: AsyncSession, user_id: uuid.UUID) -> Power:
    """The union of the permissions of every live role bound to the user
    (built-in roles' from code, as in access tokens); platform admin when the
    built-in platform-admin role is among them."""
    rows = await bound_roles(session, user_id)
    _, permissions = grants_of((row.name, row.permissions, row.built_in) for row in rows)
    platform_admin = any(
        row.built_in and row.company_id is None and row.name == PLATFORM_ADMIN_ROLE for row in rows
    )
    return Power.of(permissions, platform_admin=platform_admin)


async def service_account_power(
    session: AsyncSession, company: uuid.UUID, account_id: uuid.UUID
) -> Power:
    """The union of the permissions of the account's usable API keys (neither
    revoked nor expired): what anyone holding one of its keys can do."""
    held = await usable_key_permissions(session, company, account_id, datetime.now(UTC))
    return Power.of(name for permissions in held for name in permissions)


def require_may_act_on(principal: Principal, target: Power, *, resource: str) -> None:
    """PERMISSION_DENIED unless the caller holds all of ``target``'s power."""
    if shortfall(caller_power(principal), target) is not None:
        raise PermissionDenied(
            f"the {resource} holds permissions you do not hold; "
            "nobody acts on an account more privileged than themselves",
            reason=TARGET_MORE_PRIVILEGED,
        )
