"""`make bench`: load the whole suite and print one table of figures against the targets.

    .venv/bin/python scripts/bench.py [--quick] [--use-running] [--workers N] [--seconds S]

What it does, in order:

1. installs the load generators when missing: ``h2load`` (Debian package
   nghttp2-client, HTTP/2 and gRPC unary calls) and ``wrk`` (HTTP/1.1, for REST),
   with apt-get (root only; ``apt-get update`` once if the first install fails);
2. starts its own suite (``scripts/suite.py``) on free ports of 127.0.0.1 with its
   own embedded PostgreSQL in ``.data/bench/full`` (``quick`` for --quick; kept
   between runs, ``--fresh`` starts over), or with ``--use-running`` uses the
   suite `make up` runs (same ``CARDINSA_*`` settings);
3. seeds realistic data unless it is already there: 12 companies (registered
   with the company service), an admin per company and login accounts
   (identity), and in the core service 100 000 policies (one large company with
   30 000, so that page 1 000 of a filtered list exists), as many policyholders,
   the policies' versions and status logs, and 20 000 claims with their logs;
4. loads it (scenarios below) and verifies every call on the server side;
5. prints one table and writes the same figures as JSON to
   ``.data/bench/<timestamp>-full.json`` (``--output-dir``) for comparing runs.

Seeding bypasses the API on purpose. Creating 100 000 policies through the API
(create, quote, bind: three RPCs, ~10 statements each) would take longer than
the benchmark itself, so per company one product, one policyholder, one
policy in force, one quoted policy and one submitted claim are created through
the API (the real rows, audit events and counters), and the bulk is copied from
those templates in SQL, as the owner role, one transaction per company with
that company set as the row-level-security tenant (``cardinsa.company_id``):
every row carries its ``company_id``, references stay inside the company,
policy and claim numbers are gap-free and the counters hold the last number
handed out, so the API keeps numbering where the seed stopped (checked after
seeding, every run). One audit event per company (``bench.seed``) records the
bulk load; the copies have no audit events of their own.

Scenarios (ratios are measured in the same run, on the same machine):

- ``noop``: the ceiling -- a bare grpc.aio server with one empty unary method
  and no interceptors, started here and loaded exactly like the gRPC scenarios
  (h2load, 50 connections x 10 streams);
- GetPolicy over gRPC, one core process, authenticated and tenant-isolated:
  target >= 0.40 of noop;
- the same GetPolicy through the gateway as REST (wrk, 50 connections): target
  >= 0.85 of the direct gRPC rate, and p99 < 50 ms at these 50 connections;
- ListPolicies with a filter, page 1 000 against page 1 (keyset paging): page
  1 000 may cost at most 1.2 times page 1;
- CreateClaim (validation, eligibility, claim row, action log, audit event, one
  transaction): target >= 0.20 of noop;
- 1 000 concurrent connections through the gateway (REST GetPolicy, wrk) for
  30 s: zero errors;
- Login over gRPC (one account per connection) against what argon2id
  verification alone allows on the same cores (identity's own hasher
  parameters and thread count, measured here in the same run): target >= 0.9;
- the revocation check every call runs, timed alone with 20 000 entries,
  against GetPolicy's CPU per call: target ≤ 0.03 (3 %);
- a control: GetPolicy of an id that does not exist. h2load counts it as
  success (gRPC errors travel in trailers, HTTP status 200); the server-side
  verification must count every call as an error, or the verifier is broken;
- peak memory (VmHWM, the resident-set high-water mark) of every service
  process and Envoy at the end: services < 200 MB;
- tracing off (the default): the statements tracing adds to a GetPolicy, timed
  in this process, against the GetPolicy's CPU per call from the same run:
  target ≤ 2 % (``tracing_off_hooks_us``).

Besides req/s, each scenario reports the CPU time the serving processes used per
call (``CPU µs/call``, from /proc: the service's workers, plus Envoy for REST).
It moves far less than req/s when something else runs on the machine, so it is
the figure to compare between runs of one change; ``--hold`` starts and seeds
the suite and waits, for profiling a process under load (py-spy).

Errors are never taken from the load generator's success count. Every scenario
scrapes ``grpc_server_handled_total`` of the method from each worker's
/metrics before and after, and every non-OK status is an error; so are
requests the client counted as answered that the server did not count as OK,
and the client's own failures (h2load failed/errored/timeout, wrk non-2xx and
socket errors). h2load runs a fixed number of requests (measured after a
warm-up), so its counts match the server's exactly. wrk runs for a fixed time
and abandons its in-flight requests when time is up: the server reports those
as CANCELLED. Up to one per connection is expected and shown in its own
column; more would be errors. A client giving up before the end shows up as a
wrk timeout, an error.

The suite the benchmark starts differs from the defaults in three settings,
all load-generator artefacts: the gateway's overall rate limit (1 000 req/s,
a safety valve) is lifted, and so is the per-client-address login limit
(every bench call comes from 127.0.0.1); access tokens live an hour. The
services log every call (JSON access log, INFO) to a file, as in production.
With ``--use-running`` the running suite's limits apply (they show up as
errors).

Everything runs on 127.0.0.1, every load is bounded in time, and every process
started here is stopped by its PID or process group, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = PROJECT_ROOT / ".data" / "bench"
SUITE_SCRIPT = PROJECT_ROOT / "scripts" / "suite.py"
NOOP_SERVICE = "cardinsa.bench.v1.Bench"
NOOP_PATH = f"/{NOOP_SERVICE}/Noop"
#: Exit code when h2load or wrk is missing and cannot be installed.
EXIT_NO_TOOLS = 3
TOOLS = (("h2load", "nghttp2-client"), ("wrk", "wrk"))
SERVICE_TARGET_MB = 200.0
NAMESPACE = uuid.UUID("6f1f6f5e-6a43-4d8e-9a35-8c1b3a0d5e11")
ACCOUNT_DOMAIN = "bench.cardinsa.local"
PRODUCT_CODE = "BENCH-HEALTH"
LIST_FILTER = 'state = "IN_FORCE"'
COMPANY_PROFILES = (
    ("DE", "EUR", "Europe/Berlin"),
    ("US", "USD", "America/New_York"),
    ("GB", "GBP", "Europe/London"),
    ("AE", "AED", "Asia/Dubai"),
    ("FR", "EUR", "Europe/Paris"),
    ("JP", "JPY", "Asia/Tokyo"),
)
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# --------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Profile:
    """How much data and how long each scenario runs."""

    name: str
    companies: int
    policies: int
    claims: int
    large_policies: int  # policies of company 0 (the ListPolicies company)
    large_claims: int
    seconds: float  # measured part of each scenario
    warmup_seconds: float
    many_connections: int
    many_seconds: float
    list_page_size: int
    list_page: int
    login_accounts: int
    hash_seconds: float
    connections: int = 50
    streams: int = 10


FULL = Profile(
    name="full",
    companies=12,
    policies=100_000,
    claims=20_000,
    large_policies=30_000,
    large_claims=6_000,
    seconds=10.0,
    warmup_seconds=2.0,
    many_connections=1000,
    many_seconds=30.0,
    list_page_size=20,
    list_page=1000,
    login_accounts=8,
    hash_seconds=5.0,
)
QUICK = Profile(
    name="quick",
    companies=2,
    policies=600,
    claims=100,
    large_policies=400,
    large_claims=60,
    seconds=2.5,
    warmup_seconds=1.0,
    many_connections=200,
    many_seconds=3.0,
    list_page_size=2,
    list_page=100,
    login_accounts=4,
    hash_seconds=2.0,
)


def company_sizes(profile: Profile) -> list[tuple[int, int]]:
    """(policies, claims) per company, summing exactly to the profile's totals."""
    others = profile.companies - 1
    sizes = [(profile.large_policies, profile.large_claims)]
    rest_p, rest_c = (
        profile.policies - profile.large_policies,
        profile.claims - profile.large_claims,
    )
    for index in range(others):
        sizes.append(
            (
                rest_p // others + (1 if index < rest_p % others else 0),
                rest_c // others + (1 if index < rest_c % others else 0),
            )
        )
    return sizes


# ------------------------------------------------------------------ tools


