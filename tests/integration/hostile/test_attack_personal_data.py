"""Attack suite: the data-subject requests (ExportPersonalData, ErasePersonalData).

An export hands out everything about a person, national ids unmasked, and an
erasure destroys it: a low-privilege user of the same company (an agent, a
viewer, a user with no role) must be refused, and another company's admin --
who does hold both permissions, in its own company -- must find the victim's
policyholder exactly as if it did not exist. The victim's rows must not move.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from hostile_attacks import AttackLog
from hostile_harness import Database, ServiceTarget, Tenants
from support.gateway_harness import Gateway
from support.identity_harness import IdentityHarness
from support.rest import Reply, exchange

from cardinsa.core.v1 import policyholder_service_pb2 as hb
from cardinsa.core.v1 import policyholder_service_pb2_grpc

SCHEMAS = ("core",)


async def _code(call: object) -> str:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code().name
    return "OK"


async def test_attack_low_privilege_users_cannot_export_or_erase_personal_data(
    core_target: ServiceTarget,  # seeds a policyholder in each tenant
    tenants: Tenants,
    identity: IdentityHarness,
    hostile_db: Database,
    attacks: AttackLog,
) -> None:
    victim = tenants.victim
    holders = policyholder_service_pb2_grpc.PolicyholderServiceStub(core_target.channel)
    holder_id = victim.ids["policyholder_id"]
    with attacks.attempt(
        "export / erase personal data without the permission",
        "agent, viewer, underwriter, no role: ExportPersonalData, ErasePersonalData",
    ):
        before = await hostile_db.tenant_fingerprint(SCHEMAS, victim.company_id, frozenset())
        for roles in (["agent"], ["viewer"], ["underwriter"], []):
            account = await identity.create_user(victim.admin, roles=roles)
            md = identity.bearer(await identity.token(account))
            exported = await _code(
                holders.ExportPersonalData(
                    hb.ExportPersonalDataRequest(policyholder_id=holder_id), metadata=md
                )
            )
            erased = await _code(
                holders.ErasePersonalData(
                    hb.ErasePersonalDataRequest(policyholder_id=holder_id), metadata=md
                )
            )
            assert (exported, erased) == ("PERMISSION_DENIED", "PERMISSION_DENIED"), roles
        after = await hostile_db.tenant_fingerprint(SCHEMAS, victim.company_id, frozenset())
        assert before == after


@pytest.mark.parametrize("method", ["ExportPersonalData", "ErasePersonalData"])
async def test_attack_another_companys_admin_cannot_export_or_erase_its_people(
    method: str,
    core_target: ServiceTarget,  # seeds a policyholder in each tenant
    tenants: Tenants,
    hostile_db: Database,
    attacks: AttackLog,
) -> None:
    attacker, victim = tenants.attacker, tenants.victim
    holders = policyholder_service_pb2_grpc.PolicyholderServiceStub(core_target.channel)
    with attacks.attempt(
        "another company's policyholder in a data-subject request", f"core: {method}"
    ):
        before = await hostile_db.tenant_fingerprint(SCHEMAS, victim.company_id, frozenset())
        request = (
            hb.ExportPersonalDataRequest(policyholder_id=victim.ids["policyholder_id"])
            if method == "ExportPersonalData"
            else hb.ErasePersonalDataRequest(policyholder_id=victim.ids["policyholder_id"])
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await getattr(holders, method)(request, metadata=attacker.bearer)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert victim.ids["policyholder_id"] not in (caught.value.details() or "")
        # The same answer as for an id that exists nowhere.
        with pytest.raises(grpc.aio.AioRpcError) as nowhere:
            await getattr(holders, method)(
                type(request)(policyholder_id="00000000-0000-4000-8000-000000000000"),
                metadata=attacker.bearer,
            )
        assert nowhere.value.code() == caught.value.code()
        after = await hostile_db.tenant_fingerprint(SCHEMAS, victim.company_id, frozenset())
        assert before == after


async def test_attack_the_export_through_the_rest_gateway(
    hostile_gateway: Gateway, core_target: ServiceTarget, tenants: Tenants, attacks: AttackLog
) -> None:
    """Through Envoy's REST transcoding: the victim's admin gets the JSON export;
    the attacker's admin, and a call without a token, get nothing of it."""
    victim, attacker = tenants.victim, tenants.attacker
    path = f"/v1/policyholders/{victim.ids['policyholder_id']}:exportPersonalData"

    def post(token: str | None) -> Reply:
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return exchange(
            hostile_gateway.host, hostile_gateway.port, "POST", path, body=b"{}", headers=headers
        )

    with attacks.attempt("another company's export through REST", "core: POST :exportPersonalData"):
        own = await asyncio.to_thread(post, victim.token)
        assert own.status == 200, own.body[:200]
        data = own.json()["data"]
        assert data["policyholder"]["id"] == victim.ids["policyholder_id"]
        assert data["policies"] and "national_id" in data["policyholder"]
        foreign = await asyncio.to_thread(post, attacker.token)
        assert foreign.status == 404 and "data" not in foreign.json()
        anonymous = await asyncio.to_thread(post, None)
        assert anonymous.status == 401
        assert b"national_id" not in foreign.body + anonymous.body
