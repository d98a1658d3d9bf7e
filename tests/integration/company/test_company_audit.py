"""The company audit log: written with each change, read within the caller's company."""

from __future__ import annotations

import uuid

import grpc
from company_harness import CompanyHarness, failure
from google.protobuf import field_mask_pb2
from support.grpc_errors import error_info

from cardinsa.company.v1 import company_service_pb2, organization_service_pb2, resources_pb2

pb = company_service_pb2


async def test_changes_are_audited_with_actor_and_request_id(company: CompanyHarness) -> None:
    as_a = await company.as_(company.admin_a)
    a = company.company_a.id
    request_id = f"audit-{uuid.uuid4().hex}"
    department = await company.org.CreateDepartment(
        organization_service_pb2.CreateDepartmentRequest(
            company_id=a,
            department=resources_pb2.Department(display_name=f"Audited {uuid.uuid4().hex[:6]}"),
        ),
        metadata=[*as_a, ("x-request-id", request_id)],
    )
    events = await company.companies.ListAuditEvents(
        pb.ListAuditEventsRequest(filter=f'entity_id = "{department.id}"'), metadata=as_a
    )
    (event,) = events.audit_events
    assert (event.action, event.entity_type, event.company_id) == (
        "department.create",
        "department",
        a,
    )
    assert event.actor_id == company.admin_a.user_id
    assert event.request_id == request_id
    assert "display_name" in event.changed_fields


async def test_company_admins_read_only_their_own_companys_events(
    company: CompanyHarness,
) -> None:
    as_a = await company.as_(company.admin_a)
    admin = await company.as_(company.platform_admin)
    # Something happens in B, by B's admin and by the platform admin.
    b = company.company_b.id
    await company.companies.UpdateCompany(
        pb.UpdateCompanyRequest(
            company=resources_pb2.Company(id=b, tax_id=f"KE{uuid.uuid4().int % 10**9}"),
            update_mask=field_mask_pb2.FieldMask(paths=["tax_id"]),
        ),
        metadata=admin,
    )
    mine = await company.companies.ListAuditEvents(
        pb.ListAuditEventsRequest(page_size=100), metadata=as_a
    )
    assert mine.audit_events
    assert {e.company_id for e in mine.audit_events} == {company.company_a.id}
    filtered = await company.companies.ListAuditEvents(
        pb.ListAuditEventsRequest(filter=f'company_id = "{b}"'), metadata=as_a
    )
    assert list(filtered.audit_events) == []
    for other in (b, str(uuid.uuid4())):
        error = await failure(
            company.companies.ListAuditEvents(
                pb.ListAuditEventsRequest(company_id=other), metadata=as_a
            )
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(error).reason == "CROSS_COMPANY_DENIED"
    # The platform admin reads B's log, and the change it made there is marked
    # as a cross-company act.
    theirs = await company.companies.ListAuditEvents(
        pb.ListAuditEventsRequest(company_id=b, filter='action = "company.update"'),
        metadata=admin,
    )
    latest = theirs.audit_events[0]
    assert latest.company_id == b and latest.changed_fields == ["tax_id"]
    assert latest.actor_id == company.platform_admin.user_id
    assert dict(latest.detail)["cross_company"] is True
    # Without company_id, the platform admin reads every company's events.
    both = await company.companies.ListAuditEvents(
        pb.ListAuditEventsRequest(
            filter=f'action = "company.create" AND (company_id = "{company.company_a.id}" '
            f'OR company_id = "{b}")'
        ),
        metadata=admin,
    )
    assert {e.company_id for e in both.audit_events} == {company.company_a.id, b}


async def test_viewers_may_not_read_the_audit_log(company: CompanyHarness) -> None:
    viewer = await company.identity.create_user(company.admin_a, roles=["viewer"])
    metadata = await company.as_(viewer)
    error = await failure(
        company.companies.ListAuditEvents(pb.ListAuditEventsRequest(), metadata=metadata)
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    # ... but they read their company.
    own = await company.companies.GetCompany(
        pb.GetCompanyRequest(company_id=company.company_a.id), metadata=metadata
    )
    assert own.id == company.company_a.id