def ensure_tools() -> None:
    """h2load and wrk, installed with apt-get when missing (root only)."""
    missing = [(tool, package) for tool, package in TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    packages = [package for _, package in missing]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        say(f"missing {', '.join(t for t, _ in missing)}: apt-get install {' '.join(packages)}")
        raise SystemExit(EXIT_NO_TOOLS)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    say(f"installing {', '.join(packages)} (apt-get)")
    done = subprocess.run(
        install, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        say("install failed; running apt-get update once and trying again")
        subprocess.run(
            ["apt-get", "update"], env=env, capture_output=True, timeout=900, check=False
        )
        done = subprocess.run(
            install, env=env, capture_output=True, text=True, timeout=900, check=False
        )
    still = [tool for tool, _ in missing if shutil.which(tool) is None]
    if still:
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
        say(f"could not install {', '.join(still)}")
        raise SystemExit(EXIT_NO_TOOLS)
    say(f"installed {', '.join(packages)}")


def raise_fd_limit() -> None:
    """1 000 connections need more than the usual 1 024 descriptors (Envoy inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65_536 if hard == resource.RLIM_INFINITY else min(hard, 65_536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


# ------------------------------------------------------------ processes, ports


def free_port_block(count: int = 1) -> int:
    """A port p of 127.0.0.1 with p .. p+count-1 all free right now."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count >= 65_000:
            continue
        sockets: list[socket.socket] = []
        try:
            for offset in range(count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise RuntimeError(f"no block of {count} free ports")


def listening_pids(port: int) -> list[int]:
    """PIDs of the processes listening on TCP ``port`` (from /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if (
                    len(parts) > 9
                    and parts[3] == "0A"
                    and int(parts[1].rsplit(":", 1)[1], 16) == port
                ):
                    inodes.add(parts[9])
    if not inodes:
        return []
    wanted = {f"socket:[{inode}]" for inode in inodes}
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    found.append(int(entry.name))
                    break
        except OSError:
            continue
    return sorted(found)


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time the processes have used so far (threads included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


def machine_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over ``seconds`` (from /proc/stat): what else runs.
    Taken while the suite idles, it says whether the ratios can be trusted."""

    def snap() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(values), values[3] + values[4]

    total0, idle0 = snap()
    time.sleep(seconds)
    total1, idle1 = snap()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident set (VmHWM) of ``pid`` in MB, None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 10) -> None:
    """SIGTERM by PID, then SIGKILL."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# ------------------------------------------------------------------ noop server


async def serve_noop() -> None:
    """The ceiling: grpc.aio, one empty unary method, no interceptor."""
    import grpc

    async def noop(request: bytes, context: Any) -> bytes:
        return b""

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                NOOP_SERVICE, {"Noop": grpc.unary_unary_rpc_method_handler(noop)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


# ------------------------------------------------------------------ the suite


@dataclass
class SuiteEndpoints:
    """Where the suite listens; metrics ports per worker."""

    identity: int
    company: int
    core: int
    identity_metrics: int
    company_metrics: int
    core_metrics: int
    gateway: int
    gateway_admin: int
    workers: int
    step: int = 1  # CARDINSA_WORKER_PORT_STEP: worker i listens on port + i x step

    def grpc(self, service: str, index: int = 0) -> str:
        return f"127.0.0.1:{getattr(self, service) + index * self.step}"

    def metrics_ports(self, service: str) -> list[int]:
        base = getattr(self, f"{service}_metrics")
        return [base + index * self.step for index in range(self.workers)]


class Suite:
    """The suite under test: started here (and stopped at the end) or already running."""

    def __init__(self, endpoints: SuiteEndpoints, admin_url: str, state_dir: Path) -> None:
        self.endpoints = endpoints
        self.admin_url = admin_url
        self.state_dir = state_dir
        self.process: subprocess.Popen[str] | None = None
        self.env: dict[str, str] = dict(os.environ)
        self._reader: threading.Thread | None = None
        self._pg: Any = None

    # -- started here

    @classmethod
    def start(
        cls,
        state_dir: Path,
        workers: int,
        timeout_s: float,
        extra_env: dict[str, str] | None = None,
    ) -> Suite:
        from cardinsa_foundation.local_postgres import LocalPostgres

        state_dir.mkdir(parents=True, exist_ok=True)
        ports = SuiteEndpoints(
            identity=free_port_block(workers),
            company=free_port_block(workers),
            core=free_port_block(workers),
            identity_metrics=free_port_block(workers),
            company_metrics=free_port_block(workers),
            core_metrics=free_port_block(workers),
            gateway=free_port_block(),
            gateway_admin=free_port_block(),
            workers=workers,
        )
        pg_port = free_port_block()
        pg_dir = state_dir / "postgres"
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("CARDINSA_") and key not in ("DATABASE_URL", "ENVIRONMENT")
        }
        env.update(
            {
                "CARDINSA_ENVIRONMENT": "development",
                "CARDINSA_DATABASE_URL": "",
                "CARDINSA_DATABASE_ADMIN_URL": "",
                "CARDINSA_EMBEDDED_POSTGRES_DIR": str(pg_dir),
                "CARDINSA_EMBEDDED_POSTGRES_PORT": str(pg_port),
                "CARDINSA_IDENTITY_PORT": str(ports.identity),
                "CARDINSA_IDENTITY_METRICS_PORT": str(ports.identity_metrics),
                "CARDINSA_COMPANY_PORT": str(ports.company),
                "CARDINSA_COMPANY_METRICS_PORT": str(ports.company_metrics),
                "CARDINSA_CORE_PORT": str(ports.core),
                "CARDINSA_CORE_METRICS_PORT": str(ports.core_metrics),
                # Its port blocks are consecutive (worker i: port + i).
                "CARDINSA_WORKER_PORT_STEP": "1",
                "CARDINSA_IDENTITY_ADDRESS": ports.grpc("identity"),
                "CARDINSA_COMPANY_ADDRESS": ports.grpc("company"),
                "CARDINSA_GATEWAY_PORT": str(ports.gateway),
                "CARDINSA_GATEWAY_ADMIN_PORT": str(ports.gateway_admin),
                "CARDINSA_GATEWAY_METRICS_PORT": "0",  # no stats listener
                "CARDINSA_GATEWAY_ACCESS_LOG": str(state_dir / "envoy-access.log"),
                "CARDINSA_LOG_JSON": "true",
                "CARDINSA_LOG_LEVEL": "INFO",
                # Load-generator artefacts (see the module docstring).
                "CARDINSA_GATEWAY_RATE_LIMIT_RPS": "1000000",
                "CARDINSA_GATEWAY_RATE_LIMIT_BURST": "1000000",
                "CARDINSA_LOGIN_MAX_FAILURES_PER_ADDRESS": "1000000000",
                "CARDINSA_ACCESS_TOKEN_TTL_S": "3600",
                "CARDINSA_NOTIFICATION_DIR": str(state_dir / "notifications"),
                "CARDINSA_DEMO_ADMIN_PASSWORD": bench_password(state_dir),
            }
        )
        env.update(extra_env or {})
        suite = cls(ports, LocalPostgres(pg_dir, pg_port).admin_url(), state_dir)
        suite.env = env
        suite._pg = LocalPostgres(pg_dir, pg_port)
        (state_dir / "envoy-access.log").unlink(missing_ok=True)  # one run's lines only
        log = (state_dir / "suite.log").open("w")
        say(f"starting the suite ({workers} worker(s) per service; log {state_dir / 'suite.log'})")
        suite.process = subprocess.Popen(
            [
                sys.executable,
                str(SUITE_SCRIPT),
                "--state-dir",
                str(state_dir / "suite"),
                "--workers",
                str(workers),
                "--timeout",
                str(timeout_s),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            process_group=0,
        )
        ready = threading.Event()

        def pump() -> None:
            assert suite.process is not None and suite.process.stdout is not None
            for line in suite.process.stdout:
                log.write(line)
                log.flush()
                if line.startswith("[cardinsa] "):
                    say(f"suite: {line.strip()[len('[cardinsa] ') :]}")
                if line.strip() == "[cardinsa] ready":
                    ready.set()

        suite._reader = threading.Thread(target=pump, name="suite-output", daemon=True)
        suite._reader.start()
        deadline = time.monotonic() + timeout_s + 60
        while not ready.wait(0.5):
            if suite.process.poll() is not None:
                raise RuntimeError(f"the suite exited ({suite.process.returncode}); see suite.log")
            if time.monotonic() > deadline:
                raise TimeoutError("the suite did not become ready in time")
        return suite

    # -- already running

    @classmethod
    def running(cls, state_dir: Path, workers: int) -> Suite:
        from cardinsa_company.settings import CompanyServiceSettings
        from cardinsa_core.settings import CoreSettings
        from cardinsa_foundation.local_postgres import LocalPostgres
        from cardinsa_gateway.settings import GatewaySettings
        from cardinsa_identity.settings import IdentitySettings

        identity, company, core = IdentitySettings(), CompanyServiceSettings(), CoreSettings()
        gateway = GatewaySettings()
        ports = SuiteEndpoints(
            identity=identity.identity_port,
            company=company.company_port,
            core=core.core_port,
            identity_metrics=identity.identity_metrics_port,
            company_metrics=company.company_metrics_port,
            core_metrics=core.core_metrics_port,
            gateway=gateway.gateway_port,
            gateway_admin=gateway.gateway_admin_port,
            workers=workers,
            step=identity.worker_port_step,
        )
        admin = identity.database_admin_url or identity.database_url
        if admin is not None:
            admin_url = admin.get_secret_value()
        else:
            pg = LocalPostgres(identity.embedded_postgres_dir, identity.embedded_postgres_port)
            if not pg.is_running():
                raise SystemExit("--use-running: no running suite (start it with `make up`)")
            admin_url = pg.admin_url()
        say(f"using the running suite (gateway 127.0.0.1:{ports.gateway}, core :{ports.core})")
        return cls(ports, admin_url, state_dir)

    # -- common

    def pids(self) -> dict[str, int]:
        """Service processes (one per worker) and Envoy, found by their listening ports."""
        found: dict[str, int] = {}
        for service in ("identity", "company", "core"):
            for index in range(self.endpoints.workers):
                port = getattr(self.endpoints, service) + index * self.endpoints.step
                for pid in listening_pids(port):
                    name = service if self.endpoints.workers == 1 else f"{service}[{index}]"
                    found[name] = pid
        for pid in listening_pids(self.endpoints.gateway):
            found["envoy"] = pid
        return found

    def stop(self) -> None:
        if self.process is None:
            return
        say("stopping the suite")
        # The launcher stops its children by PID on SIGTERM (Envoy last). Not
        # SIGINT: a shell's background job starts with SIGINT ignored.
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        envoy_pid_file = self.state_dir / "suite" / "gateway" / "envoy.pid"
        with contextlib.suppress(OSError, ValueError):
            from cardinsa_gateway.process import stop_stale

            stop_stale(envoy_pid_file, self.state_dir / "suite" / "gateway" / "envoy.json")
        if self._pg is not None and self._pg.is_running():
            self._pg.stop()
        self.process = None


def bench_password(state_dir: Path) -> str:
    """The bench accounts' password: random, made once and kept in the state dir."""
    path = state_dir / "accounts-password"
    state_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


# ------------------------------------------------------------------ gRPC helpers


def grpc_frame(message: Any) -> bytes:
    """One gRPC request message on the wire: uncompressed flag, length, bytes."""
    payload = message.SerializeToString()
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def money(amount: str, currency: str) -> Any:
    from google.type import money_pb2

    value = Decimal(amount)
    units = int(value)
    return money_pb2.Money(
        currency_code=currency, units=units, nanos=int((value - units) * 1_000_000_000)
    )


def gdate(day: dt.date) -> Any:
    from google.type import date_pb2

    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


@dataclass
class Account:
    email: str
    company_id: str
    token: str = ""
    expires_at: float = 0.0


async def login(identity: str, account: Account, password: str) -> str:
    import grpc

    from cardinsa.identity.v1 import auth_service_pb2, auth_service_pb2_grpc

    if account.token and time.time() < account.expires_at - 120:
        return account.token
    async with grpc.aio.insecure_channel(identity) as channel:
        stub = auth_service_pb2_grpc.AuthServiceStub(channel)
        reply = await stub.Login(
            auth_service_pb2.LoginRequest(email=account.email, password=password), timeout=30
        )
    account.token = reply.access_token
    account.expires_at = time.time() + reply.expires_in.seconds
    return account.token


# ------------------------------------------------------------------ seeding


@dataclass
class CompanySeed:
    index: int
    company_id: str
    currency: str
    policies: int
    claims: int
    admin: Account
    in_force_policy: str = ""
    claim_policy: str = ""


@dataclass
class SeedResult:
    companies: list[CompanySeed]
    logins: list[Account]
    password: str
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)


def company_uuid(index: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"company-{index}")


async def register_companies(suite: Suite, profile: Profile) -> None:
    from cardinsa_company.cli import register_company
    from cardinsa_company.domain.companies import CompanyProfile
    from cardinsa_company.settings import CompanyServiceSettings

    settings = _settings(CompanyServiceSettings, suite)
    for index in range(profile.companies):
        country, currency, zone = COMPANY_PROFILES[index % len(COMPANY_PROFILES)]
        await register_company(
            settings,
            company_uuid(index),
            CompanyProfile(
                display_name=f"Bench Insurance {index:02d}",
                country=country,
                default_currency=currency,
                time_zone=zone,
                locale="en",
            ),
        )


def _settings(cls: Any, suite: Suite) -> Any:
    """Service settings as the suite's processes see them."""
    from cardinsa_foundation.db import app_role_url

    return cls(
        _env_file=None,
        database_url=app_role_url(suite.admin_url),
        database_admin_url=suite.admin_url,
        identity_address=suite.endpoints.grpc("identity"),
    )


async def ensure_accounts(suite: Suite, profile: Profile, password: str) -> list[Account]:
    """A company-admin per company, then the login accounts (viewers of company 0)."""
    from cardinsa_identity.application.bootstrap import ensure_user_with_role
    from cardinsa_identity.main import build
    from cardinsa_identity.settings import IdentitySettings

    settings = _settings(IdentitySettings, suite)
    app = build(settings, settings.database_url.get_secret_value(), port=0, metrics_port=None)
    wanted = [
        (f"bench-admin-{i:02d}@{ACCOUNT_DOMAIN}", company_uuid(i), "company-admin")
        for i in range(profile.companies)
    ] + [
        (f"bench-login-{j:02d}@{ACCOUNT_DOMAIN}", company_uuid(0), "viewer")
        for j in range(profile.login_accounts)
    ]
    accounts = []
    try:
        await app.prepare()
        for email, company, role in wanted:
            await ensure_user_with_role(
                app.ctx, email=email, password=password, company_id=company, role_name=role
            )
            accounts.append(Account(email, str(company)))
    finally:
        await app.ctx.keys.stop()
        app.ctx.hasher.close()
        await app.ctx.db.dispose()
    return accounts


async def api_templates(suite: Suite, seed: CompanySeed, password: str) -> dict[str, str]:
    """The rows the bulk copies: made through the API, as the company's admin."""
    import grpc

    from cardinsa.core.v1 import claim_service_pb2 as cs
    from cardinsa.core.v1 import claim_service_pb2_grpc as csg
    from cardinsa.core.v1 import policy_service_pb2 as ps
    from cardinsa.core.v1 import policy_service_pb2_grpc as psg
    from cardinsa.core.v1 import policyholder_service_pb2 as hs
    from cardinsa.core.v1 import policyholder_service_pb2_grpc as hsg
    from cardinsa.core.v1 import product_service_pb2 as prs
    from cardinsa.core.v1 import product_service_pb2_grpc as prsg
    from cardinsa.core.v1 import resources_pb2 as r

    token = await login(suite.endpoints.grpc("identity"), seed.admin, password)
    md = [("authorization", f"Bearer {token}")]
    cur = seed.currency
    today = dt.datetime.now(dt.UTC).date()
    async with grpc.aio.insecure_channel(suite.endpoints.grpc("core")) as channel:
        products = prsg.ProductServiceStub(channel)
        holders = hsg.PolicyholderServiceStub(channel)
        policies = psg.PolicyServiceStub(channel)
        claims = csg.ClaimServiceStub(channel)
        product = await products.CreateProduct(
            prs.CreateProductRequest(
                product=r.Product(
                    code=PRODUCT_CODE,
                    line_of_business=r.Product.MEDICAL,
                    name="Health Basic",
                    currency_code=cur,
                    base_premium=money("540", cur),
                    term_months=12,
                    coverages=[
                        r.Coverage(
                            code="OUTPATIENT",
                            name="Outpatient care",
                            limit=money("10000", cur),
                            limit_period=r.Coverage.PER_YEAR,
                            deductible=money("0", cur),
                            coinsurance_basis_points=2000,
                            waiting_period_days=0,
                        )
                    ],
                )
            ),
            metadata=md,
        )
        product = await products.ActivateProduct(
            prs.ActivateProductRequest(product_id=product.id), metadata=md
        )
        holder = await holders.CreatePolicyholder(
            hs.CreatePolicyholderRequest(
                policyholder=r.Policyholder(
                    kind=r.Policyholder.PERSON,
                    given_name="Amira",
                    family_name="Haddad",
                    date_of_birth=gdate(dt.date(1984, 2, 3)),
                    national_id=f"T{seed.index:02d}000000000",
                    email=f"template-{seed.index:02d}@holders.{ACCOUNT_DOMAIN}",
                )
            ),
            metadata=md,
        )
        ids: dict[str, str] = {"product": product.id, "holder": holder.id}
        for key, bind in (("in_force", True), ("quoted", False)):
            draft = await policies.CreatePolicy(
                ps.CreatePolicyRequest(
                    policy=r.Policy(
                        policyholder_id=holder.id,
                        product_id=product.id,
                        effective_date=gdate(today - dt.timedelta(days=30)),
                        sum_insured=money("100000", cur),
                        payment_frequency=r.Policy.MONTHLY,
                        insured_members=[r.InsuredMember(policyholder=True)],
                    )
                ),
                metadata=md,
            )
            quoted = await policies.QuotePolicy(
                ps.QuotePolicyRequest(policy_id=draft.id, etag=draft.etag), metadata=md
            )
            if bind:
                quoted = await policies.BindPolicy(
                    ps.BindPolicyRequest(policy_id=quoted.id, etag=quoted.etag), metadata=md
                )
            ids[key] = quoted.id
        claim = await claims.CreateClaim(
            cs.CreateClaimRequest(
                claim=r.Claim(
                    policy_id=ids["in_force"],
                    claimant=r.InsuredMember(policyholder=True),
                    claim_type=r.Claim.MEDICAL,
                    description="outpatient treatment",
                    coverage_code="OUTPATIENT",
                    incident_date=gdate(today - dt.timedelta(days=2)),
                    claimed_amount=money("800", cur),
                )
            ),
            metadata=md,
        )
        claim = await claims.SubmitClaim(cs.SubmitClaimRequest(claim_id=claim.id), metadata=md)
        ids["claim"] = claim.id
    return ids


# One company's bulk copy. $1 company, $2 policy copies, $3 claim copies, $4..$8 the
# template rows (in-force policy, quoted policy, claim, policyholder, product).
# Copy g (1..$2) is in force unless g is a multiple of 10 (then quoted); in-force
# copies take policy numbers 2, 3, ... in creation order (the template holds 1),
# gap-free: copy g's number is 1 + g - g/10. Claim j (1..$3) is submitted unless j
# is a multiple of 5 (then a draft); submitted claims take 2, 3, ... likewise.
_SEED_SQL = (
    """
    CREATE TEMP TABLE bench_policy ON COMMIT DROP AS
    SELECT g,
           gen_random_uuid() AS holder_id,
           gen_random_uuid() AS policy_id,
           g % 10 <> 0 AS in_force,
           CASE WHEN g % 10 <> 0 THEN 1 + g - g / 10 END AS number,
           now() - make_interval(secs => ($2::int - g + 1) * 300.0) - interval '1 day' AS ts
      FROM generate_series(1, $2::int) AS g
    """,
    """
    INSERT INTO core.policyholders
        (kind, given_name, family_name, date_of_birth, gender, legal_name,
         registration_number, national_id, email, phone, address_line1, address_line2,
         address_city, address_region, address_postal_code, address_country_code,
         display_name, id, create_time, update_time, created_by, updated_by, delete_time,
         version, company_id)
    SELECT 'PERSON', n.given, 'Family' || p.g, date '1950-01-01' + (p.g * 37) % 20000,
           (ARRAY['FEMALE', 'MALE', 'GENDER_UNSPECIFIED'])[1 + p.g % 3], '', '',
           'N' || lpad(p.g::text, 11, '0'),
           'holder-' || p.g || '@' || left($1::uuid::text, 8) || '.holders.example',
           '+49 30 ' || lpad((p.g * 7919 % 10000000)::text, 7, '0'),
           p.g || ' Main Street', '', 'Springfield', '', lpad((p.g % 99999)::text, 5, '0'),
           'DE', n.given || ' Family' || p.g, p.holder_id, p.ts, p.ts,
           t.created_by, t.created_by, NULL, 1, $1::uuid
      FROM bench_policy p
      CROSS JOIN core.policyholders t
      CROSS JOIN LATERAL (SELECT (ARRAY['Amira', 'Jonas', 'Mei', 'Omar', 'Sofia', 'Liam',
                                        'Noor', 'Elena'])[1 + p.g % 8] AS given) n
     WHERE t.id = $7::uuid AND t.company_id = $1::uuid
    """,
    """
    INSERT INTO core.policies
        (policy_number, policyholder_id, product_id, product_version, state,
         effective_date, expiry_date, currency, premium, sum_insured, payment_frequency,
         insures_holder, insured_dependent_ids, current_version, version_effective_date,
         cancel_reason, cancel_effective_date, lapse_date, termination_note,
         previous_policy_id, successor_policy_id, bind_time, activate_time, id,
         create_time, update_time, created_by, updated_by, delete_time, version, company_id)
    SELECT CASE WHEN p.in_force
                THEN split_part(t.policy_number, '-', 1) || '-' || lpad(p.number::text, 8, '0')
           END,
           p.holder_id, t.product_id, t.product_version,
           CASE WHEN p.in_force THEN 'IN_FORCE' ELSE 'QUOTED' END,
           d.effective, (d.effective + interval '1 year' - interval '1 day')::date,
           t.currency, t.premium, 50000 + (p.g % 10) * 10000,
           (ARRAY['MONTHLY', 'QUARTERLY', 'ANNUAL', 'SEMI_ANNUAL'])[1 + p.g % 4],
           true, '{}', CASE WHEN p.in_force THEN 1 ELSE 0 END,
           CASE WHEN p.in_force THEN d.effective END,
           NULL, NULL, NULL, '', NULL, NULL,
           CASE WHEN p.in_force THEN p.ts + interval '1 minute' END,
           CASE WHEN p.in_force THEN p.ts + interval '1 minute' END,
           p.policy_id, p.ts,
           p.ts + CASE WHEN p.in_force THEN interval '1 minute' ELSE interval '10 seconds' END,
           t.created_by, t.created_by, NULL, CASE WHEN p.in_force THEN 4 ELSE 2 END, $1::uuid
      FROM bench_policy p
      CROSS JOIN core.policies t
      CROSS JOIN LATERAL (SELECT CASE WHEN p.in_force THEN (p.ts AT TIME ZONE 'UTC')::date
                                      ELSE (p.ts AT TIME ZONE 'UTC')::date + 30 END
                                 AS effective) d
     WHERE t.id = $4::uuid AND t.company_id = $1::uuid
    """,
    """
    INSERT INTO core.policy_versions
        (id, company_id, policy_id, version, effective_date, currency, premium,
         sum_insured, insures_holder, insured_dependent_ids, description, changed_fields,
         create_time, created_by)
    SELECT gen_random_uuid(), $1::uuid, c.id, 1, c.effective_date, c.currency, c.premium,
           c.sum_insured, true, '{}', '', '{}', c.bind_time, c.created_by
      FROM bench_policy p JOIN core.policies c ON c.id = p.policy_id
     WHERE p.in_force
    """,
    """
    INSERT INTO core.policy_status_changes
        (id, company_id, policy_id, from_state, to_state, transition, reason,
         effective_date, actor_id, request_id, create_time)
    SELECT gen_random_uuid(), $1::uuid, c.id, s.from_state, s.to_state, s.transition, '',
           CASE WHEN s.step >= 3 THEN c.effective_date END, t.actor_id,
           gen_random_uuid()::text, p.ts + s.after
      FROM bench_policy p
      JOIN core.policies c ON c.id = p.policy_id
      CROSS JOIN (SELECT actor_id FROM core.policy_status_changes
                   WHERE policy_id = $4::uuid AND company_id = $1::uuid LIMIT 1) t
      CROSS JOIN (VALUES (1, NULL, 'DRAFT', 'create', interval '0'),
                         (2, 'DRAFT', 'QUOTED', 'quote', interval '10 seconds'),
                         (3, 'QUOTED', 'BOUND', 'bind', interval '1 minute'),
                         (4, 'BOUND', 'IN_FORCE', 'activate', interval '61 seconds'))
                  AS s(step, from_state, to_state, transition, after)
     WHERE s.step <= 2 OR p.in_force
    """,
    """
    CREATE TEMP TABLE bench_claim ON COMMIT DROP AS
    SELECT j,
           gen_random_uuid() AS claim_id,
           f.policy_id,
           j % 5 <> 0 AS submitted,
           CASE WHEN j % 5 <> 0 THEN 1 + j - j / 5 END AS number,
           i.incident
      FROM generate_series(1, $3::int) AS j
      JOIN LATERAL (
            SELECT policy_id, effective_date
              FROM (SELECT policy_id, c.effective_date,
                           row_number() OVER (ORDER BY p.g) AS k,
                           count(*) OVER () AS n
                      FROM bench_policy p JOIN core.policies c ON c.id = p.policy_id
                     WHERE p.in_force) x
             WHERE x.k = 1 + (j * 7919) % x.n) f ON true
      CROSS JOIN LATERAL (
            SELECT f.effective_date
                   + (j % greatest(1, current_date - f.effective_date)) AS incident) i
    """,
    """
    INSERT INTO core.claims
        (claim_number, policy_id, policy_version, claimant_dependent_id, claim_type,
         description, coverage_code, incident_date, report_date, currency,
         claimed_amount, approved_amount, paid_amount, payment_reference, deny_reason,
         state, assigned_adjuster_id, id, create_time, update_time, created_by,
         updated_by, delete_time, version, company_id)
    SELECT CASE WHEN b.submitted
                THEN split_part(t.claim_number, '-', 1) || '-' || lpad(b.number::text, 8, '0')
           END,
           b.policy_id, 1, NULL, t.claim_type,
           (ARRAY['outpatient treatment', 'specialist visit', 'physiotherapy',
                  'diagnostic imaging', 'prescription'])[1 + b.j % 5],
           t.coverage_code, b.incident, least(b.incident + 2, current_date), t.currency,
           100 + (b.j % 40) * 25, NULL, NULL, '', '',
           CASE WHEN b.submitted THEN 'SUBMITTED' ELSE 'DRAFT' END, NULL, b.claim_id,
           least(now(), (least(b.incident + 2, current_date) + time '08:00') AT TIME ZONE 'UTC'),
           least(now(), (least(b.incident + 2, current_date) + time '08:05') AT TIME ZONE 'UTC'),
           t.created_by, t.created_by, NULL, CASE WHEN b.submitted THEN 2 ELSE 1 END, $1::uuid
      FROM bench_claim b CROSS JOIN core.claims t
     WHERE t.id = $6::uuid AND t.company_id = $1::uuid
    """,
    """
    INSERT INTO core.claim_log_entries
        (id, company_id, claim_id, action, from_state, to_state, amount, currency, note,
         payment_reference, actor_id, request_id, create_time)
    SELECT gen_random_uuid(), $1::uuid, c.id, s.action, s.from_state, s.to_state,
           c.claimed_amount, c.currency, '', '', t.actor_id, gen_random_uuid()::text,
           CASE WHEN s.action = 'create' THEN c.create_time ELSE c.update_time END
      FROM bench_claim b
      JOIN core.claims c ON c.id = b.claim_id
      CROSS JOIN (SELECT actor_id FROM core.claim_log_entries
                   WHERE claim_id = $6::uuid AND company_id = $1::uuid LIMIT 1) t
      CROSS JOIN (VALUES ('create', NULL, 'DRAFT'), ('submit', 'DRAFT', 'SUBMITTED'))
                  AS s(action, from_state, to_state)
     WHERE s.action = 'create' OR b.submitted
    """,
    """
    UPDATE core.number_counters
       SET last_value = CASE kind
               WHEN 'POLICY' THEN 1 + $2::int - $2::int / 10
               WHEN 'CLAIM' THEN 1 + $3::int - $3::int / 5 END
     WHERE company_id = $1::uuid AND kind IN ('POLICY', 'CLAIM')
    """,
    """
    INSERT INTO core.audit_events
        (company_id, actor_id, action, entity_type, entity_id, changed_fields,
         request_id, detail)
    VALUES ($1::uuid, 'system:bench-seed', 'bench.seed', 'company', $1::uuid::text, '{}', NULL,
            jsonb_build_object('policies', $2::int, 'claims', $3::int,
                               'via', 'scripts/bench.py bulk SQL from API-made templates'))
    """,
)
_SQL_PARAMS = {  # which parameters each statement uses (asyncpg wants exactly those)
    0: (2,),
    1: (1, 7),
    2: (1, 4),
    3: (1,),
    4: (1, 4),
    5: (3,),
    6: (1, 6),
    7: (1, 6),
    8: (1, 2, 3),
    9: (1, 2, 3),
}


def _renumber(sql: str, used: Sequence[int]) -> str:
    """``$n`` → positions in ``used`` (asyncpg numbers parameters from $1, no gaps)."""
    mapping = {old: new for new, old in enumerate(used, start=1)}
    return re.sub(r"\$(\d+)", lambda m: f"${mapping[int(m.group(1))]}", sql)


async def bulk_copy(conn: Any, seed: CompanySeed, templates: dict[str, str]) -> None:
    company = uuid.UUID(seed.company_id)
    values: dict[int, Any] = {
        1: company,
        2: seed.policies - 2,
        3: seed.claims - 1,
        4: uuid.UUID(templates["in_force"]),
        5: uuid.UUID(templates["quoted"]),
        6: uuid.UUID(templates["claim"]),
        7: uuid.UUID(templates["holder"]),
    }
    async with conn.transaction():
        # The row-level-security tenant of this transaction: the company itself.
        await conn.execute("SELECT set_config('cardinsa.company_id', $1, true)", seed.company_id)
        for index, sql in enumerate(_SEED_SQL):
            used = _SQL_PARAMS[index]
            await conn.execute(_renumber(sql, used), *(values[n] for n in used))


async def find_templates(conn: Any, company: uuid.UUID) -> dict[str, str] | None:
    """Templates an interrupted earlier run made through the API (the bulk copy of a
    company is one transaction, so either it happened or only these exist)."""
    row = await conn.fetchrow(
        """
        SELECT (SELECT id FROM core.policies WHERE company_id = $1 AND state = 'IN_FORCE'
                 ORDER BY create_time LIMIT 1) AS in_force,
               (SELECT id FROM core.policies WHERE company_id = $1 AND state = 'QUOTED'
                 ORDER BY create_time LIMIT 1) AS quoted,
               (SELECT id FROM core.claims WHERE company_id = $1
                 ORDER BY create_time LIMIT 1) AS claim,
               (SELECT id FROM core.policyholders WHERE company_id = $1
                 ORDER BY create_time LIMIT 1) AS holder,
               (SELECT id FROM core.products WHERE company_id = $1 AND code = $2) AS product
        """,
        company,
        PRODUCT_CODE,
    )
    if row is None or any(v is None for v in row.values()):
        return None
    return {k: str(v) for k, v in row.items()}


_NUMBERS_SQL = """
    SELECT c.kind, c.last_value,
           count(n.value) AS numbered, count(DISTINCT n.value) AS distinct_values,
           coalesce(min(n.value), 0) AS first, coalesce(max(n.value), 0) AS last
      FROM core.number_counters c
      LEFT JOIN LATERAL (
            SELECT split_part(policy_number, '-', 2)::bigint AS value FROM core.policies
             WHERE company_id = c.company_id AND c.kind = 'POLICY' AND policy_number IS NOT NULL
            UNION ALL
            SELECT split_part(claim_number, '-', 2)::bigint FROM core.claims
             WHERE company_id = c.company_id AND c.kind = 'CLAIM' AND claim_number IS NOT NULL
      ) n ON true
     WHERE c.company_id = $1
     GROUP BY c.kind, c.last_value
"""


async def check_numbers(conn: Any, seeds: Sequence[CompanySeed]) -> None:
    """Policy and claim numbers are 1..n without gaps or repeats and each counter
    holds n: what the API's numbering relies on."""
    for seed in seeds:
        for row in await conn.fetch(_NUMBERS_SQL, uuid.UUID(seed.company_id)):
            n = row["last_value"]
            if not (
                row["numbered"] == row["distinct_values"] == n
                and (n == 0 or (row["first"] == 1 and row["last"] == n))
            ):
                raise RuntimeError(f"company {seed.index}: {row['kind']} numbers: {dict(row)}")


async def seed_all(suite: Suite, profile: Profile, password: str) -> SeedResult:
    import asyncpg

    from cardinsa_foundation.db import to_libpq_url

    started = time.monotonic()
    say(
        f"seeding: {profile.companies} companies, {profile.policies} policies, "
        f"{profile.claims} claims (skipped where already there)"
    )
    await register_companies(suite, profile)
    accounts = await ensure_accounts(suite, profile, password)
    admins, logins = accounts[: profile.companies], accounts[profile.companies :]
    seeds = []
    for index, ((policies, claims), admin) in enumerate(
        zip(company_sizes(profile), admins, strict=True)
    ):
        currency = COMPANY_PROFILES[index % len(COMPANY_PROFILES)][1]
        seeds.append(
            CompanySeed(index, str(company_uuid(index)), currency, policies, claims, admin)
        )
    conn = await asyncpg.connect(to_libpq_url(suite.admin_url))
    try:
        for seed in seeds:
            company = uuid.UUID(seed.company_id)
            have = await conn.fetchval(
                "SELECT count(*) FROM core.policies WHERE company_id = $1", company
            )
            if have >= seed.policies:
                continue
            templates = await find_templates(conn, company) if have else None
            if templates is None and have == 0:
                templates = await api_templates(suite, seed, password)
            if templates is None or have > 2:
                say(f"company {seed.index}: {have} policies, not what the seed makes; left as is")
                continue
            t0 = time.monotonic()
            await bulk_copy(conn, seed, templates)
            say(
                f"company {seed.index:2d}: {seed.policies} policies, {seed.claims} claims "
                f"({time.monotonic() - t0:.1f} s)"
            )
        await conn.execute(
            "ANALYZE core.policies, core.policyholders, core.claims, "
            "core.policy_versions, core.policy_status_changes, "
            "core.claim_log_entries"
        )
        for seed in seeds:
            company = uuid.UUID(seed.company_id)
            seed.in_force_policy = str(
                await conn.fetchval(
                    "SELECT id FROM core.policies WHERE company_id = $1 AND state = 'IN_FORCE' "
                    "ORDER BY create_time DESC LIMIT 1 OFFSET 7",
                    company,
                )
            )
            seed.claim_policy = seed.in_force_policy
        await check_numbers(conn, seeds)
        counts = {}
        for table in (
            "policies",
            "policyholders",
            "claims",
            "policy_status_changes",
            "policy_versions",
            "claim_log_entries",
        ):
            # The table names are the constants above, never input.
            query = f"SELECT count(*) FROM core.{table} WHERE company_id = ANY($1::uuid[])"  # noqa: S608
            counts[table] = int(
                await conn.fetchval(query, [uuid.UUID(s.company_id) for s in seeds])
            )
    finally:
        await conn.close()
    elapsed = time.monotonic() - started
    say(f"data ready in {elapsed:.1f} s: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return SeedResult(seeds, logins, password, elapsed, counts)


# ------------------------------------------------------------------ load generators


@dataclass
class Load:
    """What the load generator saw."""

    tool: str
    requests: int  # answered, as the client counts them
    seconds: float
    rate: float
    p50_ms: float | None
    p99_ms: float | None
    client_errors: int  # failed/errored/timeout (h2load), non-2xx + socket errors (wrk)
    connections: int
    exact: bool  # a fixed number of requests (h2load -n): every one was answered
    command: str = ""
    detail: str = ""  # the client's own error report, when it has errors


_H2_FINISHED = re.compile(r"finished in ([0-9.]+)(ms|s|us)?, ([0-9.]+) req/s")
_H2_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)


def parse_h2load(output: str) -> tuple[float, float, int, int]:
    """(seconds, req/s, done, failed+errored+timeout) from h2load's summary."""
    finished = _H2_FINISHED.search(output)
    counts = _H2_REQUESTS.search(output)
    if finished is None or counts is None:
        raise RuntimeError(f"unexpected h2load output:\n{output[-1500:]}")
    value, unit = float(finished.group(1)), finished.group(2) or "s"
    seconds = value / {"s": 1, "ms": 1e3, "us": 1e6}[unit]
    done = int(counts.group(3))
    bad = int(counts.group(5)) + int(counts.group(6)) + int(counts.group(7))
    return seconds, float(finished.group(3)), done, bad


def percentiles_from_logs(paths: Sequence[Path]) -> tuple[float | None, float | None]:
    """p50 and p99 (ms) from h2load --log-file lines: start µs, status, duration µs."""
    durations: list[int] = []
    for path in paths:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                parts = line.split("\t")
                if len(parts) >= 3 and parts[2].isdigit():
                    durations.append(int(parts[2]))
    if not durations:
        return None, None
    durations.sort()

    def pick(q: float) -> float:
        return durations[min(len(durations) - 1, math.ceil(q * len(durations)) - 1)] / 1000

    return pick(0.50), pick(0.99)


def run_h2load(
    url: str,
    bodies: Sequence[bytes],
    headers: Sequence[str],
    *,
    connections: int,
    streams: int,
    requests: int | None = None,
    duration: float | None = None,
    workdir: Path,
) -> Load:
    """One h2load per body, in parallel (each with ``connections``); -n or -D."""
    workdir.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[subprocess.Popen[str], Path]] = []
    commands = []
    per = None if requests is None else max(connections, requests // len(bodies))
    try:
        for index, body in enumerate(bodies):
            body_file = workdir / f"body-{index}.bin"
            body_file.write_bytes(body)
            log = workdir / f"latency-{index}.log"
            log.unlink(missing_ok=True)
            cmd = ["h2load", "-c", str(connections), "-m", str(streams), "-t", "1"]
            cmd += ["-d", str(body_file), "--log-file", str(log)]
            for header in (*GRPC_HEADERS, *headers):
                cmd += ["-H", header]
            if per is not None:
                cmd += ["-n", str(per)]
            else:
                cmd += ["-D", str(max(1, round(duration or 1)))]
            cmd.append(url)
            commands.append(
                " ".join(c if "authorization" not in c else "-H 'authorization: …'" for c in cmd)
            )
            procs.append(
                (
                    subprocess.Popen(
                        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                    ),
                    log,
                )
            )
        limit = 600.0 if per is not None else (duration or 1) + 60
        seconds, rate, done, bad = 0.0, 0.0, 0, 0
        for proc, _ in procs:
            try:
                out, _ = proc.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
                raise RuntimeError(f"h2load did not finish within {limit:.0f} s") from None
            s, _, d, b = parse_h2load(out)
            seconds, done, bad = max(seconds, s), done + d, bad + b
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    rate = done / seconds if seconds else 0.0
    p50, p99 = percentiles_from_logs([log for _, log in procs])
    return Load(
        "h2load",
        done,
        seconds,
        rate,
        p50,
        p99,
        bad,
        connections * len(bodies),
        exact=per is not None,
        command=commands[0],
    )


_WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m)\s*$", re.M)
_WRK_TOTAL = re.compile(r"(\d+) requests in ([0-9.]+)(us|ms|s|m)")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def wrk_error_detail(output: str) -> str:
    """wrk's own error lines (socket errors by kind, non-2xx), '' when none."""
    found = [m.group(0) for m in (_WRK_SOCKET.search(output), _WRK_NON2XX.search(output)) if m]
    return "; ".join(found)


