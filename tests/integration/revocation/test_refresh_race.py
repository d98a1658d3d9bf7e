"""A role removed while a refresh is between reading the roles and signing.

The refresh is held right after it read the user's roles (a hook around
``token_grants``); the role binding is deleted meanwhile; then the
refresh finishes. The token it returns must either not carry the removed role
or be covered by the removal's subject revocation (``iat`` before its
``not_before``): no token may carry a removed role and pass the check.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select, text
from support.identity_harness import IdentityHarness

from cardinsa.identity.v1 import access_service_pb2, auth_service_pb2
from cardinsa_identity.application import auth, roles
from cardinsa_identity.repository.models import RevocationRow


async def _not_before(identity: IdentityHarness, subject: str) -> float | None:
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        latest = await session.scalar(
            select(func.max(RevocationRow.not_before)).where(
                RevocationRow.kind == "subject", RevocationRow.target == subject
            )
        )
    return None if latest is None else latest.timestamp()


async def _a_lock_wait(identity: IdentityHarness) -> bool:
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        waiting = await session.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        )
    return bool(waiting)


async def _done_or_waiting(call: Any, identity: IdentityHarness) -> None:
    """Until ``call`` has finished or some transaction waits for an advisory lock."""
    while True:
        if call.done() or await _a_lock_wait(identity):
            return
        await asyncio.sleep(0.02)


async def test_a_binding_deleted_during_a_refresh_never_yields_a_passing_token_with_the_role(
    identity: IdentityHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin_token = await identity.token(identity.admin_a)
    user = await identity.create_user(identity.admin_a, roles=["underwriter"])
    pair = await identity.login(user.email)
    bindings = await identity.access.ListRoleBindings(
        access_service_pb2.ListRoleBindingsRequest(user_id=user.user_id),
        metadata=identity.bearer(admin_token),
    )
    (binding,) = bindings.role_bindings

    read = asyncio.Event()
    release = asyncio.Event()
    original = auth.token_grants

    async def held(
        session: Any, user_id: uuid.UUID, company_id: Any, amr: Any
    ) -> tuple[list[str], frozenset[str], frozenset[str]]:
        grants = await original(session, user_id, company_id, amr)
        if str(user_id) == user.user_id:
            read.set()
            await release.wait()
        return grants

    monkeypatch.setattr(auth, "token_grants", held)
    refresh = asyncio.ensure_future(
        identity.auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
        )
    )
    await read.wait()
    delete = asyncio.ensure_future(
        identity.access.DeleteRoleBinding(
            access_service_pb2.DeleteRoleBindingRequest(role_binding_id=binding.id),
            metadata=identity.bearer(admin_token),
        )
    )
    # The deletion either commits while the refresh is held, or waits for it.
    await _done_or_waiting(delete, identity)
    if delete.done():
        # Let the held refresh sign in a later whole second than the removal.
        await asyncio.sleep(math.floor(time.time()) + 1.05 - time.time())
    release.set()
    fresh = await refresh
    await delete

    claims = jwt.decode(fresh.access_token, options={"verify_signature": False})
    not_before = await _not_before(identity, user.user_id)
    assert not_before is not None
    assert "underwriter" not in claims["roles"] or claims["iat"] < not_before


async def test_a_refresh_during_an_uncommitted_removal_reads_the_roles_after_it(
    identity: IdentityHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The removal drew its ``not_before`` and is held before its commit; a
    refresh starting a whole second later must not read the roles the removal
    is taking away (it waits for the removal) -- else its token would carry the
    role with an ``iat`` past the removal's ``not_before``."""
    admin_token = await identity.token(identity.admin_a)
    user = await identity.create_user(identity.admin_a, roles=["underwriter"])
    pair = await identity.login(user.email)
    bindings = await identity.access.ListRoleBindings(
        access_service_pb2.ListRoleBindingsRequest(user_id=user.user_id),
        metadata=identity.bearer(admin_token),
    )
    (binding,) = bindings.role_bindings

    drawn = asyncio.Event()
    release = asyncio.Event()
    original = roles.revoke_subjects

    async def held(session: Any, subjects: Any, reason: str) -> int:
        recorded = await original(session, subjects, reason)
        drawn.set()
        await release.wait()
        return recorded

    monkeypatch.setattr(roles, "revoke_subjects", held)
    delete = asyncio.ensure_future(
        identity.access.DeleteRoleBinding(
            access_service_pb2.DeleteRoleBindingRequest(role_binding_id=binding.id),
            metadata=identity.bearer(admin_token),
        )
    )
    await drawn.wait()
    await asyncio.sleep(math.floor(time.time()) + 1.05 - time.time())
    refresh = asyncio.ensure_future(
        identity.auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
        )
    )
    await _done_or_waiting(refresh, identity)
    release.set()
    await delete
    fresh = await refresh

    claims = jwt.decode(fresh.access_token, options={"verify_signature": False})
    not_before = await _not_before(identity, user.user_id)
    assert not_before is not None
    assert "underwriter" not in claims["roles"] or claims["iat"] < not_before
