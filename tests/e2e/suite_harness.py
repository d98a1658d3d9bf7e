"""The whole suite as real processes, the way `make up` runs it, and a REST client.

:class:`SuiteProcess` starts `make up` through the tooling's one launcher
(``cardinsa_tools.launcher``: ``python -m cardinsa_tools.suite --state-dir <tmp>``
as one child in a process group of its own, on free ports of 127.0.0.1, with an
embedded PostgreSQL in the temporary directory) and waits for ``[cardinsa]
ready``. Stopping it is what Ctrl-C does to `make up`: SIGINT to the group;
after a grace period the group is killed. Then it checks that
nothing it started is left: the launcher, the services, Envoy and PostgreSQL
(by PID and start time, so a reused PID is never mistaken for ours) and every
port.

Every REST client connects from its own loopback address (127.0.0.N, Linux
routes all of 127/8 to lo): the gateway's login limit is per client address,
so each test has its own login budget and the 429 test cannot starve the
others. Where only 127.0.0.1 exists, everything shares it and the login limit
is raised instead (the 429 test then skips).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.rest import Reply, exchange

from cardinsa_foundation.config import PROJECT_ROOT
from cardinsa_tools.launcher import SuiteOutput, SuitePorts, SuiteRun, suite_environment
from cardinsa_tools.procfs import cmdline, port_is_free, stat_fields

READY_TIMEOUT_S = 150.0
STOP_TIMEOUT_S = 45.0
SERVICES = ("identity", "company", "core")

ADMIN_EMAIL = "admin@e2e-demo.cardinsa.test"
# Also the password of every user the tests create (the policy needs 12+ characters).
PASSWORD = "E2e-Journey-Passw0rd!"
LOGIN_LIMIT = 5  # per client address and window, when several loopback addresses work
LOGIN_LIMIT_SHARED = 60  # when every request comes from 127.0.0.1
LOGIN_WINDOW_S = 60
TENANT_STATUS_TTL_S = 1  # how long each service trusts a company's status


# --------------------------------------------------------------------- ports


def loopback_aliases_work() -> bool:
    """Whether a client can connect from 127.0.0.2 (Linux: yes; macOS: not by default)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.2", 0))
        except OSError:
            return False
    return True


_SOURCES = itertools.count(10)


def next_client_address(aliases: bool) -> str:
    """A loopback address no other client of this run used (127.0.0.20, .21, …)."""
    if not aliases:
        return "127.0.0.1"
    number = next(_SOURCES)
    return f"127.0.{number // 240}.{number % 240 + 10}"


def jetstream_settings() -> dict[str, str]:
    """With CARDINSA_TEST_NATS_URL (CI sets it) the suite's dispatcher also
    publishes to JetStream, on a stream and subjects of this run's own."""
    url = os.environ.get("CARDINSA_TEST_NATS_URL", "").strip()
    if not url:
        return {}
    run = uuid.uuid4().hex[:10]
    return {
        "CARDINSA_DISPATCHER_NATS_URL": url,
        "CARDINSA_DISPATCHER_NATS_STREAM": f"E2E_{run.upper()}",
        "CARDINSA_DISPATCHER_NATS_SUBJECT_PREFIX": f"e2e{run}.events",
    }


def delete_jetstream_stream(env: Mapping[str, str]) -> None:
    """Remove the run's JetStream stream (after the suite stopped)."""
    url = env.get("CARDINSA_DISPATCHER_NATS_URL")
    stream = env.get("CARDINSA_DISPATCHER_NATS_STREAM")
    if not url or not stream:
        return

    async def delete() -> None:
        import nats
        from nats.js.errors import NotFoundError

        connection = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
        try:
            with contextlib.suppress(NotFoundError):
                await connection.jetstream().delete_stream(stream)
        finally:
            await connection.close()

    asyncio.run(delete())


# ----------------------------------------------------------------- processes


@dataclass(frozen=True)
class Proc:
    """A process as seen in /proc: PID plus start time (a reused PID differs)."""

    pid: int
    start: int
    what: str

    @staticmethod
    def read(pid: int, what: str = "") -> Proc | None:
        stat = stat_fields(pid)
        if stat is None:
            return None
        return Proc(pid, int(stat[19]), what or cmdline(pid)[:200] or "?")

    def alive(self) -> bool:
        stat = stat_fields(self.pid)
        return stat is not None and int(stat[19]) == self.start and stat[0] != "Z"


