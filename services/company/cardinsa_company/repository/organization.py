"""Departments and units in the database: lookups, the tree queries, List
statements and new rows. Every query filters by the company as well as relying on
row-level security."""

from __future__ import annotations

import uuid
from typing import Final

from sqlalchemy import ColumnElement, Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_company.domain.organization import MAX_DEPTH, OrgNodeSpec
from cardinsa_company.repository.models import DepartmentRow, UnitRow
from cardinsa_company.repository.queries import listing
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec

DEPARTMENT_FILTER: Final = FilterSpec(
    {
        "display_name": FilterField(DepartmentRow.display_name, FieldType.STRING),
        "code": FilterField(DepartmentRow.code, FieldType.STRING),
        "parent_department_id": FilterField(DepartmentRow.parent_department_id, FieldType.UUID),
        "create_time": FilterField(DepartmentRow.create_time, FieldType.TIMESTAMP),
        "update_time": FilterField(DepartmentRow.update_time, FieldType.TIMESTAMP),
    }
)
DEPARTMENT_ORDER: Final = {
    "display_name": DepartmentRow.display_name,
    "code": DepartmentRow.code,
    "create_time": DepartmentRow.create_time,
    "update_time": DepartmentRow.update_time,
}
UNIT_FILTER: Final = FilterSpec(
    {
        "display_name": FilterField(UnitRow.display_name, FieldType.STRING),
        "code": FilterField(UnitRow.code, FieldType.STRING),
        "create_time": FilterField(UnitRow.create_time, FieldType.TIMESTAMP),
        "update_time": FilterField(UnitRow.update_time, FieldType.TIMESTAMP),
    }
)
UNIT_ORDER: Final = {
    "display_name": UnitRow.display_name,
    "code": UnitRow.code,
    "create_time": UnitRow.create_time,
    "update_time": UnitRow.update_time,
}
DEPARTMENT_NAME_INDEX: Final = "uq_departments_company_id_parent_display_name"
UNIT_NAME_INDEX: Final = "uq_units_company_id_department_id_display_name"

# Walks from a department up to the top: its id, then each ancestor's.
_ANCESTORS: Final = text(
    """
    WITH RECURSIVE chain(id, parent_department_id, depth) AS (
        SELECT id, parent_department_id, 1 FROM company.departments
         WHERE company_id = :company_id AND id = :start
        UNION ALL
        SELECT d.id, d.parent_department_id, chain.depth + 1
          FROM company.departments d JOIN chain ON d.id = chain.parent_department_id
         WHERE d.company_id = :company_id AND chain.depth <= :limit
    )
    SELECT id FROM chain ORDER BY depth
    """
)
# Levels of a department's subtree (1 = no sub-departments).
_SUBTREE_HEIGHT: Final = text(
    """
    WITH RECURSIVE tree(id, depth) AS (
        SELECT id, 1 FROM company.departments WHERE company_id = :company_id AND id = :start
        UNION ALL
        SELECT d.id, tree.depth + 1
          FROM company.departments d JOIN tree ON d.parent_department_id = tree.id
         WHERE d.company_id = :company_id AND d.delete_time IS NULL AND tree.depth <= :limit
    )
    SELECT max(depth) FROM tree
    """
)


def _names(spec: OrgNodeSpec) -> dict[str, str]:
    """The columns a department and a unit share, from a normalised, valid spec."""
    return {"display_name": spec.display_name, "code": spec.code, "description": spec.description}


# ================================================================ departments


async def find_department(
    session: AsyncSession,
    company_id: uuid.UUID,
    department_id: uuid.UUID,
    *,
    lock: bool = False,
    live: bool = False,
) -> DepartmentRow | None:
    """The company's department (locked when ``lock``; only a live one when ``live``)."""
    stmt = select(DepartmentRow).where(
        DepartmentRow.company_id == company_id, DepartmentRow.id == department_id
    )
    if live:
        stmt = stmt.where(DepartmentRow.delete_time.is_(None))
    return await session.scalar(stmt.with_for_update() if lock else stmt)


def new_department(
    department_id: uuid.UUID,
    company_id: uuid.UUID,
    parent_id: uuid.UUID | None,
    spec: OrgNodeSpec,
) -> DepartmentRow:
    return DepartmentRow(
        id=department_id, company_id=company_id, parent_department_id=parent_id, **_names(spec)
    )


def departments_listing(
    company_id: uuid.UUID, *, show_deleted: bool, condition: ColumnElement[bool] | None
) -> Select[DepartmentRow]:
    return listing(
        DepartmentRow,
        DepartmentRow.company_id == company_id,
        show_deleted=show_deleted,
        condition=condition,
    )


