"""Queries of roles and role bindings, and what a role row grants.

Every query is scoped to the company it is given (row-level security backs that
up); ``company`` None sees the built-in roles only.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Final

from sqlalchemy import ColumnElement, Row, Select, func, literal_column, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_identity.domain.access import granted_by, is_platform_admin_role
from cardinsa_identity.domain.permissions import BuiltInRole
from cardinsa_identity.repository.models import RoleBindingRow, RoleRow

__all__ = [
    "binding_exists",
    "bound_roles",
    "count_bindings",
    "find_binding",
    "find_built_in_role",
    "find_role",
    "holders_of",
    "is_platform_admin",
    "list_bindings_query",
    "list_roles_query",
    "role_name_taken",
    "role_permissions",
    "sync_built_in_roles",
]

# The key the roles' unique index is built on (see RoleRow.__table_args__):
# ON CONFLICT must name the very same expression to infer that index.
_ROLE_COMPANY_KEY: Final = "coalesce(company_id, '00000000-0000-0000-0000-000000000000'::uuid)"


def role_permissions(row: RoleRow) -> frozenset[str]:
    """What a role grants: a built-in role's permissions come from code (as in
    ``roles_and_permissions``), a custom role's from its row, limited to the
    catalogue."""
    return granted_by(
        row.name,
        built_in=row.built_in,
        platform_wide=row.company_id is None,
        permissions=row.permissions,
    )


def is_platform_admin(row: RoleRow) -> bool:
    return is_platform_admin_role(
        row.name, built_in=row.built_in, platform_wide=row.company_id is None
    )


async def bound_roles(
    session: AsyncSession, user_id: uuid.UUID
) -> Sequence[Row[str, list[str], bool, uuid.UUID | None]]:
    """``(name, permissions, built_in, company_id)`` of every live role bound to a user."""
    rows = await session.execute(
        select(RoleRow.name, RoleRow.permissions, RoleRow.built_in, RoleRow.company_id)
        .join(RoleBindingRow, RoleBindingRow.role_id == RoleRow.id)
        .where(RoleBindingRow.user_id == user_id, RoleRow.delete_time.is_(None))
    )
    return rows.all()


def _visible_roles(company: uuid.UUID | None) -> ColumnElement[bool]:
    """Built-in roles and the company's custom roles."""
    if company is None:
        return RoleRow.company_id.is_(None)
    return or_(RoleRow.company_id.is_(None), RoleRow.company_id == company)


async def find_role(
    session: AsyncSession, company: uuid.UUID | None, key: uuid.UUID, *, lock: bool = False
) -> RoleRow | None:
    """A built-in role or one of ``company`` (deleted ones too)."""
    stmt = select(RoleRow).where(RoleRow.id == key, _visible_roles(company))
    if lock:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).first()


async def find_built_in_role(session: AsyncSession, name: str) -> RoleRow | None:
    stmt = select(RoleRow).where(RoleRow.name == name, RoleRow.built_in.is_(True))
    return (await session.scalars(stmt)).first()


async def role_name_taken(session: AsyncSession, company: uuid.UUID, name: str) -> bool:
    taken = await session.scalar(
        select(RoleRow.id).where(
            RoleRow.company_id == company, RoleRow.name == name, RoleRow.delete_time.is_(None)
        )
    )
    return taken is not None


def list_roles_query(company: uuid.UUID | None, *, show_deleted: bool) -> Select[RoleRow]:
    stmt = select(RoleRow).where(_visible_roles(company))
    if not show_deleted:
        stmt = stmt.where(RoleRow.delete_time.is_(None))
    return stmt


async def sync_built_in_roles(
    session: AsyncSession, roles: Sequence[BuiltInRole]
) -> tuple[list[str], list[str]]:
    """Upsert one row per built-in role and retire the built-in rows not among
    ``roles``: the names upserted (changed) and retired, sorted.

    A single ``INSERT ... ON CONFLICT`` on the roles' unique index (rows in the
    order given, so concurrent runs lock them in the same order); a row changes
    only when its description or permissions differ.
    """
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
    changed = sorted((await session.scalars(upsert)).all())
    retired = sorted((await session.scalars(retire)).all())
    return changed, retired


async def count_bindings(session: AsyncSession, role: RoleRow) -> int:
    bindings = await session.scalar(
        select(func.count())
        .select_from(RoleBindingRow)
        .where(RoleBindingRow.company_id == role.company_id, RoleBindingRow.role_id == role.id)
    )
    return int(bindings or 0)


async def holders_of(session: AsyncSession, role: RoleRow) -> Sequence[uuid.UUID]:
    """The users a role is bound to."""
    holders = await session.scalars(
        select(RoleBindingRow.user_id).where(
            RoleBindingRow.company_id == role.company_id, RoleBindingRow.role_id == role.id
        )
    )
    return holders.all()


async def binding_exists(
    session: AsyncSession, company: uuid.UUID, user_id: uuid.UUID, role_id: uuid.UUID
) -> bool:
    bound = await session.scalar(
        select(RoleBindingRow.id).where(
            RoleBindingRow.company_id == company,
            RoleBindingRow.user_id == user_id,
            RoleBindingRow.role_id == role_id,
        )
    )
    return bound is not None


async def find_binding(
    session: AsyncSession, company: uuid.UUID, key: uuid.UUID, *, lock: bool = False
) -> RoleBindingRow | None:
    stmt = select(RoleBindingRow).where(
        RoleBindingRow.id == key, RoleBindingRow.company_id == company
    )
    if lock:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).first()


def list_bindings_query(
    company: uuid.UUID, user_id: uuid.UUID | None = None
) -> Select[RoleBindingRow]:
    """Bindings of ``company``; ``user_id`` narrows them to one user."""
    stmt = select(RoleBindingRow).where(RoleBindingRow.company_id == company)
    if user_id is not None:
        stmt = stmt.where(RoleBindingRow.user_id == user_id)
    return stmt
