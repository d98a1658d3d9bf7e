"""Database access: one async engine per process, one transaction per RPC.

The unit of work is the only way services reach the database. Every transaction
it opens first sets, in one round trip, the tenant that PostgreSQL row-level
security reads (``cardinsa.company_id``) and whether cross-tenant access was
explicitly asked for (``cardinsa.cross_tenant``). Both settings are
transaction-local, so a pooled connection never carries a previous caller's
tenant; a session opened any other way runs with an empty tenant and sees no
tenant rows (fails closed). :func:`tenant_isolation_ddl` gives migrations the
policy that reads these settings.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.pool import NullPool

from cardinsa_foundation import errors
from cardinsa_foundation.config import ASYNC_URL_PREFIX, Environment, Settings, get_settings
from cardinsa_foundation.context import current_company_id
from cardinsa_foundation.local_postgres import LocalPostgres

logger = logging.getLogger(__name__)

TENANT_SETTING: Final = "cardinsa.company_id"
CROSS_TENANT_SETTING: Final = "cardinsa.cross_tenant"
DEFAULT_APP_ROLE: Final = "cardinsa_app"

_TENANT_INFO_KEY: Final = "cardinsa.tenant"
_SET_TENANT_SQL: Final = text(
    f"SELECT set_config('{TENANT_SETTING}', :company_id, true), "
    f"set_config('{CROSS_TENANT_SETTING}', :cross_tenant, true)"
)
_IDENTIFIER: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class _CurrentPrincipalCompany:
    """Marker: take the company from the request context (the verified token)."""

    def __repr__(self) -> str:
        return "CURRENT_COMPANY"


CURRENT_COMPANY: Final = _CurrentPrincipalCompany()


class TenantSession(Session):
    """The sync session behind every AsyncSession of a :class:`Database`.

    Its own class so the tenant hook below applies to our sessions only.
    """


@event.listens_for(TenantSession, "after_begin")
def _apply_tenant(
    session: Session, transaction: SessionTransaction, connection: Connection
) -> None:
    """Set the tenant for row-level security at the start of every transaction.

    Running on every begin (not once per unit of work) keeps the tenant even when
    code commits in the middle and the session begins a new transaction.
    """
    company_id, cross_tenant = session.info.get(_TENANT_INFO_KEY, ("", False))
    connection.execute(
        _SET_TENANT_SQL,
        {"company_id": company_id, "cross_tenant": "on" if cross_tenant else "off"},
    )


def normalize_company_id(company_id: str | uuid.UUID | None) -> str:
    """Canonical text form of a company id ('' for none); rejects anything not a UUID."""
    if company_id is None or company_id == "":
        return ""
    return str(company_id if isinstance(company_id, uuid.UUID) else uuid.UUID(str(company_id)))


def to_async_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` → the asyncpg driver URL."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return ASYNC_URL_PREFIX + url[len(plain) :]
    return url


def to_libpq_url(url: str) -> str:
    """The same URL without the SQLAlchemy driver part (for psql, asyncpg.connect)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Database:
    """The engine, its pool and the session factory of one process."""

    def __init__(
        self,
        url: str,
        settings: Settings | None = None,
        *,
        application_name: str = "cardinsa",
    ) -> None:
        settings = settings if settings is not None else get_settings()
        self.settings = settings
        self.engine: AsyncEngine = create_async_engine(
            to_async_url(url),
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout_s,
            pool_recycle=settings.db_pool_recycle_s,
            pool_pre_ping=settings.db_pool_pre_ping,
            connect_args={
                "timeout": settings.db_connect_timeout_s,
                "server_settings": {
                    "statement_timeout": str(settings.db_statement_timeout_ms),
                    "application_name": application_name,
                },
            },
        )
        self.sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=TenantSession
        )

    @asynccontextmanager
    async def unit_of_work(
        self,
        *,
        company_id: str | uuid.UUID | _CurrentPrincipalCompany | None = CURRENT_COMPANY,
        cross_tenant: bool = False,
    ) -> AsyncIterator[AsyncSession]:
        """One transaction: commit when the block succeeds, roll back on any exception.

        ``company_id`` defaults to the calling principal's company. ``cross_tenant``
        lets row-level security policies that honour it see every tenant: only for
        the explicit, audited platform-administration code path.
        """
        if isinstance(company_id, _CurrentPrincipalCompany):
            company_id = current_company_id()
        tenant = (normalize_company_id(company_id), cross_tenant)
        async with self.sessionmaker() as session:
            session.sync_session.info[_TENANT_INFO_KEY] = tenant
            try:
                await session.begin()
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def ping(self, timeout_s: float = 2.0) -> float:
        """Round-trip latency in seconds of ``SELECT 1``; raises Unavailable on failure."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s), self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:
            raise errors.Unavailable(
                "the database is unavailable, retry later", reason="DATABASE_UNAVAILABLE"
            ) from exc
        return time.perf_counter() - started

    def pool_status(self) -> dict[str, int]:
        """Pool gauges for metrics: configured size, connections in use and idle, overflow."""
        pool: Any = self.engine.pool
        return {
            "size": int(pool.size()),
            "checked_out": int(pool.checkedout()),
            "checked_in": int(pool.checkedin()),
            "overflow": int(pool.overflow()),
        }

    async def dispose(self) -> None:
        """Close every pooled connection (graceful shutdown)."""
        await self.engine.dispose()


def resolve_database_url(
    settings: Settings, *, admin: bool = False
) -> tuple[str, LocalPostgres | None]:
    """The URL to use, starting the embedded PostgreSQL when none is configured.

    ``admin=True`` prefers ``database_admin_url`` (the owner role, for migrations)
    and falls back to ``database_url``. With neither set, the embedded server in
    ``embedded_postgres_dir`` is started (or reused) and its superuser URL is
    returned together with the server, which the caller stops when it owns it
    (``server.started_here``). Production never falls back to it.
    """
    configured = settings.database_admin_url if admin else None
    configured = configured or settings.database_url
    if configured is not None:
        return configured.get_secret_value(), None
    if settings.environment is Environment.PRODUCTION:
        raise RuntimeError("CARDINSA_DATABASE_URL must be set in production")
    server = LocalPostgres(settings.embedded_postgres_dir, settings.embedded_postgres_port)
    server.start()
    return server.admin_url(), server


def app_role_url(url: str, role: str = DEFAULT_APP_ROLE) -> str:
    """The same server and database, as the services' role (trust/peer auth setups)."""
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


