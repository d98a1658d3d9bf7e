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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_company.application.context import (
    CompanyContext,
    CompanyScope,
    ListQuery,
    claim_request,
    company_scope,
    not_deleted,
    scope_company,
    writable_company,
)
from cardinsa_company.domain.organization import (
    DEPARTMENT_FIELDS,
    UNIT_FIELDS,
    OrgNodeSpec,
    check_move,
    check_spec,
    normalize_spec,
    parse_mask,
)
from cardinsa_company.repository import organization as repo
from cardinsa_company.repository.models import CompanyRow, DepartmentRow, UnitRow
from cardinsa_company.repository.queries import flush
from cardinsa_foundation.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
)
from cardinsa_foundation.filtering import parse_order_by
from cardinsa_foundation.paging import OrderTerm, Page
from cardinsa_foundation.use_cases import (
    check_etag,
    check_request_id,
    lookup_uuid,
    not_found,
    require_principal,
)

CREATE_DEPARTMENT: Final = "CreateDepartment"
CREATE_UNIT: Final = "CreateUnit"


def _name_taken(resource: str, field: str) -> AlreadyExists:
    return AlreadyExists(
        f"a live {resource} with this name already exists under the same parent",
        reason="NAME_TAKEN",
        field_violations=[FieldViolation(field, "already in use under the same parent")],
    )


