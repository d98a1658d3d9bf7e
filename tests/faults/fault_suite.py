"""The whole suite as real processes, core with two workers, for the fault tests.

``FaultSuite`` runs ``scripts/suite.py --workers 2`` in a directory of its own
(not under pytest's basetemp: the embedded PostgreSQL runs as an unprivileged
user when we are root and must traverse the path), on free ports of 127.0.0.1,
in a process group of its own. Every service runs two workers, each on its own
port and metrics port (CARDINSA_WORKER_PORT_STEP apart, the default), all behind
the gateway. Health is probed often (Envoy every 0.5 s, the services every
second) so that the tests stay short; ``production=True`` keeps the gateway's
health checks, the drain delay and the grace period at their defaults instead.

Stopping: SIGINT to the launcher's group (what Ctrl-C does to `make up`), then
SIGKILL to the group, then, by PID, whatever the tests started themselves and
the embedded PostgreSQL (which leaves the group). Also when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cardinsa.identity.v1 import auth_service_pb2, auth_service_pb2_grpc
from cardinsa_foundation.local_postgres import LocalPostgres

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SUITE_SCRIPT = PROJECT_ROOT / "scripts" / "suite.py"
READY_TIMEOUT_S = 120.0
WORKERS = 2
ADMIN_EMAIL = "admin@faults.cardinsa.test"
PASSWORD = "Faults-Test-Passw0rd!"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


#: The services' default CARDINSA_WORKER_PORT_STEP: worker i listens on port + i x this.
PORT_STEP = 100


def free_port_block(count: int) -> int:
    """A port p of 127.0.0.1 with p + i x PORT_STEP free for i < count (worker ports)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count * PORT_STEP >= 65_000:
            continue
        held: list[socket.socket] = []
        try:
            for offset in range(count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", base + offset * PORT_STEP))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return base
    raise RuntimeError("no block of free ports")


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` of this machine (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                local_port = int(parts[1].rsplit(":", 1)[1], 16)
                if parts[3] == "0A" and local_port == port:
                    inodes.add(f"socket:[{parts[9]}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                    return int(entry.name)
    return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class FaultSuite:
    base: Path
    ports: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)
    ready: threading.Event = field(default_factory=threading.Event)
    production: bool = False

    def __post_init__(self) -> None:
        self.log = self.base / "suite.log"
        self.ports = {
            "postgres": free_port_block(1),
            "identity": free_port_block(WORKERS),
            "company": free_port_block(WORKERS),
            "core": free_port_block(WORKERS),
            "identity_metrics": free_port_block(WORKERS),
            "company_metrics": free_port_block(WORKERS),
            "core_metrics": free_port_block(WORKERS),
            "gateway": free_port_block(1),
            "gateway_admin": free_port_block(1),
        }
        p = self.ports
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CARDINSA_") and k not in ("DATABASE_URL", "ENVIRONMENT")
        }
        self.env.update(
            {
                "CARDINSA_ENVIRONMENT": "development",
                "CARDINSA_DATABASE_URL": "",
                "CARDINSA_DATABASE_ADMIN_URL": "",
                "CARDINSA_DATABASE_PLATFORM_URL": "",
                "CARDINSA_EMBEDDED_POSTGRES_DIR": str(self.postgres_dir),
                "CARDINSA_EMBEDDED_POSTGRES_PORT": str(p["postgres"]),
                "CARDINSA_IDENTITY_PORT": str(p["identity"]),
                "CARDINSA_COMPANY_PORT": str(p["company"]),
                "CARDINSA_CORE_PORT": str(p["core"]),
                "CARDINSA_IDENTITY_METRICS_PORT": str(p["identity_metrics"]),
                "CARDINSA_COMPANY_METRICS_PORT": str(p["company_metrics"]),
                "CARDINSA_CORE_METRICS_PORT": str(p["core_metrics"]),
                "CARDINSA_IDENTITY_ADDRESS": f"127.0.0.1:{p['identity']}",
                "CARDINSA_COMPANY_ADDRESS": f"127.0.0.1:{p['company']}",
                "CARDINSA_GATEWAY_HOST": "127.0.0.1",
                "CARDINSA_GATEWAY_PORT": str(p["gateway"]),
                "CARDINSA_GATEWAY_ADMIN_PORT": str(p["gateway_admin"]),
                "CARDINSA_GATEWAY_METRICS_PORT": "0",  # no stats listener
                "CARDINSA_GATEWAY_ACCESS_LOG": str(self.base / "access.log"),
                "CARDINSA_GATEWAY_HEALTH_INTERVAL_S": "0.5",
                "CARDINSA_GATEWAY_HEALTH_TIMEOUT_S": "0.5",
                "CARDINSA_NOTIFICATION_DIR": str(self.base / "notifications"),
                "CARDINSA_DEMO_ADMIN_EMAIL": ADMIN_EMAIL,
                "CARDINSA_DEMO_ADMIN_PASSWORD": PASSWORD,
                "CARDINSA_LOGIN_MAX_FAILURES_PER_ADDRESS": "100000",
                "CARDINSA_GRACE_PERIOD_S": "2",
                # Fail fast while the database is away (UNAVAILABLE, not a long wait).
                "CARDINSA_DB_POOL_TIMEOUT_S": "3",
                "CARDINSA_DB_CONNECT_TIMEOUT_S": "2",
                "CARDINSA_LOG_JSON": "true",
                "CARDINSA_LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.production:
            for name in (
                "CARDINSA_GATEWAY_HEALTH_INTERVAL_S",
                "CARDINSA_GATEWAY_HEALTH_TIMEOUT_S",
                "CARDINSA_GRACE_PERIOD_S",
            ):
                del self.env[name]

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
        """``stop`` or ``start`` the suite's PostgreSQL from a fresh process: this
        one runs gRPC threads, and pg_ctl, started as another user from a process
        with threads, has crashed (SIGSEGV) once in a while."""
        code = (
            "import sys; from pathlib import Path; "
            "from cardinsa_foundation.local_postgres import LocalPostgres; "
            "getattr(LocalPostgres(Path(sys.argv[1]), int(sys.argv[2])), sys.argv[3])()"
        )
        subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                str(self.postgres_dir),
                str(self.ports["postgres"]),
                action,
            ],
            cwd=PROJECT_ROOT,
            env=self.env,
            check=True,
            timeout=90,
            capture_output=True,
        )

    # -- start / stop

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(SUITE_SCRIPT),
                "--state-dir",
                str(self.base / "state"),
                "--workers",
                str(WORKERS),
            ],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, name="fault-suite-output", daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.ready.wait(0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the suite did not become ready:\n{self.tail()}")

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with self.log.open("wb") as out:
            for line in iter(self.process.stdout.readline, b""):
                out.write(line)
                out.flush()
                if line.strip() == b"[cardinsa] ready":
                    self.ready.set()

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """Ctrl-C to the group, SIGKILL if it hangs, then whatever is left, by PID."""
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if process is not None:
            # The services and the launcher share its session; anything left there
            # (a worker whose parent died) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        envoy_pid_file = self.base / "state" / "gateway" / "envoy.pid"
        with contextlib.suppress(OSError, ValueError):
            envoy = int(envoy_pid_file.read_text().strip())
            if "envoy" in cmdline(envoy):
                os.kill(envoy, signal.SIGKILL)
        pg = self.postgres()
        if pg.is_running():
            try:
                self.restart_postgres("stop")
            except (subprocess.SubprocessError, OSError):
                pg.stop()

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
def running_suite(*, production: bool = False) -> Iterator[FaultSuite]:
    base = Path(tempfile.mkdtemp(prefix="cardinsa-faults-"))
    base.chmod(0o755)
    suite = FaultSuite(base, production=production)
    ok = False
    try:
        suite.start()
        yield suite
        ok = True
    finally:
        suite.stop()
        if ok:
            shutil.rmtree(base, ignore_errors=True)


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
]
