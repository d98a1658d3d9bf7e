"""Attack suite: a token kept after its access ended, against every target.

The attacker holds a genuine access token of a user and keeps using it after
the account was locked, the session logged out, or the role taken away. Every
service must refuse it (UNAUTHENTICATED, TOKEN_REVOKED) within seconds, long
before the token expires (identity's revocations, streamed to each service;
each target here follows them as in production). The probe is first sent with
the token while it is still good, so the refusal is known to come from the
revocation.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc
import pytest
from hostile_attacks import AttackLog
from hostile_harness import TARGET_SPECS, ServiceTarget, Tenant, Tenants
from support.grpc_errors import error_info
from support.identity_harness import PASSWORD, IdentityHarness, unique_email
from support.request_fuzz import CallResult, call_rpc

from cardinsa.identity.v1 import (
    access_service_pb2,
    auth_service_pb2,
    user_service_pb2,
)
from cardinsa_identity.application.bootstrap import ensure_user_with_role

TARGETS = [spec.name for spec in TARGET_SPECS]
#: The bound identity's revocations are held to (target ≤ 5 s).
BOUND_S = 5.0


@pytest.fixture(params=TARGETS)
def target(
    request: pytest.FixtureRequest, hostile_targets: dict[str, ServiceTarget]
) -> ServiceTarget:
    return hostile_targets[request.param]


async def _insider(
    identity: IdentityHarness, tenant: Tenant
) -> tuple[str, auth_service_pb2.TokenPair]:
    """A fresh company admin of the tenant (who may send the probe): id and tokens."""
    created = await ensure_user_with_role(
        identity.app.ctx,
        email=unique_email("hostile-insider"),
        password=PASSWORD,
        company_id=uuid.UUID(tenant.company_id),
        role_name="company-admin",
    )
    return str(created.user_id), await identity.login(created.email)


async def _probe(target: ServiceTarget, tenant: Tenant, token: str) -> CallResult:
    service, method, request = target.probe(tenant)
    return await call_rpc(
        target.channel,
        service,
        method,
        request,
        metadata=[("authorization", f"Bearer {token}")],
        deadline_s=20,
    )


async def _kept_token(
    attacks: AttackLog,
    name: str,
    target: ServiceTarget,
    tenant: Tenant,
    *,
    identity: IdentityHarness,
    end_access: Callable[[str, auth_service_pb2.TokenPair], Awaitable[None]],
) -> None:
    service, method, _ = target.probe(tenant)
    with attacks.attempt(name, f"{target.name} {service.name}/{method.name}"):
        user_id, pair = await _insider(identity, tenant)
        control = await _probe(target, tenant, pair.access_token)
        assert control.code is grpc.StatusCode.OK, f"the genuine token was refused: {control}"
        await end_access(user_id, pair)
        started = time.monotonic()
        while True:
            answer = await _probe(target, tenant, pair.access_token)
            if answer.code is grpc.StatusCode.UNAUTHENTICATED:
                assert answer.error is not None
                assert error_info(answer.error).reason == "TOKEN_REVOKED"
                return
            assert answer.code is grpc.StatusCode.OK, answer
            assert time.monotonic() - started < BOUND_S, (
                f"{name}: the token still worked {BOUND_S} s after its access ended"
            )
            await asyncio.sleep(0.02)


async def test_attack_token_of_a_locked_user_keeps_working(
    target: ServiceTarget, tenants: Tenants, identity: IdentityHarness, attacks: AttackLog
) -> None:
    tenant = tenants.attacker

    async def lock(user_id: str, _: auth_service_pb2.TokenPair) -> None:
        await identity.users.LockUser(
            user_service_pb2.LockUserRequest(user_id=user_id, reason="attack suite"),
            metadata=tenant.bearer,
        )

    await _kept_token(
        attacks,
        "token of a locked user keeps working",
        target,
        tenant,
        identity=identity,
        end_access=lock,
    )


async def test_attack_token_of_a_logged_out_session_keeps_working(
    target: ServiceTarget, tenants: Tenants, identity: IdentityHarness, attacks: AttackLog
) -> None:
    tenant = tenants.attacker

    async def logout(_: str, pair: auth_service_pb2.TokenPair) -> None:
        await identity.auth.Logout(
            auth_service_pb2.LogoutRequest(refresh_token=pair.refresh_token),
            metadata=identity.bearer(pair.access_token),
        )

    await _kept_token(
        attacks,
        "token of a logged-out session keeps working",
        target,
        tenant,
        identity=identity,
        end_access=logout,
    )


async def test_attack_token_carrying_a_removed_role_keeps_working(
    target: ServiceTarget, tenants: Tenants, identity: IdentityHarness, attacks: AttackLog
) -> None:
    tenant = tenants.attacker

    async def unbind(user_id: str, _: auth_service_pb2.TokenPair) -> None:
        bindings = await identity.access.ListRoleBindings(
            access_service_pb2.ListRoleBindingsRequest(user_id=user_id), metadata=tenant.bearer
        )
        for binding in bindings.role_bindings:
            await identity.access.DeleteRoleBinding(
                access_service_pb2.DeleteRoleBindingRequest(role_binding_id=binding.id),
                metadata=tenant.bearer,
            )

    await _kept_token(
        attacks,
        "token carrying a removed role keeps working",
        target,
        tenant,
        identity=identity,
        end_access=unbind,
    )
