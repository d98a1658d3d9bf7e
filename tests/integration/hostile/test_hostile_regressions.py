"""Minimal reproductions of the bugs the hostile-input and attack suites found.

An open bug is a strict xfail naming the bug, its place and the fix: it fails
the run once the bug is fixed (XPASS), which is the signal to drop the marker
and the matching entry of ``hostile_harness.KNOWN_BUGS`` (the generic suites
count the symptom instead of failing on it while the bug stands). A fixed bug
stays here as a plain regression test.
"""

from __future__ import annotations

import uuid

import grpc
from google.protobuf import field_mask_pb2
from hostile_harness import ServiceTarget, Tenants
from support.request_fuzz import call_rpc

from cardinsa.company.v1 import organization_service_pb2
from cardinsa.company.v1 import resources_pb2 as company_resources
from cardinsa.identity.v1 import access_service_pb2, resources_pb2, user_service_pb2

OVERSIZED_DETAILS_BUG = (
    "error details echo unbounded input: the status trailer outgrows gRPC's 16 KiB metadata "
    "limit and the client gets RESOURCE_EXHAUSTED without status "
    "(shared/cardinsa_foundation/errors.py to_rpc_status; identity users.py:220, "
    "permissions.py:199)"
)


async def test_malformed_protobuf_is_invalid_argument_not_unknown(
    hostile_targets: dict[str, ServiceTarget],
) -> None:
    """Four bytes of garbage to identity's public GetServerInfo. Cause and fix: see
    MALFORMED_BUG in test_attack_malformed.py."""
    identity = hostile_targets["identity"]
    service = identity.services[0]
    method = service.methods_by_name["GetServerInfo"]
    answer = await call_rpc(identity.channel, service, method, b"\xff\xff\xff\xff")
    assert answer.code is grpc.StatusCode.INVALID_ARGUMENT, (answer.code, answer.details)


async def test_non_ascii_etag_is_aborted_not_internal(
    hostile_targets: dict[str, ServiceTarget], tenants: Tenants
) -> None:
    """Found by the 1 MB-field attack: an etag with a non-ASCII character answered
    INTERNAL (check_etag gave two str to hmac.compare_digest, which raises
    TypeError). Fixed meanwhile (e17e60d: check_etag compares bytes); kept as a
    regression test. A fresh role (identity) and department (company) of the fuzz
    tenant, deleted with etag 'é': a foreign etag is stale, ABORTED."""
    fuzz = tenants.fuzz
    identity = hostile_targets["identity"]
    access = identity.services[3]
    role = await call_rpc(
        identity.channel,
        access,
        access.methods_by_name["CreateRole"],
        access_service_pb2.CreateRoleRequest(
            role=resources_pb2.Role(name=f"etag-{uuid.uuid4().hex[:8]}", permissions=["users.get"])
        ),
        metadata=fuzz.bearer,
    )
    assert role.code is grpc.StatusCode.OK, role
    company = hostile_targets["company"]
    org = company.services[1]
    department = await call_rpc(
        company.channel,
        org,
        org.methods_by_name["CreateDepartment"],
        organization_service_pb2.CreateDepartmentRequest(
            company_id=fuzz.company_id,
            department=company_resources.Department(display_name=f"etag {uuid.uuid4().hex[:8]}"),
        ),
        metadata=fuzz.bearer,
    )
    assert department.code is grpc.StatusCode.OK, department

    deleted_role = await call_rpc(
        identity.channel,
        access,
        access.methods_by_name["DeleteRole"],
        access_service_pb2.DeleteRoleRequest(role_id=role.response.id, etag="é"),
        metadata=fuzz.bearer,
    )
    deleted_department = await call_rpc(
        company.channel,
        org,
        org.methods_by_name["DeleteDepartment"],
        organization_service_pb2.DeleteDepartmentRequest(
            company_id=fuzz.company_id, department_id=department.response.id, etag="é"
        ),
        metadata=fuzz.bearer,
    )
    assert (deleted_role.code, deleted_department.code) == (
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.ABORTED,
    ), (deleted_role.details, deleted_department.details)


async def test_error_details_stay_within_the_metadata_limit(
    hostile_targets: dict[str, ServiceTarget], tenants: Tenants
) -> None:
    """CreateRole with 300 unknown permissions gets one BadRequest violation each
    (check_permission_names, services/identity/.../domain/permissions.py:199: ~25 KB);
    UpdateUser with a 20 KB update_mask path echoes the whole path
    (services/identity/.../application/users.py:220). The grpc-status-details-bin
    trailer then exceeds the client's 16 KiB metadata limit (8 KiB soft: sometimes
    already from 8 KiB), so the client sees RESOURCE_EXHAUSTED "Stream removed
    (received metadata size exceeds hard limit)" -- no status, no ErrorInfo, no
    request id -- instead of INVALID_ARGUMENT. Through Envoy the same trailer meets
    its header limits. Fix where every service passes: to_rpc_status
    (shared/cardinsa_foundation/errors.py) caps the field violations (say 20, then
    one "... and N more"), truncates descriptions and metadata values (say 200
    characters) and keeps the serialized status under a few KiB; the messages quote
    at most a snippet of the input."""
    fuzz = tenants.fuzz
    identity = hostile_targets["identity"]
    access, users = identity.services[3], identity.services[2]
    role = await call_rpc(
        identity.channel,
        access,
        access.methods_by_name["CreateRole"],
        access_service_pb2.CreateRoleRequest(
            role=resources_pb2.Role(name="too-many-perms", permissions=["nope.x"] * 300)
        ),
        metadata=fuzz.bearer,
    )
    mask = await call_rpc(
        identity.channel,
        users,
        users.methods_by_name["UpdateUser"],
        user_service_pb2.UpdateUserRequest(
            user=resources_pb2.User(id=fuzz.user.user_id),
            update_mask=field_mask_pb2.FieldMask(paths=["a" * 20_000]),
        ),
        metadata=fuzz.bearer,
    )
    assert (role.code, mask.code) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INVALID_ARGUMENT,
    ), (role.details, mask.details)