def service_database_url(settings: Settings) -> tuple[str, LocalPostgres | None]:
    """The URL a service connects with: the configured one, or the embedded
    server's (started here if needed) as the non-owner app role."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value(), None
    admin_url, server = resolve_database_url(settings)
    return app_role_url(admin_url), server


async def ensure_app_role(
    admin_url: str, role: str = DEFAULT_APP_ROLE, *, password: str | None = None
) -> None:
    """Create the services' login role if missing: no superuser, no RLS bypass, no CREATEDB.

    Idempotent and safe when several processes call it at once (an advisory lock
    serialises callers on one database; a concurrent creation from another
    database is recognised and accepted). An existing role that is a superuser or
    bypasses RLS is refused, because row-level security would not apply to it.
    """
    if not _IDENTIFIER.match(role):
        raise ValueError(f"not a plain role name: {role!r}")
    engine = create_async_engine(
        to_async_url(admin_url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as connection:
            await connection.execute(
                text("SELECT pg_advisory_lock(hashtext('cardinsa.ensure_app_role'))")
            )
            try:
                await _create_role_if_missing(connection, role, password)
            finally:
                await connection.execute(
                    text("SELECT pg_advisory_unlock(hashtext('cardinsa.ensure_app_role'))")
                )
    finally:
        await engine.dispose()


async def _create_role_if_missing(connection: Any, role: str, password: str | None) -> None:
    flags_sql = text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :role")
    row = (await connection.execute(flags_sql, {"role": role})).first()
    if row is None:
        try:
            await connection.execute(
                text(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE')
            )
            logger.info("created database role %s", role)
        except DBAPIError as exc:
            # 42710 duplicate_object / 23505 on pg_authid: another caller won the race.
            if getattr(exc.orig, "sqlstate", None) not in ("42710", "23505"):
                raise
        row = (await connection.execute(flags_sql, {"role": role})).first()
    if row is not None and (row.rolsuper or row.rolbypassrls):
        raise RuntimeError(
            f"role {role} exists but is a superuser or bypasses row-level security; "
            "the services must not connect as such a role"
        )
    if password is not None:
        # The server quotes both (format %I / %L), so no password can break out of the literal.
        statement = (
            await connection.execute(
                text(
                    "SELECT format('ALTER ROLE %I PASSWORD %L', "
                    "CAST(:role AS text), CAST(:password AS text))"
                ),
                {"role": role, "password": password},
            )
        ).scalar_one()
        await connection.exec_driver_sql(statement)


def _quote_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def tenant_isolation_ddl(schema: str, table: str, *, column: str = "company_id") -> list[str]:
    """SQL that puts a tenant table under row-level security keyed on the unit of work.

    A row is visible and writable only when its ``column`` equals the
    transaction's ``cardinsa.company_id``, or when the transaction explicitly
    asked for cross-tenant access. An empty tenant matches nothing. FORCE makes
    the policy bind the table owner too; a data migration that must see every
    tenant sets ``cardinsa.cross_tenant`` to ``on`` for its transaction.
    Idempotent; no ``%`` or ``:name`` in the text, so Alembic's ``op.execute``
    runs it unchanged.
    """
    qualified = f"{_quote_identifier(schema)}.{_quote_identifier(table)}"
    condition = (
        f"current_setting('{CROSS_TENANT_SETTING}', true) = 'on' OR "
        f"{_quote_identifier(column)} = "
        f"CAST(nullif(current_setting('{TENANT_SETTING}', true), '') AS uuid)"
    )
    return [
        f"ALTER TABLE {qualified} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {qualified} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS tenant_isolation ON {qualified}",
        f"CREATE POLICY tenant_isolation ON {qualified} USING ({condition}) "
        f"WITH CHECK ({condition})",
    ]
