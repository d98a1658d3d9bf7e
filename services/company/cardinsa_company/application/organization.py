"""Departments and units of a company (OrganizationService).

Every call names its company in the path; :func:`company_scope` turns another
tenant's company into NOT_FOUND before anything is read, every query filters by
the company, and the transaction's tenant is that company, so row-level
security hides every other tenant's rows as well. A department or unit id of
another company, of another department, or that does not exist: the same
NOT_FOUND.

Moves keep the department tree a tree: a per-company advisory lock serialises
moves, so two concurrent moves cannot build a cycle between them.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_company.application.context import (
    CompanyContext,
    CompanyScope,
    claim_request_id,
    company_scope,
    lookup_uuid,
    not_found,
    request_id_violations,
    require_principal,
    violated_constraint,
)
from cardinsa_company.domain.lifecycle import CompanyState
from cardinsa_company.domain.organization import (
    DEPARTMENT_FIELDS,
    MAX_DEPTH,
    UNIT_FIELDS,
    OrgNodeSpec,
    check_move,
    check_spec,
    normalize_spec,
    parse_mask,
)
from cardinsa_company.repository.models import CompanyRow, DepartmentRow, UnitRow
from cardinsa_foundation.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
)
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec, parse_order_by
from cardinsa_foundation.models import check_etag
from cardinsa_foundation.paging import OrderTerm, Page, paginate, query_fingerprint

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
CREATE_DEPARTMENT: Final = "CreateDepartment"
CREATE_UNIT: Final = "CreateUnit"

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


def _name_taken(resource: str, field: str) -> AlreadyExists:
    return AlreadyExists(
        f"a live {resource} with this name already exists under the same parent",
        reason="NAME_TAKEN",
        field_violations=[FieldViolation(field, "already in use under the same parent")],
    )


async def _flush(session: AsyncSession, resource: str, field: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        if violated_constraint(exc) in (DEPARTMENT_NAME_INDEX, UNIT_NAME_INDEX):
            raise _name_taken(resource, field) from exc
        raise


def _invalid(resource: str, violations: list[FieldViolation]) -> InvalidArgument:
    return InvalidArgument(f"the {resource} is not valid", field_violations=violations)


class OrganizationUseCases:
    def __init__(self, ctx: CompanyContext) -> None:
        self.ctx = ctx

    # ================================================================ departments

    async def create_department(
        self, company_id: str, spec: OrgNodeSpec, *, request_id: str
    ) -> DepartmentRow:
        scope = company_scope(require_principal(), company_id)
        spec = normalize_spec(spec)
        violations = check_spec(spec, prefix="department") + request_id_violations(request_id)
        if violations:
            raise _invalid("department", violations)
        new_id = uuid.uuid4()
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            if request_id:
                earlier = await claim_request_id(
                    session,
                    company_id=scope.company_id,
                    method=CREATE_DEPARTMENT,
                    request_id=request_id,
                    resource_id=str(new_id),
                )
                if earlier is not None:
                    return await self._department(session, scope, earlier)
            await self._writable_company(session, scope, company_id)
            parent = await self._parent(session, scope, spec.parent_department_id)
            if parent is not None:
                await self._lock_tree(session, scope)
                chain = await self._ancestors(session, scope, parent.id)
                check_move(new_id, chain, 1)
            await self._department_name_free(session, scope, parent, spec.display_name, None)
            row = DepartmentRow(
                id=new_id,
                company_id=scope.company_id,
                parent_department_id=parent.id if parent else None,
                display_name=spec.display_name,
                code=spec.code,
                description=spec.description,
            )
            session.add(row)
            await _flush(session, "department", "department.display_name")
            await self._audit(
                session,
                scope,
                "department.create",
                row.id,
                ["display_name", "code", "description", "parent_department_id"],
                parent_department_id=str(row.parent_department_id or ""),
            )
            return row

    async def get_department(self, company_id: str, department_id: str) -> DepartmentRow:
        scope = company_scope(require_principal(), company_id)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await self._company(session, scope, company_id)
            return await self._department(session, scope, department_id)

    async def list_departments(
        self,
        company_id: str,
        *,
        page_size: int,
        page_token: str,
        filter: str,
        order_by: str,
        show_deleted: bool,
    ) -> Page[DepartmentRow]:
        scope = company_scope(require_principal(), company_id)
        condition = DEPARTMENT_FILTER.parse(filter)
        order = parse_order_by(
            order_by, DEPARTMENT_ORDER, default=[OrderTerm(DepartmentRow.display_name)]
        )
        stmt = select(DepartmentRow).where(DepartmentRow.company_id == scope.company_id)
        if not show_deleted:
            stmt = stmt.where(DepartmentRow.delete_time.is_(None))
        if condition is not None:
            stmt = stmt.where(condition)
        fingerprint = query_fingerprint(
            filter=filter,
            order_by=order_by,
            show_deleted=show_deleted,
            parent=str(scope.company_id),
        )
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await self._company(session, scope, company_id)
            return await paginate(
                session,
                stmt,
                order=order,
                page_size=page_size,
                page_token=page_token,
                fingerprint=fingerprint,
                secret=self.ctx.settings.page_token_secret,
            )

    async def update_department(
        self,
        company_id: str,
        department_id: str,
        spec: OrgNodeSpec,
        mask_paths: list[str],
        etag: str,
    ) -> DepartmentRow:
        scope = company_scope(require_principal(), company_id)
        mask = parse_mask(mask_paths, DEPARTMENT_FIELDS, "department")
        spec = normalize_spec(spec)
        violations = check_spec(spec, prefix="department", fields=mask)
        if violations:
            raise _invalid("department", violations)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await self._writable_company(session, scope, company_id)
            if "parent_department_id" in mask:
                await self._lock_tree(session, scope)
            row = await self._department(session, scope, department_id, lock=True)
            check_etag(row, etag)
            self._require_live(row, "department")
            changed: list[str] = []
            parent_id: uuid.UUID | None = row.parent_department_id
            if "parent_department_id" in mask:
                parent = await self._parent(session, scope, spec.parent_department_id)
                parent_id = parent.id if parent else None
                if parent_id != row.parent_department_id:
                    if parent is not None:
                        chain = await self._ancestors(session, scope, parent.id)
                        check_move(row.id, chain, await self._subtree_height(session, scope, row))
                    changed.append("parent_department_id")
            name = spec.display_name if "display_name" in mask else row.display_name
            if "display_name" in mask and name != row.display_name:
                changed.append("display_name")
            for field in ("code", "description"):
                if field in mask and getattr(spec, field) != getattr(row, field):
                    changed.append(field)
            if not changed:
                return row
            if {"display_name", "parent_department_id"} & set(changed):
                await self._department_name_free(session, scope, parent_id, name, exclude=row.id)
            detail: dict[str, Any] = {}
            if "parent_department_id" in changed:
                detail = {
                    "from_parent_department_id": str(row.parent_department_id or ""),
                    "to_parent_department_id": str(parent_id or ""),
                }
            row.parent_department_id = parent_id
            row.display_name = name
            row.code = spec.code if "code" in mask else row.code
            row.description = spec.description if "description" in mask else row.description
            await _flush(session, "department", "department.display_name")
            await self._audit(
                session,
                scope,
                "department.move" if "parent_department_id" in changed else "department.update",
                row.id,
                changed,
                **detail,
            )
            return row

    async def delete_department(
        self, company_id: str, department_id: str, etag: str
    ) -> DepartmentRow:
        scope = company_scope(require_principal(), company_id)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await self._writable_company(session, scope, company_id)
            await self._lock_tree(session, scope)
            row = await self._department(session, scope, department_id, lock=True)
            check_etag(row, etag)
            if row.delete_time is not None:
                return row
            children = await session.scalar(
                select(func.count())
                .select_from(DepartmentRow)
                .where(
                    DepartmentRow.company_id == scope.company_id,
                    DepartmentRow.parent_department_id == row.id,
                    DepartmentRow.delete_time.is_(None),
                )
            )
            units = await session.scalar(
                select(func.count())
                .select_from(UnitRow)
                .where(
                    UnitRow.company_id == scope.company_id,
                    UnitRow.department_id == row.id,
                    UnitRow.delete_time.is_(None),
                )
            )
            if children or units:
                raise FailedPrecondition(
                    "the department still has live sub-departments or units; "
                    "delete or move them first",
                    reason="DEPARTMENT_NOT_EMPTY",
                    metadata={
                        "department_id": str(row.id),
                        "sub_departments": str(children or 0),
                        "units": str(units or 0),
                    },
                )
            row.soft_delete()
            await session.flush()
            await self._audit(session, scope, "department.delete", row.id, ["delete_time"])
            return row

    async def undelete_department(
        self, company_id: str, department_id: str, etag: str
    ) -> DepartmentRow:
        scope = company_scope(require_principal(), company_id)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await self._writable_company(session, scope, company_id)
            await self._lock_tree(session, scope)
            row = await self._department(session, scope, department_id, lock=True)
            check_etag(row, etag)
            if row.delete_time is None:
                raise FailedPrecondition(
                    "the department is not deleted",
                    reason="NOT_DELETED",
                    metadata={"department_id": str(row.id)},
                )
            if row.parent_department_id is not None:
                parent = await session.get(DepartmentRow, row.parent_department_id)
                if parent is None or parent.delete_time is not None:
                    raise FailedPrecondition(
                        "the parent department is deleted; undelete or move it first",
                        reason="PARENT_DELETED",
                        metadata={"parent_department_id": str(row.parent_department_id)},
                    )
            await self._department_name_free(
                session, scope, row.parent_department_id, row.display_name, exclude=row.id
            )
            row.undelete()
            await _flush(session, "department", "department.display_name")
            await self._audit(session, scope, "department.undelete", row.id, ["delete_time"])
            return row

    # ================================================================ units

    async def create_unit(
        self, company_id: str, department_id: str, spec: OrgNodeSpec, *, request_id: str
    ) -> UnitRow:
        scope = company_scope(require_principal(), company_id)
        spec = normalize_spec(spec)
        violations = check_spec(spec, prefix="unit", fields=UNIT_FIELDS) + request_id_violations(
            request_id
        )
        if violations:
            raise _invalid("unit", violations)
        new_id = uuid.uuid4()
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            if request_id:
                earlier = await claim_request_id(
                    session,
                    company_id=scope.company_id,
                    method=CREATE_UNIT,
                    request_id=request_id,
                    resource_id=str(new_id),
                )
                if earlier is not None:
                    department = await self._department(session, scope, department_id)
                    return await self._unit(session, scope, department, earlier)
            await self._writable_company(session, scope, company_id)
            department = await self._department(session, scope, department_id)
            self._require_live(department, "department")
            await self._unit_name_free(session, scope, department.id, spec.display_name, None)
            row = UnitRow(
                id=new_id,
                company_id=scope.company_id,
                department_id=department.id,
                display_name=spec.display_name,
                code=spec.code,
                description=spec.description,
            )
            session.add(row)
            await _flush(session, "unit", "unit.display_name")
            await self._audit(
                session,
                scope,
                "unit.create",
                row.id,
                ["display_name", "code", "description"],
                department_id=str(department.id),
            )
            return row

    async def get_unit(self, company_id: str, department_id: str, unit_id: str) -> UnitRow:
        scope = company_scope(require_principal(), company_id)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await self._company(session, scope, company_id)
            department = await self._department(session, scope, department_id)
            return await self._unit(session, scope, department, unit_id)

    async def list_units(
        self,
        company_id: str,
        department_id: str,
        *,
        page_size: int,
        page_token: str,
        filter: str,
        order_by: str,
        show_deleted: bool,
    ) -> Page[UnitRow]:
        scope = company_scope(require_principal(), company_id)
        condition = UNIT_FILTER.parse(filter)
        order = parse_order_by(order_by, UNIT_ORDER, default=[OrderTerm(UnitRow.display_name)])
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await self._company(session, scope, company_id)
            department = await self._department(session, scope, department_id)
            stmt = select(UnitRow).where(
                UnitRow.company_id == scope.company_id, UnitRow.department_id == department.id
            )
            if not show_deleted:
                stmt = stmt.where(UnitRow.delete_time.is_(None))
            if condition is not None:
                stmt = stmt.where(condition)
            fingerprint = query_fingerprint(
                filter=filter,
                order_by=order_by,
                show_deleted=show_deleted,
                parent=f"{scope.company_id}/{department.id}",
            )
            return await paginate(
                session,
                stmt,
                order=order,
                page_size=page_size,
                page_token=page_token,
                fingerprint=fingerprint,
                secret=self.ctx.settings.page_token_secret,
            )

    async def update_unit(
        self,
        company_id: str,
        department_id: str,
        unit_id: str,
        spec: OrgNodeSpec,
        *,
        mask_paths: list[str],
        etag: str,
    ) -> UnitRow:
        scope = company_scope(require_principal(), company_id)
        mask = parse_mask(mask_paths, UNIT_FIELDS, "unit")
        spec = normalize_spec(spec)
        violations = check_spec(spec, prefix="unit", fields=mask)
        if violations:
            raise _invalid("unit", violations)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await self._writable_company(session, scope, company_id)
            department = await self._department(session, scope, department_id)
            row = await self._unit(session, scope, department, unit_id, lock=True)
            check_etag(row, etag)
            self._require_live(row, "unit")
            changed = [f for f in sorted(mask) if getattr(spec, f) != getattr(row, f)]
            if not changed:
                return row
            if "display_name" in changed:
                await self._unit_name_free(
                    session, scope, department.id, spec.display_name, exclude=row.id
                )
            for field in changed:
                setattr(row, field, getattr(spec, field))
            await _flush(session, "unit", "unit.display_name")
            await self._audit(
                session,
                scope,
                "unit.update",
                row.id,
                changed,
                department_id=str(department.id),
            )
            return row

    async def delete_unit(
        self, company_id: str, department_id: str, unit_id: str, etag: str
    ) -> UnitRow:
        scope = company_scope(require_principal(), company_id)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await self._writable_company(session, scope, company_id)
            department = await self._department(session, scope, department_id)
            row = await self._unit(session, scope, department, unit_id, lock=True)
            check_etag(row, etag)
            if row.delete_time is None:
                row.soft_delete()
                await session.flush()
                await self._audit(
                    session,
                    scope,
                    "unit.delete",
                    row.id,
                    ["delete_time"],
                    department_id=str(department.id),
                )
            return row

    async def undelete_unit(
        self, company_id: str, department_id: str, unit_id: str, etag: str
    ) -> UnitRow:
        scope = company_scope(require_principal(), company_id)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await self._writable_company(session, scope, company_id)
            department = await self._department(session, scope, department_id)
            row = await self._unit(session, scope, department, unit_id, lock=True)
            check_etag(row, etag)
            if row.delete_time is None:
                raise FailedPrecondition(
                    "the unit is not deleted",
                    reason="NOT_DELETED",
                    metadata={"unit_id": str(row.id)},
                )
            if department.delete_time is not None:
                raise FailedPrecondition(
                    "the unit's department is deleted; undelete it first",
                    reason="PARENT_DELETED",
                    metadata={"department_id": str(department.id)},
                )
            await self._unit_name_free(
                session, scope, department.id, row.display_name, exclude=row.id
            )
            row.undelete()
            await _flush(session, "unit", "unit.display_name")
            await self._audit(
                session,
                scope,
                "unit.undelete",
                row.id,
                ["delete_time"],
                department_id=str(department.id),
            )
            return row

    # ================================================================ helpers

    @staticmethod
    async def _company(session: AsyncSession, scope: CompanyScope, company_id: str) -> CompanyRow:
        row = await session.scalar(select(CompanyRow).where(CompanyRow.id == scope.company_id))
        if row is None:
            raise not_found("company", company_id)
        return row

    async def _writable_company(
        self, session: AsyncSession, scope: CompanyScope, company_id: str
    ) -> CompanyRow:
        """The company, which must be neither closed nor deleted for its structure to change."""
        row = await self._company(session, scope, company_id)
        if row.state == CompanyState.CLOSED or row.delete_time is not None:
            raise FailedPrecondition(
                "the company is closed or deleted; its structure is read-only",
                reason="COMPANY_READ_ONLY",
                metadata={"company_id": str(row.id), "current_state": row.state},
            )
        return row

    @staticmethod
    async def _department(
        session: AsyncSession, scope: CompanyScope, department_id: str, *, lock: bool = False
    ) -> DepartmentRow:
        key = lookup_uuid(department_id)
        row = None
        if key is not None:
            stmt = select(DepartmentRow).where(
                DepartmentRow.company_id == scope.company_id, DepartmentRow.id == key
            )
            row = await session.scalar(stmt.with_for_update() if lock else stmt)
        if row is None:
            raise not_found("department", department_id)
        return row

    async def _parent(
        self, session: AsyncSession, scope: CompanyScope, parent_id: str
    ) -> DepartmentRow | None:
        """The live department a department goes under ("" = top level). An unknown
        parent is a bad value in this request: INVALID_ARGUMENT on the field."""
        if not parent_id:
            return None
        key = lookup_uuid(parent_id)
        row = None
        if key is not None:
            row = await session.scalar(
                select(DepartmentRow).where(
                    DepartmentRow.company_id == scope.company_id,
                    DepartmentRow.id == key,
                    DepartmentRow.delete_time.is_(None),
                )
            )
        if row is None:
            raise InvalidArgument(
                "the parent department does not exist",
                reason="PARENT_DEPARTMENT_NOT_FOUND",
                field_violations=[
                    FieldViolation(
                        "department.parent_department_id",
                        "no live department of this company has this id",
                    )
                ],
            )
        return row

    @staticmethod
    async def _unit(
        session: AsyncSession,
        scope: CompanyScope,
        department: DepartmentRow,
        unit_id: str,
        *,
        lock: bool = False,
    ) -> UnitRow:
        key = lookup_uuid(unit_id)
        row = None
        if key is not None:
            stmt = select(UnitRow).where(
                UnitRow.company_id == scope.company_id,
                UnitRow.department_id == department.id,
                UnitRow.id == key,
            )
            row = await session.scalar(stmt.with_for_update() if lock else stmt)
        if row is None:
            raise not_found("unit", unit_id)
        return row

    @staticmethod
    def _require_live(row: DepartmentRow | UnitRow, resource: str) -> None:
        if row.delete_time is not None:
            raise FailedPrecondition(
                f"the {resource} is deleted; undelete it first",
                reason=f"{resource.upper()}_DELETED",
                metadata={f"{resource}_id": str(row.id)},
            )

    @staticmethod
    async def _lock_tree(session: AsyncSession, scope: CompanyScope) -> None:
        """Serialise changes to one company's department tree (moves, deletes)."""
        await session.execute(
            select(func.pg_advisory_xact_lock(func.hashtext(f"company.tree:{scope.company_id}")))
        )

    @staticmethod
    async def _ancestors(
        session: AsyncSession, scope: CompanyScope, start: uuid.UUID
    ) -> list[uuid.UUID]:
        rows = await session.execute(
            _ANCESTORS, {"company_id": scope.company_id, "start": start, "limit": MAX_DEPTH + 1}
        )
        return [row[0] for row in rows]

    @staticmethod
    async def _subtree_height(
        session: AsyncSession, scope: CompanyScope, row: DepartmentRow
    ) -> int:
        height = await session.scalar(
            _SUBTREE_HEIGHT,
            {"company_id": scope.company_id, "start": row.id, "limit": MAX_DEPTH + 1},
        )
        return int(height or 1)

    @staticmethod
    async def _department_name_free(
        session: AsyncSession,
        scope: CompanyScope,
        parent: DepartmentRow | uuid.UUID | None,
        name: str,
        exclude: uuid.UUID | None,
    ) -> None:
        parent_id = parent.id if isinstance(parent, DepartmentRow) else parent
        stmt = select(DepartmentRow.id).where(
            DepartmentRow.company_id == scope.company_id,
            DepartmentRow.delete_time.is_(None),
            func.lower(DepartmentRow.display_name) == name.lower(),
            DepartmentRow.parent_department_id.is_(None)
            if parent_id is None
            else DepartmentRow.parent_department_id == parent_id,
        )
        if exclude is not None:
            stmt = stmt.where(DepartmentRow.id != exclude)
        if await session.scalar(stmt.limit(1)) is not None:
            raise _name_taken("department", "department.display_name")

    @staticmethod
    async def _unit_name_free(
        session: AsyncSession,
        scope: CompanyScope,
        department_id: uuid.UUID,
        name: str,
        exclude: uuid.UUID | None,
    ) -> None:
        stmt = select(UnitRow.id).where(
            UnitRow.company_id == scope.company_id,
            UnitRow.department_id == department_id,
            UnitRow.delete_time.is_(None),
            func.lower(UnitRow.display_name) == name.lower(),
        )
        if exclude is not None:
            stmt = stmt.where(UnitRow.id != exclude)
        if await session.scalar(stmt.limit(1)) is not None:
            raise _name_taken("unit", "unit.display_name")

    async def _audit(
        self,
        session: AsyncSession,
        scope: CompanyScope,
        action: str,
        entity_id: uuid.UUID,
        changed: list[str],
        **detail: Any,
    ) -> None:
        """Audit ``action`` (``<entity type>.<verb>``) on the entity, in the same transaction."""
        await self.ctx.audit.record(
            session,
            action=action,
            entity_type=action.partition(".")[0],
            entity_id=entity_id,
            company_id=scope.company_id,
            changed_fields=changed,
            detail=scope.audit_detail(**detail),
        )
