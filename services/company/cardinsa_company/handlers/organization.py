"""OrganizationService servicer: departments and units."""

from __future__ import annotations

from typing import Any

from cardinsa.company.v1 import (
    organization_service_pb2,
    organization_service_pb2_grpc,
    resources_pb2,
)
from cardinsa_company.application.organization import OrganizationUseCases
from cardinsa_company.handlers.convert import (
    department_spec,
    department_to_proto,
    list_query,
    unit_spec,
    unit_to_proto,
)

_pb = organization_service_pb2


class OrganizationServicer(organization_service_pb2_grpc.OrganizationServiceServicer):
    def __init__(self, org: OrganizationUseCases) -> None:
        self.org = org

    # ---------------------------------------------------------------- departments

    async def CreateDepartment(
        self, request: _pb.CreateDepartmentRequest, context: Any
    ) -> resources_pb2.Department:
        row = await self.org.create_department(
            request.company_id, department_spec(request.department), request_id=request.request_id
        )
        return department_to_proto(row)

    async def GetDepartment(
        self, request: _pb.GetDepartmentRequest, context: Any
    ) -> resources_pb2.Department:
        return department_to_proto(
            await self.org.get_department(request.company_id, request.department_id)
        )

    async def ListDepartments(
        self, request: _pb.ListDepartmentsRequest, context: Any
    ) -> _pb.ListDepartmentsResponse:
        page = await self.org.list_departments(
            request.company_id,
            list_query(request),
        )
        return _pb.ListDepartmentsResponse(
            departments=[department_to_proto(d) for d in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateDepartment(
        self, request: _pb.UpdateDepartmentRequest, context: Any
    ) -> resources_pb2.Department:
        department = request.department
        row = await self.org.update_department(
            department.company_id,
            department.id,
            department_spec(department),
            list(request.update_mask.paths),
            department.etag,
        )
        return department_to_proto(row)

    async def DeleteDepartment(
        self, request: _pb.DeleteDepartmentRequest, context: Any
    ) -> resources_pb2.Department:
        return department_to_proto(
            await self.org.delete_department(
                request.company_id, request.department_id, request.etag
            )
        )

    async def UndeleteDepartment(
        self, request: _pb.UndeleteDepartmentRequest, context: Any
    ) -> resources_pb2.Department:
        return department_to_proto(
            await self.org.undelete_department(
                request.company_id, request.department_id, request.etag
            )
        )

    # ---------------------------------------------------------------- units

    async def CreateUnit(self, request: _pb.CreateUnitRequest, context: Any) -> resources_pb2.Unit:
        row = await self.org.create_unit(
            request.company_id,
            request.department_id,
            unit_spec(request.unit),
            request_id=request.request_id,
        )
        return unit_to_proto(row)

    async def GetUnit(self, request: _pb.GetUnitRequest, context: Any) -> resources_pb2.Unit:
        return unit_to_proto(
            await self.org.get_unit(request.company_id, request.department_id, request.unit_id)
        )

    async def ListUnits(self, request: _pb.ListUnitsRequest, context: Any) -> _pb.ListUnitsResponse:
        page = await self.org.list_units(
            request.company_id,
            request.department_id,
            list_query(request),
        )
        return _pb.ListUnitsResponse(
            units=[unit_to_proto(u) for u in page.items], next_page_token=page.next_page_token
        )

    async def UpdateUnit(self, request: _pb.UpdateUnitRequest, context: Any) -> resources_pb2.Unit:
        unit = request.unit
        row = await self.org.update_unit(
            unit.company_id,
            unit.department_id,
            unit.id,
            unit_spec(unit),
            mask_paths=list(request.update_mask.paths),
            etag=unit.etag,
        )
        return unit_to_proto(row)

    async def DeleteUnit(self, request: _pb.DeleteUnitRequest, context: Any) -> resources_pb2.Unit:
        return unit_to_proto(
            await self.org.delete_unit(
                request.company_id, request.department_id, request.unit_id, request.etag
            )
        )

    async def UndeleteUnit(
        self, request: _pb.UndeleteUnitRequest, context: Any
    ) -> resources_pb2.Unit:
        return unit_to_proto(
            await self.org.undelete_unit(
                request.company_id, request.department_id, request.unit_id, request.etag
            )
        )
