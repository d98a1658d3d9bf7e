"""The one way to start the whole suite from a program: `make up` as a child process.

The benchmark, the end-to-end tests and the fault tests all run
``python -m cardinsa_tools.suite --state-dir <dir> [args]`` through
:class:`SuiteRun`: on free ports of 127.0.0.1 (:class:`SuitePorts`), with an
embedded PostgreSQL of its own (:func:`suite_environment`, which leaves out every
Cardinsa setting of the caller's shell), in a process group of its own, its
output (stdout and stderr) kept and written to a log file, ready once it prints
``[cardinsa] ready``. :meth:`SuiteRun.stop` is what Ctrl-C does to `make up`:
the signal to the group, SIGKILL to the group if it does not end in time;
:meth:`SuiteRun.sweep` then stops by PID whatever is left (the group, Envoy from
its PID file, the embedded PostgreSQL, which detaches from the group).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any, Self

from cardinsa_foundation.config import PROJECT_ROOT
from cardinsa_tools.procfs import cmdline, free_port_block

READY_LINE = "[cardinsa] ready"
#: The settings of the caller's environment that never reach a suite started here.
_CALLER_PREFIXES = ("CARDINSA_",)
_BARE_SETTINGS = ("DATABASE_URL", "ENVIRONMENT")
_SERVICE_PORTS = {
    f"{s}{kind}" for s in ("identity", "company", "core") for kind in ("", "_metrics")
}


class SuiteNotReady(AssertionError):
    """The suite exited, or did not print its ready line in time (with its last lines)."""


@dataclass
class SuitePorts:
    """Every port a suite started here listens on; worker i of a service listens on
    its port + i x ``step`` (CARDINSA_WORKER_PORT_STEP), likewise its metrics port."""

    postgres: int
    identity: int
    company: int
    core: int
    identity_metrics: int
    company_metrics: int
    core_metrics: int
    gateway: int
    gateway_admin: int
    gateway_metrics: int  # 0: Envoy's stats listener is off
    scheduler_metrics: int = 0  # core's lifecycle scheduler (0: no endpoint)
    dispatcher_metrics: int = 0  # the event dispatcher (0: no endpoint)
    mail_sink: int = 0  # the local SMTP sink identity mails to (0: the default port)
    step: int = 100

    @classmethod
    def free(cls, workers: int = 1, step: int = 100, *, gateway_metrics: bool = True) -> Self:
        """Free ports, no two alike (each service's block has room for ``workers``)."""
        for _ in range(50):
            blocks = [free_port_block(workers, step) for _ in range(6)]
            ports = cls(
                postgres=free_port_block(1, step),
                identity=blocks[0],
                company=blocks[1],
                core=blocks[2],
                identity_metrics=blocks[3],
                company_metrics=blocks[4],
                core_metrics=blocks[5],
                gateway=free_port_block(1, step),
                gateway_admin=free_port_block(1, step),
                gateway_metrics=free_port_block(1, step) if gateway_metrics else 0,
                scheduler_metrics=free_port_block(1, step),
                dispatcher_metrics=free_port_block(1, step),
                mail_sink=free_port_block(1, step),
                step=step,
            )
            taken = [
                port + index * step
                for name, port in ports.all().items()
                for index in range(workers if name in _SERVICE_PORTS else 1)
            ]
            if len(set(taken)) == len(taken):
                return ports
        raise RuntimeError("no set of distinct free ports")

    def all(self) -> dict[str, int]:
        """name → port of every listener (worker 0; a switched-off one left out)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "step" and getattr(self, f.name)
        }

    def grpc(self, service: str, worker: int = 0) -> str:
        return f"127.0.0.1:{getattr(self, service) + worker * self.step}"


def suite_environment(
    ports: SuitePorts, postgres_dir: Path, files: Path, **settings: str
) -> dict[str, str]:
    """This process's environment without any Cardinsa setting, plus the suite's.

    A developer's shell (or .env) must not point a suite started here at a real
    database or the default ports: every setting that matters is explicit
    (environment variables win over .env). ``files``: where the gateway's access
    log, the notifications and the mail sink's messages go; ``settings``:
    CARDINSA_* values on top.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_CALLER_PREFIXES) and name not in _BARE_SETTINGS
    }
    p = ports
    env.update(
        {
            "CARDINSA_ENVIRONMENT": "development",
            "CARDINSA_DATABASE_URL": "",
            "CARDINSA_DATABASE_ADMIN_URL": "",
            "CARDINSA_DATABASE_PLATFORM_URL": "",
            "CARDINSA_EMBEDDED_POSTGRES_DIR": str(postgres_dir),
            "CARDINSA_EMBEDDED_POSTGRES_PORT": str(p.postgres),
            "CARDINSA_IDENTITY_PORT": str(p.identity),
            "CARDINSA_COMPANY_PORT": str(p.company),
            "CARDINSA_CORE_PORT": str(p.core),
            "CARDINSA_IDENTITY_METRICS_PORT": str(p.identity_metrics),
            "CARDINSA_COMPANY_METRICS_PORT": str(p.company_metrics),
            "CARDINSA_CORE_METRICS_PORT": str(p.core_metrics),
            "CARDINSA_WORKER_PORT_STEP": str(p.step),
            "CARDINSA_IDENTITY_ADDRESS": p.grpc("identity"),
            "CARDINSA_COMPANY_ADDRESS": p.grpc("company"),
            "CARDINSA_GATEWAY_HOST": "127.0.0.1",
            "CARDINSA_GATEWAY_PORT": str(p.gateway),
            "CARDINSA_GATEWAY_ADMIN_PORT": str(p.gateway_admin),
            "CARDINSA_GATEWAY_METRICS_PORT": str(p.gateway_metrics),
            "CARDINSA_SCHEDULER_METRICS_PORT": str(p.scheduler_metrics),
            "CARDINSA_DISPATCHER_METRICS_PORT": str(p.dispatcher_metrics),
            **({"CARDINSA_MAIL_SINK_PORT": str(p.mail_sink)} if p.mail_sink else {}),
            "CARDINSA_GATEWAY_ACCESS_LOG": str(files / "access.log"),
            "CARDINSA_NOTIFICATION_DIR": str(files / "notifications"),
            "CARDINSA_MAIL_SINK_DIR": str(files / "mail"),
            "CARDINSA_LOG_JSON": "true",
            "CARDINSA_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(settings)
    return env


class SuiteOutput:
    """Everything the suite writes (stdout and stderr merged), read by a thread,
    kept in memory and written to ``log_file``; ``on_line`` sees each line."""

    def __init__(
        self, stream: IO[bytes], log_file: Path, on_line: Callable[[str], None] | None = None
    ) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._on_line = on_line
        self._log = log_file.open("w", encoding="utf-8")
        self._thread = threading.Thread(
            target=self._read, args=(stream,), name="suite-output", daemon=True
        )
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                with self._lock:
                    self.lines.append(line)
                    self._log.write(line + "\n")
                    self._log.flush()
                if self._on_line is not None:
                    self._on_line(line)
                if line.strip() == READY_LINE:
                    self.ready.set()
        finally:
            with self._lock:
                self._log.close()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def launcher_lines(self) -> list[str]:
        """The launcher's own lines (the services' JSON log lines left out)."""
        return [line for line in self.snapshot() if not line.startswith("{")]

    def json_lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.snapshot():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
        return found

    def tail(self, count: int = 60) -> str:
        """The last lines of output (launcher and services), for failure messages."""
        return "\n".join(self.snapshot()[-count:])


@dataclass
class SuiteRun:
    """`make up` (``python -m cardinsa_tools.suite``) as one child process."""

    state_dir: Path
    env: Mapping[str, str]
    log_file: Path
    on_line: Callable[[str], None] | None = None
    process: subprocess.Popen[bytes] | None = None
    output: SuiteOutput | None = None

    def start(self, args: Sequence[str] = (), *, sigint_ignored: bool = False) -> None:
        """In a session (process group) of its own; ``sigint_ignored``: as when
        ``make up &`` is started from a script."""

        def ignore_sigint() -> None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cardinsa_tools.suite",
                "--state-dir",
                str(self.state_dir),
                *args,
            ],
            cwd=PROJECT_ROOT,
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=ignore_sigint if sigint_ignored else None,  # noqa: PLW1509
        )
        assert self.process.stdout is not None
        self.output = SuiteOutput(self.process.stdout, self.log_file, self.on_line)

    def wait_ready(self, timeout_s: float, while_waiting: Callable[[], None] | None = None) -> None:
        """Until the ready line; :class:`SuiteNotReady` if it exits or times out."""
        assert self.process is not None and self.output is not None
        deadline = time.monotonic() + timeout_s
        while not self.output.ready.wait(0.2):
            if while_waiting is not None:
                while_waiting()
            if self.process.poll() is not None:
                self.output.join(5)
                raise SuiteNotReady(
                    f"the suite exited (code {self.process.returncode}) before it was ready:\n"
                    f"{self.output.tail()}"
                )
            if time.monotonic() > deadline:
                raise SuiteNotReady(
                    f"the suite was not ready within {timeout_s:.0f} s:\n{self.output.tail()}"
                )

    def stop(self, timeout_s: float, signum: int = signal.SIGINT) -> bool:
        """``signum`` to the group (Ctrl-C), then SIGKILL to it after ``timeout_s``;
        False when it had to be killed."""
        process = self.process
        if process is None or process.poll() is not None:
            return True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            return False
        return True

    def sweep(self, postgres_dir: Path, postgres_port: int) -> None:
        """Whatever is left after :meth:`stop`, by PID: the rest of the group (a
        worker whose parent died), Envoy from its PID file, the embedded PostgreSQL."""
        from cardinsa_foundation.local_postgres import LocalPostgres

        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(OSError, ValueError):
            envoy = int((self.state_dir / "gateway" / "envoy.pid").read_text().strip())
            if "envoy" in cmdline(envoy):
                os.kill(envoy, signal.SIGKILL)
        postgres = LocalPostgres(postgres_dir, postgres_port)
        if postgres.is_running():
            try:
                stop_postgres_apart(postgres_dir, postgres_port, self.env)
            except (subprocess.SubprocessError, OSError):
                postgres.stop()

    @property
    def gateway_pid_file(self) -> Path:
        return self.state_dir / "gateway" / "envoy.pid"


def stop_postgres_apart(
    postgres_dir: Path, port: int, env: Mapping[str, str], action: str = "stop"
) -> None:
    """``stop`` or ``start`` an embedded PostgreSQL from a fresh process: the caller
    may run gRPC threads, and pg_ctl, started as another user from a process with
    threads, has crashed (SIGSEGV) once in a while."""
    code = (
        "import sys; from pathlib import Path; "
        "from cardinsa_foundation.local_postgres import LocalPostgres; "
        "getattr(LocalPostgres(Path(sys.argv[1]), int(sys.argv[2])), sys.argv[3])()"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(postgres_dir), str(port), action],
        cwd=PROJECT_ROOT,
        env=dict(env),
        check=True,
        timeout=90,
        capture_output=True,
    )