def parse_wrk(output: str) -> tuple[int, float, int, dict[str, float]]:
    """(requests, seconds, non-2xx + socket errors, {'50': ms, '99': ms})."""
    total = _WRK_TOTAL.search(output)
    if total is None:
        raise RuntimeError(f"unexpected wrk output:\n{output[-1500:]}")
    seconds = float(total.group(2)) * _UNIT_S[total.group(3)]
    errors = sum(int(n) for n in (_WRK_SOCKET.search(output) or re.match("", "")).groups())
    non2xx = _WRK_NON2XX.search(output)
    errors += int(non2xx.group(1)) if non2xx else 0
    latency = {
        m.group(1): float(m.group(2)) * _UNIT_S[m.group(3)] * 1000
        for m in _WRK_LATENCY.finditer(output)
    }
    return int(total.group(1)), seconds, errors, latency


def run_wrk(url: str, headers: Sequence[str], *, connections: int, seconds: float) -> Load:
    threads = 2 if connections >= 2 else 1
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
    ]
    for header in headers:
        cmd += ["-H", header]
    cmd.append(url)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-1000:]}")
    requests, elapsed, errors, latency = parse_wrk(done.stdout)
    shown = " ".join(c if "authorization" not in c else "'authorization: …'" for c in cmd)
    detail = wrk_error_detail(done.stdout) if errors else ""
    return Load(
        "wrk",
        requests,
        elapsed,
        requests / elapsed if elapsed else 0.0,
        latency.get("50"),
        latency.get("99"),
        errors,
        connections,
        exact=False,
        command=shown,
        detail=detail,
    )


