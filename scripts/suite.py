"""`make up`: the whole suite on one machine, stopped cleanly by Ctrl-C.

1. PostgreSQL: CARDINSA_DATABASE_URL (or DATABASE_URL) when set, else the
   embedded server in .data/postgres (reused across runs);
2. migrations of every service (as the owner role);
3. the services as child processes (``--workers N`` each), connected as the
   non-owner role ``cardinsa_app`` so row-level security applies (their
   cross-tenant paths as ``cardinsa_platform``);
4. waits until every gRPC health check is SERVING, with progress;
5. renders the gateway configuration for those services (gateway/cardinsa_gateway)
   and starts Envoy, waiting until it is ready and sees every service healthy;
6. seeds the demo company's admin (credentials printed once, when created);
7. prints the endpoints and how to try them.

Every child is stopped by its PID on Ctrl-C, SIGTERM or any failure; Envoy runs
in its own process group and is stopped last, after the services have drained.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.config import PROJECT_ROOT, Environment
from cardinsa_foundation.db import app_role_url, platform_role_url
from cardinsa_foundation.local_postgres import LocalPostgres
from cardinsa_gateway.envoy import Endpoint
from cardinsa_gateway.process import (
    EnvoyProcess,
    render_to_file,
    select_upstreams,
    stop_stale,
)
from cardinsa_gateway.settings import GatewaySettings
from cardinsa_identity.settings import IdentitySettings

# Where the launcher keeps its own state (demo company id, gateway config and
# PID); --state-dir moves it (the end-to-end tests run a suite of their own).
STATE_DIR = PROJECT_ROOT / ".data"
DEMO_COMPANY_FILE = STATE_DIR / "demo-company-id"
PLATFORM_COMPANY_FILE = STATE_DIR / "platform-company-id"
GATEWAY_DIR = STATE_DIR / "gateway"


@dataclass
class Service:
    name: str
    module: str
    cli: str
    port: int


def say(message: str) -> None:
    print(f"[cardinsa] {message}", flush=True)


def stored_id(path: Path) -> str:
    """A UUID kept in ``path`` across runs (created on the first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path.read_text().strip()
    value = str(uuid.uuid4())
    path.write_text(value + "\n")
    return value


async def wait_serving(address: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} did not become SERVING within {timeout_s:.0f} s")
            await asyncio.sleep(0.2)


def demo_credentials(seed_output: str) -> tuple[str, str]:
    """The demo admin's email and, on the run that created it, its one-time password."""
    email, password = "<demo admin email>", "<the password printed when it was created>"
    emails = [word for word in seed_output.split() if "@" in word]
    if emails:
        email = emails[0]
    for line in seed_output.splitlines():
        if "password (shown once):" in line:
            password = line.split("password (shown once):", 1)[1].strip()
    return email, password


def run_checked(args: list[str], env: dict[str, str], what: str) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"{what} failed (exit {done.returncode})")
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(prog="make up", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="worker processes per service")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for health")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global DEMO_COMPANY_FILE, PLATFORM_COMPANY_FILE, GATEWAY_DIR  # noqa: PLW0603 - set once
    DEMO_COMPANY_FILE = args.state_dir / "demo-company-id"
    PLATFORM_COMPANY_FILE = args.state_dir / "platform-company-id"
    GATEWAY_DIR = args.state_dir / "gateway"

    settings = IdentitySettings()
    company_settings = CompanyServiceSettings()
    core_settings = CoreSettings()
    services = [
        Service(
            "identity", "cardinsa_identity.main", "cardinsa_identity.cli", settings.identity_port
        ),
        Service(
            "company",
            "cardinsa_company.main",
            "cardinsa_company.cli",
            company_settings.company_port,
        ),
        Service("core", "cardinsa_core.main", "cardinsa_core.cli", core_settings.core_port),
    ]
    embedded: LocalPostgres | None = None
    children: list[subprocess.Popen[bytes]] = []
    gateway: EnvoyProcess | None = None
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        # Ctrl-C reaches every process of the terminal's group at once; further
        # signals must not cut the orderly stop short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("stopping…")
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + settings.grace_period_s + 5
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if gateway is not None and gateway.alive():
            say("stopping the gateway")
            gateway.stop()
            (GATEWAY_DIR / "envoy.pid").unlink(missing_ok=True)
        if embedded is not None and embedded.started_here:
            say("stopping the embedded PostgreSQL")
            embedded.stop()
        say("stopped")

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        env = dict(os.environ)
        configured = settings.database_url
        if configured is None:
            if settings.environment is Environment.PRODUCTION:
                raise SystemExit("CARDINSA_DATABASE_URL must be set in production")
            say(
                f"starting the embedded PostgreSQL ({settings.embedded_postgres_dir}, "
                f"port {settings.embedded_postgres_port})"
            )
            embedded = LocalPostgres(
                settings.embedded_postgres_dir, settings.embedded_postgres_port
            )
            embedded.start()
            admin_url = embedded.admin_url()
            env["CARDINSA_DATABASE_ADMIN_URL"] = admin_url
            env["CARDINSA_DATABASE_URL"] = app_role_url(admin_url)
            # The cross-tenant paths' role (created by the migrations, like cardinsa_app).
            env["CARDINSA_DATABASE_PLATFORM_URL"] = platform_role_url(admin_url)
        else:
            say("using the configured database")
        env.setdefault("CARDINSA_LOG_JSON", "true")
        # Identity asks the company service whether a tenant may act.
        env.setdefault("CARDINSA_COMPANY_ADDRESS", f"127.0.0.1:{company_settings.company_port}")
        # The proof the gateway puts on every call (the services then trust the
        # client address it forwards): the configured one, else one per run.
        secret = settings.gateway_secret or SecretStr(secrets.token_urlsafe(32))
        env["CARDINSA_GATEWAY_SECRET"] = secret.get_secret_value()
        gateway_settings = GatewaySettings(gateway_secret=secret)

        for service in services:
            say(f"migrating {service.name}")
            run_checked(
                [sys.executable, "-m", service.cli, "migrate"], env, f"migrating {service.name}"
            )

        company = stored_id(DEMO_COMPANY_FILE)
        platform = stored_id(PLATFORM_COMPANY_FILE)
        for company_id, name in ((platform, "Cardinsa Platform"), (company, "Demo Insurance")):
            say(f"registering the company {name!r}")
            run_checked(
                [
                    sys.executable,
                    "-m",
                    "cardinsa_company.cli",
                    "register-company",
                    "--company-id",
                    company_id,
                    "--display-name",
                    name,
                    "--country",
                    "DE",
                    "--currency",
                    "EUR",
                    "--time-zone",
                    "Europe/Berlin",
                ],
                env,
                f"registering {name}",
            )
        # core asks the company service about tenants as a platform service
        # account; a fresh key each start (the earlier one is revoked).
        say("issuing core's service key")
        service_key = (
            run_checked(
                [
                    sys.executable,
                    "-m",
                    "cardinsa_identity.cli",
                    "create-service-key",
                    "--company-id",
                    platform,
                    "--name",
                    "core-service",
                    "--permission",
                    "companies.get_status",
                ],
                env,
                "issuing core's service key",
            )
            .strip()
            .splitlines()[-1]
        )
        service_env = {"core": {"CARDINSA_SERVICE_API_KEY": service_key}}

        for service in services:
            say(f"starting {service.name} on 127.0.0.1:{service.port} ({args.workers} worker(s))")
            child = subprocess.Popen(
                [sys.executable, "-m", service.module, "--workers", str(args.workers)],
                env={**env, **service_env.get(service.name, {})},
            )
            children.append(child)

        for service in services:
            for index in range(args.workers):
                address = f"127.0.0.1:{service.port + index}"
                say(f"waiting for {service.name} at {address} …")
                asyncio.run(wait_serving(address, args.timeout))
                say(f"{service.name} at {address} is SERVING")

        listen = f"{gateway_settings.gateway_host}:{gateway_settings.gateway_port}"
        config = GATEWAY_DIR / "envoy.json"
        if stop_stale(GATEWAY_DIR / "envoy.pid", config):
            say("stopped a gateway left running by an earlier run")
        # The ports the services really use (settings resolve .env too), one
        # endpoint per worker: the gateway must not guess them from os.environ.
        render_to_file(
            config,
            settings=gateway_settings,
            upstreams=select_upstreams([service.name for service in services]),
            endpoints={
                service.name: [
                    Endpoint("127.0.0.1", service.port + index) for index in range(args.workers)
                ]
                for service in services
            },
            workers=args.workers,
        )
        say(f"starting the gateway (Envoy) on {listen}")
        gateway = EnvoyProcess(config, gateway_settings.gateway_admin_port, listen)
        gateway.start(own_process_group=True)
        (GATEWAY_DIR / "envoy.pid").write_text(f"{gateway.pid}\n")
        say(f"waiting for the gateway at {listen} …")
        gateway.wait_ready(args.timeout)
        say(f"gateway at {listen} is ready (pid {gateway.pid})")

        say("seeding the demo company admin")
        seeded = run_checked(
            [
                sys.executable,
                "-m",
                "cardinsa_identity.cli",
                "seed-demo",
                "--company-id",
                company,
            ],
            env,
            "seeding the demo company",
        ).rstrip()
        print(seeded)
        email, password = demo_credentials(seeded)
        login = json.dumps({"email": email, "password": password})
        identity = f"127.0.0.1:{settings.identity_port}"
        local = gateway_settings.gateway_host in {"127.0.0.1", "0.0.0.0", ""}  # noqa: S104
        curl_address = f"localhost:{gateway_settings.gateway_port}" if local else listen
        say("ready")
        print(
            f"""
  gateway   http://{listen}   REST/JSON and gRPC on one port
            OpenAPI http://{listen}/openapi.json, docs http://{listen}/docs
  identity  grpc://{identity}   (health, reflection: grpcurl -plaintext {identity} list)
  company   grpc://127.0.0.1:{company_settings.company_port}
  core      grpc://127.0.0.1:{core_settings.core_port}
  metrics   http://127.0.0.1:{settings.identity_metrics_port}/metrics (identity), \
http://127.0.0.1:{company_settings.company_metrics_port}/metrics (company), \
http://127.0.0.1:{core_settings.core_metrics_port}/metrics (core)

  Try it:
    curl -s -X POST {curl_address}/v1/auth:login -d '{login}'
    .venv/bin/grpcurl -plaintext {listen} list
    .venv/bin/grpcurl -plaintext -d '{login}' {listen} cardinsa.identity.v1.AuthService/Login

  Ctrl-C stops everything.
""",
            flush=True,
        )
        while all(child.poll() is None for child in children) and gateway.alive():
            time.sleep(0.5)
        failed = [c for c in children if c.poll() not in (None, 0)]
        if failed:
            say("a service exited unexpectedly; stopping the rest")
            return 1
        if not gateway.alive():
            say("the gateway exited unexpectedly; stopping the rest")
            return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
