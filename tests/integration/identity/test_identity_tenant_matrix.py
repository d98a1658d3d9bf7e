"""Every identity RPC: company B's ids answer exactly like nonexistent ones for company A.

Generic over the descriptors (tests/support/tenant_matrix.py); afterwards B's
resources are read back unchanged, so no write slipped through either.
"""

from __future__ import annotations

from support.identity_harness import IdentityHarness
from support.tenant_matrix import report, run_matrix, tenant_methods

from cardinsa.identity.v1 import (
    access_service_pb2,
    access_service_pb2_grpc,
    auth_service_pb2,
    identity_service_pb2,
    me_service_pb2,
    resources_pb2,
    user_service_pb2,
)

SERVICES = [
    identity_service_pb2.DESCRIPTOR.services_by_name["IdentityService"],
    auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"],
    user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
    access_service_pb2.DESCRIPTOR.services_by_name["AccessService"],
    # RevokeMySession: B's session id is NOT_FOUND like a made-up one.
    me_service_pb2.DESCRIPTOR.services_by_name["MeService"],
]


async def _company_b_resources(identity: IdentityHarness) -> dict[str, str]:
    admin_b = identity.bearer(await identity.token(identity.admin_b))
    access = access_service_pb2_grpc.AccessServiceStub(identity.channel)
    user = await identity.create_user(identity.admin_b)
    session = await identity.login(user.email)
    role = await access.CreateRole(
        access_service_pb2.CreateRoleRequest(
            role=resources_pb2.Role(name=f"b-role-{user.user_id[:8]}", permissions=["users.get"])
        ),
        metadata=admin_b,
    )
    binding = await access.CreateRoleBinding(
        access_service_pb2.CreateRoleBindingRequest(
            role_binding=resources_pb2.RoleBinding(user_id=user.user_id, role_id=role.id)
        ),
        metadata=admin_b,
    )
    account = await access.CreateServiceAccount(
        access_service_pb2.CreateServiceAccountRequest(
            service_account=resources_pb2.ServiceAccount(name=f"b-svc-{user.user_id[:8]}")
        ),
        metadata=admin_b,
    )
    key = await access.CreateApiKey(
        access_service_pb2.CreateApiKeyRequest(
            service_account_id=account.id, api_key=resources_pb2.ApiKey(permissions=["users.get"])
        ),
        metadata=admin_b,
    )
    return {
        "user_id": user.user_id,
        "session_id": session.session_id,
        "role_id": role.id,
        "role_binding_id": binding.id,
        "service_account_id": account.id,
        "api_key_id": key.api_key.id,
        "company_id": identity.admin_b.company_id,
    }


async def test_company_b_ids_answer_like_nonexistent_ids_in_every_identity_rpc(
    identity: IdentityHarness,
) -> None:
    foreign = await _company_b_resources(identity)
    admin_b = identity.bearer(await identity.token(identity.admin_b))
    before = await identity.users.GetUser(
        user_service_pb2.GetUserRequest(user_id=foreign["user_id"]), metadata=admin_b
    )

    outcomes = await run_matrix(
        identity.channel,
        SERVICES,
        caller=identity.bearer(await identity.token(identity.admin_a)),
        foreign_ids=foreign,
        foreign_company=identity.admin_b.company_id,
    )
    assert len(outcomes) == len(tenant_methods(SERVICES)) > 30
    assert all(o.ok for o in outcomes), report(outcomes)
    # The ids really reached the services: B's ids were refused, not ignored.
    refused = [o for o in outcomes if o.foreign[0] in ("NOT_FOUND", "PERMISSION_DENIED")]
    assert len(refused) >= 20

    # Nothing of B's changed.
    after = await identity.users.GetUser(
        user_service_pb2.GetUserRequest(user_id=foreign["user_id"]), metadata=admin_b
    )
    assert (after.etag, after.state, after.delete_time) == (
        before.etag,
        before.state,
        before.delete_time,
    )
    access = access_service_pb2_grpc.AccessServiceStub(identity.channel)
    keys = await access.ListApiKeys(
        access_service_pb2.ListApiKeysRequest(service_account_id=foreign["service_account_id"]),
        metadata=admin_b,
    )
    assert [k.HasField("revoke_time") for k in keys.api_keys] == [False]
    bindings = await access.ListRoleBindings(
        access_service_pb2.ListRoleBindingsRequest(user_id=foreign["user_id"]), metadata=admin_b
    )
    assert foreign["role_binding_id"] in {b.id for b in bindings.role_bindings}
    sessions = await identity.users.ListSessions(
        user_service_pb2.ListSessionsRequest(user_id=foreign["user_id"]), metadata=admin_b
    )
    assert foreign["session_id"] in {s.id for s in sessions.sessions}