def gateway_failures(access_log: Path, offset: int | None) -> str:
    """What Envoy's access log says about the failed requests written after
    ``offset`` (the gateway's side of an error the services never counted).
    Requests the client abandoned (status 0, downstream disconnect) are left out."""
    if offset is None or not access_log.exists():
        return ""
    time.sleep(0.5)  # Envoy flushes its log every 250 ms
    found: dict[str, int] = {}
    with access_log.open("rb") as log:
        log.seek(offset)
        for raw in log:
            with contextlib.suppress(ValueError):
                entry = json.loads(raw)
                if entry.get("status") in (200, 0):
                    continue
                key = (
                    f"HTTP {entry.get('status')} {entry.get('details')} "
                    f"grpc-status {entry.get('grpc_status')}"
                )
                found[key] = found.get(key, 0) + 1
    return ", ".join(f"gateway logged {n} x {key}" for key, n in sorted(found.items()))


# ------------------------------------------------------------------ server-side counts

_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\}\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(ports: Sequence[int]) -> dict[tuple[str, str, str, str], float]:
    """(metric, service, method, code) → value, summed over the ports (workers)."""
    found: dict[tuple[str, str, str, str], float] = {}
    for port in ports:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match is None or match.group(1) not in (
                "grpc_server_handled_total",
                "grpc_server_in_flight",
            ):
                continue
            labels = dict(_LABEL.findall(match.group(2)))
            key = (
                match.group(1),
                labels.get("grpc_service", ""),
                labels.get("grpc_method", ""),
                labels.get("grpc_code", ""),
            )
            found[key] = found.get(key, 0.0) + float(match.group(3))
    return found


