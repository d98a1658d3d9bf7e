"""Service accounts and API keys over real gRPC: how services call each other.

A key is shown once, stored hashed, scoped to permissions its issuer holds,
exchanged for a short-lived access token that carries exactly those permissions,
and stops working when revoked, expired or when its service account is deleted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import json_format, timestamp_pb2
from sqlalchemy import select
from support.grpc_errors import error_info, field_violations
from support.identity_harness import Account, IdentityHarness

from cardinsa.identity.v1 import (
    access_service_pb2,
    auth_service_pb2,
    identity_service_pb2,
    resources_pb2,
    user_service_pb2,
)
from cardinsa_identity.application.bootstrap import issue_service_key
from cardinsa_identity.repository.models import ApiKeyRow

Metadata = list[tuple[str, str]]


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def failure(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def admin_metadata(identity: IdentityHarness, admin: Account) -> Metadata:
    return identity.bearer(await identity.token(admin))


async def create_service_account(identity: IdentityHarness, metadata: Metadata) -> Any:
    return await identity.access.CreateServiceAccount(
        access_service_pb2.CreateServiceAccountRequest(
            service_account=resources_pb2.ServiceAccount(
                name=f"svc-{uuid.uuid4().hex[:10]}", description="integration test"
            )
        ),
        metadata=metadata,
    )


def create_api_key(
    identity: IdentityHarness,
    metadata: Metadata,
    account_id: str,
    permissions: list[str],
    *,
    expire_time: datetime | None = None,
) -> Awaitable[Any]:
    key = resources_pb2.ApiKey(display_name="test key", permissions=permissions)
    if expire_time is not None:
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(expire_time)
        key.expire_time.CopyFrom(stamp)
    return identity.access.CreateApiKey(
        access_service_pb2.CreateApiKeyRequest(service_account_id=account_id, api_key=key),
        metadata=metadata,
    )


def exchange(identity: IdentityHarness, secret: str) -> Awaitable[Any]:
    return identity.auth.ExchangeApiKey(auth_service_pb2.ExchangeApiKeyRequest(api_key=secret))


async def list_keys(identity: IdentityHarness, metadata: Metadata, account_id: str) -> Any:
    return await identity.access.ListApiKeys(
        access_service_pb2.ListApiKeysRequest(service_account_id=account_id, page_size=100),
        metadata=metadata,
    )


async def audit_events(identity: IdentityHarness, metadata: Metadata, entity_id: str) -> list[Any]:
    page = await identity.identity.ListAuditEvents(
        identity_service_pb2.ListAuditEventsRequest(
            filter=f'entity_id = "{entity_id}"', page_size=50
        ),
        metadata=metadata,
    )
    return list(page.audit_events)


async def test_api_key_is_shown_once_and_exchanged_for_a_scoped_service_token(
    identity: IdentityHarness,
) -> None:
    admin = await admin_metadata(identity, identity.admin_a)
    account = await create_service_account(identity, admin)
    assert account.company_id == identity.admin_a.company_id
    created = await create_api_key(identity, admin, account.id, ["users.list", "users.get"])
    key, secret = created.api_key, created.secret
    assert secret.startswith(f"cdk_{key.prefix}_")
    assert len(secret) > len(f"cdk_{key.prefix}_") + 40
    assert key.service_account_id == account.id
    assert list(key.permissions) == ["users.get", "users.list"]
    assert not key.HasField("last_use_time") and not key.HasField("revoke_time")

    # Listing never shows the secret again (nor any part of it past the prefix).
    hidden = secret.rsplit("_", 1)[1]
    listed = await list_keys(identity, admin, account.id)
    assert [k.id for k in listed.api_keys] == [key.id]
    assert hidden not in json_format.MessageToJson(listed)
    assert hidden.encode() not in listed.SerializeToString()

    # The database holds a hash, not the secret.
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        row = (
            await session.scalars(select(ApiKeyRow).where(ApiKeyRow.id == uuid.UUID(key.id)))
        ).one()
        stored = {c.key: getattr(row, c.key) for c in ApiKeyRow.__table__.columns}
    assert row.prefix == key.prefix
    assert all(hidden not in str(value) for value in stored.values()), stored

    # Exchange: an access token for the service account, with exactly the key's permissions.
    pair = await exchange(identity, secret)
    assert pair.refresh_token == ""
    assert pair.session_id == ""
    token = claims(pair.access_token)
    assert token["kind"] == "service_account"
    assert token["sub"] == account.id
    assert token["cid"] == identity.admin_a.company_id
    assert token["perms"] == ["users.get", "users.list"]
    assert token["roles"] == []
    # The key's id as its session: revoking the key revokes its tokens.
    assert token["sid"] == key.id
    assert token["exp"] - token["iat"] == identity.settings.access_token_ttl_s
    service = identity.bearer(pair.access_token)

    # It works for what it was granted, in its own company only ...
    users = await identity.users.ListUsers(
        user_service_pb2.ListUsersRequest(filter=f'email = "{identity.admin_a.email}"'),
        metadata=service,
    )
    assert [u.id for u in users.users] == [identity.admin_a.user_id]
    everyone = await identity.users.ListUsers(
        user_service_pb2.ListUsersRequest(page_size=100), metadata=service
    )
    assert {u.company_id for u in everyone.users} == {identity.admin_a.company_id}
    error = await failure(
        identity.users.GetUser(
            user_service_pb2.GetUserRequest(user_id=identity.admin_b.user_id), metadata=service
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND

    # ... and is refused for anything else.
    for call in (
        identity.users.CreateUser(
            user_service_pb2.CreateUserRequest(
                user=resources_pb2.User(email=f"x-{uuid.uuid4().hex[:8]}@example.com"),
                password="correct horse battery staple 42",
            ),
            metadata=service,
        ),
        identity.identity.ListAuditEvents(
            identity_service_pb2.ListAuditEventsRequest(), metadata=service
        ),
        create_api_key(identity, service, account.id, ["users.get"]),
    ):
        assert (await failure(call)).code() is grpc.StatusCode.PERMISSION_DENIED

    # The exchange is recorded on the key.
    used = (await list_keys(identity, admin, account.id)).api_keys[0]
    assert used.HasField("last_use_time")


async def test_a_wrong_or_revoked_key_cannot_be_exchanged(identity: IdentityHarness) -> None:
    admin = await admin_metadata(identity, identity.admin_a)
    account = await create_service_account(identity, admin)
    created = await create_api_key(identity, admin, account.id, ["users.get"])
    secret = created.secret
    assert (await exchange(identity, secret)).access_token

    prefix_part, hidden = secret.rsplit("_", 1)
    tampered = f"{prefix_part}_{'A' if hidden[0] != 'A' else 'B'}{hidden[1:]}"
    for bad in (tampered, f"cdk_{'z' * 10}_{hidden}", secret + "x", "not-a-key"):
        error = await failure(exchange(identity, bad))
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED, bad
        assert error_info(error).reason == "INVALID_API_KEY"

    revoked = await identity.access.RevokeApiKey(
        access_service_pb2.RevokeApiKeyRequest(
            service_account_id=account.id, api_key_id=created.api_key.id
        ),
        metadata=admin,
    )
    assert revoked.HasField("revoke_time")
    error = await failure(exchange(identity, secret))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_info(error).reason == "INVALID_API_KEY"
    listed = await list_keys(identity, admin, account.id)
    assert listed.api_keys[0].HasField("revoke_time")


async def test_an_expired_key_cannot_be_exchanged(identity: IdentityHarness) -> None:
    admin = await admin_metadata(identity, identity.admin_a)
    account = await create_service_account(identity, admin)
    expire = datetime.now(UTC) + timedelta(seconds=2)
    created = await create_api_key(identity, admin, account.id, ["users.get"], expire_time=expire)
    assert abs(created.api_key.expire_time.ToDatetime(UTC) - expire) < timedelta(milliseconds=1)
    assert (await exchange(identity, created.secret)).access_token

    await asyncio.sleep(max(0.0, (expire - datetime.now(UTC)).total_seconds()) + 0.3)
    error = await failure(exchange(identity, created.secret))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_info(error).reason == "INVALID_API_KEY"

    # A key cannot be created already expired.
    error = await failure(
        create_api_key(
            identity,
            admin,
            account.id,
            ["users.get"],
            expire_time=datetime.now(UTC) - timedelta(seconds=1),
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "api_key.expire_time" in field_violations(error)


async def test_a_key_cannot_carry_permissions_its_issuer_does_not_hold(
    identity: IdentityHarness,
) -> None:
    admin = await admin_metadata(identity, identity.admin_a)

    # A delegate who may manage keys but holds only users.get.
    role = await identity.access.CreateRole(
        access_service_pb2.CreateRoleRequest(
            role=resources_pb2.Role(
                name=f"keys-{uuid.uuid4().hex[:10]}",
                permissions=["service_accounts.create", "api_keys.create", "users.get"],
            )
        ),
        metadata=admin,
    )
    delegate = await identity.create_user(identity.admin_a)
    await identity.access.CreateRoleBinding(
        access_service_pb2.CreateRoleBindingRequest(
            role_binding=resources_pb2.RoleBinding(user_id=delegate.user_id, role_id=role.id)
        ),
        metadata=admin,
    )
    metadata = identity.bearer(await identity.token(delegate))
    account = await create_service_account(identity, metadata)

    error = await failure(
        create_api_key(identity, metadata, account.id, ["users.get", "users.list"])
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(error)) == {"api_key.permissions[1]"}

    # Not even a company admin can put a platform permission or an unknown one in a key.
    error = await failure(
        create_api_key(identity, admin, account.id, ["signing_keys.rotate", "users.get", "x.y"])
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(error)) == {"api_key.permissions[0]", "api_key.permissions[2]"}

    # Nothing was issued; within what the delegate holds, it works.
    assert list((await list_keys(identity, admin, account.id)).api_keys) == []
    created = await create_api_key(identity, metadata, account.id, ["users.get"])
    assert claims((await exchange(identity, created.secret)).access_token)["perms"] == ["users.get"]


async def test_deleting_the_service_account_stops_its_keys(identity: IdentityHarness) -> None:
    admin = await admin_metadata(identity, identity.admin_a)
    account = await create_service_account(identity, admin)
    first = await create_api_key(identity, admin, account.id, ["users.get"])
    second = await create_api_key(identity, admin, account.id, ["users.list"])
    assert (await exchange(identity, first.secret)).access_token

    deleted = await identity.access.DeleteServiceAccount(
        access_service_pb2.DeleteServiceAccountRequest(service_account_id=account.id),
        metadata=admin,
    )
    assert deleted.HasField("delete_time")
    for secret in (first.secret, second.secret):
        error = await failure(exchange(identity, secret))
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    keys = (await list_keys(identity, admin, account.id)).api_keys
    assert len(keys) == 2 and all(k.HasField("revoke_time") for k in keys)

    error = await failure(create_api_key(identity, admin, account.id, ["users.get"]))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    listed = await identity.access.ListServiceAccounts(
        access_service_pb2.ListServiceAccountsRequest(page_size=100), metadata=admin
    )
    assert account.id not in {a.id for a in listed.service_accounts}

    event = next(
        e
        for e in await audit_events(identity, admin, account.id)
        if e.action == "service_account.delete"
    )
    assert event.detail["keys_revoked"] == 2


async def test_another_companys_service_accounts_and_keys_are_out_of_reach(
    identity: IdentityHarness,
) -> None:
    admin_a = await admin_metadata(identity, identity.admin_a)
    admin_b = await admin_metadata(identity, identity.admin_b)
    account = await create_service_account(identity, admin_a)
    key = (await create_api_key(identity, admin_a, account.id, ["users.get"])).api_key

    async def answers(account_id: str, key_id: str) -> list[tuple[grpc.StatusCode, str]]:
        calls = [
            identity.access.GetServiceAccount(
                access_service_pb2.GetServiceAccountRequest(service_account_id=account_id),
                metadata=admin_b,
            ),
            identity.access.ListApiKeys(
                access_service_pb2.ListApiKeysRequest(service_account_id=account_id),
                metadata=admin_b,
            ),
            create_api_key(identity, admin_b, account_id, ["users.get"]),
            identity.access.RevokeApiKey(
                access_service_pb2.RevokeApiKeyRequest(
                    service_account_id=account_id, api_key_id=key_id
                ),
                metadata=admin_b,
            ),
            identity.access.DeleteServiceAccount(
                access_service_pb2.DeleteServiceAccountRequest(service_account_id=account_id),
                metadata=admin_b,
            ),
        ]
        result = []
        for call in calls:
            error = await failure(call)
            result.append((error.code(), error_info(error).reason))
        return result

    theirs = await answers(account.id, key.id)
    assert theirs == await answers(str(uuid.uuid4()), str(uuid.uuid4()))
    assert {code for code, _ in theirs} == {grpc.StatusCode.NOT_FOUND}
    listed = await identity.access.ListServiceAccounts(
        access_service_pb2.ListServiceAccountsRequest(page_size=100), metadata=admin_b
    )
    assert account.id not in {a.id for a in listed.service_accounts}

    # Company A's account and key are untouched.
    fetched = await identity.access.GetServiceAccount(
        access_service_pb2.GetServiceAccountRequest(service_account_id=account.id),
        metadata=admin_a,
    )
    assert not fetched.HasField("delete_time")
    assert not (await list_keys(identity, admin_a, account.id)).api_keys[0].HasField("revoke_time")


async def test_key_creation_and_revocation_are_audited_without_the_secret(
    identity: IdentityHarness,
) -> None:
    admin = await admin_metadata(identity, identity.admin_a)
    account = await create_service_account(identity, admin)
    created = await create_api_key(
        identity,
        admin,
        account.id,
        ["users.get"],
        expire_time=datetime.now(UTC) + timedelta(days=1),
    )
    await exchange(identity, created.secret)
    await identity.access.RevokeApiKey(
        access_service_pb2.RevokeApiKeyRequest(
            service_account_id=account.id, api_key_id=created.api_key.id
        ),
        metadata=admin,
    )
    events = await audit_events(identity, admin, created.api_key.id)
    by_action = {e.action: e for e in events}
    assert set(by_action) == {"api_key.create", "api_key.revoke"}
    for event in events:
        assert event.actor_id == identity.admin_a.user_id
        assert event.company_id == identity.admin_a.company_id
        assert event.detail["service_account_id"] == account.id
        assert event.detail["prefix"] == created.api_key.prefix
    assert list(by_action["api_key.create"].detail["permissions"]) == ["users.get"]

    # The secret is nowhere in the company's audit log.
    hidden = created.secret.split("_", 2)[2]  # cdk_<prefix>_<secret>; the secret may hold "_"
    page = await identity.identity.ListAuditEvents(
        identity_service_pb2.ListAuditEventsRequest(page_size=100), metadata=admin
    )
    text = json_format.MessageToJson(page)
    assert created.api_key.prefix in text
    assert hidden not in text and created.secret not in text
    service_account_events = await audit_events(identity, admin, account.id)
    assert [e.action for e in service_account_events] == ["service_account.create"]


async def test_a_key_without_expiry_gets_the_maximum_lifetime(identity: IdentityHarness) -> None:
    admin = await admin_metadata(identity, identity.admin_a)
    account = await create_service_account(identity, admin)
    maximum = timedelta(seconds=identity.settings.api_key_max_lifetime_s)
    assert maximum == timedelta(days=365)  # the default

    before = datetime.now(UTC)
    created = await create_api_key(identity, admin, account.id, ["users.get"])
    after = datetime.now(UTC)
    expire = created.api_key.expire_time.ToDatetime(UTC)
    assert before + maximum - timedelta(seconds=1) <= expire <= after + maximum
    listed = await list_keys(identity, admin, account.id)
    assert listed.api_keys[0].expire_time.ToDatetime(UTC) == expire

    # Exactly the maximum (give or take the call's duration) is fine ...
    at_limit = await create_api_key(
        identity, admin, account.id, ["users.get"], expire_time=datetime.now(UTC) + maximum
    )
    assert at_limit.secret.startswith("cdk_")
    # ... a day more is refused, naming the maximum.
    error = await failure(
        create_api_key(
            identity,
            admin,
            account.id,
            ["users.get"],
            expire_time=datetime.now(UTC) + maximum + timedelta(days=1),
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    description = field_violations(error)["api_key.expire_time"]
    assert "at most 365 days from now" in description


async def test_a_service_key_from_the_cli_also_expires(identity: IdentityHarness) -> None:
    """`cardinsa_identity.cli create-service-key` (core's key) gets the maximum
    lifetime too: no key lives forever."""
    maximum = timedelta(seconds=identity.settings.api_key_max_lifetime_s)
    before = datetime.now(UTC)
    full_key = await issue_service_key(
        identity.app.ctx,
        company_id=uuid.UUID(identity.platform_admin.company_id),
        name=f"svc-{uuid.uuid4().hex[:10]}",
        permissions=["companies.get_status"],
    )
    prefix = full_key.split("_", 2)[1]
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        row = (await session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix))).one()
    assert row.expire_time is not None
    assert before + maximum - timedelta(seconds=1) <= row.expire_time <= datetime.now(UTC) + maximum
