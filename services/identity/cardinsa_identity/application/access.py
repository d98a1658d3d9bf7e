"""Roles, role bindings, service accounts and API keys (AccessService).

Tenancy: every query is scoped to the caller's company and row-level security
backs that up; an id that is malformed, missing or another company's gives the
same NOT_FOUND. A platform admin acts in another company only where the
request names one: ``service_account.company_id`` on CreateServiceAccount
(an IMMUTABLE field, as ``user.company_id`` on CreateUser). ``role.company_id``
is output-only, so custom roles are created in the caller's own company, and
every id-based call (get, list, update, delete, bindings, keys) works in the
caller's own company, for platform admins too.

Nobody grants more than they hold:
- a custom role, an API key and anything else a company principal can hold is
  capped by the built-in ``company-admin`` role (:data:`COMPANY_CEILING`): the
  platform-only permissions (signing keys, company create / suspend / reactivate
  / close / delete) never end up in a company's hands;
- the permissions put into a role (create, or added on update), the role of a
  binding (create and delete) and the permissions of an API key must all be
  among the caller's own permissions (``principal.permissions``);
- the built-in platform-admin role is bound and unbound only by platform admins.

Nobody acts on an account more privileged than themselves (the same rule,
domain/privilege.py): binding or unbinding a role of a user also needs every
permission that user holds, and issuing, listing or revoking the API keys of a
service account, or deleting it, needs every permission its usable keys hold
(application/privilege.py; checked in the transaction that makes the change,
with the user's or account's row locked).

Role and binding changes reach access tokens at the holder's next login or
token refresh (tokens carry the effective permissions). A change that takes
permissions away (a binding deleted, a custom role losing permissions or
deleted) also revokes the tokens the holders have now (``revocations``): they
refresh and get tokens with what they hold now. Revoking an API key (or
deleting its service account) revokes the tokens exchanged from it.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

from sqlalchemy import ColumnElement, Select, func, literal_column, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation.context import PLATFORM_ADMIN_ROLE, Principal
from cardinsa_foundation.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
)
from cardinsa_foundation.models import check_etag, current_actor_id
from cardinsa_foundation.paging import OrderTerm, Page, paginate, query_fingerprint
from cardinsa_identity.application.context import (
    IdentityContext,
    lookup_uuid,
    not_found,
    require_principal,
    target_company,
)
from cardinsa_identity.application.privilege import (
    caller_power,
    require_may_act_on,
    service_account_power,
    user_power,
)
from cardinsa_identity.application.revocations import revoke_sessions, revoke_subjects
from cardinsa_identity.domain.api_keys import new_api_key
from cardinsa_identity.domain.permissions import (
    ALL_PERMISSIONS,
    BUILT_IN_ROLES,
    check_permission_names,
)
from cardinsa_identity.domain.privilege import Power, shortfall
from cardinsa_identity.repository.models import (
    ApiKeyRow,
    IdempotencyRow,
    RoleBindingRow,
    RoleRow,
    ServiceAccountRow,
    UserRow,
)

__all__ = [
    "COMPANY_ADMIN_ROLE",
    "COMPANY_CEILING",
    "MAX_API_KEY_DISPLAY_NAME_LENGTH",
    "MAX_DESCRIPTION_LENGTH",
    "NAME_PATTERN",
    "ROLE_UPDATABLE_FIELDS",
    "AccessUseCases",
    "ApiKeySpec",
    "RoleSpec",
    "ServiceAccountSpec",
    "check_api_key_spec",
    "check_name",
    "check_role_spec",
    "check_service_account_spec",
    "check_update_mask",
    "describe_lifetime",
    "grant_violations",
    "missing_to_grant",
    "role_permissions",
]

# ------------------------------------------------------------------ pure rules

#: Names of custom roles and service accounts: lowercase letters, digits and
#: dashes, 3 to 63 characters, not starting or ending with a dash.
NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
MIN_NAME_LENGTH: Final = 3
MAX_NAME_LENGTH: Final = 63
MAX_DESCRIPTION_LENGTH: Final = 500
MAX_API_KEY_DISPLAY_NAME_LENGTH: Final = 100

COMPANY_ADMIN_ROLE: Final = "company-admin"
#: Everything a company's own principals (custom roles, API keys) may ever hold:
#: the built-in company-admin role. What it lacks is the platform's alone.
COMPANY_CEILING: Final[frozenset[str]] = BUILT_IN_ROLES[COMPANY_ADMIN_ROLE].permissions

#: The fields of a role an update mask may name.
ROLE_UPDATABLE_FIELDS: Final = frozenset({"description", "permissions"})

# The key the roles' unique index is built on (see RoleRow.__table_args__):
# ON CONFLICT must name the very same expression to infer that index.
_ROLE_COMPANY_KEY: Final = "coalesce(company_id, '00000000-0000-0000-0000-000000000000'::uuid)"


@dataclass(frozen=True, slots=True)
class RoleSpec:
    """The fields of a role a client sets (create, or update with a mask)."""

    name: str = ""
    description: str = ""
    permissions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceAccountSpec:
    """The fields of a service account a client sets on create."""

    name: str = ""
    description: str = ""
    company_id: str = ""


@dataclass(frozen=True, slots=True)
class ApiKeySpec:
    """The fields of an API key a client sets on create."""

    display_name: str = ""
    permissions: tuple[str, ...] = ()
    expire_time: datetime | None = field(default=None)


def check_name(name: str, field: str) -> list[FieldViolation]:
    """Violations of a role or service-account name (empty: required)."""
    if not name:
        return [FieldViolation(field, "required")]
    if len(name) < MIN_NAME_LENGTH or len(name) > MAX_NAME_LENGTH:
        return [
            FieldViolation(field, f"must be {MIN_NAME_LENGTH} to {MAX_NAME_LENGTH} characters long")
        ]
    if not NAME_PATTERN.fullmatch(name):
        return [
            FieldViolation(
                field,
                "may contain only lowercase letters, digits and dashes, "
                "and must not start or end with a dash",
            )
        ]
    return []


def check_text(value: str, field: str, max_length: int) -> list[FieldViolation]:
    """A free-text field: bounded, without control characters or line breaks."""
    if len(value) > max_length:
        return [FieldViolation(field, f"must be at most {max_length} characters long")]
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        return [FieldViolation(field, "must not contain control characters or line breaks")]
    return []


def grant_violations(
    names: Sequence[str],
    *,
    held: Collection[str],
    field: str,
    already: Collection[str] = frozenset(),
    ceiling: Collection[str] = COMPANY_CEILING,
) -> list[FieldViolation]:
    """Violations of permissions a caller wants to put into a role or an API key.

    Every name must be in the catalogue (and listed once), within
    :data:`COMPANY_CEILING`, and among the caller's own permissions (``held``),
    except names in ``already`` (what the role held before an update: keeping a
    permission is not granting it). The path names the index (``role.permissions[2]``).
    """
    violations = check_permission_names(names, field=field)
    flagged = {v.field for v in violations}
    for index, name in enumerate(names):
        path = f"{field}[{index}]"
        if path in flagged or name not in ALL_PERMISSIONS:
            continue
        if name not in ceiling:
            violations.append(
                FieldViolation(
                    path,
                    f"'{name}' is a platform permission that no company role or key may hold",
                )
            )
        elif name not in held and name not in already:
            violations.append(
                FieldViolation(
                    path,
                    f"'{name}' is not among your own permissions; "
                    "nobody grants more than they hold",
                )
            )
    violations.sort(key=lambda v: _index_of(v.field))
    return violations


def _index_of(path: str) -> int:
    match = re.search(r"\[(\d+)\]$", path)
    return int(match.group(1)) if match else -1


def missing_to_grant(permissions: Collection[str], held: Collection[str]) -> list[str]:
    """The permissions of a role that the caller lacks (sorted; empty: may grant it)."""
    short = shortfall(Power(frozenset(held)), Power(frozenset(permissions)))
    return list(short.missing) if short else []


def role_permissions(row: RoleRow) -> frozenset[str]:
    """What a role grants: a built-in role's permissions come from code (as in
    ``roles_and_permissions``), a custom role's from its row, limited to the
    catalogue."""
    if row.built_in and row.company_id is None:
        built_in = BUILT_IN_ROLES.get(row.name)
        if built_in is not None:
            return built_in.permissions
    return frozenset(row.permissions) & ALL_PERMISSIONS


def check_update_mask(paths: Sequence[str], allowed: Collection[str]) -> list[FieldViolation]:
    """Violations of an update mask: required, and only the updatable fields."""
    if not paths:
        return [FieldViolation("update_mask", "required")]
    return [
        FieldViolation(
            "update_mask",
            f"'{path[:64]}' cannot be updated; updatable: {', '.join(sorted(allowed))}",
        )
        for path in paths
        if path not in allowed
    ]


def check_role_spec(
    spec: RoleSpec,
    *,
    held: Collection[str],
    fields: Collection[str] | None = None,
    already: Collection[str] = frozenset(),
) -> list[FieldViolation]:
    """Violations of a custom role; `fields` limits the check to an update mask
    (None: every field, as on create, where the name is checked too)."""
    violations: list[FieldViolation] = []
    if fields is None:
        violations += check_name(spec.name, "role.name")
        if spec.name in BUILT_IN_ROLES:
            violations.append(FieldViolation("role.name", "is the name of a built-in role"))
    if fields is None or "description" in fields:
        violations += check_text(spec.description, "role.description", MAX_DESCRIPTION_LENGTH)
    if fields is None or "permissions" in fields:
        violations += grant_violations(
            spec.permissions, held=held, field="role.permissions", already=already
        )
    return violations


def check_service_account_spec(spec: ServiceAccountSpec) -> list[FieldViolation]:
    return check_name(spec.name, "service_account.name") + check_text(
        spec.description, "service_account.description", MAX_DESCRIPTION_LENGTH
    )


def check_api_key_spec(
    spec: ApiKeySpec,
    *,
    held: Collection[str],
    now: datetime,
    ceiling: Collection[str] = COMPANY_CEILING,
    max_lifetime: timedelta | None = None,
) -> list[FieldViolation]:
    """``ceiling`` is the company ceiling, except for keys a platform admin issues
    to a service account of its own (platform) company: the platform's services
    (identity, core) need platform permissions such as ``companies.get_status``.
    ``max_lifetime``: an expiry later than ``now`` plus this is refused."""
    violations = check_text(
        spec.display_name, "api_key.display_name", MAX_API_KEY_DISPLAY_NAME_LENGTH
    )
    violations += grant_violations(
        spec.permissions, held=held, field="api_key.permissions", ceiling=ceiling
    )
    if spec.expire_time is not None and spec.expire_time <= now:
        violations.append(FieldViolation("api_key.expire_time", "must be in the future"))
    elif (
        spec.expire_time is not None
        and max_lifetime is not None
        and spec.expire_time > now + max_lifetime
    ):
        violations.append(
            FieldViolation(
                "api_key.expire_time",
                f"must be at most {describe_lifetime(max_lifetime)} from now "
                "(the maximum API key lifetime)",
            )
        )
    return violations


def describe_lifetime(lifetime: timedelta) -> str:
    """``365 days``, ``36 hours``, ``90 minutes``: the largest whole unit."""
    seconds = int(lifetime.total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"


def _check_request_id(request_id: str) -> list[FieldViolation]:
    if request_id and lookup_uuid(request_id, "request") is None:
        return [FieldViolation("request_id", "must be a UUID")]
    return []


def _is_unique_violation(exc: IntegrityError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == "23505"


def _own_company(principal: Principal) -> uuid.UUID | None:
    """The caller's company (None for a caller without one, who sees built-ins only)."""
    return uuid.UUID(principal.company_id) if principal.company_id else None


