"""`make up`: the whole suite on one machine, stopped cleanly by Ctrl-C.

``python -m cardinsa_tools.suite [--workers N] [--timeout S]``; in order:

1. PostgreSQL: CARDINSA_DATABASE_URL (or DATABASE_URL) when set, else the
   embedded server in .data/postgres (reused across runs);
2. migrations of every service (as the owner role);
3. the services as child processes (``--workers N`` each), connected as the
   non-owner role ``cardinsa_app`` so row-level security applies (their
   cross-tenant paths as ``cardinsa_platform``);
4. waits until every worker of every service answers SERVING for its own
   service's health name, with progress; then starts core's lifecycle
   scheduler (``python -m cardinsa_core.scheduler``: policies move on their
   dates; one process, its metrics on CARDINSA_SCHEDULER_METRICS_PORT) and
   the event dispatcher (``python -m cardinsa_company.dispatcher``: the
   services' events to webhooks; its metrics on CARDINSA_DISPATCHER_METRICS_PORT);
   before the services, unless CARDINSA_NOTIFIER is set, a local SMTP sink
   (``python -m cardinsa_tools.mail_sink`` on 127.0.0.1:CARDINSA_MAIL_SINK_PORT,
   each message a .eml file in CARDINSA_MAIL_SINK_DIR) that identity's SMTP
   notifier sends to (password-reset and contact-change mail);
5. renders the gateway configuration for those services (gateway/cardinsa_gateway)
   and starts Envoy, waiting until it is ready and sees every service healthy;
6. seeds the demo company's admin (credentials printed once, when created);
7. prints the endpoints and how to try them.

Every child is stopped by its PID on Ctrl-C, SIGTERM or any failure; Envoy runs
in its own process group and is stopped last, after the services have drained.
SIGINT and SIGTERM are handled from the first line on, also when the launcher
inherited them ignored (``make up &`` from a script). Before anything starts,
every port is checked (no two alike, none taken); a problem there, a database
that cannot be reached or a missing program is one line naming the setting. A
service that fails during start-up ends it at once, with its last log lines.
After "ready", every worker's health is watched and changes are printed.
"""

# ruff: noqa: E402 - the signal handlers come before the (slow) imports below
from __future__ import annotations

import os
import signal


def _stop_before_start(signum: int, _frame: object) -> None:
    """A signal during the imports: nothing runs yet, so there is nothing to stop;
    end as the signal's default action does (also when it was inherited ignored)."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


for _signal in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_signal, _stop_before_start)

import argparse
import asyncio
import collections
import contextlib
import errno
import json
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr, ValidationError

from cardinsa_company.dispatcher_settings import DispatcherSettings
from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_core.scheduler_settings import SchedulerSettings
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.config import PROJECT_ROOT, Environment
from cardinsa_foundation.db import app_role_url, platform_role_url, to_libpq_url
from cardinsa_foundation.local_postgres import LocalPostgres, LocalPostgresError
from cardinsa_gateway.contract import Contract
from cardinsa_gateway.envoy import Endpoint
from cardinsa_gateway.process import (
    DESCRIPTOR,
    EnvoyProcess,
    envoy_binary,
    render_to_file,
    select_upstreams,
    stop_stale,
)
from cardinsa_gateway.settings import GatewaySettings
from cardinsa_identity.settings import IdentitySettings
from cardinsa_tools.mail_sink import MailSinkSettings

# Where the launcher keeps its own state (demo company id, gateway config and
# PID); --state-dir moves it (the end-to-end tests run a suite of their own).
STATE_DIR = PROJECT_ROOT / ".data"


#: Lines of a service's output kept to show when it fails during start-up.
TAIL_LINES = 15
#: Seconds between the health checks of every worker once the suite is ready.
WATCH_INTERVAL_S = 2.0


class LaunchError(Exception):
    """A problem an operator fixes (a port, a setting, a missing program): said in
    one line (plus a failed service's last lines), never a traceback."""


@dataclass
class Service:
    name: str
    module: str
    cli: str
    port: int
    metrics_port: int = 0
    health_name: str = ""  # the name its workers answer SERVING for
    process: subprocess.Popen[bytes] | None = None
    tail: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=TAIL_LINES)
    )
    failed: str | None = None  # a worker exited while the suite was starting
    gave_up: list[str] = field(default_factory=list)  # the supervisor's give-ups, to say

    @property
    def setting(self) -> str:
        return f"CARDINSA_{self.name.upper()}_PORT"

    def worker_ports(self, workers: int, step: int) -> list[int]:
        return [self.port + index * step for index in range(workers)]

    def last_lines(self) -> str:
        return "\n".join(f"    {line}" for line in self.tail)


