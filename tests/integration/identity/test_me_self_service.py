"""Self-service (MeService) over real gRPC and PostgreSQL: a user with the
built-in role holding the fewest permissions reads and changes their own
profile, password and sessions, and nothing of anyone else's."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import text
from support.grpc_errors import details, error_info, field_violations
from support.identity_harness import PASSWORD, Account, IdentityHarness

from cardinsa.identity.v1 import (
    auth_service_pb2,
    identity_service_pb2,
    me_service_pb2,
    me_service_pb2_grpc,
    resources_pb2,
)
from cardinsa_identity.domain.permissions import BUILT_IN_ROLES, SELF_SERVICE

NEW_PASSWORD = "a much better passphrase 77"


def _weakest_role() -> str:
    """The built-in role with the fewest permissions (billing-clerk today)."""
    return min(BUILT_IN_ROLES.values(), key=lambda r: len(r.permissions)).name


def _me(identity: IdentityHarness) -> me_service_pb2_grpc.MeServiceStub:
    return me_service_pb2_grpc.MeServiceStub(identity.channel)


async def _clerk(identity: IdentityHarness) -> Account:
    return await identity.create_user(identity.admin_a, roles=[_weakest_role()])


def _mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def _refused(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() is code, caught.value.details()
    return caught.value


async def test_the_weakest_role_reads_and_updates_its_own_profile(
    identity: IdentityHarness,
) -> None:
    assert BUILT_IN_ROLES[_weakest_role()].permissions >= SELF_SERVICE
    me = _me(identity)
    user = await _clerk(identity)
    auth = identity.bearer((await identity.login(user.email)).access_token)

    own = await me.GetMe(me_service_pb2.GetMeRequest(), metadata=auth)
    assert own.id == user.user_id
    assert own.email == user.email
    assert own.company_id == user.company_id
    assert list(own.roles) == [_weakest_role()]
    assert own.etag
    assert "password" not in str(own).lower()

    updated = await me.UpdateMe(
        me_service_pb2.UpdateMeRequest(
            user=resources_pb2.User(
                given_name="Grace",
                display_name="Rear Admiral",
                locale="en-US",
                etag=own.etag,
                # Not in the mask: ignored, like any field outside it.
                email="ignored@example.com",
            ),
            update_mask=_mask("given_name", "display_name", "locale"),
        ),
        metadata=auth,
    )
    assert (updated.given_name, updated.display_name, updated.locale) == (
        "Grace",
        "Rear Admiral",
        "en-US",
    )
    assert updated.email == user.email
    assert updated.etag != own.etag

    # A stale etag loses, as on UpdateUser.
    await _refused(
        me.UpdateMe(
            me_service_pb2.UpdateMeRequest(
                user=resources_pb2.User(family_name="Stale", etag=own.etag),
                update_mask=_mask("family_name"),
            ),
            metadata=auth,
        ),
        grpc.StatusCode.ABORTED,
    )
    # The same validation as UpdateUser.
    bad = await _refused(
        me.UpdateMe(
            me_service_pb2.UpdateMeRequest(
                user=resources_pb2.User(locale="not a locale!"), update_mask=_mask("locale")
            ),
            metadata=auth,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "user.locale" in field_violations(bad)

    # The change is audited as the user's own.
    admin = identity.bearer(await identity.token(identity.admin_a))
    events = await identity.identity.ListAuditEvents(
        identity_service_pb2.ListAuditEventsRequest(
            filter=f'entity_id = "{user.user_id}"', page_size=50
        ),
        metadata=admin,
    )
    update = next(e for e in events.audit_events if e.action == "user.update")
    assert update.actor_id == user.user_id


@pytest.mark.parametrize(
    ("path", "explains"),
    [
        ("email", "use ChangeMyEmail"),
        ("phone", "not self-editable yet"),
        ("state", "cannot be changed through UpdateMe"),
        ("roles", "cannot be changed through UpdateMe"),
        ("company_id", "cannot be changed through UpdateMe"),
        ("id", "cannot be changed through UpdateMe"),
        ("password_hash", "cannot be changed through UpdateMe"),
    ],
)
async def test_the_mask_cannot_reach_privileged_or_contact_fields(
    identity: IdentityHarness, path: str, explains: str
) -> None:
    me = _me(identity)
    user = await _clerk(identity)
    auth = identity.bearer((await identity.login(user.email)).access_token)
    before = await me.GetMe(me_service_pb2.GetMeRequest(), metadata=auth)
    error = await _refused(
        me.UpdateMe(
            me_service_pb2.UpdateMeRequest(
                user=resources_pb2.User(
                    given_name="Mallory",
                    email="mallory@example.com",
                    phone="+4915112345678",
                    company_id=str(uuid.uuid4()),
                    state=resources_pb2.User.ACTIVE,
                    roles=["company-admin"],
                ),
                update_mask=_mask("given_name", path),
            ),
            metadata=auth,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert error_info(error).reason == "FIELD_NOT_SELF_EDITABLE"
    violations = field_violations(error)
    assert list(violations) == ["update_mask.paths[1]"]
    assert explains in violations["update_mask.paths[1]"]
    after = await me.GetMe(me_service_pb2.GetMeRequest(), metadata=auth)
    assert after == before  # nothing changed, not even the allowed field


async def test_own_sessions_are_listed_and_ended_and_nobody_elses(
    identity: IdentityHarness,
) -> None:
    me = _me(identity)
    user = await _clerk(identity)
    first = await identity.login(user.email)
    second = await identity.login(user.email)
    auth = identity.bearer(first.access_token)
    # A peer in the same company and a user of another company.
    peer = await _clerk(identity)
    peer_pair = await identity.login(peer.email)
    stranger = await identity.create_user(identity.admin_b, roles=[_weakest_role()])
    stranger_pair = await identity.login(stranger.email)

    listed = await me.ListMySessions(me_service_pb2.ListMySessionsRequest(), metadata=auth)
    assert [s.id for s in listed.sessions] == [second.session_id, first.session_id]
    assert {s.user_id for s in listed.sessions} == {user.user_id}

    await me.RevokeMySession(
        me_service_pb2.RevokeMySessionRequest(session_id=second.session_id), metadata=auth
    )
    await _refused(
        identity.auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=second.refresh_token)
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    listed = await me.ListMySessions(me_service_pb2.ListMySessionsRequest(), metadata=auth)
    assert [s.id for s in listed.sessions] == [first.session_id]
    shown = await me.ListMySessions(
        me_service_pb2.ListMySessionsRequest(show_revoked=True), metadata=auth
    )
    revoked = next(s for s in shown.sessions if s.id == second.session_id)
    assert revoked.revoke_reason == "revoked_by_user"

    # Another user's session, of the same or another company, a made-up id and
    # a malformed one all get the same NOT_FOUND: nothing to enumerate.
    answers = []
    for session_id in (
        peer_pair.session_id,
        stranger_pair.session_id,
        str(uuid.uuid4()),
        "not-a-uuid",
    ):
        error = await _refused(
            me.RevokeMySession(
                me_service_pb2.RevokeMySessionRequest(session_id=session_id), metadata=auth
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        answers.append((error_info(error).reason, error.details().replace(session_id, "ID")))
    assert len(set(answers)) == 1, answers
    # ... and those sessions live on.
    for pair in (peer_pair, stranger_pair):
        assert (
            await identity.auth.RefreshToken(
                auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
            )
        ).access_token


async def test_change_my_password_revokes_every_session(identity: IdentityHarness) -> None:
    me = _me(identity)
    user = await _clerk(identity)
    first = await identity.login(user.email)
    second = await identity.login(user.email)
    auth = identity.bearer(first.access_token)

    # The password policy applies (the same rules as everywhere).
    weak = await _refused(
        me.ChangeMyPassword(
            me_service_pb2.ChangeMyPasswordRequest(current_password=PASSWORD, new_password="short"),
            metadata=auth,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "new_password" in field_violations(weak)

    await me.ChangeMyPassword(
        me_service_pb2.ChangeMyPasswordRequest(
            current_password=PASSWORD, new_password=NEW_PASSWORD
        ),
        metadata=auth,
    )
    # Every session ends, the one that made the change included.
    for pair in (first, second):
        await _refused(
            identity.auth.RefreshToken(
                auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
            ),
            grpc.StatusCode.UNAUTHENTICATED,
        )
    await _refused(
        me.GetMe(me_service_pb2.GetMeRequest(), metadata=auth), grpc.StatusCode.UNAUTHENTICATED
    )
    await _refused(identity.login(user.email), grpc.StatusCode.UNAUTHENTICATED)
    fresh = await identity.login(user.email, NEW_PASSWORD)
    own = await me.GetMe(
        me_service_pb2.GetMeRequest(), metadata=identity.bearer(fresh.access_token)
    )
    assert own.id == user.user_id


async def _failures(identity: IdentityHarness, email: str) -> int:
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as db:
        found = await db.scalar(
            text(
                "SELECT failures FROM identity.login_throttles"
                " WHERE scope = 'account' AND key = :email"
            ),
            {"email": email},
        )
    return int(found or 0)


async def test_a_wrong_current_password_counts_like_a_failed_login(
    identity: IdentityHarness,
) -> None:
    me = _me(identity)
    user = await _clerk(identity)
    auth = identity.bearer((await identity.login(user.email)).access_token)
    assert await _failures(identity, user.email) == 0
    wrong = await _refused(
        me.ChangeMyPassword(
            me_service_pb2.ChangeMyPasswordRequest(
                current_password="wrong one 123456", new_password=NEW_PASSWORD
            ),
            metadata=auth,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert error_info(wrong).reason == "WRONG_CURRENT_PASSWORD"
    assert "current_password" in field_violations(wrong)
    assert await _failures(identity, user.email) == 1
    # Beyond the login limit the account is locked for a while, as after failed
    # logins: even the right password is refused with RESOURCE_EXHAUSTED.
    limit = identity.settings.login_max_failures_per_account
    codes = []
    for _ in range(limit):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await me.ChangeMyPassword(
                me_service_pb2.ChangeMyPasswordRequest(
                    current_password="wrong one 123456", new_password=NEW_PASSWORD
                ),
                metadata=auth,
            )
        codes.append(caught.value.code())
    assert codes[-1] is grpc.StatusCode.RESOURCE_EXHAUSTED, codes
    locked = await _refused(
        me.ChangeMyPassword(
            me_service_pb2.ChangeMyPasswordRequest(
                current_password=PASSWORD, new_password=NEW_PASSWORD
            ),
            metadata=auth,
        ),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert "RetryInfo" in details(locked)
    await _refused(identity.login(user.email), grpc.StatusCode.RESOURCE_EXHAUSTED)


async def test_a_service_account_has_no_self(identity: IdentityHarness) -> None:
    """An API key's token is refused by every MeService method (PERMISSION_DENIED,
    NOT_A_USER), even when the key was given the me.* permissions."""
    me = _me(identity)
    key = await identity.service_key(f"selfless-{uuid.uuid4().hex[:6]}", *sorted(SELF_SERVICE))
    token = (
        await identity.auth.ExchangeApiKey(auth_service_pb2.ExchangeApiKeyRequest(api_key=key))
    ).access_token
    auth = identity.bearer(token)
    for call in (
        me.GetMe(me_service_pb2.GetMeRequest(), metadata=auth),
        me.UpdateMe(
            me_service_pb2.UpdateMeRequest(
                user=resources_pb2.User(given_name="Bot"), update_mask=_mask("given_name")
            ),
            metadata=auth,
        ),
        me.ChangeMyPassword(
            me_service_pb2.ChangeMyPasswordRequest(
                current_password=PASSWORD, new_password=NEW_PASSWORD
            ),
            metadata=auth,
        ),
        me.ListMySessions(me_service_pb2.ListMySessionsRequest(), metadata=auth),
        me.RevokeMySession(
            me_service_pb2.RevokeMySessionRequest(session_id=str(uuid.uuid4())), metadata=auth
        ),
    ):
        error = await _refused(call, grpc.StatusCode.PERMISSION_DENIED)
        assert error_info(error).reason == "NOT_A_USER"


async def test_an_admin_without_self_service_still_acts_on_a_viewer(
    identity: IdentityHarness,
) -> None:
    """me.* act only on their holder: a custom helpdesk role without them still
    passes the privilege rule against a viewer (who holds them by the built-in
    role) and may grant the viewer role."""
    from cardinsa.identity.v1 import access_service_pb2, user_service_pb2

    admin = identity.bearer(await identity.token(identity.admin_a))
    viewer_permissions = BUILT_IN_ROLES["viewer"].permissions - SELF_SERVICE
    role = await identity.access.CreateRole(
        access_service_pb2.CreateRoleRequest(
            role=resources_pb2.Role(
                name=f"helpdesk-{uuid.uuid4().hex[:6]}",
                permissions=sorted(viewer_permissions | {"users.update", "role_bindings.create"}),
            )
        ),
        metadata=admin,
    )
    helper = await identity.create_user(identity.admin_a, roles=[role.name])
    viewer = await identity.create_user(identity.admin_a, roles=["viewer"])
    helper_auth = identity.bearer(await identity.token(helper))
    changed = await identity.users.UpdateUser(
        user_service_pb2.UpdateUserRequest(
            user=resources_pb2.User(id=viewer.user_id, given_name="Helped"),
            update_mask=_mask("given_name"),
        ),
        metadata=helper_auth,
    )
    assert changed.given_name == "Helped"
    other = await identity.create_user(identity.admin_a)
    await identity.bind(helper, other.user_id, "viewer")
    # The helpdesk user has no self-service of its own.
    await _refused(
        _me(identity).GetMe(me_service_pb2.GetMeRequest(), metadata=helper_auth),
        grpc.StatusCode.PERMISSION_DENIED,
    )
