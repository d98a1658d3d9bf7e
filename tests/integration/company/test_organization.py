"""Departments and units over real gRPC: the tree, names, units, tenancy."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
from company_harness import CompanyHarness, Metadata, failure
from google.protobuf import field_mask_pb2
from support.grpc_errors import error_info, field_violations

from cardinsa.company.v1 import company_service_pb2, organization_service_pb2, resources_pb2

pb = organization_service_pb2


async def _department(
    company: CompanyHarness,
    metadata: Metadata,
    company_id: str,
    name: str | None = None,
    parent: str = "",
    **extra: Any,
) -> resources_pb2.Department:
    reply: resources_pb2.Department = await company.org.CreateDepartment(
        pb.CreateDepartmentRequest(
            company_id=company_id,
            department=resources_pb2.Department(
                display_name=name or f"Dept {uuid.uuid4().hex[:6]}",
                parent_department_id=parent,
                **extra,
            ),
        ),
        metadata=metadata,
    )
    return reply


async def _move(
    company: CompanyHarness, metadata: Metadata, department: resources_pb2.Department, parent: str
) -> resources_pb2.Department:
    reply: resources_pb2.Department = await company.org.UpdateDepartment(
        pb.UpdateDepartmentRequest(
            department=resources_pb2.Department(
                company_id=department.company_id, id=department.id, parent_department_id=parent
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["parent_department_id"]),
        ),
        metadata=metadata,
    )
    return reply


async def test_department_tree_refuses_cycles(company: CompanyHarness) -> None:
    as_a = await company.as_(company.admin_a)
    a = company.company_a.id
    root = await _department(company, as_a, a, code="ROOT")
    child = await _department(company, as_a, a, parent=root.id)
    grandchild = await _department(company, as_a, a, parent=child.id)
    assert (child.parent_department_id, grandchild.parent_department_id) == (root.id, child.id)
    for moved, parent in ((root, grandchild), (root, child), (root, root), (child, grandchild)):
        error = await failure(_move(company, as_a, moved, parent.id))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(error).reason == "DEPARTMENT_CYCLE"
    # A legal move: the grandchild becomes top level, then goes under the root again.
    moved = await _move(company, as_a, grandchild, "")
    assert moved.parent_department_id == ""
    back = await _move(company, as_a, moved, root.id)
    assert back.parent_department_id == root.id
    audit = await company.companies.ListAuditEvents(
        company_service_pb2.ListAuditEventsRequest(
            filter=f'action = "department.move" AND entity_id = "{grandchild.id}"'
        ),
        metadata=as_a,
    )
    assert len(audit.audit_events) == 2


async def test_parent_must_be_a_live_department_of_the_same_company(
    company: CompanyHarness,
) -> None:
    as_a = await company.as_(company.admin_a)
    b_department = await _department(
        company, await company.as_(company.admin_b), company.company_b.id
    )
    for parent in (b_department.id, str(uuid.uuid4()), "nope"):
        error = await failure(_department(company, as_a, company.company_a.id, parent=parent))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "department.parent_department_id" in field_violations(error)


async def test_names_are_unique_per_parent_among_live_departments(
    company: CompanyHarness,
) -> None:
    as_a = await company.as_(company.admin_a)
    a = company.company_a.id
    name = f"Claims {uuid.uuid4().hex[:6]}"
    first = await _department(company, as_a, a, name)
    error = await failure(_department(company, as_a, a, name.upper()))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "department.display_name" in field_violations(error)
    # The same name under another parent is fine, and so is reusing a deleted one's.
    await _department(company, as_a, a, name, parent=first.id)
    other = await _department(company, as_a, a)
    await company.org.DeleteDepartment(
        pb.DeleteDepartmentRequest(company_id=a, department_id=other.id), metadata=as_a
    )
    await _department(company, as_a, a, other.display_name)
    # Undeleting the old one would now collide.
    error = await failure(
        company.org.UndeleteDepartment(
            pb.UndeleteDepartmentRequest(company_id=a, department_id=other.id), metadata=as_a
        )
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_units_belong_to_a_department(company: CompanyHarness) -> None:
    as_a = await company.as_(company.admin_a)
    a = company.company_a.id
    department = await _department(company, as_a, a)
    other = await _department(company, as_a, a)
    unit = await company.org.CreateUnit(
        pb.CreateUnitRequest(
            company_id=a,
            department_id=department.id,
            unit=resources_pb2.Unit(display_name="Motor claims", code="MC-1"),
        ),
        metadata=as_a,
    )
    assert (unit.company_id, unit.department_id) == (a, department.id)
    got = await company.org.GetUnit(
        pb.GetUnitRequest(company_id=a, department_id=department.id, unit_id=unit.id),
        metadata=as_a,
    )
    assert got == unit
    # Under another department the unit does not exist.
    error = await failure(
        company.org.GetUnit(
            pb.GetUnitRequest(company_id=a, department_id=other.id, unit_id=unit.id),
            metadata=as_a,
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    updated = await company.org.UpdateUnit(
        pb.UpdateUnitRequest(
            unit=resources_pb2.Unit(
                company_id=a,
                department_id=department.id,
                id=unit.id,
                description="Handles motor claims",
                etag=unit.etag,
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
        metadata=as_a,
    )
    assert updated.description == "Handles motor claims" and updated.code == "MC-1"
    # A department with a live unit cannot be deleted.
    error = await failure(
        company.org.DeleteDepartment(
            pb.DeleteDepartmentRequest(company_id=a, department_id=department.id), metadata=as_a
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "DEPARTMENT_NOT_EMPTY"
    await company.org.DeleteUnit(
        pb.DeleteUnitRequest(company_id=a, department_id=department.id, unit_id=unit.id),
        metadata=as_a,
    )
    listed = await company.org.ListUnits(
        pb.ListUnitsRequest(company_id=a, department_id=department.id), metadata=as_a
    )
    assert list(listed.units) == []
    deleted = await company.org.DeleteDepartment(
        pb.DeleteDepartmentRequest(company_id=a, department_id=department.id), metadata=as_a
    )
    assert deleted.HasField("delete_time")


async def test_lists_filter_and_page(company: CompanyHarness) -> None:
    as_a = await company.as_(company.admin_a)
    a = company.company_a.id
    root = await _department(company, as_a, a)
    names = [f"Sub {i} {uuid.uuid4().hex[:4]}" for i in range(3)]
    for name in names:
        await _department(company, as_a, a, name, parent=root.id)
    page = await company.org.ListDepartments(
        pb.ListDepartmentsRequest(
            company_id=a, filter=f'parent_department_id = "{root.id}"', page_size=2
        ),
        metadata=as_a,
    )
    assert [d.display_name for d in page.departments] == sorted(names)[:2]
    rest = await company.org.ListDepartments(
        pb.ListDepartmentsRequest(
            company_id=a,
            filter=f'parent_department_id = "{root.id}"',
            page_size=2,
            page_token=page.next_page_token,
        ),
        metadata=as_a,
    )
    assert [d.display_name for d in rest.departments] == sorted(names)[2:]
    assert rest.next_page_token == ""
    top = await company.org.ListDepartments(
        pb.ListDepartmentsRequest(
            company_id=a, filter="parent_department_id = null", page_size=100
        ),
        metadata=as_a,
    )
    assert root.id in {d.id for d in top.departments}
    assert all(d.parent_department_id == "" for d in top.departments)


async def test_create_department_is_idempotent_by_request_id(company: CompanyHarness) -> None:
    as_a = await company.as_(company.admin_a)
    request = pb.CreateDepartmentRequest(
        company_id=company.company_a.id,
        department=resources_pb2.Department(display_name=f"Once {uuid.uuid4().hex[:6]}"),
        request_id=str(uuid.uuid4()),
    )
    first = await company.org.CreateDepartment(request, metadata=as_a)
    again = await company.org.CreateDepartment(request, metadata=as_a)
    assert again.id == first.id


async def test_a_request_id_reused_for_another_department_or_unit_is_refused(
    company: CompanyHarness,
) -> None:
    as_a = await company.as_(company.admin_a)
    a = company.company_a.id
    name = f"Once {uuid.uuid4().hex[:6]}"
    request = pb.CreateDepartmentRequest(
        company_id=a,
        department=resources_pb2.Department(display_name=name),
        request_id=str(uuid.uuid4()),
    )
    first = await company.org.CreateDepartment(request, metadata=as_a)
    request.department.display_name = f"{name} other"
    error = await failure(company.org.CreateDepartment(request, metadata=as_a))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "REQUEST_ID_REUSED"
    assert "request_id" in field_violations(error)
    request.department.display_name = name
    again = await company.org.CreateDepartment(request, metadata=as_a)
    assert again.id == first.id

    unit_request_id = str(uuid.uuid4())
    unit = pb.CreateUnitRequest(
        company_id=a,
        department_id=first.id,
        unit=resources_pb2.Unit(display_name="Desk"),
        request_id=unit_request_id,
    )
    created = await company.org.CreateUnit(unit, metadata=as_a)
    assert (await company.org.CreateUnit(unit, metadata=as_a)).id == created.id
    unit.unit.display_name = "Other desk"
    error = await failure(company.org.CreateUnit(unit, metadata=as_a))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "REQUEST_ID_REUSED"


async def test_another_companys_structure_is_not_found(company: CompanyHarness) -> None:
    as_a = await company.as_(company.admin_a)
    as_b = await company.as_(company.admin_b)
    a, b = company.company_a.id, company.company_b.id
    b_department = await _department(company, as_b, b)
    b_unit = await company.org.CreateUnit(
        pb.CreateUnitRequest(
            company_id=b, department_id=b_department.id, unit=resources_pb2.Unit(display_name="U")
        ),
        metadata=as_b,
    )
    random_company, random_id = str(uuid.uuid4()), str(uuid.uuid4())

    async def answer(call: Any) -> tuple[grpc.StatusCode, str, str]:
        error = await failure(call)
        return error.code(), error_info(error).reason, error.details()

    # B's company in the path looks like a company that does not exist.
    for company_id in (b, random_company):
        seen = {
            await answer(
                company.org.ListDepartments(
                    pb.ListDepartmentsRequest(company_id=company_id), metadata=as_a
                )
            ),
            await answer(
                company.org.GetDepartment(
                    pb.GetDepartmentRequest(company_id=company_id, department_id=b_department.id),
                    metadata=as_a,
                )
            ),
            await answer(
                company.org.CreateDepartment(
                    pb.CreateDepartmentRequest(
                        company_id=company_id, department=resources_pb2.Department(display_name="X")
                    ),
                    metadata=as_a,
                )
            ),
            await answer(
                company.org.GetUnit(
                    pb.GetUnitRequest(
                        company_id=company_id, department_id=b_department.id, unit_id=b_unit.id
                    ),
                    metadata=as_a,
                )
            ),
        }
        assert seen == {(grpc.StatusCode.NOT_FOUND, "COMPANY_NOT_FOUND", "company not found")}, (
            company_id
        )
    # B's department or unit under A's own company: exactly a random id's answer.
    for department_id in (b_department.id, random_id):
        assert await answer(
            company.org.GetDepartment(
                pb.GetDepartmentRequest(company_id=a, department_id=department_id), metadata=as_a
            )
        ) == (grpc.StatusCode.NOT_FOUND, "DEPARTMENT_NOT_FOUND", "department not found")
        assert await answer(
            company.org.ListUnits(
                pb.ListUnitsRequest(company_id=a, department_id=department_id), metadata=as_a
            )
        ) == (grpc.StatusCode.NOT_FOUND, "DEPARTMENT_NOT_FOUND", "department not found")
    a_department = await _department(company, as_a, a)
    for unit_id in (b_unit.id, random_id):
        assert await answer(
            company.org.GetUnit(
                pb.GetUnitRequest(company_id=a, department_id=a_department.id, unit_id=unit_id),
                metadata=as_a,
            )
        ) == (grpc.StatusCode.NOT_FOUND, "UNIT_NOT_FOUND", "unit not found")
    # A's lists never contain B's rows.
    listed = await company.org.ListDepartments(
        pb.ListDepartmentsRequest(company_id=a, page_size=100, show_deleted=True), metadata=as_a
    )
    assert all(d.company_id == a for d in listed.departments)
    assert b_department.id not in {d.id for d in listed.departments}
    # The platform admin works in B.
    got = await company.org.GetDepartment(
        pb.GetDepartmentRequest(company_id=b, department_id=b_department.id),
        metadata=await company.as_(company.platform_admin),
    )
    assert got.id == b_department.id


async def test_concurrent_moves_cannot_build_a_cycle(company: CompanyHarness) -> None:
    as_a = await company.as_(company.admin_a)
    a = company.company_a.id
    for _ in range(3):
        first = await _department(company, as_a, a)
        second = await _department(company, as_a, a)
        # Each move alone is legal; both together would make a cycle.
        results = await asyncio.gather(
            _move(company, as_a, first, second.id),
            _move(company, as_a, second, first.id),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(failures) == 1, results
        assert failures[0].code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(failures[0]).reason == "DEPARTMENT_CYCLE"