def working_tree_commit(root: Path = PROJECT_ROOT) -> str:
    """The commit of the working tree (``-dirty`` when a tracked file changed), as
    the services report their build; empty when git or the repository is absent."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        changed = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}-dirty" if head and changed else head


def say(message: str) -> None:
    print(f"[cardinsa] {message}", flush=True)


def port_plan(
    services: list[Service],
    workers: int,
    step: int,
    gateway: GatewaySettings,
    postgres_port: int | None,
    *,
    scheduler_metrics_port: int = 0,
    dispatcher_metrics_port: int = 0,
    mail_sink_port: int = 0,
) -> list[tuple[int, str, str]]:
    """Every port the suite will listen on: (port, host, what sets it)."""
    plan: list[tuple[int, str, str]] = []
    if mail_sink_port:
        plan.append((mail_sink_port, "127.0.0.1", "CARDINSA_MAIL_SINK_PORT"))
    if scheduler_metrics_port:
        plan.append((scheduler_metrics_port, "metrics", "CARDINSA_SCHEDULER_METRICS_PORT"))
    if dispatcher_metrics_port:
        plan.append((dispatcher_metrics_port, "metrics", "CARDINSA_DISPATCHER_METRICS_PORT"))
    for service in services:
        for index in range(workers):
            suffix = f" + {index} x CARDINSA_WORKER_PORT_STEP" if index else ""
            plan.append((service.port + index * step, "grpc", f"{service.setting}{suffix}"))
            plan.append(
                (
                    service.metrics_port + index * step,
                    "metrics",
                    f"CARDINSA_{service.name.upper()}_METRICS_PORT{suffix}",
                )
            )
    plan.append((gateway.gateway_port, gateway.gateway_host, "CARDINSA_GATEWAY_PORT"))
    plan.append((gateway.gateway_admin_port, "127.0.0.1", "CARDINSA_GATEWAY_ADMIN_PORT"))
    if gateway.gateway_metrics_port:
        plan.append((gateway.gateway_metrics_port, "metrics", "CARDINSA_GATEWAY_METRICS_PORT"))
    if postgres_port is not None:
        plan.append((postgres_port, "", "CARDINSA_EMBEDDED_POSTGRES_PORT"))
    return plan


def check_ports(plan: list[tuple[int, str, str]], hosts: dict[str, str]) -> None:
    """No two ports alike, each in range and free; else one line naming the setting."""
    seen: dict[int, str] = {}
    for port, _, what in plan:
        if not 0 < port <= 65535:
            raise LaunchError(f"port {port} ({what}) is out of range; change {what.split()[0]}")
        if port in seen:
            raise LaunchError(
                f"port {port} is both {seen[port]} and {what}; change one of them "
                "(or CARDINSA_WORKER_PORT_STEP)"
            )
        seen[port] = what
    for port, host, what in plan:
        if not host:  # the embedded PostgreSQL may be ours, still running
            continue
        address = hosts.get(host, host)
        problem = bind_problem(address, port)
        if problem is not None:
            setting = what.split()[0]
            raise LaunchError(
                f"port {port} ({what}) on {address}: {problem}; "
                f"stop that program or set {setting} to a free port"
            )


def launcher_running(pid_file: Path) -> bool:
    """The gateway in ``pid_file`` still has its launcher (another `make up` runs:
    its ports are reported as taken, its gateway is left alone)."""
    try:
        pid = int(pid_file.read_text().strip())
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        command = Path(f"/proc/{parent}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return False
    return parent != 1 and b"cardinsa_tools.suite" in command


def bind_problem(host: str, port: int) -> str | None:
    """Why nothing can listen on ``host:port`` now, or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host or "0.0.0.0", port))  # noqa: S104 - a probe, closed at once
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return "already in use by another program"
            return error.strerror or str(error)
    return None


