"""Identity writes one event per change of a user, in the change's own
transaction (none for a change that fails), and streams them with
EventService.WatchEvents to the user's company and to the platform."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2
from support.event_watch import first_response, watch_until
from support.grpc_errors import error_info
from support.identity_harness import PASSWORD, Account, IdentityHarness, unique_email

from cardinsa.identity.v1 import access_service_pb2 as ac
from cardinsa.identity.v1 import event_service_pb2_grpc, events_pb2, resources_pb2
from cardinsa.identity.v1 import user_service_pb2 as us
from cardinsa_identity.application.bootstrap import ensure_user_with_role

U = resources_pb2.User


def stub(identity: IdentityHarness) -> event_service_pb2_grpc.EventServiceStub:
    return event_service_pb2_grpc.EventServiceStub(identity.channel)


async def fresh_admin(identity: IdentityHarness) -> Account:
    """A company of its own (its events are this test's only)."""
    result = await ensure_user_with_role(
        identity.app.ctx,
        email=unique_email("events-admin"),
        password=PASSWORD,
        company_id=uuid.uuid4(),
        role_name="company-admin",
    )
    return Account(result.email, PASSWORD, str(result.company_id), str(result.user_id))


def payload(event: events_pb2.Event) -> events_pb2.UserEvent:
    message = events_pb2.UserEvent()
    assert event.data.Unpack(message)
    return message


async def test_every_change_of_a_user_writes_one_event_in_order(
    identity: IdentityHarness,
) -> None:
    admin = await fresh_admin(identity)
    md = identity.bearer(await identity.token(admin))
    users, access = identity.users, identity.access
    user = await users.CreateUser(
        us.CreateUserRequest(
            user=U(email=unique_email("watched"), given_name="Ada", family_name="Byron"),
            password=PASSWORD,
        ),
        metadata=md,
    )
    user = await users.UpdateUser(
        us.UpdateUserRequest(
            user=U(id=user.id, given_name="Ada", family_name="Lovelace", etag=user.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["family_name"]),
        ),
        metadata=md,
    )
    roles = await access.ListRoles(ac.ListRolesRequest(page_size=100), metadata=md)
    agent = next(r for r in roles.roles if r.name == "agent")
    binding = await access.CreateRoleBinding(
        ac.CreateRoleBindingRequest(
            role_binding=resources_pb2.RoleBinding(user_id=user.id, role_id=agent.id)
        ),
        metadata=md,
    )
    await access.DeleteRoleBinding(
        ac.DeleteRoleBindingRequest(role_binding_id=binding.id), metadata=md
    )
    user = await users.LockUser(us.LockUserRequest(user_id=user.id, reason="test"), metadata=md)
    # A change that fails writes nothing: reactivating a locked user is refused.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await users.ReactivateUser(us.ReactivateUserRequest(user_id=user.id), metadata=md)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await users.UnlockUser(us.UnlockUserRequest(user_id=user.id, etag='"stale"'), metadata=md)
    assert stale.value.code() is grpc.StatusCode.ABORTED
    await users.UnlockUser(us.UnlockUserRequest(user_id=user.id), metadata=md)
    await users.DeactivateUser(us.DeactivateUserRequest(user_id=user.id), metadata=md)
    await users.ReactivateUser(us.ReactivateUserRequest(user_id=user.id), metadata=md)
    await users.DeleteUser(us.DeleteUserRequest(user_id=user.id), metadata=md)
    await users.UndeleteUser(us.UndeleteUserRequest(user_id=user.id), metadata=md)

    events, _ = await watch_until(stub(identity), md, 11)
    assert [(e.subject, e.type) for e in events] == [
        (f"users/{admin.user_id}", "cardinsa.identity.user.created.v1"),
        *(
            (f"users/{user.id}", f"cardinsa.identity.user.{change}.v1")
            for change in (
                "created",
                "updated",
                "roles_changed",
                "roles_changed",
                "locked",
                "unlocked",
                "deactivated",
                "reactivated",
                "deleted",
                "undeleted",
            )
        ),
    ]
    assert {(e.source, e.company_id, e.data_schema) for e in events} == {
        ("identity", admin.company_id, "cardinsa.identity.v1.UserEvent")
    }
    assert all(e.ordering_key == e.subject for e in events)
    mine = [payload(e) for e in events[1:]]
    assert [(p.change, U.State.Name(p.from_state)) for p in mine] == [
        ("created", "STATE_UNSPECIFIED"),
        ("updated", "ACTIVE"),
        ("roles_changed", "ACTIVE"),
        ("roles_changed", "ACTIVE"),
        ("locked", "ACTIVE"),
        ("unlocked", "LOCKED"),
        ("deactivated", "ACTIVE"),
        ("reactivated", "DEACTIVATED"),
        ("deleted", "ACTIVE"),
        ("undeleted", "ACTIVE"),
    ]
    assert mine[1].user.family_name == "Lovelace"
    assert list(mine[2].user.roles) == ["agent"] and list(mine[3].user.roles) == []
    assert mine[4].user.state == U.LOCKED and mine[8].user.delete_time.seconds > 0
    # The payload is the API's User: no password hash, nothing secret.
    assert not [f.name for f in U.DESCRIPTOR.fields if "password" in f.name or "hash" in f.name]


async def test_identity_events_are_the_company_s_own(identity: IdentityHarness) -> None:
    admin = await fresh_admin(identity)
    other = await fresh_admin(identity)
    md = identity.bearer(await identity.token(admin))
    events, _ = await watch_until(stub(identity), md, 1)
    assert [e.subject for e in events] == [f"users/{admin.user_id}"]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await first_response(stub(identity), md, company_id=other.company_id)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_info(refused.value).reason == "OTHER_COMPANY"
    platform = identity.bearer(await identity.token(identity.platform_admin))
    theirs, _ = await watch_until(stub(identity), platform, 1, company_id=other.company_id)
    assert [e.subject for e in theirs] == [f"users/{other.user_id}"]


async def test_deleting_a_custom_role_tells_each_holder(identity: IdentityHarness) -> None:
    admin = await fresh_admin(identity)
    md = identity.bearer(await identity.token(admin))
    role = await identity.access.CreateRole(
        ac.CreateRoleRequest(
            role=resources_pb2.Role(name="events-readers", permissions=["events.watch"])
        ),
        metadata=md,
    )
    holders = []
    for _ in range(2):
        user = await identity.create_user(admin)
        await identity.access.CreateRoleBinding(
            ac.CreateRoleBindingRequest(
                role_binding=resources_pb2.RoleBinding(user_id=user.user_id, role_id=role.id)
            ),
            metadata=md,
        )
        holders.append(user.user_id)
    _, cursor = await watch_until(stub(identity), md, 5)  # admin, 2 x (created, roles_changed)
    await identity.access.DeleteRole(ac.DeleteRoleRequest(role_id=role.id), metadata=md)
    events, _ = await watch_until(stub(identity), md, 2, cursor=cursor)
    assert sorted((e.subject, e.type) for e in events) == sorted(
        (f"users/{h}", "cardinsa.identity.user.roles_changed.v1") for h in holders
    )
    assert all(list(payload(e).user.roles) == [] for e in events)
