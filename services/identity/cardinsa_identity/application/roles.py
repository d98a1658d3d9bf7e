"""Roles and role bindings (AccessService).

Tenancy: ``role.company_id`` is output-only, so custom roles are created in the
caller's own company, and every id-based call works in the caller's own
company, for platform admins too; built-in roles (no company) are visible to all.

Nobody grants more than they hold (domain/access.py): the permissions put into
a role (create, or added on update), the role of a binding (create and delete)
must all be among the caller's own permissions, and the built-in platform-admin
role is bound and unbound only by platform admins. Binding or unbinding a role
of a user also needs every permission that user holds (domain/privilege.py,
checked in the transaction that makes the change, with the user's row locked).

Role and binding changes reach access tokens at the holder's next login or
token refresh. A change that takes permissions away (a binding deleted, a
custom role losing permissions or deleted) also revokes the tokens the holders
have now (``revocations``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation.context import Principal
from cardinsa_foundation.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
)
from cardinsa_foundation.models import check_etag, current_actor_id
from cardinsa_foundation.paging import OrderTerm, Page
from cardinsa_foundation.use_cases import (
    check_request_id,
    lookup_uuid,
    not_found,
    require_principal,
)
from cardinsa_identity.application.context import (
    IdentityContext,
    flush_unique,
    name_in_use,
    roles_and_permissions,
    target_company,
)
from cardinsa_identity.application.privilege import caller_power, require_may_act_on, user_power
from cardinsa_identity.application.revocations import revoke_subjects
from cardinsa_identity.domain.access import (
    ROLE_UPDATABLE_FIELDS,
    RoleSpec,
    check_role_spec,
    check_update_mask,
)
from cardinsa_identity.domain.permissions import ALL_PERMISSIONS, BUILT_IN_ROLES
from cardinsa_identity.domain.privilege import Power, shortfall
from cardinsa_identity.repository import roles as repo
from cardinsa_identity.repository.idempotency import claim
from cardinsa_identity.repository.models import RoleBindingRow, RoleRow, UserRow
from cardinsa_identity.repository.users import find_user

__all__ = ["CREATE_ROLE", "RoleUseCases"]

CREATE_ROLE = "CreateRole"


def _own_company(principal: Principal) -> uuid.UUID | None:
    """The caller's company (None for a caller without one, who sees built-ins only)."""
    return uuid.UUID(principal.company_id) if principal.company_id else None