def settle(
    ports: Sequence[int], service: str, method: str, timeout_s: float = 15
) -> dict[tuple[str, str, str, str], float]:
    """A scrape taken once no call of the method is in flight any more."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = scrape(ports)
        if counts.get(("grpc_server_in_flight", service, method, ""), 0.0) <= 0:
            return counts
        if time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


@dataclass
class Verified:
    server_ok: int
    server_codes: dict[str, int]  # non-OK codes the server counted
    cancelled_at_stop: int  # wrk's abandoned in-flight calls (≤ one per connection)
    errors: int


def verify(
    before: dict[tuple[str, str, str, str], float],
    after: dict[tuple[str, str, str, str], float],
    service: str,
    method: str,
    load: Load,
) -> Verified:
    """Errors from the server's counters (see the module docstring)."""
    codes: dict[str, int] = {}
    for key, value in after.items():
        metric, svc, meth, code = key
        if metric == "grpc_server_handled_total" and svc == service and meth == method:
            moved = round(value - before.get(key, 0.0))
            if moved:
                codes[code] = moved
    ok = codes.pop("OK", 0)
    cancelled = 0
    if not load.exact:
        cancelled = min(codes.get("CANCELLED", 0), load.connections)
        if cancelled:
            codes["CANCELLED"] -= cancelled
            if not codes["CANCELLED"]:
                del codes["CANCELLED"]
    # Every call the client saw fail is an error; of those it saw succeed, every one
    # the server did not count as OK is one too (h2load's gRPC errors), and so is
    # every non-OK the server counted that the client did not see as a failure.
    server_bad = sum(codes.values())
    client_good = load.requests - load.client_errors
    errors = load.client_errors + max(client_good - ok, server_bad - load.client_errors, 0)
    return Verified(ok, codes, cancelled, errors)


