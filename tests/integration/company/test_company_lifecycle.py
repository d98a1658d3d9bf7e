"""The company lifecycle over real gRPC (the full table is unit-tested in
tests/unit/company/test_company_lifecycle_table.py)."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from company_harness import CompanyHarness, failure
from google.protobuf import field_mask_pb2
from support.grpc_errors import error_info, field_violations

from cardinsa.company.v1 import company_service_pb2, resources_pb2

pb = company_service_pb2
State = resources_pb2.Company


async def _call(company: CompanyHarness, transition: str, company_id: str, **fields: Any) -> Any:
    method = {
        "suspend": (company.companies.SuspendCompany, pb.SuspendCompanyRequest),
        "reactivate": (company.companies.ReactivateCompany, pb.ReactivateCompanyRequest),
        "close": (company.companies.CloseCompany, pb.CloseCompanyRequest),
    }[transition]
    if transition != "reactivate":
        fields.setdefault("reason", "integration test")
    rpc, request = method
    return await rpc(
        request(company_id=company_id, **fields), metadata=await company.as_(company.platform_admin)
    )


async def _in_state(company: CompanyHarness, state: str) -> resources_pb2.Company:
    created = await company.create_company()
    if state == "SUSPENDED":
        return await _call(company, "suspend", created.id)
    if state == "CLOSED":
        return await _call(company, "close", created.id)
    return created


@pytest.mark.parametrize(
    ("state", "transition", "expected"),
    [
        ("ACTIVE", "suspend", "SUSPENDED"),
        ("SUSPENDED", "reactivate", "ACTIVE"),
        ("ACTIVE", "close", "CLOSED"),
        ("SUSPENDED", "close", "CLOSED"),
        ("ACTIVE", "reactivate", None),
        ("SUSPENDED", "suspend", None),
        ("CLOSED", "reactivate", None),
        ("CLOSED", "suspend", None),
        ("CLOSED", "close", None),
    ],
)
async def test_transitions(
    company: CompanyHarness, state: str, transition: str, expected: str | None
) -> None:
    start = await _in_state(company, state)
    if expected is not None:
        after = await _call(company, transition, start.id)
        assert State.State.Name(after.state) == expected
        assert after.state_reason == ("" if transition == "reactivate" else "integration test")
        assert after.etag != start.etag
        return
    error = await failure(_call(company, transition, start.id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(error)
    assert info.reason == "INVALID_STATE_TRANSITION"
    assert dict(info.metadata) == {"current_state": state, "transition": transition}
    assert state in error.details() and transition in error.details()


async def test_suspend_and_close_need_a_reason(company: CompanyHarness) -> None:
    created = await company.create_company()
    for transition in ("suspend", "close"):
        error = await failure(_call(company, transition, created.id, reason="  "))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "reason" in field_violations(error)


async def test_transition_with_stale_etag_is_aborted(company: CompanyHarness) -> None:
    created = await company.create_company()
    await _call(company, "suspend", created.id, etag=created.etag)
    error = await failure(_call(company, "reactivate", created.id, etag=created.etag))
    assert error.code() == grpc.StatusCode.ABORTED


async def test_transitions_are_idempotent_by_request_id(company: CompanyHarness) -> None:
    created = await company.create_company()
    request_id = str(uuid.uuid4())
    first = await _call(company, "suspend", created.id, request_id=request_id)
    # A retry of the same call answers again instead of failing on SUSPENDED → suspend.
    again = await _call(company, "suspend", created.id, request_id=request_id)
    assert again.state == State.SUSPENDED and again.etag == first.etag
    audit = await company.companies.ListAuditEvents(
        pb.ListAuditEventsRequest(company_id=created.id, filter='action = "company.suspend"'),
        metadata=await company.as_(company.platform_admin),
    )
    assert len(audit.audit_events) == 1
    detail = dict(audit.audit_events[0].detail)
    assert detail["from_state"] == "ACTIVE" and detail["to_state"] == "SUSPENDED"
    assert detail["reason"] == "integration test"
    # A new request id is a new request, refused in the new state.
    error = await failure(_call(company, "suspend", created.id, request_id=str(uuid.uuid4())))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    # The same request id with another reason is another request: refused.
    error = await failure(
        _call(company, "suspend", created.id, request_id=request_id, reason="another reason")
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "REQUEST_ID_REUSED"


async def test_a_closed_company_is_read_only(company: CompanyHarness) -> None:
    closed = await _in_state(company, "CLOSED")
    error = await failure(
        company.companies.UpdateCompany(
            pb.UpdateCompanyRequest(
                company=resources_pb2.Company(id=closed.id, display_name="Reborn"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            ),
            metadata=await company.as_(company.platform_admin),
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "COMPANY_CLOSED"


async def test_status_follows_the_lifecycle(company: CompanyHarness) -> None:
    created = await company.create_company(
        default_currency="KES", time_zone="Africa/Nairobi", locale="sw-KE", country="KE"
    )
    admin = await company.as_(company.platform_admin)

    async def status() -> resources_pb2.CompanyStatus:
        reply: resources_pb2.CompanyStatus = await company.companies.GetCompanyStatus(
            pb.GetCompanyStatusRequest(company_id=created.id), metadata=admin
        )
        return reply

    first = await status()
    assert (first.company_id, first.state, first.active) == (created.id, State.ACTIVE, True)
    assert (first.default_currency, first.time_zone, first.locale) == (
        "KES",
        "Africa/Nairobi",
        "sw-KE",
    )
    await _call(company, "suspend", created.id)
    suspended = await status()
    assert (suspended.state, suspended.active) == (State.SUSPENDED, False)
    assert suspended.update_time.ToDatetime() >= first.update_time.ToDatetime()
    await _call(company, "reactivate", created.id)
    assert (await status()).active