HAVE_PROC = Path("/proc/self/stat").exists()


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (by parent PID), found in /proc."""
    parents: dict[int, list[int]] = {}
    if not HAVE_PROC:
        return []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = stat_fields(int(entry.name))
        if stat is not None:
            parents.setdefault(int(stat[1]), []).append(int(entry.name))
    found: list[int] = []
    queue = [root]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


# ---------------------------------------------------------------------- suite


@dataclass
class SuiteProcess:
    """`make up` in a temporary directory, started, waited for and stopped by PID."""

    base: Path
    aliases: bool = field(default_factory=loopback_aliases_work)
    ports: SuitePorts = field(init=False)
    env: dict[str, str] = field(init=False)
    run: SuiteRun | None = field(default=None, init=False)
    tracked: list[Proc] = field(default_factory=list, init=False)
    envoy_pid: int | None = field(default=None, init=False)
    service_pids: dict[str, int] = field(default_factory=dict, init=False)
    postmaster_pid: int | None = field(default=None, init=False)
    keep_files: bool = field(default=False, init=False)  # a test failed: keep the logs
    started_s: float = field(default=0.0, init=False)
    ready_s: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.state_dir = self.base / "state"
        self.postgres_dir = (self.base / "postgres").resolve()
        self.ports = SuitePorts.free()
        self.login_limit = LOGIN_LIMIT if self.aliases else LOGIN_LIMIT_SHARED
        self.env = self._environment()

    # --- configuration --------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        """No Cardinsa setting of this process (a developer's shell or .env must not
        point the tests at a real database), plus the suite's own."""
        return suite_environment(
            self.ports,
            self.postgres_dir,
            self.base,
            CARDINSA_GATEWAY_HEALTH_INTERVAL_S="1",
            CARDINSA_GATEWAY_LOGIN_LIMIT=str(self.login_limit),
            CARDINSA_GATEWAY_LOGIN_WINDOW_S=str(LOGIN_WINDOW_S),
            CARDINSA_DEMO_ADMIN_EMAIL=ADMIN_EMAIL,
            CARDINSA_DEMO_ADMIN_PASSWORD=PASSWORD,
            CARDINSA_TENANT_STATUS_TTL_S=str(TENANT_STATUS_TTL_S),
            CARDINSA_GRACE_PERIOD_S="2",
            # Each stop is the whole suite at once (nothing routes to a draining
            # worker): a short drain, still gone through (the failover test keeps
            # the default).
            CARDINSA_DRAIN_DELAY_S="0.5",
            CARDINSA_WORKERS="1",
            # The webhook test's receiver listens on 127.0.0.1 over plain http.
            CARDINSA_WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
            CARDINSA_WEBHOOK_ALLOW_HTTP="true",
            # A failing receiver is dead-lettered within seconds, not hours.
            CARDINSA_DISPATCHER_RETRY_BASE_S="0.2",
            CARDINSA_DISPATCHER_RETRY_MAX_S="1",
            CARDINSA_DISPATCHER_MAX_ATTEMPTS="3",
            CARDINSA_DISPATCHER_POLL_INTERVAL_S="0.2",
            **jetstream_settings(),
        )

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.run.process if self.run is not None else None

    @property
    def output(self) -> SuiteOutput | None:
        return self.run.output if self.run is not None else None

    # --- addresses -------------------------------------------------------------------

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.ports.gateway}"

    def service_address(self, name: str) -> str:
        return f"127.0.0.1:{getattr(self.ports, name)}"

    @property
    def config(self) -> Path:
        return self.state_dir / "gateway" / "envoy.json"

    @property
    def demo_company_id(self) -> str:
        return (self.state_dir / "demo-company-id").read_text().strip()

    def rest(self) -> Rest:
        """A REST client through the gateway from a loopback address of its own."""
        return Rest("127.0.0.1", self.ports.gateway, next_client_address(self.aliases))

    def cli(
        self, *args: str, env: Mapping[str, str] | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``python -m <args>`` with the suite's environment (a service CLI)."""
        return subprocess.run(
            [sys.executable, "-m", *args],
            env=dict(env if env is not None else self.env),
            cwd=PROJECT_ROOT,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # --- start -----------------------------------------------------------------------

    def start(self, *args: str, sigint_ignored: bool = False, taken: tuple[str, ...] = ()) -> None:
        """``sigint_ignored``: started as ``make up &`` from a script starts it;
        ``taken``: ports (by name) the test took on purpose."""
        busy = {
            name: port
            for name, port in self.ports.all().items()
            if name not in taken and not port_is_free(port)
        }
        assert not busy, f"ports taken before the suite started: {busy}"
        self.started_s = time.monotonic()
        self.run = SuiteRun(self.state_dir, self.env, self.base / "suite.log")
        self.run.start(args, sigint_ignored=sigint_ignored)
        assert self.process is not None
        self.tracked.append(Proc(self.process.pid, _start_of(self.process.pid), "launcher"))

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        assert self.run is not None
        self.run.wait_ready(timeout_s, while_waiting=self._track_children)
        self.ready_s = time.monotonic() - self.started_s
        self._record_processes()

    def _track_children(self) -> None:
        """Remember every process below the launcher while it starts (a stop on
        failure must find them even if the launcher dies first)."""
        assert self.process is not None
        known = {p.pid for p in self.tracked}
        for pid in descendants(self.process.pid):
            if pid not in known:
                found = Proc.read(pid)
                if found is not None:
                    self.tracked.append(found)
                    known.add(pid)
        if self.postmaster_pid is None:
            self.postmaster_pid = self._postmaster()
        if self.postmaster_pid is not None:
            # The postmaster leaves the launcher's tree (pg_ctl detaches it).
            for pid in [self.postmaster_pid, *descendants(self.postmaster_pid)]:
                if pid not in known:
                    found = Proc.read(pid)
                    if found is not None:
                        self.tracked.append(found)
                        known.add(pid)

    def _postmaster(self) -> int | None:
        try:
            first = (self.postgres_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        return int(first) if first.strip().isdigit() else None

    def _record_processes(self) -> None:
        """The PIDs of Envoy and the services, from the output, checked against /proc."""
        assert self.output is not None and self.process is not None
        deadline = time.monotonic() + 10
        while True:
            self._track_children()
            for entry in self.output.json_lines():
                if entry.get("message") == "serving" and entry.get("service") in SERVICES:
                    self.service_pids[entry["service"]] = int(entry["pid"])
            if len(self.service_pids) == len(SERVICES) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for line in self.output.launcher_lines():
            found = re.search(r"gateway at \S+ is ready \(pid (\d+)\)", line)
            if found:
                self.envoy_pid = int(found.group(1))
        assert self.envoy_pid is not None, "the launcher did not report the gateway's PID"
        assert set(self.service_pids) == set(SERVICES), self.service_pids
        if not HAVE_PROC:  # no /proc (not Linux): the ports are checked at the stop
            return
        below = set(descendants(self.process.pid))
        for name, pid in [*self.service_pids.items(), ("envoy", self.envoy_pid)]:
            assert pid in below, f"{name} (pid {pid}) is not a child of the launcher"
            if pid not in {p.pid for p in self.tracked}:
                found = Proc.read(pid, name)
                assert found is not None, f"{name} (pid {pid}) is not running"
                self.tracked.append(found)

    # --- stop ------------------------------------------------------------------------

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
        """Ctrl-C: SIGINT to the process group, then (if need be) SIGKILL; returns the
        problems found (an empty list when everything stopped by itself)."""
        problems: list[str] = []
        process = self.process
        if process is None:
            return problems
        with contextlib.suppress(OSError):
            self._track_children()
        assert self.run is not None
        if not self.run.stop(timeout_s):
            problems.append(f"the launcher did not stop within {timeout_s:.0f} s of SIGINT")
        if process.returncode not in (0, -signal.SIGINT):
            problems.append(f"the launcher exited with code {process.returncode}")
        # What is still running was left behind: kill it by PID, and say so.
        # Besides the PIDs seen, anything still in the launcher's session (the
        # services and Envoy stay in it; only PostgreSQL detaches) counts.
        deadline = time.monotonic() + 5
        left = self._leftovers(process.pid)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = [p for p in left if p.alive()]
        for proc in left:
            problems.append(f"left running: pid {proc.pid} ({proc.what})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        if self.output is not None:
            self.output.join(10)
        deadline = time.monotonic() + 5
        busy = self._busy_ports()
        while busy and time.monotonic() < deadline:
            time.sleep(0.2)
            busy = self._busy_ports()
        if busy:
            problems.append(f"ports still in use after the stop: {busy}")
        if (self.state_dir / "gateway" / "envoy.pid").exists():
            problems.append("the gateway's PID file is still there after the stop")
        return problems

    def _leftovers(self, session: int) -> list[Proc]:
        left = {p.pid: p for p in self.tracked if p.alive()}
        if not HAVE_PROC:
            return list(left.values())
        for entry in Path("/proc").iterdir():
            stat = stat_fields(int(entry.name)) if entry.name.isdigit() else None
            if stat is not None and int(stat[3]) == session and stat[0] != "Z":
                found = Proc.read(int(entry.name))
                if found is not None:
                    left.setdefault(found.pid, found)
        return list(left.values())

    def _busy_ports(self) -> dict[str, int]:
        return {name: port for name, port in self.ports.all().items() if not port_is_free(port)}

    def stop_lines(self) -> list[str]:
        assert self.output is not None
        lines = self.output.launcher_lines()
        return lines[next((i for i, line in enumerate(lines) if "stopping" in line), len(lines)) :]


def _start_of(pid: int) -> int:
    stat = stat_fields(pid)
    return int(stat[19]) if stat is not None else -1


# ----------------------------------------------------------------------- REST


@dataclass
class Rest:
    """REST/JSON through the gateway, one connection per call, from ``source``."""

    host: str
    port: int
    source: str

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent.setdefault("content-type", "application/json")
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        return exchange(
            self.host, self.port, method, path, body=data, headers=sent, source=self.source
        )

    def login(self, email: str, password: str = PASSWORD) -> str:
        reply = self.call("POST", "/v1/auth:login", {"email": email, "password": password})
        token: str = reply.ok()["access_token"]
        return token

    def role_ids(self, token: str) -> dict[str, str]:
        roles = self.call("GET", "/v1/roles?page_size=100", token=token).ok()["roles"]
        return {role["name"]: role["id"] for role in roles}

    def create_user(self, token: str, role: str | None, prefix: str) -> dict[str, Any]:
        """A user of the caller's company (CreateUser), bound to ``role`` (CreateRoleBinding)."""
        user: dict[str, Any] = self.call(
            "POST",
            "/v1/users",
            {
                "user": {"email": unique_email(prefix), "given_name": prefix.title()},
                "password": PASSWORD,
                "request_id": str(uuid.uuid4()),
                # The e2e journeys log in as the users they create; the forced
                # change at first login has its own tests.
                "password_permanent": True,
            },
            token=token,
        ).ok()
        if role is not None:
            binding = self.call(
                "POST",
                "/v1/roleBindings",
                {"user_id": user["id"], "role_id": self.role_ids(token)[role]},
                token=token,
            ).ok()
            assert binding["user_id"] == user["id"], binding
        return user


def unique_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@e2e.cardinsa.test"


# ------------------------------------------------------------ request bodies


def money(units: int | str, currency: str = "EUR") -> dict[str, Any]:
    """google.type.Money as JSON (units is an int64: a string)."""
    return {"currency_code": currency, "units": str(units), "nanos": 0}


def json_date(day: Any) -> dict[str, int]:
    return {"year": day.year, "month": day.month, "day": day.day}


def policyholder_body() -> dict[str, Any]:
    return {
        "kind": "PERSON",
        "given_name": "Amira",
        "family_name": f"Haddad{uuid.uuid4().hex[:6]}",
        "date_of_birth": {"year": 1990, "month": 2, "day": 3},
        "national_id": f"784{uuid.uuid4().int % 10**12:012d}",
        "email": unique_email("holder"),
    }


def product_body(currency: str = "EUR") -> dict[str, Any]:
    return {
        "code": f"E2E-{uuid.uuid4().hex[:8].upper()}",
        "line_of_business": "MEDICAL",
        "name": "Health Basic",
        "currency_code": currency,
        "base_premium": money(500, currency),
        "term_months": 12,
        "coverages": [
            {
                "code": "OUTPATIENT",
                "name": "Outpatient care",
                "limit": money(10000, currency),
                "limit_period": "PER_YEAR",
                "deductible": money(0, currency),
                "coinsurance_basis_points": 2000,
            }
        ],
    }


def error_details(body: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    return [d for d in body.get("details", []) if d["@type"].endswith(f"google.rpc.{kind}")]


def assert_error(
    reply: Reply, status: int, code: int, *, reason: str | None = None, domain: str | None = None
) -> dict[str, Any]:
    """The one error shape of REST: google.rpc.Status as JSON, ``{code, message,
    details}``, with exactly one ErrorInfo and a RequestInfo naming the request id
    the gateway returned; no gRPC header leaks."""
    assert reply.status == status, (reply.status, reply.body[:2000])
    assert reply.header("content-type") == "application/json", reply.headers
    body: dict[str, Any] = reply.json()
    assert set(body) <= {"code", "message", "details"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    assert [name for name in reply.headers if name.startswith("grpc-")] == [], reply.headers
    request_id = reply.header("x-request-id")
    assert request_id, reply.headers
    infos = error_details(body, "ErrorInfo")
    assert len(infos) == 1, body
    if reason is not None:
        assert infos[0]["reason"] == reason, body
    if domain is not None:
        assert infos[0]["domain"] == domain, body
    assert [d["request_id"] for d in error_details(body, "RequestInfo")] == [request_id], body
    return body
