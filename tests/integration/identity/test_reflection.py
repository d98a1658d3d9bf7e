"""grpcurl against the running identity service: server reflection lists and
describes every RPC of the six identity services, and calls work through it."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from support.identity_harness import IdentityHarness
from support.tools import venv_tool

from cardinsa.identity.v1 import (
    access_service_pb2,
    auth_service_pb2,
    event_service_pb2,
    identity_service_pb2,
    me_service_pb2,
    user_service_pb2,
)

SERVICES = {
    "cardinsa.identity.v1.IdentityService": identity_service_pb2.DESCRIPTOR.services_by_name[
        "IdentityService"
    ],
    "cardinsa.identity.v1.AuthService": auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"],
    "cardinsa.identity.v1.UserService": user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
    "cardinsa.identity.v1.MeService": me_service_pb2.DESCRIPTOR.services_by_name["MeService"],
    "cardinsa.identity.v1.AccessService": access_service_pb2.DESCRIPTOR.services_by_name[
        "AccessService"
    ],
    "cardinsa.identity.v1.EventService": event_service_pb2.DESCRIPTOR.services_by_name[
        "EventService"
    ],
}
RPC = re.compile(
    r"^\s*rpc (\w+) \( (stream )?\.?([\w.]+) \) returns \( (stream )?\.?([\w.]+) \)", re.MULTILINE
)
TIMEOUT_S = 30.0


async def grpcurl(*args: str) -> str:
    """Run grpcurl; it is killed by its PID if it has not finished in time."""
    process = await asyncio.create_subprocess_exec(
        venv_tool("grpcurl"),
        "-plaintext",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_grpcurl_lists_the_identity_services(identity: IdentityHarness) -> None:
    listed = set((await grpcurl(identity.app.server.address, "list")).split())
    assert set(SERVICES) <= listed
    assert "grpc.health.v1.Health" in listed
    assert {s for s in listed if s.startswith("cardinsa.")} == set(SERVICES)


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_grpcurl_describes_every_rpc(identity: IdentityHarness, service: str) -> None:
    described = await grpcurl(identity.app.server.address, "describe", service)
    assert f"{service} is a service" in described
    found = {
        name: (input_type, output_type, bool(client_stream), bool(server_stream))
        for name, client_stream, input_type, server_stream, output_type in RPC.findall(described)
    }
    expected = {
        method.name: (
            method.input_type.full_name,
            method.output_type.full_name,
            method.client_streaming,
            method.server_streaming,
        )
        for method in SERVICES[service].methods
    }
    assert expected
    assert found == expected

    # Every request and response type resolves through reflection too.
    messages = sorted({t for i, o, _, _ in expected.values() for t in (i, o)})
    limit = asyncio.Semaphore(8)

    async def describe(message: str) -> str:
        async with limit:
            return await grpcurl(identity.app.server.address, "describe", message)

    for message, text in zip(
        messages, await asyncio.gather(*(describe(m) for m in messages)), strict=True
    ):
        assert f"{message} is a message" in text
        assert f"message {message.rsplit('.', 1)[1]} {{" in text


async def test_grpcurl_calls_through_reflection(identity: IdentityHarness) -> None:
    address = identity.app.server.address
    jwks = json.loads(await grpcurl(address, "cardinsa.identity.v1.IdentityService/GetJwks"))
    assert identity.app.ctx.keys.signer.kid in {k["kid"] for k in jwks["keys"]}

    token = await identity.token(identity.admin_a)
    permissions = json.loads(
        await grpcurl(
            "-H",
            f"authorization: Bearer {token}",
            address,
            "cardinsa.identity.v1.IdentityService/ListPermissions",
        )
    )
    assert "users.create" in {p["name"] for p in permissions["permissions"]}