def check_database(url: str, setting: str) -> None:
    """The configured database answers (else one line naming the setting)."""

    async def connect() -> None:
        connection = await asyncpg.connect(to_libpq_url(url), timeout=10)
        await connection.close()

    try:
        asyncio.run(connect())
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        from sqlalchemy.engine import make_url

        where = make_url(url)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise LaunchError(
            f"cannot reach the database at {where.host}:{where.port or 5432} ({setting}): "
            f"{reason}; start it or correct {setting}"
        ) from None


def pump(service: Service) -> None:
    """Echo a service's output, keep its last lines, notice a worker's exit."""
    assert service.process is not None and service.process.stdout is not None
    out = sys.stdout.buffer
    for raw in iter(service.process.stdout.readline, b""):
        try:
            out.write(raw)
            out.flush()
        except (OSError, ValueError):
            pass
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        service.tail.append(line)
        # Only a supervisor's line about a worker is parsed: every access line
        # passes through here, and a pump that falls behind fills the pipe,
        # which blocks the service's event loop on its next log write.
        if line.startswith("{") and ("worker exited" in line or "giving up on a worker" in line):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            message = entry.get("message")
            if message in ("worker exited", "giving up on a worker") and service.failed is None:
                service.failed = f"worker {entry.get('worker')} exited"
            if message == "giving up on a worker":
                service.gave_up.append(
                    f"{service.name}: worker {entry.get('worker')} exited again after "
                    f"{entry.get('restarts')} restart(s); its supervisor gave up and "
                    f"{service.name} reports NOT_SERVING"
                )


