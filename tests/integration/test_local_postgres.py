"""LocalPostgres on a temporary data directory: start, reuse, restart, stop for certain."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from cardinsa_foundation.config import Settings
from cardinsa_foundation.db import resolve_database_url
from cardinsa_foundation.local_postgres import (
    LocalPostgres,
    LocalPostgresError,
    _process_alive,
    find_free_port,
)


async def query(url: str, sql: str) -> object:
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text(sql))
            return result.scalar() if result.returns_rows else None
    finally:
        await engine.dispose()


def postgres_processes_of(data_dir: Path) -> list[int]:
    """PIDs of any postgres process whose command line names this data directory."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "postgres" in cmdline and str(data_dir) in cmdline and _process_alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cluster for the module: initdb runs once, every test starts/stops it."""
    return tmp_path_factory.mktemp("local-postgres") / "data"


@pytest.fixture
def server(data_dir: Path) -> Iterator[LocalPostgres]:
    pg = LocalPostgres(data_dir, find_free_port(), durable=False)
    try:
        yield pg
    finally:
        pg.stop()
        assert postgres_processes_of(data_dir) == []


async def test_start_serves_tcp_and_a_socket_in_the_data_dir(server: LocalPostgres) -> None:
    assert not server.is_running()
    assert server.pid is None
    server.start()
    assert server.started_here
    assert server.is_running()
    assert server.pid is not None and _process_alive(server.pid)
    assert (server.data_dir / "PG_VERSION").exists()
    assert (server.data_dir / f".s.PGSQL.{server.port}").is_socket()
    url = server.admin_url()
    assert url == f"postgresql+asyncpg://postgres@127.0.0.1:{server.port}/postgres"
    assert await query(url, "SELECT current_user") == "postgres"
    assert await query(url, "SHOW server_encoding") == "UTF8"
    assert await query(url, "SHOW max_connections") == "300"
    assert await query(url, "SHOW fsync") == "off"
    assert await query(url, "SHOW listen_addresses") == "127.0.0.1"
    hba = (server.data_dir / "pg_hba.conf").read_text()
    assert "0.0.0.0/0" not in hba
    assert "127.0.0.1/32   trust" in hba


async def test_a_second_handle_reuses_the_running_server(server: LocalPostgres) -> None:
    server.start()
    other = LocalPostgres(server.data_dir, find_free_port())  # asks for another port
    other.start()
    assert not other.started_here
    assert other.pid == server.pid
    assert other.port == server.port  # adopted the running server's port
    with other:  # leaving the context of a reused server must not stop it
        pass
    assert server.is_running()


async def test_data_survives_a_restart(server: LocalPostgres) -> None:
    server.start()
    await query(server.admin_url(), "CREATE DATABASE kept_across_restarts")
    first_pid = server.pid
    server.stop()
    assert not server.is_running()
    server.start()
    assert server.pid != first_pid
    names = await query(
        server.admin_url(),
        "SELECT string_agg(datname, ',') FROM pg_database WHERE datname = 'kept_across_restarts'",
    )
    assert names == "kept_across_restarts"
    await query(server.admin_url(), "DROP DATABASE kept_across_restarts")


def test_stop_leaves_no_process_and_is_idempotent(server: LocalPostgres) -> None:
    server.start()
    pid = server.pid
    assert pid is not None
    server.stop()
    assert not _process_alive(pid)
    assert postgres_processes_of(server.data_dir) == []
    assert server.pid is None
    server.stop()  # nothing running: no error


