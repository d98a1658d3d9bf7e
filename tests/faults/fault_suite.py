"""The whole suite as real processes, core with two workers, for the fault tests.

``FaultSuite`` runs `make up` with ``--workers 2`` through the tooling's one
launcher (``cardinsa_tools.launcher``) in a directory of its own
(not under pytest's basetemp: the embedded PostgreSQL runs as an unprivileged
user when we are root and must traverse the path), on free ports of 127.0.0.1,
in a process group of its own. Every service runs two workers, each on its own
port and metrics port (CARDINSA_WORKER_PORT_STEP apart, the default), all behind
the gateway. Health is probed often (Envoy every 0.5 s, the services every
second) so that the tests stay short; ``production=True`` keeps the gateway's
health checks, the drain delay and the grace period at their defaults instead.

Stopping: SIGINT to the launcher's group (what Ctrl-C does to `make up`), then
SIGKILL to the group, then, by PID, whatever is left (Envoy from its PID file)
and the embedded PostgreSQL (which leaves the group). Also when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cardinsa.identity.v1 import auth_service_pb2, auth_service_pb2_grpc
from cardinsa_foundation.local_postgres import LocalPostgres
from cardinsa_tools.launcher import SuitePorts, SuiteRun, stop_postgres_apart, suite_environment
from cardinsa_tools.procfs import cmdline, listening_pid

READY_TIMEOUT_S = 120.0
WORKERS = 2
ADMIN_EMAIL = "admin@faults.cardinsa.test"
PASSWORD = "Faults-Test-Passw0rd!"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


#: The services' default CARDINSA_WORKER_PORT_STEP: worker i listens on port + i x this.
PORT_STEP = 100


@dataclass
class FaultSuite:
    base: Path
    ports: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    run: SuiteRun | None = None
    log: Path = field(init=False)
    production: bool = False

    def __post_init__(self) -> None:
        self.log = self.base / "suite.log"
        self.suite_ports = SuitePorts.free(WORKERS, PORT_STEP, gateway_metrics=False)
        self.ports = self.suite_ports.all()
        self.env = suite_environment(
            self.suite_ports,
            self.postgres_dir,
            self.base,
            CARDINSA_GATEWAY_HEALTH_INTERVAL_S="0.5",
            CARDINSA_GATEWAY_HEALTH_TIMEOUT_S="0.5",
            CARDINSA_DEMO_ADMIN_EMAIL=ADMIN_EMAIL,
            CARDINSA_DEMO_ADMIN_PASSWORD=PASSWORD,
            CARDINSA_LOGIN_MAX_FAILURES_PER_ADDRESS="100000",
            CARDINSA_GRACE_PERIOD_S="2",
            # Fail fast while the database is away (UNAVAILABLE, not a long wait).
            CARDINSA_DB_POOL_TIMEOUT_S="3",
            CARDINSA_DB_CONNECT_TIMEOUT_S="2",
            CARDINSA_LOG_LEVEL="WARNING",
        )
        if self.production:
            for name in (
                "CARDINSA_GATEWAY_HEALTH_INTERVAL_S",
                "CARDINSA_GATEWAY_HEALTH_TIMEOUT_S",
                "CARDINSA_GRACE_PERIOD_S",
            ):
                del self.env[name]

    @property
    def process(self) -> Any:
        """The launcher's process (once started)."""
        return self.run.process if self.run is not None else None

    @property
    def postgres_dir(self) -> Path:
        return self.base / "postgres"

    def address(self, service: str, worker: int = 0) -> str:
        return f"127.0.0.1:{self.ports[service] + worker * PORT_STEP}"

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.ports['gateway']}"

    def postgres(self) -> LocalPostgres:
        return LocalPostgres(self.postgres_dir, self.ports["postgres"])

    def restart_postgres(self, action: str) -> None:
        """``stop`` or ``start`` the suite's PostgreSQL from a fresh process (this one
        runs gRPC threads; see cardinsa_tools.launcher.stop_postgres_apart)."""
        stop_postgres_apart(self.postgres_dir, self.ports["postgres"], self.env, action)

    # -- start / stop

    def start(self) -> None:
        self.run = SuiteRun(self.base / "state", self.env, self.log)
        self.run.start(["--workers", str(WORKERS)])
        try:
            self.run.wait_ready(READY_TIMEOUT_S)
        except AssertionError:
            raise AssertionError(f"the suite did not become ready:\n{self.tail()}") from None

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """Ctrl-C to the group, SIGKILL if it hangs, then whatever is left, by PID."""
        if self.run is not None:
            self.run.stop(timeout_s=40)
            self.run.sweep(self.postgres_dir, self.ports["postgres"])
        elif self.postgres().is_running():
            LocalPostgres(self.postgres_dir, self.ports["postgres"]).stop()

    # -- helpers

    def metrics(self, service: str, worker: int) -> str:
        url = f"http://127.0.0.1:{self.ports[service + '_metrics'] + worker * PORT_STEP}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return str(reply.read().decode())

    def worker_pid(self, service: str, worker: int) -> int:
        """The worker process serving ``service`` on its port (checked to be ours)."""
        pid = listening_pid(self.ports[service] + worker * PORT_STEP)
        assert pid is not None, f"nothing listens for {service} worker {worker}"
        command = cmdline(pid)
        assert f"cardinsa_{service}" in command and "main" in command, command
        assert os.getpgid(pid) == self.process.pid if self.process else False
        return pid

    def kill_worker(self, service: str, worker: int) -> int:
        pid = self.worker_pid(service, worker)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while listening_pid(self.ports[service] + worker * PORT_STEP) is not None:
            assert time.monotonic() < deadline, "the killed worker still listens"
            time.sleep(0.05)
        return pid

    def login(self) -> str:
        async def go() -> str:
            async with grpc.aio.insecure_channel(self.address("identity")) as channel:
                reply = await auth_service_pb2_grpc.AuthServiceStub(channel).Login(
                    auth_service_pb2.LoginRequest(email=ADMIN_EMAIL, password=PASSWORD),
                    timeout=30,
                )
            return str(reply.access_token)

        return asyncio.run(go())

    def envoy_endpoints(self, cluster: str = "core") -> dict[str, str]:
        """host:port → health flags of the cluster's endpoints (Envoy admin /clusters)."""
        url = f"http://127.0.0.1:{self.ports['gateway_admin']}/clusters?format=json"
        with urllib.request.urlopen(url, timeout=5) as reply:
            data: dict[str, Any] = json.loads(reply.read())
        found = {}
        for status in data.get("cluster_statuses", []):
            if status.get("name") != cluster:
                continue
            for host in status.get("host_statuses", []):
                address = host["address"]["socket_address"]
                key = f"{address['address']}:{address['port_value']}"
                found[key] = json.dumps(host.get("health_status", {}), sort_keys=True)
        return found


