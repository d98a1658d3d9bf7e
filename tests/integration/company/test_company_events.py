"""The company service writes one event per change of a company, in the
change's own transaction (none for a change that fails), and streams them with
EventService.WatchEvents: a company's admin sees its own company's, the
platform every company's."""

from __future__ import annotations

import uuid

import grpc
from company_harness import CompanyHarness, failure
from google.protobuf import field_mask_pb2
from support.event_watch import first_response, watch_until
from support.grpc_errors import error_info
from support.identity_harness import PASSWORD, Account, unique_email

from cardinsa.company.v1 import company_service_pb2 as pb
from cardinsa.company.v1 import event_service_pb2_grpc, events_pb2, resources_pb2
from cardinsa_identity.application.bootstrap import ensure_user_with_role

C = resources_pb2.Company


def stub(company: CompanyHarness) -> event_service_pb2_grpc.EventServiceStub:
    return event_service_pb2_grpc.EventServiceStub(company.channel)


def payload(event: events_pb2.Event) -> events_pb2.CompanyEvent:
    message = events_pb2.CompanyEvent()
    assert event.data.Unpack(message)
    return message


async def test_every_change_of_a_company_writes_one_event_in_order(
    company: CompanyHarness,
) -> None:
    md = await company.as_(company.platform_admin)
    calls = company.companies
    created = await company.create_company()
    cid = created.id
    await calls.UpdateCompany(
        pb.UpdateCompanyRequest(
            company=C(id=cid, display_name="Renamed Mutual"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        ),
        metadata=md,
    )
    await calls.SuspendCompany(
        pb.SuspendCompanyRequest(company_id=cid, reason="audit"), metadata=md
    )
    # Changes that fail write nothing.
    refused = await failure(
        calls.SuspendCompany(pb.SuspendCompanyRequest(company_id=cid, reason="again"), metadata=md)
    )
    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
    refused = await failure(
        calls.UpdateCompany(
            pb.UpdateCompanyRequest(
                company=C(id=cid, display_name="", etag=created.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            ),
            metadata=md,
        )
    )
    assert refused.code() in {grpc.StatusCode.ABORTED, grpc.StatusCode.INVALID_ARGUMENT}
    await calls.ReactivateCompany(pb.ReactivateCompanyRequest(company_id=cid), metadata=md)
    await calls.DeleteCompany(pb.DeleteCompanyRequest(company_id=cid), metadata=md)
    await calls.UndeleteCompany(pb.UndeleteCompanyRequest(company_id=cid), metadata=md)
    await calls.CloseCompany(pb.CloseCompanyRequest(company_id=cid, reason="wound up"), metadata=md)

    events, _ = await watch_until(stub(company), md, 7, company_id=cid)
    changes = ["created", "updated", "suspended", "reactivated", "deleted", "undeleted", "closed"]
    assert [e.type for e in events] == [f"cardinsa.company.company.{c}.v1" for c in changes]
    assert {(e.source, e.subject, e.ordering_key, e.company_id, e.data_schema) for e in events} == {
        ("company", f"companies/{cid}", f"companies/{cid}", cid, "cardinsa.company.v1.CompanyEvent")
    }
    payloads = [payload(e) for e in events]
    assert [(p.change, C.State.Name(p.from_state)) for p in payloads] == [
        ("created", "STATE_UNSPECIFIED"),
        ("updated", "ACTIVE"),
        ("suspended", "ACTIVE"),
        ("reactivated", "SUSPENDED"),
        ("deleted", "ACTIVE"),
        ("undeleted", "ACTIVE"),
        ("closed", "ACTIVE"),
    ]
    assert payloads[1].company.display_name == "Renamed Mutual"
    assert payloads[2].company.state == C.SUSPENDED and payloads[2].company.state_reason == "audit"
    assert payloads[4].company.delete_time.seconds > 0
    assert payloads[6].company.state == C.CLOSED


async def test_a_company_admin_sees_its_own_company_only(company: CompanyHarness) -> None:
    mine = await company.create_company()
    theirs = await company.create_company()
    result = await ensure_user_with_role(
        company.identity.app.ctx,
        email=unique_email("company-events"),
        password=PASSWORD,
        company_id=uuid.UUID(mine.id),
        role_name="company-admin",
    )
    admin = Account(result.email, PASSWORD, mine.id, str(result.user_id))
    md = await company.as_(admin)
    events, _ = await watch_until(stub(company), md, 1)
    assert [(e.type, e.subject) for e in events] == [
        ("cardinsa.company.company.created.v1", f"companies/{mine.id}")
    ]
    refused = await failure(first_response(stub(company), md, company_id=theirs.id))
    assert refused.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_info(refused).reason == "OTHER_COMPANY"
    platform = await company.as_(company.platform_admin)
    both, _ = await watch_until(
        stub(company), platform, 2, types=["cardinsa.company.company.created.v1"]
    )
    assert {f"companies/{mine.id}", f"companies/{theirs.id}"} <= {e.subject for e in both}