async def _flush(session: AsyncSession, resource: str, field: str) -> None:
    """Flush, turning the name indexes into NAME_TAKEN on ``field``."""
    error = partial(_name_taken, resource, field)
    await flush(session, {repo.DEPARTMENT_NAME_INDEX: error, repo.UNIT_NAME_INDEX: error})


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
        violations = check_spec(spec, prefix="department") + check_request_id(request_id)
        if violations:
            raise _invalid("department", violations)
        new_id = uuid.uuid4()
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            earlier = await self._claim(session, scope, CREATE_DEPARTMENT, request_id, new_id, spec)
            if earlier is not None:
                return await self._department(session, scope, earlier)
            await self._writable_company(session, scope, company_id)
            parent = await self._parent(session, scope, spec.parent_department_id)
            if parent is not None:
                await repo.lock_tree(session, scope.company_id)
                chain = await repo.ancestors(session, scope.company_id, parent.id)
                check_move(new_id, chain, 1)
            parent_id = parent.id if parent else None
            await self._department_name_free(session, scope, parent_id, spec.display_name, None)
            row = repo.new_department(new_id, scope.company_id, parent_id, spec)
            session.add(row)
            await _flush(session, "department", "department.display_name")
            await self.ctx.record(
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
        query: ListQuery,
    ) -> Page[DepartmentRow]:
        scope = company_scope(require_principal(), company_id)
        condition = repo.DEPARTMENT_FILTER.parse(query.filter)
        order = parse_order_by(
            query.order_by, repo.DEPARTMENT_ORDER, default=[OrderTerm(DepartmentRow.display_name)]
        )
        stmt = repo.departments_listing(
            scope.company_id, show_deleted=query.show_deleted, condition=condition
        )
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await self._company(session, scope, company_id)
            return await self.ctx.list_page(
                session, stmt, query, order=order, parent=str(scope.company_id)
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
        moving = "parent_department_id" in mask
        async with self._department_change(
            scope, company_id, department_id, etag, lock_tree=moving
        ) as (session, row):
            self._require_live(row, "department")
            changed: list[str] = []
            parent_id: uuid.UUID | None = row.parent_department_id
            if moving:
                parent = await self._parent(session, scope, spec.parent_department_id)
                parent_id = parent.id if parent else None
                if parent_id != row.parent_department_id:
                    if parent is not None:
                        chain = await repo.ancestors(session, scope.company_id, parent.id)
                        height = await repo.subtree_height(session, scope.company_id, row.id)
                        check_move(row.id, chain, height)
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
            await self.ctx.record(
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
        async with self._department_change(
            scope, company_id, department_id, etag, lock_tree=True
        ) as (session, row):
            if row.delete_time is not None:
                return row
            children, units = await repo.live_contents(session, scope.company_id, row.id)
            if children or units:
                raise FailedPrecondition(
                    "the department still has live sub-departments or units; "
                    "delete or move them first",
                    reason="DEPARTMENT_NOT_EMPTY",
                    metadata={
                        "department_id": str(row.id),
                        "sub_departments": str(children),
                        "units": str(units),
                    },
                )
            row.soft_delete()
            await session.flush()
            await self.ctx.record(session, scope, "department.delete", row.id, ["delete_time"])
            return row

    async def undelete_department(
        self, company_id: str, department_id: str, etag: str
    ) -> DepartmentRow:
        scope = company_scope(require_principal(), company_id)
        async with self._department_change(
            scope, company_id, department_id, etag, lock_tree=True
        ) as (session, row):
            if row.delete_time is None:
                raise not_deleted("department", row.id)
            if row.parent_department_id is not None:
                parent = await repo.find_department(
                    session, scope.company_id, row.parent_department_id
                )
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
            await self.ctx.record(session, scope, "department.undelete", row.id, ["delete_time"])
            return row

    # ================================================================ units

    async def create_unit(
        self, company_id: str, department_id: str, spec: OrgNodeSpec, *, request_id: str
    ) -> UnitRow:
        scope = company_scope(require_principal(), company_id)
        spec = normalize_spec(spec)
        violations = check_spec(spec, prefix="unit", fields=UNIT_FIELDS) + check_request_id(
            request_id
        )
        if violations:
            raise _invalid("unit", violations)
        new_id = uuid.uuid4()
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            earlier = await self._claim(
                session, scope, CREATE_UNIT, request_id, new_id, department_id, spec
            )
            if earlier is not None:
                department = await self._department(session, scope, department_id)
                return await self._unit(session, scope, department, earlier)
            await self._writable_company(session, scope, company_id)
            department = await self._department(session, scope, department_id)
            self._require_live(department, "department")
            await self._unit_name_free(session, scope, department.id, spec.display_name, None)
            row = repo.new_unit(new_id, scope.company_id, department.id, spec)
            session.add(row)
            await _flush(session, "unit", "unit.display_name")
            await self._record_unit(
                session, scope, "unit.create", row, ["display_name", "code", "description"]
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
        query: ListQuery,
    ) -> Page[UnitRow]:
        scope = company_scope(require_principal(), company_id)
        condition = repo.UNIT_FILTER.parse(query.filter)
        order = parse_order_by(
            query.order_by, repo.UNIT_ORDER, default=[OrderTerm(UnitRow.display_name)]
        )
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await self._company(session, scope, company_id)
            department = await self._department(session, scope, department_id)
            stmt = repo.units_listing(
                scope.company_id,
                department.id,
                show_deleted=query.show_deleted,
                condition=condition,
            )
            return await self.ctx.list_page(
                session, stmt, query, order=order, parent=f"{scope.company_id}/{department.id}"
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
        async with self._unit_change(scope, company_id, department_id, unit_id, etag) as (
            session,
            department,
            row,
        ):
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
            await self._record_unit(session, scope, "unit.update", row, changed)
            return row

    async def delete_unit(
        self, company_id: str, department_id: str, unit_id: str, etag: str
    ) -> UnitRow:
        scope = company_scope(require_principal(), company_id)
        async with self._unit_change(scope, company_id, department_id, unit_id, etag) as (
            session,
            _department,
            row,
        ):
            if row.delete_time is None:
                row.soft_delete()
                await session.flush()
                await self._record_unit(session, scope, "unit.delete", row, ["delete_time"])
            return row

    async def undelete_unit(
        self, company_id: str, department_id: str, unit_id: str, etag: str
    ) -> UnitRow:
        scope = company_scope(require_principal(), company_id)
        async with self._unit_change(scope, company_id, department_id, unit_id, etag) as (
            session,
            department,
            row,
        ):
            if row.delete_time is None:
                raise not_deleted("unit", row.id)
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
            await self._record_unit(session, scope, "unit.undelete", row, ["delete_time"])
            return row

    # ================================================================ helpers

    @staticmethod
    async def _claim(
        session: AsyncSession,
        scope: CompanyScope,
        method: str,
        request_id: str,
        new_id: uuid.UUID,
        *arguments: object,
    ) -> str | None:
        """The id an earlier create with ``request_id`` made (AIP-155), or None: create."""
        return await claim_request(
            session, scope.company_id, method, request_id, str(new_id), *arguments
        )

    @asynccontextmanager
    async def _department_change(
        self,
        scope: CompanyScope,
        company_id: str,
        department_id: str,
        etag: str,
        *,
        lock_tree: bool,
    ) -> AsyncIterator[tuple[AsyncSession, DepartmentRow]]:
        """The unit of work of a change to a department: the company writable, the
        tree locked (``lock_tree``), the department locked and its etag current."""
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await self._writable_company(session, scope, company_id)
            if lock_tree:
                await repo.lock_tree(session, scope.company_id)
            row = await self._department(session, scope, department_id, lock=True)
            check_etag(row, etag)
            yield session, row

    @asynccontextmanager
    async def _unit_change(
        self, scope: CompanyScope, company_id: str, department_id: str, unit_id: str, etag: str
    ) -> AsyncIterator[tuple[AsyncSession, DepartmentRow, UnitRow]]:
        """The unit of work of a change to a unit: the company writable, the unit of
        that department locked and its etag current."""
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await self._writable_company(session, scope, company_id)
            department = await self._department(session, scope, department_id)
            row = await self._unit(session, scope, department, unit_id, lock=True)
            check_etag(row, etag)
            yield session, department, row

    @staticmethod
    async def _company(session: AsyncSession, scope: CompanyScope, company_id: str) -> CompanyRow:
        return await scope_company(session, scope, company_id)

    @staticmethod
    async def _writable_company(
        session: AsyncSession, scope: CompanyScope, company_id: str
    ) -> CompanyRow:
        """The company, which must be neither closed nor deleted for its structure to change."""
        return await writable_company(session, scope, company_id)

    @staticmethod
    async def _department(
        session: AsyncSession, scope: CompanyScope, department_id: str, *, lock: bool = False
    ) -> DepartmentRow:
        key = lookup_uuid(department_id)
        row = None
        if key is not None:
            row = await repo.find_department(session, scope.company_id, key, lock=lock)
        if row is None:
            raise not_found("department", department_id)
        return row

    @staticmethod
    async def _parent(
        session: AsyncSession, scope: CompanyScope, parent_id: str
    ) -> DepartmentRow | None:
        """The live department a department goes under ("" = top level). An unknown
        parent is a bad value in this request: INVALID_ARGUMENT on the field."""
        if not parent_id:
            return None
        key = lookup_uuid(parent_id)
        row = None
        if key is not None:
            row = await repo.find_department(session, scope.company_id, key, live=True)
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
            row = await repo.find_unit(session, scope.company_id, department.id, key, lock=lock)
        if row is None:
            raise not_found("unit", unit_id)
        return row

    async def _record_unit(
        self,
        session: AsyncSession,
        scope: CompanyScope,
        action: str,
        row: UnitRow,
        changed: list[str],
    ) -> None:
        await self.ctx.record(
            session, scope, action, row.id, changed, department_id=str(row.department_id)
        )

    @staticmethod
    def _require_live(row: DepartmentRow | UnitRow, resource: str) -> None:
        if row.delete_time is not None:
            raise FailedPrecondition(
                f"the {resource} is deleted; undelete it first",
                reason=f"{resource.upper()}_DELETED",
                metadata={f"{resource}_id": str(row.id)},
            )

    @staticmethod
    async def _department_name_free(
        session: AsyncSession,
        scope: CompanyScope,
        parent_id: uuid.UUID | None,
        name: str,
        exclude: uuid.UUID | None,
    ) -> None:
        if await repo.department_name_taken(session, scope.company_id, parent_id, name, exclude):
            raise _name_taken("department", "department.display_name")

    @staticmethod
    async def _unit_name_free(
        session: AsyncSession,
        scope: CompanyScope,
        department_id: uuid.UUID,
        name: str,
        exclude: uuid.UUID | None,
    ) -> None:
        if await repo.unit_name_taken(session, scope.company_id, department_id, name, exclude):
            raise _name_taken("unit", "unit.display_name")
