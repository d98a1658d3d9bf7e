"""A revoked token through the real gateway: Envoy's jwt_authn accepts it (it
checks signature and expiry only), the service behind it refuses it, and the
REST client sees 401 with reason TOKEN_REVOKED in the JSON error."""

from __future__ import annotations

import asyncio
import time
import uuid

from support.gateway_harness import Gateway
from support.identity_harness import PASSWORD, IdentityHarness, unique_email

from cardinsa.identity.v1 import user_service_pb2
from cardinsa_identity.application.bootstrap import ensure_user_with_role

BOUND_S = 5.0


async def test_a_locked_users_token_gets_401_token_revoked_through_the_gateway(
    gateway: Gateway, identity: IdentityHarness
) -> None:
    created = await ensure_user_with_role(
        identity.app.ctx,
        email=unique_email("gateway-revoked"),
        password=PASSWORD,
        company_id=uuid.UUID(identity.admin_a.company_id),
        role_name="viewer",
    )
    token = (await identity.login(created.email)).access_token
    path = f"/v1/users/{created.user_id}"
    assert (await gateway.request("GET", path, token=token)).status == 200

    admin = identity.bearer(await identity.token(identity.admin_a))
    await identity.users.LockUser(
        user_service_pb2.LockUserRequest(user_id=str(created.user_id)), metadata=admin
    )
    started = time.monotonic()
    while True:
        reply = await gateway.request("GET", path, token=token)
        if reply.status != 200:
            break
        assert time.monotonic() - started < BOUND_S, "the locked user's token still works"
        await asyncio.sleep(0.02)
    assert reply.status == 401, (reply.status, reply.body)
    body = reply.json()
    assert body["code"] == 16  # UNAUTHENTICATED
    reasons = [d.get("reason") for d in body.get("details", []) if "ErrorInfo" in d["@type"]]
    assert reasons == ["TOKEN_REVOKED"], body