# ------------------------------------------------------------------ scenarios


@dataclass
class Row:
    key: str
    scenario: str
    rate: float | None = None
    baseline: str | None = None
    ratio: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int | None = None
    server_ok: int | None = None
    server_codes: dict[str, int] = field(default_factory=dict)
    cancelled_at_stop: int = 0
    errors: int | None = None
    peak_mb: float | None = None
    #: CPU the serving processes used per call during the measured run (µs): the
    #: service's workers (cpu_us), Envoy for REST (envoy_cpu_us). Less sensitive to
    #: other load on the machine than req/s.
    cpu_us: float | None = None
    envoy_cpu_us: float | None = None
    target: str = ""
    holds: bool | None = None
    note: str = ""
    command: str = ""


class Bench:
    def __init__(
        self, suite: Suite, seed: SeedResult, profile: Profile, workdir: Path, noop: NoopServer
    ) -> None:
        self.suite = suite
        self.seed = seed
        self.profile = profile
        self.workdir = workdir
        self.noop_port = noop.port
        self.noop_pid = noop.process.pid
        self.rows: dict[str, Row] = {}

    # -- helpers

    def token(self, account: Account) -> str:
        return asyncio.run(
            login(self.suite.endpoints.grpc("identity"), account, self.seed.password)
        )

    def add(self, row: Row) -> Row:
        self.rows[row.key] = row
        shown = f"{row.rate:,.0f} req/s" if row.rate is not None else ""
        if row.peak_mb is not None:
            shown = f"{row.peak_mb:.1f} MB"
        elif row.rate is None and row.cpu_us is not None:
            shown = f"{row.cpu_us:.2f} µs/call, {row.ratio or 0:.4%} of {row.baseline}"
        extra = f", errors {row.errors}" if row.errors is not None else ""
        say(f"{row.scenario}: {shown}{extra}")
        return row

    def grpc_scenario(
        self,
        key: str,
        scenario: str,
        *,
        address: str,
        path: str,
        bodies: Sequence[bytes],
        headers: Sequence[str] = (),
        metrics: Sequence[int] | None,
        connections: int | None = None,
        streams: int | None = None,
        seconds: float | None = None,
        warmup: bool = True,
        fixed_requests: int | None = None,
        cpu_pids: Sequence[int] = (),
    ) -> Row:
        """h2load: a timed warm-up (rate estimate), then exactly rate x seconds calls."""
        connections = connections or self.profile.connections
        streams = streams or self.profile.streams
        seconds = seconds or self.profile.seconds
        url = f"http://{address}{path}"
        workdir = self.workdir / key
        requests = fixed_requests
        if requests is None:
            if warmup:
                probe = run_h2load(
                    url,
                    bodies,
                    headers,
                    connections=connections,
                    streams=streams,
                    duration=self.profile.warmup_seconds,
                    workdir=workdir,
                )
                estimate = probe.rate
            else:
                estimate = 100.0
            requests = max(connections * len(bodies), int(estimate * seconds))
        service, _, method = path.strip("/").rpartition("/")
        before = settle(metrics, service, method) if metrics else {}
        cpu_before = cpu_seconds(cpu_pids)
        load = run_h2load(
            url,
            bodies,
            headers,
            connections=connections,
            streams=streams,
            requests=requests,
            workdir=workdir,
        )
        cpu_used = cpu_seconds(cpu_pids) - cpu_before
        row = Row(
            key,
            scenario,
            rate=load.rate,
            p50_ms=load.p50_ms,
            p99_ms=load.p99_ms,
            requests=load.requests,
            cpu_us=cpu_used / load.requests * 1e6 if cpu_pids and load.requests else None,
            command=load.command,
        )
        if metrics:
            check = verify(before, settle(metrics, service, method), service, method, load)
            row.server_ok, row.server_codes = check.server_ok, check.server_codes
            row.errors = check.errors
        else:
            row.errors = load.client_errors
        return row

    def rest_scenario(
        self, key: str, scenario: str, *, path: str, token: str, connections: int, seconds: float
    ) -> Row:
        service, method = "cardinsa.core.v1.PolicyService", "GetPolicy"
        metrics = self.suite.endpoints.metrics_ports("core")
        url = f"http://127.0.0.1:{self.suite.endpoints.gateway}{path}"
        headers = [f"authorization: Bearer {token}"]
        run_wrk(url, headers, connections=connections, seconds=self.profile.warmup_seconds)
        before = settle(metrics, service, method)
        core_pids, envoy_pids = self.pids("core"), self.pids("envoy")
        cpu_before = cpu_seconds(core_pids), cpu_seconds(envoy_pids)
        access_log = self.suite.state_dir / "envoy-access.log"
        offset = access_log.stat().st_size if access_log.exists() else None
        load = run_wrk(url, headers, connections=connections, seconds=seconds)
        cpu_core = cpu_seconds(core_pids) - cpu_before[0]
        cpu_envoy = cpu_seconds(envoy_pids) - cpu_before[1]
        check = verify(before, settle(metrics, service, method), service, method, load)
        calls = max(1, check.server_ok + check.cancelled_at_stop)
        return Row(
            key,
            scenario,
            rate=load.rate,
            p50_ms=load.p50_ms,
            p99_ms=load.p99_ms,
            requests=load.requests,
            server_ok=check.server_ok,
            server_codes=check.server_codes,
            cancelled_at_stop=check.cancelled_at_stop,
            errors=check.errors,
            cpu_us=cpu_core / calls * 1e6 if core_pids else None,
            envoy_cpu_us=cpu_envoy / calls * 1e6 if envoy_pids else None,
            note="; ".join(
                part for part in (load.detail, gateway_failures(access_log, offset)) if part
            ),
            command=load.command,
        )

    def pids(self, service: str) -> list[int]:
        """The service's worker processes (or Envoy's), for CPU accounting."""
        if not hasattr(self, "_pids"):
            self._pids = self.suite.pids()
        return [pid for name, pid in self._pids.items() if name.split("[")[0] == service]

    # -- the scenarios

    def run(self) -> None:
        from cardinsa.core.v1 import claim_service_pb2 as cs
        from cardinsa.core.v1 import policy_service_pb2 as ps
        from cardinsa.core.v1 import resources_pb2 as r
        from cardinsa.identity.v1 import auth_service_pb2

        p = self.profile
        ep = self.suite.endpoints
        core = ep.grpc("core")
        core_metrics = ep.metrics_ports("core")
        large = self.seed.companies[0]
        admin_token = self.token(large.admin)
        auth = [f"authorization: Bearer {admin_token}"]
        get_path = "/cardinsa.core.v1.PolicyService/GetPolicy"
        list_path = "/cardinsa.core.v1.PolicyService/ListPolicies"
        policy = large.in_force_policy

        noop = self.add(
            self.grpc_scenario(
                "noop",
                "noop: bare grpc.aio, no interceptor (ceiling)",
                address=f"127.0.0.1:{self.noop_port}",
                path=NOOP_PATH,
                bodies=[b"\x00\x00\x00\x00\x00"],
                metrics=None,
                cpu_pids=[self.noop_pid],
            )
        )
        noop.target = "baseline"

        get = self.add(
            self.grpc_scenario(
                "grpc_get_policy",
                f"GetPolicy gRPC, {self.core_processes()}",
                address=core,
                path=get_path,
                headers=auth,
                metrics=core_metrics,
                cpu_pids=self.pids("core"),
                bodies=[grpc_frame(ps.GetPolicyRequest(policy_id=policy))],
            )
        )
        self.ratio(get, noop, minimum=0.40)
        self.add(self.revocation_check(get))
        self.tracing_off(get)

        rest = self.add(
            self.rest_scenario(
                "rest_get_policy",
                f"GetPolicy REST via gateway, wrk {p.connections} conn",
                path=f"/v1/policies/{policy}",
                token=self.token(large.admin),
                connections=p.connections,
                seconds=p.seconds,
            )
        )
        self.ratio(rest, get, minimum=0.85)
        rest.target += " and p99 < 50 ms"
        rest.holds = bool(rest.holds) and rest.p99_ms is not None and rest.p99_ms < 50

        list_first = self.add(
            self.grpc_scenario(
                "list_page_1",
                f"ListPolicies {LIST_FILTER}, page 1 (size {p.list_page_size})",
                address=core,
                path=list_path,
                headers=[f"authorization: Bearer {self.token(large.admin)}"],
                metrics=core_metrics,
                cpu_pids=self.pids("core"),
                bodies=[
                    grpc_frame(
                        ps.ListPoliciesRequest(page_size=p.list_page_size, filter=LIST_FILTER)
                    )
                ],
            )
        )
        list_first.target = "baseline"
        token_n = asyncio.run(self.page_token(large.admin, p.list_page))
        list_far = self.add(
            self.grpc_scenario(
                "list_page_far",
                f"ListPolicies {LIST_FILTER}, page {p.list_page:,}",
                address=core,
                path=list_path,
                headers=[f"authorization: Bearer {self.token(large.admin)}"],
                metrics=core_metrics,
                cpu_pids=self.pids("core"),
                bodies=[
                    grpc_frame(
                        ps.ListPoliciesRequest(
                            page_size=p.list_page_size, filter=LIST_FILTER, page_token=token_n
                        )
                    )
                ],
            )
        )
        self.ratio(list_far, list_first, minimum=1 / 1.2)
        list_far.target = f"cost ≤ 1.2 x page 1 (ratio ≥ {1 / 1.2:.2f})"

        today = dt.datetime.now(dt.UTC).date()
        claim = cs.CreateClaimRequest(
            claim=r.Claim(
                policy_id=large.claim_policy,
                claimant=r.InsuredMember(policyholder=True),
                claim_type=r.Claim.MEDICAL,
                description="bench claim",
                coverage_code="OUTPATIENT",
                incident_date=gdate(today - dt.timedelta(days=1)),
                claimed_amount=money("250", large.currency),
            )
        )
        create = self.add(
            self.grpc_scenario(
                "grpc_create_claim",
                f"CreateClaim gRPC, {self.core_processes()}",
                address=core,
                path="/cardinsa.core.v1.ClaimService/CreateClaim",
                headers=[f"authorization: Bearer {self.token(large.admin)}"],
                metrics=core_metrics,
                cpu_pids=self.pids("core"),
                bodies=[grpc_frame(claim)],
            )
        )
        self.ratio(create, noop, minimum=0.20)

        many = self.add(
            self.rest_scenario(
                "rest_many_connections",
                f"GetPolicy REST via gateway, {p.many_connections:,} conn "
                f"for {p.many_seconds:.0f} s",
                path=f"/v1/policies/{policy}",
                token=self.token(large.admin),
                connections=p.many_connections,
                seconds=p.many_seconds,
            )
        )
        many.target, many.holds = "zero errors", many.errors == 0

        control = self.add(
            self.grpc_scenario(
                "control_not_found",
                "control: GetPolicy of an unknown id (all must be errors)",
                address=core,
                path=get_path,
                headers=[f"authorization: Bearer {self.token(large.admin)}"],
                metrics=core_metrics,
                cpu_pids=self.pids("core"),
                bodies=[grpc_frame(ps.GetPolicyRequest(policy_id=str(uuid.uuid4())))],
                warmup=False,
                fixed_requests=max(500, p.connections * 10),
            )
        )
        control.target = "errors = requests (h2load calls them all 2xx)"
        control.holds = control.errors == control.requests and bool(control.requests)

        hash_row = self.add(self.hash_ceiling())
        bodies = [
            grpc_frame(auth_service_pb2.LoginRequest(email=a.email, password=self.seed.password))
            for a in self.seed.logins
        ]
        login_row = self.add(
            self.grpc_scenario(
                "grpc_login",
                f"Login gRPC, {len(bodies)} accounts x 1 connection",
                address=ep.grpc("identity"),
                path="/cardinsa.identity.v1.AuthService/Login",
                bodies=bodies,
                metrics=ep.metrics_ports("identity"),
                cpu_pids=self.pids("identity"),
                connections=1,
                streams=1,
            )
        )
        self.ratio(login_row, hash_row, minimum=0.90)

    def tracing_off(self, get: Row) -> None:
        """Tracing off must cost GetPolicy at most 2 % (see tracing_off_hooks_us)."""
        hooks = tracing_off_hooks_us()
        share = hooks / get.cpu_us if get.cpu_us else None
        shown = f"{share * 100:.3f} %" if share is not None else "n/a"
        row = self.add(
            Row(
                "tracing_off",
                f"tracing off: its hooks {hooks:.2f} µs per GetPolicy = {shown} of its CPU",
                baseline=get.key,
                ratio=share,
                cpu_us=hooks,
                target="≤ 0.02 x GetPolicy CPU µs/call",
                holds=share is not None and share <= 0.02,
                note=(
                    "the statements tracing adds to a GetPolicy while off, timed in the "
                    f"bench process: {hooks:.3f} µs against {get.cpu_us or 0:,.0f} µs of "
                    "core CPU per GetPolicy in this run"
                ),
            )
        )
        row.target = "≤ 0.02 x GetPolicy CPU µs/call"

    def core_processes(self) -> str:
        n = self.suite.endpoints.workers
        return "1 core process" if n == 1 else f"{n} core processes"

    def ratio(self, row: Row, base: Row, *, minimum: float) -> None:
        row.baseline = base.key
        if row.rate and base.rate:
            row.ratio = row.rate / base.rate
        row.target = f"≥ {minimum:.2f} x {base.key}"
        row.holds = row.ratio is not None and row.ratio >= minimum and row.errors == 0

    async def page_token(self, account: Account, page: int) -> str:
        """The token of page ``page`` of the filtered list, by walking to it."""
        import grpc

        from cardinsa.core.v1 import policy_service_pb2 as ps
        from cardinsa.core.v1 import policy_service_pb2_grpc as psg

        token = await login(self.suite.endpoints.grpc("identity"), account, self.seed.password)
        md = [("authorization", f"Bearer {token}")]
        async with grpc.aio.insecure_channel(self.suite.endpoints.grpc("core")) as channel:
            stub = psg.PolicyServiceStub(channel)
            page_token = ""
            for number in range(1, page):
                reply = await stub.ListPolicies(
                    ps.ListPoliciesRequest(
                        page_size=self.profile.list_page_size,
                        filter=LIST_FILTER,
                        page_token=page_token,
                    ),
                    metadata=md,
                    timeout=30,
                )
                page_token = reply.next_page_token
                if not page_token:
                    raise RuntimeError(f"the list ends at page {number}, before page {page}")
        return page_token

    def revocation_check(self, get: Row) -> Row:
        """What refusing revoked tokens costs GetPolicy: the check every call runs
        (RevocationSet.check, after the verified-token cache), timed alone in
        this process with a realistic set -- 10 000 revoked sessions and 10 000
        subjects with a not-before -- against GetPolicy's CPU per call measured
        above (which includes it: the suite's core follows identity's
        revocations). Process CPU time, loop included (an overestimate)."""
        from cardinsa_foundation.context import Principal, PrincipalKind
        from cardinsa_foundation.revocation import (
            SESSION,
            SUBJECT,
            Revocation,
            RevocationBatch,
            RevocationSet,
        )

        entries = 10_000
        now = time.time()
        revocations = RevocationSet(name="bench")
        revocations.apply(
            RevocationBatch(
                tuple(
                    Revocation(i, kind, str(uuid.uuid4()), now, now + 900, "bench")
                    for i in range(entries)
                    for kind in (SESSION, SUBJECT)
                ),
                cursor=entries,
                caught_up=True,
            )
        )
        caller = Principal(
            subject=str(uuid.uuid4()),
            kind=PrincipalKind.USER,
            company_id=str(uuid.uuid4()),
            session_id=str(uuid.uuid4()),
        )
        calls = 1_000_000 if self.profile.name == "full" else 200_000
        check = revocations.check
        started = time.process_time()
        for _ in range(calls):
            check(caller, now)
        per_call_us = (time.process_time() - started) / calls * 1e6
        row = Row(
            "revocation_check",
            f"revocation check alone ({len(revocations):,} entries) vs GetPolicy CPU",
            requests=calls,
            errors=0,
            cpu_us=per_call_us,
            baseline="grpc_get_policy CPU",
            target="≤ 0.03 x GetPolicy CPU/call",
        )
        if get.cpu_us:
            row.ratio = per_call_us / get.cpu_us
        row.holds = row.ratio is not None and row.ratio <= 0.03
        return row

    def hash_ceiling(self) -> Row:
        """argon2id verifications per second with identity's own hasher: its
        parameters and its thread pool size, on these cores, now."""
        from concurrent.futures import ThreadPoolExecutor

        from cardinsa_identity.domain.passwords import PasswordHasher

        hasher = PasswordHasher()
        threads = 2  # PasswordHasher's default max_concurrency, as identity uses it
        stored = hasher.hash_password(self.seed.password)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            # Warm-up: each thread's first hashes pay for mapping their 32 MiB.
            list(pool.map(lambda _: hasher.verify_password(self.seed.password, stored), range(4)))
        deadline = time.monotonic() + self.profile.hash_seconds
        counts = [0] * threads

        def work(slot: int) -> None:
            while time.monotonic() < deadline:
                ok, _ = hasher.verify_password(self.seed.password, stored)
                assert ok
                counts[slot] += 1

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(work, range(threads)))
        elapsed = time.monotonic() - started
        return Row(
            "argon2_verify",
            f"argon2id verify alone, {threads} threads (login ceiling)",
            rate=sum(counts) / elapsed,
            requests=sum(counts),
            target="baseline",
            errors=0,
        )

    def memory(self) -> None:
        for name, pid in sorted(self.suite.pids().items()):
            peak = vm_hwm_mb(pid)
            row = Row(f"memory_{name}", f"peak memory (VmHWM) {name}, pid {pid}", peak_mb=peak)
            if name != "envoy":
                row.target = f"< {SERVICE_TARGET_MB:.0f} MB"
                row.holds = peak is not None and peak < SERVICE_TARGET_MB
            else:
                row.target = "reported"
            self.add(row)


