"""The core server as operators meet it: grpcurl through reflection, the
`cardinsa_core.cli migrate` and `cardinsa_core.main --workers` commands."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import grpc
from core_harness import CoreHarness, Tenant
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.tools import venv_tool

from cardinsa.core.v1 import product_service_pb2 as rb
from cardinsa.core.v1 import product_service_pb2_grpc
from cardinsa_core.main import APIS
from cardinsa_foundation.db import app_role_url

TIMEOUT_S = 60.0


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def grpcurl(*args: str) -> str:
    code, out, err = await run(venv_tool("grpcurl"), "-plaintext", *args)
    assert code == 0, err
    return out


async def test_grpcurl_lists_and_describes_the_core_services(core: CoreHarness) -> None:
    listed = set((await grpcurl(core.address, "list")).split())
    assert {s for s in listed if s.startswith("cardinsa.")} == set(APIS)
    assert "grpc.health.v1.Health" in listed
    described = await grpcurl(core.address, "describe", "cardinsa.core.v1.PolicyService")
    for rpc in ("QuotePolicy", "BindPolicy", "EndorsePolicy", "ReinstatePolicy"):
        assert f"rpc {rpc} (" in described
    message = await grpcurl(core.address, "describe", "cardinsa.core.v1.Policy")
    assert "google.type.Money premium" in message and "google.type.Date effective_date" in message
    info = await grpcurl(core.address, "cardinsa.core.v1.CoreService/GetServerInfo")
    assert '"name": "core"' in info


async def test_grpcurl_calls_with_a_token(tenant: Tenant) -> None:
    await tenant.product(code="GRPCURL")
    token = await tenant.token("viewer")
    out = await grpcurl(
        "-H",
        f"authorization: Bearer {token}",
        "-d",
        '{"filter": "code = \\"GRPCURL\\""}',
        tenant.harness.address,
        "cardinsa.core.v1.ProductService/ListProducts",
    )
    assert '"code": "GRPCURL"' in out and '"currency_code": "USD"' in out


def operator_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDINSA_")}
    env.pop("DATABASE_URL", None)
    env.update(
        CARDINSA_ENVIRONMENT="test",
        CARDINSA_DATABASE_URL=app_role_url(database_url),
        CARDINSA_DATABASE_ADMIN_URL=database_url,
        CARDINSA_LOG_LEVEL="WARNING",
        **extra,
    )
    return env


async def test_cli_migrate_is_idempotent(core_database: str) -> None:
    code, out, err = await run(
        sys.executable, "-m", "cardinsa_core.cli", "migrate", env=operator_env(core_database)
    )
    assert code == 0, err
    assert "core schema migrated to head" in out


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base >= 65000:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", base))
                b.bind(("127.0.0.1", base + 1))
        except OSError:
            continue
        return base
    raise RuntimeError("no two consecutive free ports")


async def _serving(address: str) -> bool:
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while asyncio.get_running_loop().time() < deadline:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    return False


async def test_main_serves_with_workers_and_stops_on_sigterm(
    core_database: str, tenant: Tenant
) -> None:
    grpc_base, metrics_base = _free_port_pair(), _free_port_pair()
    env = operator_env(
        core_database,
        CARDINSA_CORE_PORT=str(grpc_base),
        CARDINSA_CORE_METRICS_PORT=str(metrics_base),
        # Two consecutive free ports; the default spacing (100) is the launcher tests'.
        CARDINSA_WORKER_PORT_STEP="1",
        CARDINSA_IDENTITY_ADDRESS=tenant.harness.identity.app.server.address,
        # The stop still goes through the drain, briefly (no gateway waits for it).
        CARDINSA_DRAIN_DELAY_S="0.2",
    )
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cardinsa_core.main",
        "--workers",
        "2",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        token = await tenant.token("viewer")
        for index in range(2):
            address = f"127.0.0.1:{grpc_base + index}"
            assert await _serving(address), f"worker {index} is not serving"
            async with grpc.aio.insecure_channel(address) as channel:
                stub = product_service_pb2_grpc.ProductServiceStub(channel)
                # A real call: the worker verifies the token against identity's JWKS.
                await stub.ListProducts(
                    rb.ListProductsRequest(), metadata=[("authorization", f"Bearer {token}")]
                )
        parent.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(parent.wait(), 30) == 0
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