async def live_contents(
    session: AsyncSession, company_id: uuid.UUID, department_id: uuid.UUID
) -> tuple[int, int]:
    """How many live sub-departments and live units the department has."""
    children = await _count_live(
        session,
        DepartmentRow,
        DepartmentRow.company_id == company_id,
        DepartmentRow.parent_department_id == department_id,
    )
    units = await _count_live(
        session, UnitRow, UnitRow.company_id == company_id, UnitRow.department_id == department_id
    )
    return children, units


async def _count_live(
    session: AsyncSession, model: type[DepartmentRow | UnitRow], *where: ColumnElement[bool]
) -> int:
    stmt = select(func.count()).select_from(model).where(*where, model.delete_time.is_(None))
    return int(await session.scalar(stmt) or 0)


async def lock_tree(session: AsyncSession, company_id: uuid.UUID) -> None:
    """Serialise changes to one company's department tree (moves, deletes)."""
    await session.execute(
        select(func.pg_advisory_xact_lock(func.hashtext(f"company.tree:{company_id}")))
    )


async def ancestors(
    session: AsyncSession, company_id: uuid.UUID, start: uuid.UUID
) -> list[uuid.UUID]:
    """The department ``start`` and then each of its ancestors, up to the top."""
    rows = await session.execute(
        _ANCESTORS, {"company_id": company_id, "start": start, "limit": MAX_DEPTH + 1}
    )
    return [row[0] for row in rows]


async def subtree_height(session: AsyncSession, company_id: uuid.UUID, start: uuid.UUID) -> int:
    """Levels of the live subtree under ``start`` (1 = no sub-departments)."""
    height = await session.scalar(
        _SUBTREE_HEIGHT, {"company_id": company_id, "start": start, "limit": MAX_DEPTH + 1}
    )
    return int(height or 1)


async def department_name_taken(
    session: AsyncSession,
    company_id: uuid.UUID,
    parent_id: uuid.UUID | None,
    name: str,
    exclude: uuid.UUID | None,
) -> bool:
    """Whether another live department under the same parent has this name (any case)."""
    stmt = select(DepartmentRow.id).where(
        DepartmentRow.company_id == company_id,
        DepartmentRow.delete_time.is_(None),
        func.lower(DepartmentRow.display_name) == name.lower(),
        DepartmentRow.parent_department_id.is_(None)
        if parent_id is None
        else DepartmentRow.parent_department_id == parent_id,
    )
    if exclude is not None:
        stmt = stmt.where(DepartmentRow.id != exclude)
    return await session.scalar(stmt.limit(1)) is not None


# ================================================================ units


async def find_unit(
    session: AsyncSession,
    company_id: uuid.UUID,
    department_id: uuid.UUID,
    unit_id: uuid.UUID,
    *,
    lock: bool = False,
) -> UnitRow | None:
    """The unit of the company's department (locked when ``lock``)."""
    stmt = select(UnitRow).where(
        UnitRow.company_id == company_id,
        UnitRow.department_id == department_id,
        UnitRow.id == unit_id,
    )
    return await session.scalar(stmt.with_for_update() if lock else stmt)


def new_unit(
    unit_id: uuid.UUID, company_id: uuid.UUID, department_id: uuid.UUID, spec: OrgNodeSpec
) -> UnitRow:
    return UnitRow(id=unit_id, company_id=company_id, department_id=department_id, **_names(spec))


def units_listing(
    company_id: uuid.UUID,
    department_id: uuid.UUID,
    *,
    show_deleted: bool,
    condition: ColumnElement[bool] | None,
) -> Select[UnitRow]:
    return listing(
        UnitRow,
        UnitRow.company_id == company_id,
        UnitRow.department_id == department_id,
        show_deleted=show_deleted,
        condition=condition,
    )


async def unit_name_taken(
    session: AsyncSession,
    company_id: uuid.UUID,
    department_id: uuid.UUID,
    name: str,
    exclude: uuid.UUID | None,
) -> bool:
    """Whether another live unit of the department has this name (any case)."""
    stmt = select(UnitRow.id).where(
        UnitRow.company_id == company_id,
        UnitRow.department_id == department_id,
        UnitRow.delete_time.is_(None),
        func.lower(UnitRow.display_name) == name.lower(),
    )
    if exclude is not None:
        stmt = stmt.where(UnitRow.id != exclude)
    return await session.scalar(stmt.limit(1)) is not None