def tracing_off_hooks_us(iterations: int = 200_000) -> float:
    """What tracing costs a GetPolicy while it is off, in µs per call, timed here.

    With ``CARDINSA_TRACING_ENABLED`` false (the default, and this process:
    nothing configures tracing here) a GetPolicy runs these statements because
    tracing exists, each copied from where it runs: the call pipeline's test
    before and after the call (cardinsa_foundation.interceptors), Database.read's
    test (db.py) and the trace ids the JSON access line looks up in the context
    (logging.py; none, so the line has no trace fields). No span, provider or
    exporter exists (tests/integration/test_tracing.py). Timed as the loop of
    these statements less an empty loop, and set against the GetPolicy's CPU
    per call measured in the same run.
    """
    import timeit

    from cardinsa_foundation import tracing
    from cardinsa_foundation.context import trace_var

    if tracing.TRACER is not None:
        raise RuntimeError("tracing is on in the bench process; the figure would be wrong")
    method = "/cardinsa.core.v1.PolicyService/GetPolicy"
    metadata = {"authorization": "Bearer x", "x-request-id": str(uuid.uuid4())}
    traced = True

    def hooks() -> None:
        span = (
            tracing.start_server_span(method, metadata)
            if traced and tracing.TRACER is not None
            else None
        )
        if tracing.TRACER is not None:  # Database.read
            raise AssertionError
        trace_ids = trace_var.get()  # the log line's context, then its test
        if trace_ids:
            raise AssertionError
        if span is not None:  # the pipeline's end of call
            raise AssertionError

    def empty() -> None:
        return None

    hooks_s: list[float] = []
    empty_s: list[float] = []
    for _ in range(7):  # interleaved, best of each: the machine may be busy
        hooks_s.append(timeit.timeit(hooks, number=iterations) / iterations)
        empty_s.append(timeit.timeit(empty, number=iterations) / iterations)
    return max(0.0, min(hooks_s) - min(empty_s)) * 1e6