def test_stop_kills_by_pid_when_pg_ctl_fails(
    server: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.start()
    pid = server.pid
    assert pid is not None

    def broken_pg_ctl(tool: str, args: list[str], *, timeout_s: float) -> None:
        raise LocalPostgresError(f"{tool} {args[0]} failed: simulated")

    monkeypatch.setattr(server, "_run_pg_tool", broken_pg_ctl)
    server.stop()
    assert not _process_alive(pid)
    deadline = time.monotonic() + 10
    while postgres_processes_of(server.data_dir) and time.monotonic() < deadline:
        time.sleep(0.05)  # backends notice the postmaster's death on their own
    assert postgres_processes_of(server.data_dir) == []


def test_start_after_a_crash_replaces_the_stale_pid_file(server: LocalPostgres) -> None:
    server.start()
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    # An exiting process shows an empty command line before it is gone: wait
    # for both views to agree that the postmaster died.
    while (
        postgres_processes_of(server.data_dir) or server.is_running()
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (server.data_dir / "postmaster.pid").exists()  # left behind by the crash
    assert not server.is_running()
    server.start()
    assert server.is_running()
    assert server.pid != pid


def test_port_taken_by_another_program_is_a_clear_error(server: LocalPostgres) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        blocked = LocalPostgres(server.data_dir, taken, durable=False)
        with pytest.raises(
            LocalPostgresError, match=f"port {taken} on 127.0.0.1 is already in use"
        ):
            blocked.start()
    assert not blocked.is_running()


def test_context_manager_starts_and_stops(data_dir: Path) -> None:
    with LocalPostgres(data_dir, find_free_port(), durable=False) as pg:
        assert pg.is_running()
        pid = pg.pid
    assert pid is not None and not _process_alive(pid)


def test_refuses_a_non_empty_directory_without_a_cluster(tmp_path: Path) -> None:
    target = tmp_path / "not-a-cluster"
    target.mkdir()
    (target / "precious.txt").write_text("do not overwrite")
    with pytest.raises(LocalPostgresError, match="holds no PostgreSQL cluster"):
        LocalPostgres(target, find_free_port()).start()
    assert (target / "precious.txt").read_text() == "do not overwrite"


def test_resolve_database_url_starts_the_embedded_server_only_without_a_url(
    data_dir: Path,
) -> None:
    configured = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url="postgresql://app@db.example:5432/cardinsa"
    )
    assert resolve_database_url(configured) == (
        "postgresql+asyncpg://app@db.example:5432/cardinsa",
        None,
    )
    admin = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url="postgresql://app@db/x",
        database_admin_url="postgresql://owner@db/x",
    )
    assert resolve_database_url(admin, admin=True)[0] == "postgresql+asyncpg://owner@db/x"
    assert resolve_database_url(admin)[0] == "postgresql+asyncpg://app@db/x"

    embedded = Settings(  # type: ignore[call-arg]
        _env_file=None, embedded_postgres_dir=data_dir, embedded_postgres_port=find_free_port()
    )
    url, server = resolve_database_url(embedded)
    assert server is not None
    try:
        assert server.started_here
        assert url == server.admin_url()
        assert asyncio.run(query(url, "SELECT 1")) == 1
    finally:
        server.stop()
    assert postgres_processes_of(data_dir) == []


def test_stop_never_signals_a_pid_that_is_not_its_postmaster(tmp_path: Path) -> None:
    import subprocess
    import sys

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pg = LocalPostgres(tmp_path / "never-started", find_free_port())
        pg._pid = bystander.pid  # as if a stale record pointed at a reused PID
        pg.stop()
        assert bystander.poll() is None  # still running
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="the user switch happens only as root")
def test_pg_tools_start_as_the_system_user_while_grpc_threads_are_busy(tmp_path: Path) -> None:
    """As root the PostgreSQL tools run as the system user. Switched with
    ``subprocess.run(user=...)`` (a full fork), about a third of them died of
    SIGSEGV before their exec while gRPC calls were in flight in the same
    process (gRPC's fork handlers); switched by ``setpriv`` after the exec, none."""
    import threading

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    stop = threading.Event()

    async def serve_and_call() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()

        async def call() -> None:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                while not stop.is_set():
                    await stub.Check(health_pb2.HealthCheckRequest())

        try:
            await asyncio.gather(*(call() for _ in range(4)))
        finally:
            await server.stop(None)

    busy = threading.Thread(target=asyncio.run, args=(serve_and_call(),), daemon=True)
    busy.start()
    pg = LocalPostgres(tmp_path, find_free_port())
    failures: list[str] = []
    try:
        time.sleep(0.2)
        for _ in range(60):
            try:
                pg._run_pg_tool("pg_ctl", ["--version"], timeout_s=30)
            except LocalPostgresError as exc:
                failures.append(str(exc))
    finally:
        stop.set()
        busy.join(timeout=10)
    assert failures == []
