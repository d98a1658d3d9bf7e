"""Creating the first accounts: never through an open RPC, only from the command line."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cardinsa_foundation.context import Principal, PrincipalKind, principal_var
from cardinsa_foundation.errors import FieldViolation, InvalidArgument
from cardinsa_identity.application.context import IdentityContext, roles_and_permissions
from cardinsa_identity.application.revocations import revoke_sessions
from cardinsa_identity.domain.api_keys import new_api_key
from cardinsa_identity.domain.password_policy import check_password
from cardinsa_identity.domain.permissions import ALL_PERMISSIONS
from cardinsa_identity.domain.users import UserState, check_email, normalize_email
from cardinsa_identity.repository.models import (
    ApiKeyRow,
    RoleBindingRow,
    ServiceAccountRow,
    UserRow,
)
from cardinsa_identity.repository.roles import binding_exists, find_built_in_role
from cardinsa_identity.repository.service_accounts import (
    find_service_account_by_name,
    revoke_account_keys,
)
from cardinsa_identity.repository.users import find_user_by_email

SYSTEM_ACTOR = "system:bootstrap"


@dataclass(frozen=True)
class BootstrapResult:
    user_id: uuid.UUID
    company_id: uuid.UUID
    email: str
    password: str | None  # set only when generated here (to print once)
    created: bool


def generate_password() -> str:
    return secrets.token_urlsafe(18)


async def ensure_user_with_role(
    ctx: IdentityContext,
    *,
    email: str,
    password: str | None,
    company_id: uuid.UUID | None,
    role_name: str,
    display_name: str = "",
) -> BootstrapResult:
    """Create (or find) a user with ``email`` in ``company_id`` bound to a built-in role.

    ``company_id`` None: the existing user's company, or a new id for a new user
    (the first platform admin's own company).

    Idempotent: an existing user keeps its password (None is returned for it).
    """
    email = normalize_email(email)
    violations = check_email(email, field="email")
    generated = password is None
    password = password or generate_password()
    violations += check_password(
        password, email=email, field="password", min_length=ctx.settings.password_min_length
    )
    if violations:
        raise InvalidArgument("the bootstrap account is not valid", field_violations=violations)
    actor = Principal(
        subject=SYSTEM_ACTOR,
        kind=PrincipalKind.SERVICE_ACCOUNT,
        company_id=str(company_id) if company_id else None,
    )
    token = principal_var.set(actor)
    try:
        return await _ensure(
            ctx,
            email=email,
            password=password,
            generated=generated,
            company_id=company_id,
            role_name=role_name,
            display_name=display_name,
        )
    finally:
        principal_var.reset(token)


async def _ensure(
    ctx: IdentityContext,
    *,
    email: str,
    password: str,
    generated: bool,
    company_id: uuid.UUID | None,
    role_name: str,
    display_name: str,
) -> BootstrapResult:
    async with ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        existing = await find_user_by_email(session, email)
        role = await find_built_in_role(session, role_name)
        if role is None:
            raise RuntimeError(
                f"built-in role {role_name} is missing; start identity once or migrate"
            )
        if company_id is None:
            company_id = existing.company_id if existing is not None else uuid.uuid4()
        if existing is not None and existing.company_id != company_id:
            raise InvalidArgument(
                "a user with this email already exists in another company",
                reason="EMAIL_TAKEN",
                field_violations=[FieldViolation("email", "already in use in another company")],
            )
        if existing is not None:
            user, created = existing, False
        else:
            user = UserRow(
                id=uuid.uuid4(),
                company_id=company_id,
                email=email,
                display_name=display_name or email.split("@", maxsplit=1)[0],
                state=UserState.ACTIVE.value,
                password_hash=await ctx.hasher.hash_password_async(password),
            )
            session.add(user)
            await session.flush()
            created = True
        bound = await binding_exists(session, user.company_id, user.id, role.id)
        if not bound:
            session.add(
                RoleBindingRow(company_id=user.company_id, user_id=user.id, role_id=role.id)
            )
        if created or not bound:
            await ctx.audit.record(
                session,
                action="user.bootstrap",
                entity_type="user",
                entity_id=user.id,
                company_id=user.company_id,
                detail={"role": role_name},
            )
            await session.flush()
            roles, _ = await roles_and_permissions(session, user.id)
            ctx.events.user_changed(
                session,
                user,
                roles,
                change="created" if created else "roles_changed",
                from_state=None if created else user.state,
            )
        return BootstrapResult(
            user_id=user.id,
            company_id=user.company_id,
            email=email,
            password=password if created and generated else None,
            created=created,
        )


async def issue_service_key(
    ctx: IdentityContext,
    *,
    company_id: uuid.UUID,
    name: str,
    permissions: list[str],
) -> str:
    """A fresh API key for the platform service account ``name`` (created if missing).

    The account's earlier keys are revoked: each start of a service gets its own
    key, and a key left in an old environment stops working. Returns the full
    key (shown once; the database keeps its prefix and hash). It expires after
    ``api_key_max_lifetime_s``, as every API key does.
    """
    unknown = sorted(set(permissions) - ALL_PERMISSIONS)
    if unknown:
        raise InvalidArgument(
            "unknown permissions",
            field_violations=[
                FieldViolation("permission", f"'{p}' is not in the catalogue") for p in unknown
            ],
        )
    actor = Principal(
        subject=SYSTEM_ACTOR, kind=PrincipalKind.SERVICE_ACCOUNT, company_id=str(company_id)
    )
    token = principal_var.set(actor)
    try:
        async with ctx.db.unit_of_work(company_id=company_id) as session:
            account = await find_service_account_by_name(session, company_id, name)
            if account is None:
                account = ServiceAccountRow(
                    id=uuid.uuid4(),
                    company_id=company_id,
                    name=name,
                    description="platform service",
                )
                session.add(account)
                await session.flush()
            now = datetime.now(UTC)
            revoked = await revoke_account_keys(session, company_id, account.id, now)
            await revoke_sessions(session, revoked, "api_key.revoke")
            key = new_api_key()
            session.add(
                ApiKeyRow(
                    company_id=company_id,
                    service_account_id=account.id,
                    prefix=key.prefix,
                    secret_hash=key.secret_hash,
                    display_name=f"{name} (issued at start)",
                    permissions=sorted(set(permissions)),
                    # Like every key: no longer than the maximum lifetime.
                    expire_time=now + timedelta(seconds=ctx.settings.api_key_max_lifetime_s),
                )
            )
            await ctx.audit.record(
                session,
                action="api_key.create",
                entity_type="service_account",
                entity_id=account.id,
                company_id=company_id,
                detail={
                    "prefix": key.prefix,
                    "permissions": sorted(set(permissions)),
                    "bootstrap": True,
                },
            )
            return key.full_key
    finally:
        principal_var.reset(token)
