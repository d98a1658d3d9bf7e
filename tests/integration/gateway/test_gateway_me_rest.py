"""Self-service over REST through the real Envoy gateway: /v1/me, PATCH with an
update mask, :changePassword, /v1/me/sessions and :revoke, as a user of the
built-in role with the fewest permissions."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from support.gateway_harness import Gateway, Reply
from support.identity_harness import PASSWORD, IdentityHarness

from cardinsa_identity.domain.permissions import BUILT_IN_ROLES

pytestmark = pytest.mark.asyncio(loop_scope="session")

_ADDRESSES = itertools.count(1)
NEW_PASSWORD = "rest passphrase is better 88"


def _client() -> str:
    return f"203.0.113.{next(_ADDRESSES)}"


async def _login(gateway: Gateway, email: str, password: str = PASSWORD) -> Reply:
    return await gateway.request(
        "POST", "/v1/auth:login", {"email": email, "password": password}, client=_client()
    )


def _error(reply: Reply, status: int, code: int) -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.body)
    body: dict[str, Any] = reply.json()
    assert body["code"] == code, body
    assert reply.grpc_headers() == []
    return body


def _reason(body: dict[str, Any]) -> str:
    return next(d["reason"] for d in body["details"] if d["@type"].endswith("ErrorInfo"))


async def test_self_service_over_rest(gateway: Gateway, identity: IdentityHarness) -> None:
    weakest = min(BUILT_IN_ROLES.values(), key=lambda r: len(r.permissions)).name
    user = await identity.create_user(identity.admin_a, roles=[weakest])
    first = (await _login(gateway, user.email)).json()
    second = (await _login(gateway, user.email)).json()
    token = first["access_token"]

    me = await gateway.request("GET", "/v1/me", token=token)
    assert me.status == 200, me.body
    profile = me.json()
    assert profile["id"] == user.user_id
    assert profile["email"] == user.email
    assert profile["roles"] == [weakest]
    assert me.header("cache-control") == "no-store"

    patched = await gateway.request(
        "PATCH",
        "/v1/me?update_mask=given_name,locale",
        {"given_name": "Rosalind", "locale": "en-GB", "etag": profile["etag"]},
        token=token,
    )
    assert patched.status == 200, patched.body
    assert patched.json()["given_name"] == "Rosalind"
    assert patched.json()["locale"] == "en-GB"

    # The mask cannot reach the email, nor roles or state.
    for path in ("email", "roles", "state"):
        refused = _error(
            await gateway.request(
                "PATCH",
                f"/v1/me?update_mask={path}",
                {"email": "mallory@example.com", "roles": ["company-admin"], "state": "ACTIVE"},
                token=token,
            ),
            400,
            3,
        )
        assert _reason(refused) == "FIELD_NOT_SELF_EDITABLE"
        bad = next(d for d in refused["details"] if d["@type"].endswith("BadRequest"))
        assert bad["field_violations"][0]["field"] == "update_mask.paths[0]"
    assert (await gateway.request("GET", "/v1/me", token=token)).json()["email"] == user.email

    sessions = await gateway.request("GET", "/v1/me/sessions", token=token)
    assert sessions.status == 200, sessions.body
    assert [s["id"] for s in sessions.json()["sessions"]] == [
        second["session_id"],
        first["session_id"],
    ]
    ended = await gateway.request(
        "POST", f"/v1/me/sessions/{second['session_id']}:revoke", {}, token=token
    )
    assert ended.status == 200, ended.body
    again = await gateway.request(
        "POST", "/v1/auth:refresh", {"refresh_token": second["refresh_token"]}, client=_client()
    )
    _error(again, 401, 16)

    # Another user's session: 404, as an id that does not exist.
    other = await identity.create_user(identity.admin_a, roles=[weakest])
    other_session = (await _login(gateway, other.email)).json()["session_id"]
    for session_id in (other_session, str(uuid.uuid4())):
        _error(
            await gateway.request("POST", f"/v1/me/sessions/{session_id}:revoke", {}, token=token),
            404,
            5,
        )

    wrong = _error(
        await gateway.request(
            "POST",
            "/v1/me:changePassword",
            {"current_password": "not the password 1", "new_password": NEW_PASSWORD},
            token=token,
        ),
        400,
        3,
    )
    assert _reason(wrong) == "WRONG_CURRENT_PASSWORD"
    changed = await gateway.request(
        "POST",
        "/v1/me:changePassword",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        token=token,
    )
    assert changed.status == 200, changed.body
    _error(await gateway.request("GET", "/v1/me", token=token), 401, 16)
    _error(await _login(gateway, user.email), 401, 16)
    fresh = await _login(gateway, user.email, NEW_PASSWORD)
    assert fresh.status == 200, fresh.body
    assert (
        await gateway.request("GET", "/v1/me", token=fresh.json()["access_token"])
    ).status == 200