def port_answers(host: str, port: int) -> bool:
    """Something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def stored_id(path: Path) -> str:
    """A UUID kept in ``path`` across runs (created on the first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path.read_text().strip()
    value = str(uuid.uuid4())
    path.write_text(value + "\n")
    return value


def start_failure(service: Service) -> LaunchError | None:
    """The service failed while the suite starts: its process exited or a worker did."""
    process = service.process
    if process is not None and process.poll() is not None:
        time.sleep(0.3)  # its last lines
        what = f"{service.name} exited (code {process.returncode}) during start-up"
    elif service.failed is not None:
        time.sleep(0.3)
        what = f"{service.name}: {service.failed} during start-up"
    else:
        return None
    return LaunchError(f"{what}; its last lines:\n{service.last_lines()}")


async def health_of(address: str, name: str, timeout_s: float = 1.0) -> str:
    """SERVING, NOT_SERVING, … of ``name`` at ``address``, or why there is no answer."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=name), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as error:
            return f"no answer ({error.code().name})"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def wait_serving(
    service: Service, address: str, timeout_s: float, services: list[Service]
) -> None:
    """Until the worker at ``address`` answers SERVING for its own service's name
    (another service on that port answers NOT_FOUND); any failed service ends it."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = await health_of(address, service.health_name)
        if status == "SERVING":
            return
        for other in services:
            failure = start_failure(other)
            if failure is not None:
                raise failure
        if time.monotonic() > deadline:
            raise LaunchError(
                f"{service.name} at {address} did not become SERVING for "
                f"{service.health_name} within {timeout_s:.0f} s (last: {status}); "
                f"its last lines:\n{service.last_lines()}"
            )
        await asyncio.sleep(0.2)


def watch(services: list[Service], workers: int, step: int, last: dict[str, str]) -> None:
    """Check every worker once; print what changed since the last check."""

    async def check() -> list[str]:
        addresses = [
            (service, f"127.0.0.1:{port}")
            for service in services
            for port in service.worker_ports(workers, step)
        ]
        return list(
            await asyncio.gather(
                *(health_of(address, service.health_name) for service, address in addresses)
            )
        )

    statuses = asyncio.run(check())
    index = 0
    for service in services:
        for worker, port in enumerate(service.worker_ports(workers, step)):
            key = f"{service.name} worker {worker} (127.0.0.1:{port})"
            status = statuses[index]
            index += 1
            if last.get(key, "SERVING") != status:
                if status == "SERVING":
                    say(f"{key} is SERVING again")
                elif status.startswith("no answer"):
                    say(f"{key} does not answer ({status.removeprefix('no answer ')})")
                else:
                    say(f"{key} is {status}")
            last[key] = status


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


@dataclass(frozen=True)
class StateFiles:
    """The launcher's own files under ``--state-dir``."""

    root: Path

    @property
    def demo_company(self) -> Path:
        return self.root / "demo-company-id"

    @property
    def platform_company(self) -> Path:
        return self.root / "platform-company-id"

    @property
    def gateway_dir(self) -> Path:
        return self.root / "gateway"

    @property
    def gateway_config(self) -> Path:
        return self.gateway_dir / "envoy.json"

    @property
    def gateway_pid(self) -> Path:
        return self.gateway_dir / "envoy.pid"


@dataclass(frozen=True)
class SuiteSettings:
    identity: IdentitySettings
    company: CompanyServiceSettings
    core: CoreSettings
    gateway: GatewaySettings
    scheduler: SchedulerSettings
    dispatcher: DispatcherSettings
    mail_sink: MailSinkSettings

    @classmethod
    def load(cls) -> SuiteSettings:
        """The settings of every part; :class:`LaunchError` naming a wrong one."""
        try:
            return cls(
                IdentitySettings(),
                CompanyServiceSettings(),
                CoreSettings(),
                GatewaySettings(),
                SchedulerSettings(),
                DispatcherSettings(),
                MailSinkSettings(),
            )
        except ValidationError as error:
            problems = []
            for problem in error.errors():
                where = ".".join(str(part) for part in problem["loc"])
                setting = f"CARDINSA_{where.upper()}: " if where else ""
                problems.append(f"{setting}{problem['msg']}")
            raise LaunchError("\n[cardinsa] cannot start: ".join(problems)) from None
        except ValueError as error:  # pydantic-settings: a value that is not JSON, …
            raise LaunchError(str(error).splitlines()[0]) from None

    def services(self) -> list[Service]:
        return [
            Service(name, f"cardinsa_{name}.main", f"cardinsa_{name}.cli", port, metrics_port)
            for name, port, metrics_port in (
                ("identity", self.identity.identity_port, self.identity.identity_metrics_port),
                ("company", self.company.company_port, self.company.company_metrics_port),
                ("core", self.core.core_port, self.core.core_metrics_port),
            )
        ]


class Launch:
    """One `make up`: each step a method, in the order :meth:`run` calls them;
    :meth:`stop` undoes what was started, whatever step was reached."""

    def __init__(
        self, settings: SuiteSettings, files: StateFiles, workers: int, timeout_s: float
    ) -> None:
        self.settings = settings
        self.files = files
        self.workers = workers
        self.timeout_s = timeout_s
        self.services = settings.services()
        self.step = settings.identity.worker_port_step
        self.gateway_settings = settings.gateway
        self.env = dict(os.environ)
        # The services' GetServerInfo and cardinsa_build_info: the working tree's commit.
        if not self.env.get("CARDINSA_BUILD_COMMIT"):
            self.env["CARDINSA_BUILD_COMMIT"] = working_tree_commit()
        self.embedded: LocalPostgres | None = None
        self.embedded_was_running = True
        self.children: list[subprocess.Popen[bytes]] = []
        #: Core's lifecycle scheduler (no gRPC port: not among the services).
        self.scheduler = Service(
            "scheduler",
            "cardinsa_core.scheduler",
            "",
            0,
            settings.scheduler.scheduler_metrics_port,
        )
        #: The event dispatcher (company's; no gRPC port either).
        self.dispatcher = Service(
            "dispatcher",
            "cardinsa_company.dispatcher",
            "",
            0,
            settings.dispatcher.dispatcher_metrics_port,
        )
        #: The local SMTP sink identity mails to, unless CARDINSA_NOTIFIER is
        #: set (then identity uses what it names).
        self.mail_sink = Service("mail-sink", "cardinsa_tools.mail_sink", "", 0)
        self.mail_sink_on = "notifier" not in settings.identity.model_fields_set
        self.gateway: EnvoyProcess | None = None
        self.stopping = False

    def run(self) -> int:
        self.check()
        self.database()
        self.share_settings()
        self.migrate()
        platform, company = self.register_companies()
        keys = self.issue_keys(platform)
        if self.mail_sink_on:
            self.start_mail_sink()
        self.start_services(keys)
        self.wait_services()
        self.start_scheduler(keys)
        self.start_dispatcher(keys)
        self.start_gateway()
        self.print_ready(self.seed_demo(company))
        return self.watch_until_exit()

    def check(self) -> None:
        """Before anything starts: a stale gateway, the programs, every port."""
        if not launcher_running(self.files.gateway_pid) and stop_stale(
            self.files.gateway_pid, self.files.gateway_config
        ):
            say("stopped a gateway left running by an earlier run")
        try:
            envoy_binary()
        except FileNotFoundError as error:
            raise LaunchError(f"{error}; run `make setup`") from None
        if not DESCRIPTOR.exists():
            raise LaunchError(f"{DESCRIPTOR} is missing; run `make setup` (or `make proto`)")
        contract = Contract.load(DESCRIPTOR)
        for service, upstream in zip(
            self.services, select_upstreams([s.name for s in self.services]), strict=True
        ):
            service.health_name = contract.services(upstream.packages)[0]
        identity = self.settings.identity
        check_ports(
            port_plan(
                self.services,
                self.workers,
                self.step,
                self.gateway_settings,
                identity.embedded_postgres_port if identity.database_url is None else None,
                scheduler_metrics_port=self.settings.scheduler.scheduler_metrics_port,
                dispatcher_metrics_port=self.settings.dispatcher.dispatcher_metrics_port,
                mail_sink_port=self.settings.mail_sink.mail_sink_port if self.mail_sink_on else 0,
            ),
            {"grpc": identity.grpc_host, "metrics": identity.metrics_host},
        )

    def database(self) -> None:
        """The configured database (checked), else the embedded one (started)."""
        settings = self.settings.identity
        if settings.database_url is not None:
            say("using the configured database")
            admin = settings.database_admin_url
            check_database(
                (admin or settings.database_url).get_secret_value(),
                "CARDINSA_DATABASE_ADMIN_URL" if admin else "CARDINSA_DATABASE_URL",
            )
            return
        if settings.environment is Environment.PRODUCTION:
            raise LaunchError("CARDINSA_DATABASE_URL must be set in production")
        say(
            f"starting the embedded PostgreSQL ({settings.embedded_postgres_dir}, "
            f"port {settings.embedded_postgres_port})"
        )
        self.embedded = LocalPostgres(
            settings.embedded_postgres_dir, settings.embedded_postgres_port
        )
        self.embedded_was_running = self.embedded.is_running()
        self.embedded.start()
        admin_url = self.embedded.admin_url()
        self.env["CARDINSA_DATABASE_ADMIN_URL"] = admin_url
        self.env["CARDINSA_DATABASE_URL"] = app_role_url(admin_url)
        # The cross-tenant paths' role (created by the migrations, like cardinsa_app).
        self.env["CARDINSA_DATABASE_PLATFORM_URL"] = platform_role_url(admin_url)

    def share_settings(self) -> None:
        env = self.env
        env.setdefault("CARDINSA_LOG_JSON", "true")
        # Identity asks the company service whether a tenant may act.
        env.setdefault(
            "CARDINSA_COMPANY_ADDRESS", f"127.0.0.1:{self.settings.company.company_port}"
        )
        # The proof the gateway puts on every call (the services then trust the
        # client address it forwards): the configured one, else one per run.
        secret = self.settings.identity.gateway_secret or SecretStr(secrets.token_urlsafe(32))
        env["CARDINSA_GATEWAY_SECRET"] = secret.get_secret_value()
        self.gateway_settings = self.gateway_settings.model_copy(update={"gateway_secret": secret})

    def migrate(self) -> None:
        for service in self.services:
            say(f"migrating {service.name}")
            run_checked(
                [sys.executable, "-m", service.cli, "migrate"],
                self.env,
                f"migrating {service.name}",
            )

    def register_companies(self) -> tuple[str, str]:
        """The platform company and the demo company (ids kept across runs)."""
        company = stored_id(self.files.demo_company)
        platform = stored_id(self.files.platform_company)
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
                    # German companies: documents (policy schedules, decision
                    # letters) are issued in German unless a request asks otherwise.
                    "--locale",
                    "de-DE",
                ],
                self.env,
                f"registering {name}",
            )
        return platform, company

    def issue_keys(self, platform: str) -> dict[str, dict[str, str]]:
        """core asks the company service about tenants, core and company follow
        identity's token revocations, and the event dispatcher watches every
        service's events, each as a platform service account; a fresh key each
        start (the earlier one is revoked)."""

        def issue_key(name: str, *permissions: str) -> str:
            say(f"issuing {name}'s service key")
            command = [
                sys.executable,
                "-m",
                "cardinsa_identity.cli",
                "create-service-key",
                "--company-id",
                platform,
                "--name",
                name,
            ]
            for permission in permissions:
                command += ["--permission", permission]
            output = run_checked(command, self.env, f"issuing {name}'s service key")
            return output.strip().splitlines()[-1]

        return {
            "core": {
                "CARDINSA_SERVICE_API_KEY": issue_key(
                    "core-service", "companies.get_status", "revocations.watch"
                )
            },
            "company": {
                "CARDINSA_SERVICE_API_KEY": issue_key("company-service", "revocations.watch")
            },
            "dispatcher": {
                "CARDINSA_SERVICE_API_KEY": issue_key(
                    "event-dispatcher", "events.watch", "events.watch_all"
                )
            },
        }

    def spawn(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """A child whose output the launcher reads, known to ``stop`` before a
        Ctrl-C can end the start (else it would outlive the launcher)."""
        with SIGNALS.deferred():
            child = subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            self.children.append(child)
        return child

    def start_mail_sink(self) -> None:
        """The local SMTP sink, listening before identity starts; identity's SMTP
        notifier is pointed at it (no TLS, no login: loopback only)."""
        sink = self.settings.mail_sink
        port = sink.mail_sink_port
        say(f"starting the mail sink on 127.0.0.1:{port} (messages in {sink.mail_sink_dir})")
        self.mail_sink.process = self.spawn(
            [
                sys.executable,
                "-m",
                self.mail_sink.module,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(sink.mail_sink_dir),
            ],
            self.env,
        )
        threading.Thread(
            target=pump, args=(self.mail_sink,), name="mail-sink-output", daemon=True
        ).start()
        deadline = time.monotonic() + self.timeout_s
        while not port_answers("127.0.0.1", port):
            failure = start_failure(self.mail_sink)
            if failure is not None:
                raise failure
            if time.monotonic() > deadline:
                raise LaunchError(
                    f"the mail sink did not listen on 127.0.0.1:{port} within "
                    f"{self.timeout_s:.0f} s (CARDINSA_MAIL_SINK_PORT)"
                )
            time.sleep(0.1)
        self.env.update(
            {
                "CARDINSA_NOTIFIER": "smtp",
                "CARDINSA_SMTP_HOST": "127.0.0.1",
                "CARDINSA_SMTP_PORT": str(port),
                "CARDINSA_SMTP_TLS": "none",
                "CARDINSA_SMTP_USER": "",
                "CARDINSA_SMTP_PASSWORD": "",
            }
        )

    def start_services(self, service_env: dict[str, dict[str, str]]) -> None:
        for service in self.services:
            ports = ", ".join(str(p) for p in service.worker_ports(self.workers, self.step))
            say(f"starting {service.name} on 127.0.0.1:{ports} ({self.workers} worker(s))")
            service.process = self.spawn(
                [sys.executable, "-m", service.module, "--workers", str(self.workers)],
                {**self.env, **service_env.get(service.name, {})},
            )
            threading.Thread(
                target=pump, args=(service,), name=f"{service.name}-output", daemon=True
            ).start()

    def start_scheduler(self, service_env: dict[str, dict[str, str]]) -> None:
        """Core's lifecycle scheduler, with core's settings and service key (it asks
        the company service for each company's time zone); it leads at once."""
        say("starting core's lifecycle scheduler (policies move on their dates)")
        self.scheduler.process = self.spawn(
            [sys.executable, "-m", self.scheduler.module],
            {**self.env, **service_env.get("core", {})},
        )
        threading.Thread(
            target=pump, args=(self.scheduler,), name="scheduler-output", daemon=True
        ).start()

    def start_dispatcher(self, service_env: dict[str, dict[str, str]]) -> None:
        """The event dispatcher, with company's settings, its own service key and
        the services' first workers as its sources."""
        say("starting the event dispatcher (events to webhooks)")
        s = self.settings
        sources = {
            "CARDINSA_IDENTITY_ADDRESS": f"127.0.0.1:{s.identity.identity_port}",
            "CARDINSA_DISPATCHER_IDENTITY_ADDRESS": f"127.0.0.1:{s.identity.identity_port}",
            "CARDINSA_DISPATCHER_COMPANY_ADDRESS": f"127.0.0.1:{s.company.company_port}",
            "CARDINSA_DISPATCHER_CORE_ADDRESS": f"127.0.0.1:{s.core.core_port}",
        }
        self.dispatcher.process = self.spawn(
            [sys.executable, "-m", self.dispatcher.module],
            {**self.env, **sources, **service_env.get("dispatcher", {})},
        )
        threading.Thread(
            target=pump, args=(self.dispatcher,), name="dispatcher-output", daemon=True
        ).start()

    def wait_services(self) -> None:
        for service in self.services:
            for port in service.worker_ports(self.workers, self.step):
                address = f"127.0.0.1:{port}"
                say(f"waiting for {service.name} at {address} …")
                asyncio.run(wait_serving(service, address, self.timeout_s, self.services))
                say(f"{service.name} at {address} is SERVING ({service.health_name})")

    @property
    def listen(self) -> str:
        return f"{self.gateway_settings.gateway_host}:{self.gateway_settings.gateway_port}"

    def start_gateway(self) -> None:
        """Envoy for the ports the services really use (settings resolve .env too),
        one endpoint per worker: the gateway must not guess them from os.environ."""
        render_to_file(
            self.files.gateway_config,
            settings=self.gateway_settings,
            upstreams=select_upstreams([service.name for service in self.services]),
            endpoints={
                service.name: [
                    Endpoint("127.0.0.1", port)
                    for port in service.worker_ports(self.workers, self.step)
                ]
                for service in self.services
            },
            workers=self.workers,
        )
        say(f"starting the gateway (Envoy) on {self.listen}")
        with SIGNALS.deferred():
            self.gateway = EnvoyProcess(
                self.files.gateway_config, self.gateway_settings.gateway_admin_port, self.listen
            )
            self.gateway.start(own_process_group=True)
            self.files.gateway_pid.write_text(f"{self.gateway.pid}\n")
        say(f"waiting for the gateway at {self.listen} …")
        try:
            self.gateway.wait_ready(self.timeout_s)
        except (RuntimeError, TimeoutError) as error:
            raise LaunchError(
                f"the gateway did not start: {error} (its own lines are above; its ports are "
                "CARDINSA_GATEWAY_PORT and CARDINSA_GATEWAY_ADMIN_PORT)"
            ) from None
        for service in [*self.services, self.scheduler, self.dispatcher, self.mail_sink]:
            failure = start_failure(service)
            if failure is not None:
                raise failure
        say(f"gateway at {self.listen} is ready (pid {self.gateway.pid})")

    def seed_demo(self, company: str) -> str:
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
            self.env,
            "seeding the demo company",
        ).rstrip()
        print(seeded)
        return seeded

    def print_ready(self, seeded: str) -> None:
        email, password = demo_credentials(seeded)
        login = json.dumps({"email": email, "password": password})
        s = self.settings
        gateway = self.gateway_settings
        listen = self.listen
        identity = f"127.0.0.1:{s.identity.identity_port}"
        local = gateway.gateway_host in {"127.0.0.1", "0.0.0.0", ""}  # noqa: S104
        curl_address = f"localhost:{gateway.gateway_port}" if local else listen
        scheduler_port = s.scheduler.scheduler_metrics_port
        scheduler_metrics = (
            f", http://127.0.0.1:{scheduler_port}/metrics (scheduler)" if scheduler_port else ""
        )
        dispatcher_port = s.dispatcher.dispatcher_metrics_port
        dispatcher_metrics = (
            f", http://127.0.0.1:{dispatcher_port}/metrics (dispatcher)" if dispatcher_port else ""
        )
        if self.mail_sink_on:
            mail = (
                f"read the mail in {s.mail_sink.mail_sink_dir}/ (one .eml file each; "
                f"local SMTP sink smtp://127.0.0.1:{s.mail_sink.mail_sink_port})"
            )
        else:
            mail = f"identity's notifier: {s.identity.notifier.value} (CARDINSA_NOTIFIER)"
        say("ready")
        print(
            f"""
  gateway   http://{listen}   REST/JSON and gRPC on one port
            OpenAPI http://{listen}/openapi.json, docs http://{listen}/docs
  identity  grpc://{identity}   (health, reflection: grpcurl -plaintext {identity} list)
  company   grpc://127.0.0.1:{s.company.company_port}
  core      grpc://127.0.0.1:{s.core.core_port}
  scheduler policies move on their dates (a pass every {s.scheduler.scheduler_interval_s:g} s)
  dispatcher the services' events to webhooks ({s.dispatcher.dispatcher_concurrency} deliveries \
at a time)
  mail      {mail}
  metrics   http://127.0.0.1:{s.identity.identity_metrics_port}/metrics (identity), \
http://127.0.0.1:{s.company.company_metrics_port}/metrics (company), \
http://127.0.0.1:{s.core.core_metrics_port}/metrics (core){scheduler_metrics}\
{dispatcher_metrics}

  Try it:
    curl -s -X POST {curl_address}/v1/auth:login -d '{login}'
    .venv/bin/grpcurl -plaintext {listen} list
    .venv/bin/grpcurl -plaintext -d '{login}' {listen} cardinsa.identity.v1.AuthService/Login

  Ctrl-C stops everything.
""",
            flush=True,
        )

    def watch_until_exit(self) -> int:
        """Watch every worker's health until a child or the gateway exits."""
        assert self.gateway is not None
        health: dict[str, str] = {}
        next_check = time.monotonic() + WATCH_INTERVAL_S
        while all(child.poll() is None for child in self.children) and self.gateway.alive():
            time.sleep(0.5)
            for service in self.services:
                while service.gave_up:
                    say(service.gave_up.pop(0))
            if time.monotonic() >= next_check:
                watch(self.services, self.workers, self.step, health)
                next_check = time.monotonic() + WATCH_INTERVAL_S
        if any(c.poll() not in (None, 0) for c in self.children):
            say("a service exited unexpectedly; stopping the rest")
            return 1
        if not self.gateway.alive():
            say("the gateway exited unexpectedly; stopping the rest")
            return 1
        return 0

    def stop(self) -> None:
        """Every child by PID (the services drain first), then the gateway, then
        the embedded PostgreSQL if this run started it."""
        if self.stopping:
            return
        self.stopping = True
        # Ctrl-C reaches every process of the terminal's group at once; further
        # signals must not cut the orderly stop short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("stopping…")
        # The mail sink last: identity sends what it still has queued on its way out.
        sink = self.mail_sink.process
        first = [child for child in self.children if child is not sink]
        for child in first:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        identity = self.settings.identity
        deadline = time.monotonic() + identity.drain_delay_s + identity.grace_period_s + 5
        for child in first:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if sink is not None:
            if sink.poll() is None:
                sink.send_signal(signal.SIGTERM)
            try:
                sink.wait(timeout=5)
            except subprocess.TimeoutExpired:
                sink.kill()
                sink.wait()
        if self.gateway is not None and self.gateway.alive():
            say("stopping the gateway")
            self.gateway.stop()
            self.files.gateway_pid.unlink(missing_ok=True)
        embedded = self.embedded
        if embedded is not None and (
            embedded.started_here or (not self.embedded_was_running and embedded.is_running())
        ):
            say("stopping the embedded PostgreSQL")
            embedded.stop()
        say("stopped")


