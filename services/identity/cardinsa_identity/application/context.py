"""What every identity use case needs: the database, settings, audit writer, keys.

The request helpers every service shares (the caller, ids, NOT_FOUND, the
request-id check) are in ``cardinsa_foundation.use_cases``; what is identity's
own stays here: which company a call acts in, the roles a user holds, and the
answer to a name already in use.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation.audit import AuditWriter
from cardinsa_foundation.context import Principal
from cardinsa_foundation.db import Database
from cardinsa_foundation.errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
)
from cardinsa_foundation.tenancy import TenantStatusCache
from cardinsa_foundation.use_cases import Paging, parse_uuid
from cardinsa_identity.application.events import UserEventSink
from cardinsa_identity.application.notifier import Notifier
from cardinsa_identity.application.revocations import RevocationHub
from cardinsa_identity.application.signing_keys import SigningKeyStore
from cardinsa_identity.domain.passwords import PasswordHasher
from cardinsa_identity.domain.permissions import (
    BUILT_IN_ROLES,
    SELF_SERVICE,
    effective_permissions,
)
from cardinsa_identity.domain.signing_keys import PrivateKeyCipher
from cardinsa_identity.repository.models import AuditEventRow, MfaPolicyRow
from cardinsa_identity.repository.roles import bound_roles
from cardinsa_identity.repository.users import email_taken
from cardinsa_identity.settings import IdentitySettings

log = logging.getLogger(__name__)


@dataclass
class IdentityContext(Paging):
    db: Database
    settings: IdentitySettings
    hasher: PasswordHasher
    keys: SigningKeyStore
    notifier: Notifier
    audit: AuditWriter[AuditEventRow]
    # Where the users' events go (identity's outbox), in the change's transaction.
    events: UserEventSink
    # Tenant status from the company service; None when not configured.
    tenants: TenantStatusCache | None = None
    # The revocations this process follows (and streams); set by main.build.
    revocations: RevocationHub | None = None
    # Encrypts secrets at rest (TOTP secrets); the signing keys' cipher, set by
    # main.build.
    cipher: PrivateKeyCipher | None = None

    @property
    def secrets_cipher(self) -> PrivateKeyCipher:
        if self.cipher is None:
            raise RuntimeError("no cipher for secrets at rest is configured")
        return self.cipher

    async def require_active_tenant(self, company_id: uuid.UUID | str) -> None:
        if self.tenants is not None:
            await self.tenants.require_active(str(company_id))

    async def message_locale(self, user_locale: str, company_id: uuid.UUID | None) -> str:
        """The locale a message to a user is written in: the user's own, else
        their company's (from the company service, when configured and
        reachable), else "" (the notifier's default then applies)."""
        if user_locale:
            return user_locale
        if self.tenants is None or company_id is None:
            return ""
        try:
            status = await self.tenants.status(str(company_id))
        except Exception:  # the message still goes, in the default language
            log.warning("company locale unavailable for a message; the default applies")
            return ""
        return status.locale if status is not None else ""


def name_in_use(resource: str, field: str, name: str) -> AlreadyExists:
    """ALREADY_EXISTS ``<RESOURCE>_EXISTS``: a live ``resource`` of the company has ``name``."""
    return AlreadyExists(
        f"a {resource} with this name already exists in the company",
        reason=f"{resource.upper().replace(' ', '_')}_EXISTS",
        metadata={"name": name},
        field_violations=[FieldViolation(field, "already in use")],
    )


def email_taken_error(
    field: str = "user.email", description: str = "already in use"
) -> AlreadyExists:
    """The answer when an email belongs to another user already."""
    return AlreadyExists(
        "a user with this email already exists",
        reason="EMAIL_TAKEN",
        field_violations=[FieldViolation("user.email", "already in use")],
    )


async def email_in_use(ctx: IdentityContext, email: str) -> bool:
    """Whether a user (of any company) has ``email``: email is unique on the whole
    platform, so the check looks across tenants (it reveals only "taken", which
    the unique index would reveal anyway)."""
    async with ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        return await email_taken(session, email)


async def flush_unique(session: AsyncSession, duplicate: AlreadyExists) -> None:
    """Flush the new rows; a unique violation (a concurrent call created the same
    thing first) is answered with ``duplicate``."""
    try:
        await session.flush()
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) == "23505":
            raise duplicate from None
        raise