@contextmanager
def running_suite(
    *, production: bool = False, failed: Callable[[], bool] = lambda: False
) -> Iterator[FaultSuite]:
    """A started suite, stopped on leaving; its files (suite.log) are kept when
    the block raised or ``failed()`` says a test using it failed."""
    base = Path(tempfile.mkdtemp(prefix="cardinsa-faults-"))
    base.chmod(0o755)
    suite = FaultSuite(base, production=production)
    ok = False
    try:
        suite.start()
        yield suite
        ok = not failed()
    finally:
        suite.stop()
        if ok:
            shutil.rmtree(base, ignore_errors=True)


async def wait_settled(suite: FaultSuite, bound_s: float = 60.0) -> None:
    """Every worker of every service SERVING again (after an earlier fault: a
    restarted worker, a database back), within ``bound_s``."""
    for service in ("identity", "company", "core"):
        for worker in range(WORKERS):
            await wait_health(suite.address(service, worker), SERVING, bound_s)


async def health(address: str, service: str = "", seconds: float = 2.0) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=seconds
        )
    return int(reply.status)


async def wait_health(address: str, wanted: int, bound_s: float) -> float:
    """Seconds until ``address`` reports ``wanted``; fails after ``bound_s``."""
    started = time.monotonic()
    while time.monotonic() - started < bound_s:
        with contextlib.suppress(grpc.aio.AioRpcError):
            if await health(address) == wanted:
                return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"{address} did not report {wanted} within {bound_s} s")


def counts_by_code(text: str, method: str) -> dict[str, float]:
    """grpc_server_handled_total of one method by code, from a /metrics page."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("grpc_server_handled_total{") and f'grpc_method="{method}"' in line:
            code = line.split('grpc_code="', 1)[1].split('"', 1)[0]
            found[code] = found.get(code, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


__all__: Sequence[str] = [
    "ADMIN_EMAIL",
    "NOT_SERVING",
    "PASSWORD",
    "SERVING",
    "FaultSuite",
    "counts_by_code",
    "health",
    "running_suite",
    "wait_health",
    "wait_settled",
]
