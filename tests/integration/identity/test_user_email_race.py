"""Two administrators creating or inviting a user with the same new email at the
same moment: both pass the "is it taken?" check before either commits, and the
unique index decides. Exactly one call creates the user; every other one is
ALREADY_EXISTS with reason EMAIL_TAKEN -- never INTERNAL."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from support.grpc_errors import error_info
from support.identity_harness import PASSWORD, IdentityHarness, unique_email

from cardinsa.identity.v1 import resources_pb2, user_service_pb2
from cardinsa_identity.application import invitations as invitations_module
from cardinsa_identity.application import users as users_module

CALLS = 6


async def test_concurrent_creates_and_invites_of_one_email_create_one_user(
    identity: IdentityHarness,
) -> None:
    email = unique_email()
    metadata = identity.bearer(await identity.token(identity.admin_a))

    def user() -> resources_pb2.User:
        return resources_pb2.User(email=email, given_name="Race")

    async def create() -> object:
        return await identity.users.CreateUser(
            user_service_pb2.CreateUserRequest(
                user=user(), password=PASSWORD, request_id=str(uuid.uuid4())
            ),
            metadata=metadata,
        )

    async def invite() -> object:
        return await identity.users.InviteUser(
            user_service_pb2.InviteUserRequest(user=user(), request_id=str(uuid.uuid4())),
            metadata=metadata,
        )

    calls = [create() if i % 2 == 0 else invite() for i in range(CALLS)]
    results = await asyncio.gather(*calls, return_exceptions=True)

    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(created) == 1, results
    for error in refused:
        assert isinstance(error, grpc.aio.AioRpcError), error
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS, (error.code(), error.details())
        assert error_info(error).reason == "EMAIL_TAKEN"


async def test_an_address_taken_between_the_check_and_the_insert_is_email_taken(
    identity: IdentityHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race made certain: the check is made to miss the user who holds the
    address (as if they committed just after it), so the INSERT itself hits the
    unique index."""
    taken = await identity.create_user(identity.admin_a)
    metadata = identity.bearer(await identity.token(identity.admin_a))

    async def never(ctx: object, email: str) -> bool:
        return False

    monkeypatch.setattr(users_module, "email_in_use", never)
    monkeypatch.setattr(invitations_module, "email_in_use", never)
    user = resources_pb2.User(email=taken.email, given_name="Late")
    for call in (
        identity.users.CreateUser(
            user_service_pb2.CreateUserRequest(
                user=user, password=PASSWORD, request_id=str(uuid.uuid4())
            ),
            metadata=metadata,
        ),
        identity.users.InviteUser(
            user_service_pb2.InviteUserRequest(user=user, request_id=str(uuid.uuid4())),
            metadata=metadata,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS, refused.value.details()
        assert error_info(refused.value).reason == "EMAIL_TAKEN"
