"""The company service as operators meet it: grpcurl through reflection, the
`cardinsa_company.cli` commands and `python -m cardinsa_company.main --workers 2`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid

import grpc
from company_harness import CompanyHarness
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.tools import venv_tool

from cardinsa.company.v1 import (
    company_service_pb2,
    company_service_pb2_grpc,
    organization_service_pb2,
    webhook_service_pb2,
)
from cardinsa_foundation.db import app_role_url


def _grpcurl(*args: str) -> str:
    done = subprocess.run(
        [venv_tool("grpcurl"), "-plaintext", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_grpcurl_lists_and_describes_the_company_services(company: CompanyHarness) -> None:
    address = company.app.server.address
    listed = await asyncio.to_thread(_grpcurl, address, "list")
    assert "cardinsa.company.v1.CompanyService" in listed
    assert "cardinsa.company.v1.OrganizationService" in listed
    assert "cardinsa.company.v1.WebhookService" in listed
    for name, module in (
        ("CompanyService", company_service_pb2),
        ("OrganizationService", organization_service_pb2),
        ("WebhookService", webhook_service_pb2),
    ):
        described = await asyncio.to_thread(
            _grpcurl, address, "describe", f"cardinsa.company.v1.{name}"
        )
        for rpc in module.DESCRIPTOR.services_by_name[name].methods:
            assert f"rpc {rpc.name} (" in described
    info = json.loads(
        await asyncio.to_thread(
            _grpcurl, address, "cardinsa.company.v1.CompanyService/GetServerInfo"
        )
    )
    assert info["name"] == "company"
    assert info["status"] == "SERVING_STATUS_SERVING"
    assert {d["name"] for d in info["dependencies"]} == {"database", "identity"}


def _clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any CARDINSA_ setting, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDINSA_")}
    env.pop("DATABASE_URL", None)
    env.pop("ENVIRONMENT", None)
    env.update(CARDINSA_ENVIRONMENT="test", CARDINSA_LOG_LEVEL="WARNING", **settings)
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cardinsa_company.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_cli_migrates_and_registers_companies(
    company: CompanyHarness, company_database: str
) -> None:
    env = _clean_env(
        CARDINSA_DATABASE_ADMIN_URL=company_database,
        CARDINSA_DATABASE_URL=app_role_url(company_database),
    )
    migrated = await asyncio.to_thread(_cli, env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "company schema migrated to head" in migrated.stdout
    company_id = str(uuid.uuid4())
    args = [
        "register-company",
        "--company-id",
        company_id,
        "--display-name",
        "Demo Insurance",
        "--country",
        "NL",
        "--currency",
        "EUR",
        "--time-zone",
        "Europe/Amsterdam",
    ]
    first = await asyncio.to_thread(_cli, env, *args)
    assert first.returncode == 0, first.stderr
    assert f"company {company_id} registered" in first.stdout
    second = await asyncio.to_thread(_cli, env, *args)
    assert f"company {company_id} already registered" in second.stdout
    bad = await asyncio.to_thread(_cli, env, *args[:-1], "Europe/Atlantis")
    assert bad.returncode == 2 and "company.time_zone" in bad.stderr
    status = await company.companies.GetCompanyStatus(
        company_service_pb2.GetCompanyStatusRequest(company_id=company_id),
        metadata=await company.as_(company.platform_admin),
    )
    assert status.active and status.time_zone == "Europe/Amsterdam"


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base >= 65000:
            continue
        try:
            with socket.socket() as first, socket.socket() as second:
                first.bind(("127.0.0.1", base))
                second.bind(("127.0.0.1", base + 1))
        except OSError:
            continue
        return base
    raise RuntimeError("no two consecutive free ports")


async def _serving(address: str, timeout_s: float = 60) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while loop.time() < deadline:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    return False


async def test_main_serves_with_workers_verifies_identity_tokens_and_stops_on_sigterm(
    company: CompanyHarness, company_database: str
) -> None:
    grpc_base, metrics_base = _free_port_pair(), _free_port_pair()
    env = _clean_env(
        CARDINSA_DATABASE_URL=app_role_url(company_database),
        CARDINSA_COMPANY_PORT=str(grpc_base),
        CARDINSA_COMPANY_METRICS_PORT=str(metrics_base),
        # Two consecutive free ports; the default spacing (100) is the launcher tests'.
        CARDINSA_WORKER_PORT_STEP="1",
        CARDINSA_IDENTITY_ADDRESS=company.identity.app.server.address,
        # The stop still goes through the drain, briefly (no gateway waits for it).
        CARDINSA_DRAIN_DELAY_S="0.2",
    )
    parent = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
        [sys.executable, "-m", "cardinsa_company.main", "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        metadata = await company.as_(company.admin_a)
        for index in range(2):
            address = f"127.0.0.1:{grpc_base + index}"
            assert await _serving(address), f"worker {index} not serving"
            async with grpc.aio.insecure_channel(address) as channel:
                stub = company_service_pb2_grpc.CompanyServiceStub(channel)
                own = await stub.GetCompany(
                    company_service_pb2.GetCompanyRequest(company_id=company.company_a.id),
                    metadata=metadata,
                )
                assert own.id == company.company_a.id
        parent.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(parent.wait, 30)
        assert code == 0
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