class _StopSignals:
    """SIGINT and SIGTERM end the start with KeyboardInterrupt, so ``stop`` runs,
    but never while a child is being started: interrupted between its fork and
    the moment the launcher records it (``Popen`` waits for the exec), a child
    would be known to nobody and outlive the launcher. There the signal waits
    until the child is recorded."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending = False

    def handler(self, _signum: int, _frame: object) -> None:
        if self._depth:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth and self._pending:
            self._pending = False
            raise KeyboardInterrupt


SIGNALS = _StopSignals()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make up", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="worker processes per service")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for health")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        settings = SuiteSettings.load()
    except LaunchError as error:
        say(f"cannot start: {error}")
        return 1
    launch = Launch(settings, StateFiles(args.state_dir), args.workers, args.timeout)
    # Also SIGINT: a launcher started with it ignored (`make up &` in a script)
    # must still stop everything on it, not leave it to the services alone.
    signal.signal(signal.SIGINT, SIGNALS.handler)
    signal.signal(signal.SIGTERM, SIGNALS.handler)
    try:
        return launch.run()
    except KeyboardInterrupt:
        return 0
    except LaunchError as error:
        say(f"cannot start: {error}")
        return 1
    except LocalPostgresError as error:
        say(f"cannot start the embedded PostgreSQL: {error}")
        return 1
    finally:
        launch.stop()


if __name__ == "__main__":
    sys.exit(main())