def _visible_roles(company: uuid.UUID | None) -> ColumnElement[bool]:
    """Built-in roles and the company's custom roles."""
    if company is None:
        return RoleRow.company_id.is_(None)
    return or_(RoleRow.company_id.is_(None), RoleRow.company_id == company)


def _is_platform_admin_role(row: RoleRow) -> bool:
    return row.built_in and row.company_id is None and row.name == PLATFORM_ADMIN_ROLE


_T = TypeVar("_T")

CREATE_ROLE = "CreateRole"
CREATE_SERVICE_ACCOUNT = "CreateServiceAccount"


class AccessUseCases:
    """Use cases of AccessService; one transaction per call, audited in it."""

    def __init__(self, ctx: IdentityContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------- built-ins

    async def ensure_built_in_roles(self) -> None:
        """Upsert one row per built-in role (no company, ``built_in``) and retire
        built-in rows a release no longer defines.

        Idempotent, and safe when several processes run it at once: a single
        ``INSERT ... ON CONFLICT`` on the roles' unique index (rows in name order,
        so concurrent runs lock them in the same order); a row changes only when
        its description or permissions differ. Access tokens take built-in
        permissions from code anyway (``roles_and_permissions``); the rows give
        them ids for bindings and show them in Get/ListRoles.
        """
        roles = sorted(BUILT_IN_ROLES.values(), key=lambda r: r.name)
        values = [
            {
                "id": uuid.uuid4(),
                "company_id": None,
                "name": role.name,
                "description": role.description,
                "permissions": sorted(role.permissions),
                "built_in": True,
                "version": 1,
            }
            for role in roles
        ]
        insert = pg_insert(RoleRow).values(values)
        excluded = insert.excluded
        upsert = insert.on_conflict_do_update(
            index_elements=[literal_column(_ROLE_COMPANY_KEY), RoleRow.name],
            index_where=RoleRow.delete_time.is_(None),
            set_={
                "description": excluded.description,
                "permissions": excluded.permissions,
                "built_in": True,
                "version": RoleRow.version + 1,
                "update_time": func.now(),
            },
            where=or_(
                RoleRow.description.is_distinct_from(excluded.description),
                RoleRow.permissions.is_distinct_from(excluded.permissions),
                RoleRow.built_in.is_(False),
            ),
        ).returning(RoleRow.name)
        retire = (
            update(RoleRow)
            .where(
                RoleRow.company_id.is_(None),
                RoleRow.built_in.is_(True),
                RoleRow.delete_time.is_(None),
                RoleRow.name.not_in([role.name for role in roles]),
            )
            .values(delete_time=func.now(), version=RoleRow.version + 1, update_time=func.now())
            .returning(RoleRow.name)
            .execution_options(synchronize_session=False)
        )
        async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            changed = sorted((await session.scalars(upsert)).all())
            retired = sorted((await session.scalars(retire)).all())
            if changed or retired:
                await self.ctx.audit.record(
                    session,
                    action="role.sync_built_in",
                    entity_type="role",
                    entity_id=None,
                    company_id=None,
                    detail={"upserted": changed, "retired": retired},
                )

    # ----------------------------------------------------------------- roles

    async def create_role(self, spec: RoleSpec, *, request_id: str) -> RoleRow:
        """Create a custom role in the caller's company (platform admins included:
        ``role.company_id`` is output-only)."""
        principal = require_principal()
        company = target_company(principal, "")
        violations = check_role_spec(spec, held=principal.permissions)
        violations += _check_request_id(request_id)
        if violations:
            raise InvalidArgument("the role is not valid", field_violations=violations)

        async def existing(session: AsyncSession, resource_id: str) -> RoleRow:
            return await self._role(session, company, resource_id)

        if request_id:
            seen = await self._replay(company, CREATE_ROLE, request_id, existing)
            if seen is not None:
                return seen
        duplicate = AlreadyExists(
            "a role with this name already exists in the company",
            reason="ROLE_EXISTS",
            metadata={"name": spec.name},
            field_violations=[FieldViolation("role.name", "already in use")],
        )
        try:
            async with self.ctx.db.unit_of_work(company_id=company) as session:
                taken = await session.scalar(
                    select(RoleRow.id).where(
                        RoleRow.company_id == company,
                        RoleRow.name == spec.name,
                        RoleRow.delete_time.is_(None),
                    )
                )
                if taken is not None:
                    raise duplicate
                role = RoleRow(
                    id=uuid.uuid4(),
                    company_id=company,
                    name=spec.name,
                    description=spec.description,
                    permissions=sorted(spec.permissions),
                    built_in=False,
                )
                session.add(role)
                if request_id:
                    session.add(
                        IdempotencyRow(
                            company_id=company,
                            method=CREATE_ROLE,
                            request_id=request_id,
                            resource_id=str(role.id),
                        )
                    )
                await session.flush()
                await self.ctx.audit.record(
                    session,
                    action="role.create",
                    entity_type="role",
                    entity_id=role.id,
                    company_id=company,
                    changed_fields=["name", "description", "permissions"],
                    detail={"name": role.name, "permissions": sorted(role.permissions)},
                )
                return role
        except (IntegrityError, AlreadyExists) as exc:
            # A concurrent create won the race: the same request id (return its
            # result) or the same name.
            if isinstance(exc, IntegrityError) and not _is_unique_violation(exc):
                raise
            if request_id:
                seen = await self._replay(company, CREATE_ROLE, request_id, existing)
                if seen is not None:
                    return seen
            raise duplicate from None

    async def get_role(self, role_id: str) -> RoleRow:
        """A built-in role or one of the caller's company (deleted ones too)."""
        principal = require_principal()
        company = _own_company(principal)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await self._role(session, company, role_id)

    async def list_roles(
        self, *, page_size: int, page_token: str, show_deleted: bool
    ) -> Page[RoleRow]:
        """The built-in roles and the caller's company's custom roles, by name."""
        principal = require_principal()
        company = _own_company(principal)
        stmt: Select[RoleRow] = select(RoleRow).where(_visible_roles(company))
        if not show_deleted:
            stmt = stmt.where(RoleRow.delete_time.is_(None))
        fingerprint = query_fingerprint(
            show_deleted=show_deleted, company_id=str(company) if company else ""
        )
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await paginate(
                session,
                stmt,
                order=[OrderTerm(RoleRow.name)],
                page_size=page_size,
                page_token=page_token,
                fingerprint=fingerprint,
                secret=self.ctx.settings.page_token_secret,
            )

    async def update_role(
        self, role_id: str, spec: RoleSpec, mask: Sequence[str], etag: str
    ) -> RoleRow:
        """Change `description` and/or `permissions` of a custom role. Permissions
        added must be grantable by the caller, and so must permissions removed
        (they are taken from every holder); removing any revokes the holders'
        tokens, whose next refresh carries what the role grants now."""
        principal = require_principal()
        violations = check_update_mask(mask, ROLE_UPDATABLE_FIELDS)
        if violations:
            raise InvalidArgument("the update_mask is not valid", field_violations=violations)
        fields = frozenset(mask)
        company = _own_company(principal)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            role = await self._role(session, company, role_id, lock=True)
            self._refuse_built_in(role)
            if role.delete_time is not None:
                raise FailedPrecondition(
                    "the role is deleted", reason="ROLE_DELETED", metadata={"role_id": str(role.id)}
                )
            check_etag(role, etag)
            violations = check_role_spec(
                spec, held=principal.permissions, fields=fields, already=role.permissions
            )
            if violations:
                raise InvalidArgument("the role is not valid", field_violations=violations)
            changed: list[str] = []
            detail: dict[str, object] = {"name": role.name}
            if "description" in fields and spec.description != role.description:
                role.description = spec.description
                changed.append("description")
            if "permissions" in fields and set(spec.permissions) != set(role.permissions):
                before, after = set(role.permissions), set(spec.permissions)
                # Removing takes the permissions from every holder at once: the
                # caller must hold them, as to unbind the role (DeleteRoleBinding).
                self._check_may_grant(principal, role, sorted(before - after))
                role.permissions = sorted(after)
                changed.append("permissions")
                detail["added"] = sorted(after - before)
                detail["removed"] = sorted(before - after)
            if changed:
                await session.flush()
                if detail.get("removed"):
                    detail["tokens_revoked"] = await self._revoke_holders(
                        session, role, "role.update"
                    )
                await self.ctx.audit.record(
                    session,
                    action="role.update",
                    entity_type="role",
                    entity_id=role.id,
                    company_id=role.company_id,
                    changed_fields=changed,
                    detail=detail,
                )
            return role

    async def delete_role(self, role_id: str, etag: str) -> RoleRow:
        """Soft-delete a custom role (the caller must hold its permissions, as to
        unbind it). Its bindings stay but grant nothing; the holders' tokens are
        revoked. Deleting a deleted role returns it."""
        principal = require_principal()
        company = _own_company(principal)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            role = await self._role(session, company, role_id, lock=True)
            self._refuse_built_in(role)
            # Deleting unbinds the role from every holder: the same rule as unbinding.
            self._check_may_grant(principal, role)
            check_etag(role, etag)
            if role.delete_time is None:
                role.soft_delete()
                await session.flush()
                bindings = await session.scalar(
                    select(func.count())
                    .select_from(RoleBindingRow)
                    .where(
                        RoleBindingRow.company_id == role.company_id,
                        RoleBindingRow.role_id == role.id,
                    )
                )
                await self.ctx.audit.record(
                    session,
                    action="role.delete",
                    entity_type="role",
                    entity_id=role.id,
                    company_id=role.company_id,
                    changed_fields=["delete_time"],
                    detail={
                        "name": role.name,
                        "bindings": int(bindings or 0),
                        "tokens_revoked": await self._revoke_holders(session, role, "role.delete"),
                    },
                )
            return role

    @staticmethod
    async def _revoke_holders(session: AsyncSession, role: RoleRow, reason: str) -> int:
        """The holders of a role lost permissions: the tokens they hold now stop."""
        holders = await session.scalars(
            select(RoleBindingRow.user_id).where(
                RoleBindingRow.company_id == role.company_id, RoleBindingRow.role_id == role.id
            )
        )
        return await revoke_subjects(session, holders.all(), reason)

    async def _role(
        self, session: AsyncSession, company: uuid.UUID | None, role_id: str, *, lock: bool = False
    ) -> RoleRow:
        key = lookup_uuid(role_id, "role")
        if key is None:
            raise not_found("role", role_id)
        stmt = select(RoleRow).where(RoleRow.id == key, _visible_roles(company))
        if lock:
            stmt = stmt.with_for_update()
        role = (await session.scalars(stmt)).first()
        if role is None:
            raise not_found("role", role_id)
        return role

    @staticmethod
    def _refuse_built_in(role: RoleRow) -> None:
        if role.built_in:
            raise FailedPrecondition(
                "built-in roles cannot be changed or deleted",
                reason="BUILT_IN_ROLE",
                metadata={"role": role.name},
            )

    # --------------------------------------------------------- role bindings

    async def create_role_binding(self, user_id: str, role_id: str) -> RoleBindingRow:
        """Bind a role (built-in, or a custom role of the company) to a user of the
        caller's company.

        The caller must hold every permission of the role and every permission
        the user already holds; the platform-admin role is bound by platform
        admins only, and a platform admin's roles are changed by them only. The
        user's access tokens carry the role from their next login or token
        refresh (tokens are short-lived).
        """
        principal = require_principal()
        company = target_company(principal, "")
        _required(("role_binding.user_id", user_id), ("role_binding.role_id", role_id))
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            user = await self._user(session, company, user_id, lock=True)
            require_may_act_on(principal, await user_power(session, user.id), resource="user")
            if user.delete_time is not None:
                raise FailedPrecondition(
                    "the user is deleted", reason="USER_DELETED", metadata={"user_id": str(user.id)}
                )
            role = await self._role(session, company, role_id)
            if role.delete_time is not None:
                raise FailedPrecondition(
                    "the role is deleted", reason="ROLE_DELETED", metadata={"role_id": str(role.id)}
                )
            self._check_may_grant(principal, role)
            duplicate = AlreadyExists(
                "the user already holds this role",
                reason="ROLE_BINDING_EXISTS",
                metadata={"user_id": str(user.id), "role_id": str(role.id)},
            )
            bound = await session.scalar(
                select(RoleBindingRow.id).where(
                    RoleBindingRow.company_id == company,
                    RoleBindingRow.user_id == user.id,
                    RoleBindingRow.role_id == role.id,
                )
            )
            if bound is not None:
                raise duplicate
            binding = RoleBindingRow(
                id=uuid.uuid4(),
                company_id=company,
                user_id=user.id,
                role_id=role.id,
                created_by=current_actor_id(),
            )
            session.add(binding)
            try:
                await session.flush()
            except IntegrityError as exc:
                if _is_unique_violation(exc):
                    raise duplicate from None
                raise
            await self.ctx.audit.record(
                session,
                action="role_binding.create",
                entity_type="role_binding",
                entity_id=binding.id,
                company_id=company,
                detail={"user_id": str(user.id), "role_id": str(role.id), "role": role.name},
            )
            return binding

    async def list_role_bindings(
        self, *, page_size: int, page_token: str, user_id: str
    ) -> Page[RoleBindingRow]:
        """Bindings of the caller's company, newest first; `user_id` narrows them to
        one user (of the company: another company's user is NOT_FOUND)."""
        principal = require_principal()
        company = target_company(principal, "")
        stmt: Select[RoleBindingRow] = select(RoleBindingRow).where(
            RoleBindingRow.company_id == company
        )
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            parent = ""
            if user_id:
                user = await self._user(session, company, user_id)
                stmt = stmt.where(RoleBindingRow.user_id == user.id)
                parent = str(user.id)
            fingerprint = query_fingerprint(parent=parent, company_id=str(company))
            return await paginate(
                session,
                stmt,
                order=[OrderTerm(RoleBindingRow.create_time, True)],
                page_size=page_size,
                page_token=page_token,
                fingerprint=fingerprint,
                secret=self.ctx.settings.page_token_secret,
            )

    async def delete_role_binding(self, binding_id: str) -> RoleBindingRow:
        """Remove a binding (for good) and return it. The same rules as for
        granting apply: the caller must hold the role's permissions and the
        user's, and only a platform admin unbinds the platform-admin role. The
        user's tokens are revoked at once (revocations); the next refresh
        carries what they hold now."""
        principal = require_principal()
        company = target_company(principal, "")
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            key = lookup_uuid(binding_id, "role binding")
            binding = (
                (
                    await session.scalars(
                        select(RoleBindingRow)
                        .where(RoleBindingRow.id == key, RoleBindingRow.company_id == company)
                        .with_for_update()
                    )
                ).first()
                if key is not None
                else None
            )
            if binding is None:
                raise not_found("role binding", binding_id)
            user = await self._user(session, company, str(binding.user_id), lock=True)
            require_may_act_on(principal, await user_power(session, user.id), resource="user")
            role = await session.get(RoleRow, binding.role_id)
            if role is not None:
                self._check_may_grant(principal, role)
            await session.delete(binding)
            await session.flush()
            # The user lost the role's permissions: the tokens they hold now stop.
            await revoke_subjects(session, [binding.user_id], "role_binding.delete")
            await self.ctx.audit.record(
                session,
                action="role_binding.delete",
                entity_type="role_binding",
                entity_id=binding.id,
                company_id=company,
                detail={
                    "user_id": str(binding.user_id),
                    "role_id": str(binding.role_id),
                    "role": role.name if role is not None else None,
                },
            )
            return binding

    @staticmethod
    def _check_may_grant(
        principal: Principal, role: RoleRow, permissions: Sequence[str] | None = None
    ) -> None:
        """The caller holds every permission of ``role`` (or only of
        ``permissions``, those an update removes from it)."""
        held = (
            role_permissions(role)
            if permissions is None
            else frozenset(permissions) & ALL_PERMISSIONS
        )
        short = shortfall(
            caller_power(principal), Power(held, platform_admin=_is_platform_admin_role(role))
        )
        if short is None:
            return
        if short.platform_admin:
            raise PermissionDenied(
                "only platform administrators grant or remove the platform-admin role",
                reason="PLATFORM_ADMIN_ONLY",
            )
        # The role is readable by the caller, so naming what it lacks leaks nothing.
        missing = short.missing
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise PermissionDenied(
            "the role grants permissions you do not hold; nobody grants more than they hold",
            reason="ROLE_EXCEEDS_CALLER",
            metadata={"role": role.name, "missing": shown},
        )

    async def _user(
        self, session: AsyncSession, company: uuid.UUID, user_id: str, *, lock: bool = False
    ) -> UserRow:
        key = lookup_uuid(user_id, "user")
        stmt = select(UserRow).where(UserRow.id == key, UserRow.company_id == company)
        if lock:
            stmt = stmt.with_for_update()
        user = (await session.scalars(stmt)).first() if key is not None else None
        if user is None:
            raise not_found("user", user_id)
        return user

    # ------------------------------------------------------- service accounts

    async def create_service_account(
        self, spec: ServiceAccountSpec, *, request_id: str
    ) -> ServiceAccountRow:
        """Create a service account in the caller's company, or in the company a
        platform admin names in ``service_account.company_id``."""
        principal = require_principal()
        company = target_company(principal, spec.company_id, "service_account.company_id")
        violations = check_service_account_spec(spec) + _check_request_id(request_id)
        if violations:
            raise InvalidArgument("the service account is not valid", field_violations=violations)

        async def existing(session: AsyncSession, resource_id: str) -> ServiceAccountRow:
            return await self._service_account(session, company, resource_id)

        if request_id:
            seen = await self._replay(company, CREATE_SERVICE_ACCOUNT, request_id, existing)
            if seen is not None:
                return seen
        duplicate = AlreadyExists(
            "a service account with this name already exists in the company",
            reason="SERVICE_ACCOUNT_EXISTS",
            metadata={"name": spec.name},
            field_violations=[FieldViolation("service_account.name", "already in use")],
        )
        try:
            async with self.ctx.db.unit_of_work(company_id=company) as session:
                taken = await session.scalar(
                    select(ServiceAccountRow.id).where(
                        ServiceAccountRow.company_id == company,
                        ServiceAccountRow.name == spec.name,
                        ServiceAccountRow.delete_time.is_(None),
                    )
                )
                if taken is not None:
                    raise duplicate
                account = ServiceAccountRow(
                    id=uuid.uuid4(),
                    company_id=company,
                    name=spec.name,
                    description=spec.description,
                )
                session.add(account)
                if request_id:
                    session.add(
                        IdempotencyRow(
                            company_id=company,
                            method=CREATE_SERVICE_ACCOUNT,
                            request_id=request_id,
                            resource_id=str(account.id),
                        )
                    )
                await session.flush()
                await self.ctx.audit.record(
                    session,
                    action="service_account.create",
                    entity_type="service_account",
                    entity_id=account.id,
                    company_id=company,
                    changed_fields=["name", "description"],
                    detail={"name": account.name},
                )
                return account
        except (IntegrityError, AlreadyExists) as exc:
            if isinstance(exc, IntegrityError) and not _is_unique_violation(exc):
                raise
            if request_id:
                seen = await self._replay(company, CREATE_SERVICE_ACCOUNT, request_id, existing)
                if seen is not None:
                    return seen
            raise duplicate from None

    async def get_service_account(self, account_id: str) -> ServiceAccountRow:
        principal = require_principal()
        company = target_company(principal, "")
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await self._service_account(session, company, account_id)

    async def list_service_accounts(
        self, *, page_size: int, page_token: str, show_deleted: bool
    ) -> Page[ServiceAccountRow]:
        principal = require_principal()
        company = target_company(principal, "")
        stmt: Select[ServiceAccountRow] = select(ServiceAccountRow).where(
            ServiceAccountRow.company_id == company
        )
        if not show_deleted:
            stmt = stmt.where(ServiceAccountRow.delete_time.is_(None))
        fingerprint = query_fingerprint(show_deleted=show_deleted, company_id=str(company))
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await paginate(
                session,
                stmt,
                order=[OrderTerm(ServiceAccountRow.create_time, True)],
                page_size=page_size,
                page_token=page_token,
                fingerprint=fingerprint,
                secret=self.ctx.settings.page_token_secret,
            )

    async def delete_service_account(self, account_id: str, etag: str) -> ServiceAccountRow:
        """Soft-delete a service account and revoke its open API keys: they stop
        working at once, and so do the tokens already exchanged with them
        (revocations). Deleting a deleted account returns it unchanged."""
        principal = require_principal()
        company = target_company(principal, "")
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            account = await self._service_account(session, company, account_id, lock=True)
            await self._require_account_power(session, principal, account)
            check_etag(account, etag)
            if account.delete_time is None:
                now = datetime.now(UTC)
                account.soft_delete(now)
                revoked = await session.execute(
                    update(ApiKeyRow)
                    .where(
                        ApiKeyRow.company_id == company,
                        ApiKeyRow.service_account_id == account.id,
                        ApiKeyRow.revoke_time.is_(None),
                    )
                    .values(revoke_time=now)
                    .returning(ApiKeyRow.id)
                    .execution_options(synchronize_session=False)
                )
                key_ids = list(revoked.scalars())
                await session.flush()
                await revoke_sessions(session, key_ids, "service_account.delete")
                await self.ctx.audit.record(
                    session,
                    action="service_account.delete",
                    entity_type="service_account",
                    entity_id=account.id,
                    company_id=company,
                    changed_fields=["delete_time"],
                    detail={
                        "name": account.name,
                        "keys_revoked": len(key_ids),
                    },
                )
            return account

    @staticmethod
    async def _require_account_power(
        session: AsyncSession, principal: Principal, account: ServiceAccountRow
    ) -> None:
        """The caller must hold every permission the account's usable keys hold."""
        power = await service_account_power(session, account.company_id, account.id)
        require_may_act_on(principal, power, resource="service account")

    async def _service_account(
        self, session: AsyncSession, company: uuid.UUID, account_id: str, *, lock: bool = False
    ) -> ServiceAccountRow:
        key = lookup_uuid(account_id, "service account")
        if key is None:
            raise not_found("service account", account_id)
        stmt = select(ServiceAccountRow).where(
            ServiceAccountRow.id == key, ServiceAccountRow.company_id == company
        )
        if lock:
            stmt = stmt.with_for_update()
        account = (await session.scalars(stmt)).first()
        if account is None:
            raise not_found("service account", account_id)
        return account

    # --------------------------------------------------------------- API keys

    async def create_api_key(self, account_id: str, spec: ApiKeySpec) -> tuple[ApiKeyRow, str]:
        """Issue a key to a service account of the caller's company.

        Returns the stored key and the full secret key (``cdk_<prefix>_<secret>``),
        which exists only in this answer: the database keeps the prefix and the
        SHA-256 of the secret. The key's permissions must be within the caller's
        own (and the company ceiling), and so must the account's usable keys'
        (nobody acts on an account more privileged than themselves).
        """
        principal = require_principal()
        company = target_company(principal, "")
        now = datetime.now(UTC)
        max_lifetime = timedelta(seconds=self.ctx.settings.api_key_max_lifetime_s)
        violations = check_api_key_spec(
            spec,
            held=principal.permissions,
            now=now,
            ceiling=ALL_PERMISSIONS if principal.is_platform_admin else COMPANY_CEILING,
            max_lifetime=max_lifetime,
        )
        if violations:
            raise InvalidArgument("the API key is not valid", field_violations=violations)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            account = await self._service_account(session, company, account_id, lock=True)
            await self._require_account_power(session, principal, account)
            if account.delete_time is not None:
                raise FailedPrecondition(
                    "the service account is deleted",
                    reason="SERVICE_ACCOUNT_DELETED",
                    metadata={"service_account_id": str(account.id)},
                )
            issued = new_api_key()
            key = ApiKeyRow(
                id=uuid.uuid4(),
                company_id=company,
                service_account_id=account.id,
                prefix=issued.prefix,
                secret_hash=issued.secret_hash,
                display_name=spec.display_name,
                permissions=sorted(spec.permissions),
                # No expiry asked for: the longest allowed (no key lives forever).
                expire_time=spec.expire_time or now + max_lifetime,
                created_by=current_actor_id(),
            )
            session.add(key)
            await session.flush()
            await self.ctx.audit.record(
                session,
                action="api_key.create",
                entity_type="api_key",
                entity_id=key.id,
                company_id=company,
                changed_fields=["display_name", "permissions", "expire_time"],
                detail={
                    "service_account_id": str(account.id),
                    "prefix": key.prefix,
                    "permissions": sorted(key.permissions),
                    "expire_time": key.expire_time,
                },
            )
            return key, issued.full_key

    async def list_api_keys(
        self, account_id: str, *, page_size: int, page_token: str
    ) -> Page[ApiKeyRow]:
        """Keys of a service account, newest first (revoked and expired ones too)."""
        principal = require_principal()
        company = target_company(principal, "")
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            account = await self._service_account(session, company, account_id)
            await self._require_account_power(session, principal, account)
            stmt: Select[ApiKeyRow] = select(ApiKeyRow).where(
                ApiKeyRow.company_id == company, ApiKeyRow.service_account_id == account.id
            )
            fingerprint = query_fingerprint(parent=str(account.id), company_id=str(company))
            return await paginate(
                session,
                stmt,
                order=[OrderTerm(ApiKeyRow.create_time, True)],
                page_size=page_size,
                page_token=page_token,
                fingerprint=fingerprint,
                secret=self.ctx.settings.page_token_secret,
            )

    async def revoke_api_key(self, account_id: str, key_id: str) -> ApiKeyRow:
        """Revoke a key at once; revoking a revoked key returns it unchanged."""
        principal = require_principal()
        company = target_company(principal, "")
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            account = await self._service_account(session, company, account_id, lock=True)
            await self._require_account_power(session, principal, account)
            key_uuid = lookup_uuid(key_id, "api key")
            key = (
                (
                    await session.scalars(
                        select(ApiKeyRow)
                        .where(
                            ApiKeyRow.id == key_uuid,
                            ApiKeyRow.company_id == company,
                            ApiKeyRow.service_account_id == account.id,
                        )
                        .with_for_update()
                    )
                ).first()
                if key_uuid is not None
                else None
            )
            if key is None:
                raise not_found("api key", key_id)
            if key.revoke_time is None:
                key.revoke_time = datetime.now(UTC)
                await session.flush()
                await revoke_sessions(session, [key.id], "api_key.revoke")
                await self.ctx.audit.record(
                    session,
                    action="api_key.revoke",
                    entity_type="api_key",
                    entity_id=key.id,
                    company_id=company,
                    changed_fields=["revoke_time"],
                    detail={"service_account_id": str(account.id), "prefix": key.prefix},
                )
            return key

    # ------------------------------------------------------------ idempotency

    async def _replay(
        self,
        company: uuid.UUID,
        method: str,
        request_id: str,
        load: Callable[[AsyncSession, str], Awaitable[_T]],
    ) -> _T | None:
        """The resource an earlier call with this request id created, if any."""
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            seen = await session.get(IdempotencyRow, (company, method, request_id))
            if seen is None:
                return None
            return await load(session, seen.resource_id)


def _required(*fields: tuple[str, str]) -> None:
    missing = [FieldViolation(name, "required") for name, value in fields if not value]
    if missing:
        raise InvalidArgument("required fields are missing", field_violations=missing)