def target_company(principal: Principal, requested: str, field: str = "company_id") -> uuid.UUID:
    """The company a call acts in: the caller's own, unless a platform admin names another.

    Anyone else naming another company gets PERMISSION_DENIED (permission is
    checked before existence, so this reveals nothing about that company).
    """
    own = principal.company_id
    if requested:
        wanted = parse_uuid(requested, field)
        if principal.is_platform_admin or (own and str(wanted) == own):
            return wanted
        raise PermissionDenied(
            "only platform administrators act in another company",
            reason="CROSS_COMPANY_DENIED",
        )
    if own is None:
        raise InvalidArgument(
            f"{field} is required for a caller without a company",
            field_violations=[FieldViolation(field, "required")],
        )
    return uuid.UUID(own)


async def roles_and_permissions(
    session: AsyncSession, user_id: uuid.UUID
) -> tuple[list[str], frozenset[str]]:
    """Role names bound to a user and the permissions they grant (live roles only)."""
    rows = await bound_roles(session, user_id)
    return grants_of((row.name, row.permissions, row.built_in) for row in rows)


def grants_of(
    roles: Iterable[tuple[str, Iterable[str], bool]],
) -> tuple[list[str], frozenset[str]]:
    """Role names and the permissions they grant, from ``(name, permissions,
    built_in)`` of each bound live role."""
    names: set[str] = set()
    sets = []
    for name, permissions, built_in in roles:
        names.add(name)
        role = BUILT_IN_ROLES.get(name) if built_in else None
        # Built-in roles take their permissions from code, so a new release's
        # catalogue applies without a data migration.
        sets.append(role.permissions if role else permissions)
    return sorted(names), effective_permissions(sets)


#: ``amr`` of a login with the password alone, and with a second factor (RFC 8176).
AMR_PASSWORD: tuple[str, ...] = ("pwd",)
AMR_PASSWORD_AND_OTP: tuple[str, ...] = ("pwd", "otp")


def grants_under_policy(
    roles: Iterable[tuple[str, Iterable[str], bool]],
    mfa_roles: Collection[str],
    amr: Collection[str],
) -> tuple[list[str], frozenset[str], frozenset[str]]:
    """Role names, permissions and permissions held back, of a token whose
    login authenticated by ``amr``, in a company whose MFA policy names
    ``mfa_roles``.

    Without ``otp`` in ``amr``, a role the policy names counts for nothing but
    self-service: its name stays out of the token (so ``platform-admin`` gives
    no cross-company power) and what only it grants is listed as held back
    (``mfa_perms``), so a call needing it is answered MFA_REQUIRED rather than
    a plain missing permission."""
    names: set[str] = set()
    free: list[Iterable[str]] = []
    guarded: list[Iterable[str]] = []
    needs = "otp" not in amr
    for name, permissions, built_in in roles:
        role = BUILT_IN_ROLES.get(name) if built_in else None
        granted = role.permissions if role else permissions
        if needs and name in mfa_roles:
            guarded.append(granted)
        else:
            names.add(name)
            free.append(granted)
    permissions_ = effective_permissions(free)
    held_all = effective_permissions(guarded)
    permissions_ |= held_all & SELF_SERVICE
    return sorted(names), permissions_, held_all - permissions_


async def mfa_required_roles(session: AsyncSession, company_id: uuid.UUID | str) -> frozenset[str]:
    """The roles of the company's MFA policy (none without one)."""
    row = await session.get(MfaPolicyRow, uuid.UUID(str(company_id)))
    return frozenset(row.required_roles) if row is not None else frozenset()


async def token_grants(
    session: AsyncSession, user_id: uuid.UUID, company_id: uuid.UUID | str, amr: Collection[str]
) -> tuple[list[str], frozenset[str], frozenset[str]]:
    """`grants_under_policy` of a user's live roles and their company's policy."""
    rows = await bound_roles(session, user_id)
    return grants_under_policy(
        ((row.name, row.permissions, row.built_in) for row in rows),
        await mfa_required_roles(session, company_id),
        amr,
    )