class RoleUseCases:
    """Use cases of roles and role bindings; one transaction per call, audited in it."""

    def __init__(self, ctx: IdentityContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------- built-ins

    async def ensure_built_in_roles(self) -> None:
        """Upsert one row per built-in role (no company, ``built_in``) and retire
        built-in rows a release no longer defines.

        Idempotent, and safe when several processes run it at once (one upsert
        on the roles' unique index, rows in name order). Access tokens take
        built-in permissions from code anyway (``roles_and_permissions``); the
        rows give them ids for bindings and show them in Get/ListRoles.
        """
        roles = sorted(BUILT_IN_ROLES.values(), key=lambda r: r.name)
        async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            changed, retired = await repo.sync_built_in_roles(session, roles)
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
        violations += check_request_id(request_id)
        if violations:
            raise InvalidArgument("the role is not valid", field_violations=violations)

        duplicate = name_in_use("role", "role.name", spec.name)
        role_id = uuid.uuid4()
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            seen = await claim(session, company, CREATE_ROLE, request_id, str(role_id), spec)
            if seen is not None:
                return await self._role(session, company, seen)
            if await repo.role_name_taken(session, company, spec.name):
                raise duplicate
            role = RoleRow(
                id=role_id,
                company_id=company,
                name=spec.name,
                description=spec.description,
                permissions=sorted(spec.permissions),
                built_in=False,
            )
            session.add(role)
            # A concurrent create of the same name won the race: ROLE_EXISTS.
            await flush_unique(session, duplicate)
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
        stmt = repo.list_roles_query(company, show_deleted=show_deleted)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await self.ctx.page(
                session,
                stmt,
                order=[OrderTerm(RoleRow.name)],
                page_size=page_size,
                page_token=page_token,
                show_deleted=show_deleted,
                company_id=str(company) if company else "",
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
                # The holders lose the role: their rows are locked first (in id
                # order; a change of a user locks its row before revoking
                # anything), so their events are in the order of their changes.
                holders = []
                for holder in sorted(await repo.holders_of(session, role)):
                    user = await find_user(session, company, holder, lock=True)
                    if user is not None:
                        holders.append(user)
                role.soft_delete()
                await session.flush()
                await self.ctx.audit.record(
                    session,
                    action="role.delete",
                    entity_type="role",
                    entity_id=role.id,
                    company_id=role.company_id,
                    changed_fields=["delete_time"],
                    detail={
                        "name": role.name,
                        "bindings": await repo.count_bindings(session, role),
                        "tokens_revoked": await self._revoke_holders(session, role, "role.delete"),
                    },
                )
                for user in holders:
                    await self._roles_changed(session, user)
            return role

    @staticmethod
    async def _revoke_holders(session: AsyncSession, role: RoleRow, reason: str) -> int:
        """The holders of a role lost permissions: the tokens they hold now stop."""
        return await revoke_subjects(session, await repo.holders_of(session, role), reason)

    async def _role(
        self, session: AsyncSession, company: uuid.UUID | None, role_id: str, *, lock: bool = False
    ) -> RoleRow:
        key = lookup_uuid(role_id)
        role = await repo.find_role(session, company, key, lock=lock) if key else None
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
            if await repo.binding_exists(session, company, user.id, role.id):
                raise duplicate
            binding = RoleBindingRow(
                id=uuid.uuid4(),
                company_id=company,
                user_id=user.id,
                role_id=role.id,
                created_by=current_actor_id(),
            )
            session.add(binding)
            await flush_unique(session, duplicate)
            await self.ctx.audit.record(
                session,
                action="role_binding.create",
                entity_type="role_binding",
                entity_id=binding.id,
                company_id=company,
                detail={"user_id": str(user.id), "role_id": str(role.id), "role": role.name},
            )
            await self._roles_changed(session, user)
            return binding

    async def list_role_bindings(
        self, *, page_size: int, page_token: str, user_id: str
    ) -> Page[RoleBindingRow]:
        """Bindings of the caller's company, newest first; `user_id` narrows them to
        one user (of the company: another company's user is NOT_FOUND)."""
        principal = require_principal()
        company = target_company(principal, "")
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            user = await self._user(session, company, user_id) if user_id else None
            stmt = repo.list_bindings_query(company, user.id if user else None)
            parent = str(user.id) if user else ""
            return await self.ctx.page(
                session,
                stmt,
                order=[OrderTerm(RoleBindingRow.create_time, True)],
                page_size=page_size,
                page_token=page_token,
                parent=parent,
                company_id=str(company),
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
            key = lookup_uuid(binding_id)
            binding = await repo.find_binding(session, company, key, lock=True) if key else None
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
            await self._roles_changed(session, user)
            return binding

    async def _roles_changed(self, session: AsyncSession, user: UserRow) -> None:
        """The user's event for a binding created or deleted (the user's row is
        locked, so its events are in the order of its changes)."""
        roles, _ = await roles_and_permissions(session, user.id)
        self.ctx.events.user_changed(
            session, user, roles, change="roles_changed", from_state=user.state
        )

    @staticmethod
    def _check_may_grant(
        principal: Principal, role: RoleRow, permissions: Sequence[str] | None = None
    ) -> None:
        """The caller holds every permission of ``role`` (or only of
        ``permissions``, those an update removes from it)."""
        held = (
            repo.role_permissions(role)
            if permissions is None
            else frozenset(permissions) & ALL_PERMISSIONS
        )
        short = shortfall(
            caller_power(principal), Power(held, platform_admin=repo.is_platform_admin(role))
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
        key = lookup_uuid(user_id)
        user = await find_user(session, company, key, lock=lock) if key else None
        if user is None:
            raise not_found("user", user_id)
        return user


def _required(*fields: tuple[str, str]) -> None:
    missing = [FieldViolation(name, "required") for name, value in fields if not value]
    if missing:
        raise InvalidArgument("required fields are missing", field_violations=missing)