# ------------------------------------------------------------------ report


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def render_table(rows: Sequence[Row]) -> str:
    header = (
        "scenario",
        "req/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "requests",
        "server OK",
        "errors",
        "CPU µs/call",
        "peak MB",
        "target",
        "holds",
    )
    lines = []
    for row in rows:
        spec = ".2f" if row.ratio is None or row.ratio >= 0.1 else ".4f"
        ratio = "" if row.ratio is None else f"{row.ratio:{spec}} ({row.baseline})"
        errors = "" if row.errors is None else str(row.errors)
        if row.server_codes:
            errors += " " + ",".join(f"{k}:{v}" for k, v in sorted(row.server_codes.items()))
        if row.cancelled_at_stop:
            errors += f" (+{row.cancelled_at_stop} cancelled at stop)"
        holds = {True: "yes", False: "NO", None: ""}[row.holds]
        lines.append(
            (
                row.scenario,
                _fmt(row.rate, ",.0f"),
                ratio,
                _fmt(row.p50_ms, ".2f"),
                _fmt(row.p99_ms, ".2f"),
                _fmt(row.requests, ","),
                _fmt(row.server_ok, ","),
                errors,
                _fmt(row.cpu_us, ",.0f" if row.cpu_us is None or row.cpu_us >= 10 else ".2f")
                + (f" +{row.envoy_cpu_us:,.0f} envoy" if row.envoy_cpu_us is not None else ""),
                _fmt(row.peak_mb, ".1f"),
                row.target,
                holds,
            )
        )
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]
    right = {1, 2, 3, 4, 5, 6, 8, 9}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines)])


def git_revision() -> str:
    done = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def tool_versions() -> dict[str, str]:
    versions = {}
    for tool, flag in (("h2load", "--version"), ("wrk", "--version")):
        done = subprocess.run([tool, flag], capture_output=True, text=True, check=False)
        versions[tool] = (done.stdout or done.stderr).strip().splitlines()[0][:80]
    return versions


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


# ------------------------------------------------------------------ main


def hold(suite: Suite, seed: SeedResult, state_dir: Path, noop_port: int) -> None:
    large = seed.companies[0]
    token = asyncio.run(login(suite.endpoints.grpc("identity"), large.admin, seed.password))
    info = {
        "endpoints": asdict(suite.endpoints),
        "noop_port": noop_port,
        "pids": suite.pids(),
        "policy_id": large.in_force_policy,
        "token": token,
        "login_emails": [a.email for a in seed.logins],
    }
    path = state_dir / "hold.json"
    path.write_text(json.dumps(info, indent=2) + "\n")
    path.chmod(0o600)
    say(f"holding; {path} has the ports, pids and a token. Ctrl-C stops.")
    with contextlib.suppress(KeyboardInterrupt):
        while suite.process is None or suite.process.poll() is None:
            time.sleep(1)


class NoopServer:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve-noop"], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def stop(self) -> None:
        stop_process(self.process)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke mode: tiny data, ~2.5 s per scenario (make test runs it)",
    )
    parser.add_argument(
        "--use-running",
        action="store_true",
        help="load the suite `make up` runs instead of starting one",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes per service (the targets are for 1)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="measured seconds per scenario (default 10, quick 2.5)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="suite state and PostgreSQL data (default .data/bench)",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="where the JSON goes (default .data/bench)"
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start from an empty database (removes the state dir's data)",
    )
    parser.add_argument(
        "--hold",
        action="store_true",
        help="start and seed, write <state-dir>/hold.json (ports, pids, a token, a policy "
        "id) and wait for Ctrl-C: for profiling with py-spy against a loaded suite",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="CARDINSA_X=VALUE",
        help="a setting for the suite started here (repeatable), e.g. to compare runs",
    )
    parser.add_argument("--serve-noop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_noop:
        asyncio.run(serve_noop())
        return 0

    profile = QUICK if args.quick else FULL
    if args.seconds:
        profile = Profile(**{**asdict(profile), "seconds": args.seconds})
    state_dir = (args.state_dir or BENCH_DIR / ("quick" if args.quick else "full")).resolve()
    output_dir = (args.output_dir or BENCH_DIR).resolve()
    ensure_tools()
    raise_fd_limit()
    if args.fresh and not args.use_running and state_dir.exists():
        say(f"removing {state_dir}")
        shutil.rmtree(state_dir)

    suite: Suite | None = None
    noop: NoopServer | None = None
    started = dt.datetime.now(dt.UTC)

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        if args.use_running:
            suite = Suite.running(state_dir, args.workers)
        else:
            extra = dict(item.split("=", 1) for item in args.env)
            suite = Suite.start(state_dir, args.workers, timeout_s=180, extra_env=extra)
        noop = NoopServer()
        seed = asyncio.run(seed_all(suite, profile, bench_password(state_dir)))
        if args.hold:
            hold(suite, seed, state_dir, noop.port)
            return 0
        busy_before = machine_busy()
        with tempfile.TemporaryDirectory(prefix="cardinsa-bench-") as work:
            bench = Bench(suite, seed, profile, Path(work), noop)
            bench.run()
            bench.memory()
        busy_after = machine_busy()
        rows = list(bench.rows.values())
        table = render_table(rows)
        print()
        print(
            f"Cardinsa benchmark ({profile.name}), {git_revision()}, {os.cpu_count()} CPUs "
            f"({cpu_model()}), {started:%Y-%m-%d %H:%M} UTC"
        )
        print(
            f"other load on the machine while the suite idled: {busy_before:.0%} before, "
            f"{busy_after:.0%} after"
            + (
                "  -- busy: ratios and req/s are unreliable, compare CPU µs/call"
                if max(busy_before, busy_after) > 0.15
                else ""
            )
        )
        print(table)
        for row in rows:
            if row.note:
                print(f"  {row.scenario}: {row.note}")
        missed = [r.scenario for r in rows if r.holds is False]
        print()
        print("all targets hold" if not missed else "targets missed: " + "; ".join(missed))
        output_dir.mkdir(parents=True, exist_ok=True)
        out = output_dir / f"{started:%Y%m%dT%H%M%SZ}-{profile.name}.json"
        out.write_text(
            json.dumps(
                {
                    "started": started.isoformat(),
                    "profile": asdict(profile),
                    "revision": git_revision(),
                    "machine": {
                        "cpus": os.cpu_count(),
                        "cpu": cpu_model(),
                        "kernel": platform.release(),
                        "python": platform.python_version(),
                    },
                    "tools": tool_versions(),
                    "machine_busy": {
                        "before": round(busy_before, 3),
                        "after": round(busy_after, 3),
                    },
                    "suite": {
                        "started_here": suite.process is not None,
                        "workers": suite.endpoints.workers,
                    },
                    "data": {
                        "companies": len(seed.companies),
                        "counts": seed.counts,
                        "seed_seconds": round(seed.seconds, 1),
                    },
                    "rows": [asdict(r) for r in rows],
                    "targets_missed": missed,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"figures written to {out}")
        return 0
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if noop is not None:
            noop.stop()
        if suite is not None:
            suite.stop()


if __name__ == "__main__":
    sys.exit(main())
