"""Database access: one async engine per process, one transaction per RPC.

The unit of work is the only way services reach the database. Every transaction
it opens first sets, in one round trip, the tenant that PostgreSQL row-level
security reads (``cardinsa.company_id``). The setting is transaction-local, so a
pooled connection never carries a previous caller's tenant; a session opened any
other way runs with an empty tenant and sees no tenant rows (fails closed).
:func:`tenant_isolation_ddl` gives migrations the policies.

Cross-tenant (platform) access is a database role, not a setting: a unit of
work, read or transaction that asks for ``cross_tenant=True`` runs on a second
engine and pool that connect as the platform role (``cardinsa_platform``,
``database_platform_url``), whose own policy sees every tenant. For the
application role (``cardinsa_app``) the only policy is "company_id equals the
transaction's tenant": no variable it can set widens that, and it is no member
of the platform role, so an injected or compromised statement on an application
connection cannot turn row-level security off. (It can still name another
company as its tenant: the setting is an ordinary placeholder that PostgreSQL
lets every role set. What is gone is "every tenant at once"; docs/runbook.md
states the residual risk.)

Hot single-statement reads (GetPolicy and the like) may use :meth:`Database.read`
instead: the same tenant rules without the ORM and in one round trip. A read
through a unit of work pays for the ORM session (compiling, identity map,
events) and for several round trips (BEGIN, the tenant, the SELECT, COMMIT),
each a socket write, a wake-up and a callback on the event loop (the figures
are in docs/performance.md). ``read``
sends each query as one prepared statement on a connection of its own asyncpg
pool: a call of a PL/pgSQL function the service's migration defined with
:func:`tenant_read_function_ddl`, which sets the tenant transaction-locally and
runs its one static query (plan cached per connection). The statement is its own
transaction, so the setting ends with it, also behind a transaction-pooling
PgBouncer. (A generic function running query text through EXECUTE would plan
every call.) The
pre-ping is replaced for every engine by a check of the driver connection's
own state, which costs no round trip (see :func:`_refuse_closed_connection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Generic, TypeVar

import asyncpg
from sqlalchemy import event, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.pool import NullPool
from sqlalchemy.util import await_, greenlet_spawn

from cardinsa_foundation import errors, tracing
from cardinsa_foundation.config import ASYNC_URL_PREFIX, Environment, Settings, get_settings
from cardinsa_foundation.context import current_company_id
from cardinsa_foundation.local_postgres import LocalPostgres

logger = logging.getLogger(__name__)

TENANT_SETTING: Final = "cardinsa.company_id"
#: Retired: the policies of identity_0001, company_0001 and core_0001 honoured it;
#: those of identity_0004, company_0002 and core_0003 and :func:`tenant_isolation_ddl`
#: read no such switch (cross-tenant access is the platform role). Kept because the
#: released migrations import it.
CROSS_TENANT_SETTING: Final = "cardinsa.cross_tenant"
DEFAULT_APP_ROLE: Final = "cardinsa_app"
#: The role of the cross-tenant (platform) code paths: sees every tenant's rows.
DEFAULT_PLATFORM_ROLE: Final = "cardinsa_platform"

_TENANT_INFO_KEY: Final = "cardinsa.tenant"
_SET_TENANT_SQL: Final = text(f"SELECT set_config('{TENANT_SETTING}', :company_id, true)")
_IDENTIFIER: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# BEGIN and the tenant in one simple-protocol query (two statements, one round
# trip) for Database.transaction. The simple protocol has no parameters, so the
# value is inlined: the company id is a canonical UUID or empty (checked against
# _CANONICAL_ID just before).
_BEGIN_WITH_TENANT: Final = (
    "BEGIN ISOLATION LEVEL READ COMMITTED; "
    f"SELECT set_config('{TENANT_SETTING}', '{{company_id}}', true)"
)
_CANONICAL_ID: Final = re.compile(r"^(?:[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12})?$")
_E = TypeVar("_E")


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

    The driver's transaction has not begun yet (SQLAlchemy's asyncpg adapter
    sends BEGIN before the first statement), so BEGIN and the tenant go as one
    simple query, one round trip, as in :meth:`Database.transaction`; the
    adapter then commits or rolls back through :class:`_BegunWithTenant`. Any
    other state (an adapter that began already, an isolation level or access
    mode of its own) gets the ordinary statement.
    """
    company_id = session.info.get(_TENANT_INFO_KEY, "")
    if not _begin_with_tenant(connection, company_id):
        connection.execute(_SET_TENANT_SQL, {"company_id": company_id})


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection of ``session``'s transaction (begun, with its
    tenant), for a hot path's hand-written statement inside a unit of work;
    traced like the session's own statements when tracing is on. The session
    does not flush before it: the statement must not read rows the unit of
    work has changed and not yet flushed."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    return tracing.TracedConnection(driver) if tracing.TRACER is not None else driver


class _BegunWithTenant:
    """The adapter's transaction after `_begin_with_tenant`: what SQLAlchemy's
    asyncpg adapter asks of asyncpg's Transaction (commit, rollback)."""

    __slots__ = ("_connection",)

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def commit(self) -> None:
        await self._connection.execute("COMMIT")

    async def rollback(self) -> None:
        if not self._connection.is_closed():
            await self._connection.execute("ROLLBACK")


def _begin_with_tenant(connection: Connection, company_id: str) -> bool:
    adapter: Any = connection.connection.dbapi_connection
    if (
        getattr(adapter, "_transaction", False) is not None
        or getattr(adapter, "isolation_level", "") not in (None, "read_committed")
        or getattr(adapter, "readonly", True)
        or getattr(adapter, "deferrable", True)
        or not _CANONICAL_ID.match(company_id)
    ):
        return False
    driver: Any = adapter._connection
    if tracing.TRACER is not None:
        driver = tracing.TracedConnection(driver)
    try:
        await_(driver.execute(_BEGIN_WITH_TENANT.format(company_id=company_id)))
    except Exception as exc:
        adapter._handle_exception(exc)
        raise  # pragma: no cover - _handle_exception raises
    adapter._transaction = _BegunWithTenant(adapter._connection)
    return True


def _refuse_closed_connection(
    dbapi_connection: Any, connection_record: Any, connection_proxy: Any
) -> None:
    """Pool checkout hook: a connection the server has closed (a restart, an
    idle timeout, a terminated backend) is replaced before anyone uses it.

    This is what ``pool_pre_ping`` is for, at no round trip: asyncpg notices the
    server closing the socket while the connection sits in the pool, and raising
    DisconnectionError here makes the pool discard it and connect anew (SQLAlchemy's
    documented custom pre-ping). SQLAlchemy's own pre-ping sends BEGIN, SELECT and
    ROLLBACK on every checkout: three round trips.
    """
    driver = getattr(dbapi_connection, "driver_connection", None)
    is_closed = getattr(driver, "is_closed", None)
    if callable(is_closed) and is_closed():
        raise DisconnectionError("the pooled connection was closed by the server")


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


class _Pools:
    """One role's engine, session factory and read pool (see :class:`Database`)."""

    def __init__(self, url: str, settings: Settings, application_name: str) -> None:
        self.engine: AsyncEngine = create_async_engine(
            to_async_url(url),
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout_s,
            pool_recycle=settings.db_pool_recycle_s,
            # Replaced by _refuse_closed_connection below (no round trip).
            pool_pre_ping=False,
            connect_args={
                "timeout": settings.db_connect_timeout_s,
                "server_settings": {
                    "statement_timeout": str(settings.db_statement_timeout_ms),
                    "application_name": application_name,
                },
            },
        )
        #: Connections the engine's pool opened so far (metrics: churn shows here).
        self.opened = 0
        event.listen(self.engine.sync_engine, "connect", self._opened)
        if settings.db_pool_pre_ping:
            event.listen(self.engine.sync_engine, "checkout", _refuse_closed_connection)
        if tracing.TRACER is not None:
            tracing.trace_sqlalchemy(self.engine.sync_engine)
        self.sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=TenantSession
        )
        self.read_pool = _ReadPool(
            functools.partial(_connect_reader, url, settings, application_name),
            max_size=settings.db_read_pool_size,
            max_age_s=settings.db_pool_recycle_s,
        )

    def _opened(self, *_args: object) -> None:
        self.opened += 1

    def engine_status(self) -> dict[str, int]:
        return {**_engine_pool_status(self.engine), "opened": self.opened}

    async def dispose(self) -> None:
        await self.read_pool.close()
        await self.engine.dispose()


async def _connect_reader(url: str, settings: Settings, application_name: str) -> Any:
    return await asyncpg.connect(
        to_libpq_url(to_async_url(url)),
        timeout=settings.db_connect_timeout_s,
        server_settings={
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "application_name": application_name,
            "default_transaction_read_only": "on",
        },
    )


class Database:
    """The engines, their pools and the session factories of one process.

    Two roles: ``url`` is the application role's (every tenant-scoped call);
    ``platform_url`` (default: ``database_platform_url``, else ``url`` with the
    user :data:`DEFAULT_PLATFORM_ROLE` and no password, see
    :func:`platform_role_url`) is the platform role's, used only by the units of
    work, reads and transactions that ask for ``cross_tenant=True``. The
    platform engine and its pools are made on the first such call (a service
    without cross-tenant paths never connects as the platform role).
    """

    def __init__(
        self,
        url: str,
        settings: Settings | None = None,
        *,
        application_name: str = "cardinsa",
        platform_url: str | None = None,
    ) -> None:
        settings = settings if settings is not None else get_settings()
        self.settings = settings
        self._application_name = application_name
        if platform_url is None:
            configured = settings.database_platform_url
            platform_url = (
                configured.get_secret_value() if configured is not None else platform_role_url(url)
            )
        self._platform_url = platform_url
        self._app = _Pools(url, settings, application_name)
        #: When a statement last came back from the server (monotonic seconds).
        self._last_answer = -math.inf
        self._platform: _Pools | None = None  # made on the first cross-tenant call
        self.engine: AsyncEngine = self._app.engine
        self.sessionmaker: async_sessionmaker[AsyncSession] = self._app.sessionmaker

    def _pools(self, cross_tenant: bool) -> _Pools:
        if not cross_tenant:
            return self._app
        if self._platform is None:
            self._platform = _Pools(self._platform_url, self.settings, self._application_name)
        return self._platform

    @asynccontextmanager
    async def unit_of_work(
        self,
        *,
        company_id: str | uuid.UUID | _CurrentPrincipalCompany | None = CURRENT_COMPANY,
        cross_tenant: bool = False,
    ) -> AsyncIterator[AsyncSession]:
        """One transaction: commit when the block succeeds, roll back on any exception.

        ``company_id`` defaults to the calling principal's company.
        ``cross_tenant`` runs the transaction as the platform role, which sees
        every tenant: only for the explicit, audited platform-administration
        code paths.
        """
        if isinstance(company_id, _CurrentPrincipalCompany):
            company_id = current_company_id()
        tenant = normalize_company_id(company_id)
        async with self._pools(cross_tenant).sessionmaker() as session:
            session.sync_session.info[_TENANT_INFO_KEY] = tenant
            try:
                await session.begin()
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            self._last_answer = time.monotonic()

    @asynccontextmanager
    async def read(
        self,
        *,
        company_id: str | uuid.UUID | _CurrentPrincipalCompany | None = CURRENT_COMPANY,
        cross_tenant: bool = False,
    ) -> AsyncIterator[ReadSession]:
        """Hot reads of a few rows without the ORM, one round trip per query.

        The same tenant rules as :meth:`unit_of_work`: each query is a call of
        its read function (:func:`tenant_read_function_ddl`), which sets the
        tenant transaction-locally before it runs its query, in the one implicit
        transaction of that statement -- row-level security applies and nothing
        outlives it. Each query therefore sees its own snapshot: use a unit of
        work when several reads must agree. Queries are :class:`ReadQuery`
        objects, run as prepared statements on a connection of the read pool
        (:class:`_ReadPool`: asyncpg, read-only sessions, up to ``db_read_pool_size``
        connections besides the engine's; the platform role has its own). A
        connection whose query failed in any way is closed, never reused.
        """
        if isinstance(company_id, _CurrentPrincipalCompany):
            company_id = current_company_id()
        tenant = normalize_company_id(company_id)
        pool = self._pools(cross_tenant).read_pool
        try:
            connection = await pool.acquire(self.settings.db_pool_timeout_s)
        except TimeoutError as exc:
            raise errors.Unavailable(
                "the database is busy, retry later", reason="DATABASE_BUSY"
            ) from exc
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            raise errors.Unavailable(
                "the database is unavailable, retry later", reason="DATABASE_UNAVAILABLE"
            ) from exc
        try:
            yield ReadSession(connection, tenant)
            self._last_answer = time.monotonic()
        except BaseException:
            # After any failure the connection is not known to be idle: a query
            # cancelled half-way, a broken socket, or a server shutting down,
            # which fails the statement with a database error (57P01) and closes
            # the socket only later -- reused, that connection failed the next
            # read with "another operation is in progress" (INTERNAL; the
            # PostgreSQL-restart fault test). Never hand it on.
            connection.terminate()
            raise
        finally:
            pool.release(connection)

    @asynccontextmanager
    async def transaction(
        self,
        *,
        company_id: str | uuid.UUID | _CurrentPrincipalCompany | None = CURRENT_COMPANY,
        cross_tenant: bool = False,
    ) -> AsyncIterator[Any]:
        """A read-write transaction without the ORM, for hot paths written as a
        few hand-written statements (login); yields the asyncpg connection.

        The same tenant rules as :meth:`unit_of_work`: BEGIN and the
        transaction-local tenant setting go as one round trip, then the
        caller's statements, then COMMIT when the block succeeds. A refusal
        the block raises itself (a :class:`~cardinsa_foundation.errors.CardinsaError`
        raised between statements, e.g. a rule of the domain) rolls back and
        keeps the connection, so refused requests cost no reconnects; on any
        other exception the connection is discarded (its state is unknown),
        which rolls the transaction back. The connection comes from the
        engine's pool (the one units of work use; the platform role's for
        ``cross_tenant``).
        """
        if isinstance(company_id, _CurrentPrincipalCompany):
            company_id = current_company_id()
        tenant = normalize_company_id(company_id)
        if not _CANONICAL_ID.match(tenant):  # normalize_company_id guarantees it
            raise ValueError("not a canonical company id")
        begin = _BEGIN_WITH_TENANT.format(company_id=tenant)
        refusal: errors.CardinsaError | None = None
        fairy = await self._pools(cross_tenant).engine.raw_connection()
        try:
            connection: Any = fairy.driver_connection
            if tracing.TRACER is not None:
                connection = tracing.TracedConnection(connection)
            await connection.execute(begin)
            try:
                yield connection
            except errors.CardinsaError as exc:
                refusal = exc
                await connection.execute("ROLLBACK")
            else:
                await connection.execute("COMMIT")
            self._last_answer = time.monotonic()
        except BaseException as exc:
            try:
                fairy.invalidate(exc if isinstance(exc, Exception) else None)
            except Exception:  # already closed: nothing left to discard
                logger.debug("discarding a failed connection failed", exc_info=True)
            raise
        finally:
            await greenlet_spawn(fairy.close)
        if refusal is not None:
            raise refusal

    def answered_within(self, seconds: float) -> bool:
        """Whether a unit of work, a read or a transaction completed within the
        last ``seconds``: the server answered, so it is reachable. A readiness
        probe asks this first. Under a burst every pooled connection is busy
        and a ping would queue behind the requests: it would time out and
        report a busy database as a lost one."""
        return time.monotonic() - self._last_answer <= seconds

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
        return self._app.engine_status()

    def platform_pool_status(self) -> dict[str, int]:
        """The platform role's engine pool, like :meth:`pool_status` (all zero
        until the first cross-tenant call made it)."""
        if self._platform is None:
            return {"size": 0, "checked_out": 0, "checked_in": 0, "overflow": 0, "opened": 0}
        return self._platform.engine_status()

    def read_pool_status(self) -> dict[str, int]:
        """The read pool's gauges (:meth:`read`), like :meth:`pool_status`."""
        return self._app.read_pool.stats()

    async def dispose(self) -> None:
        """Close every pooled connection of both roles (graceful shutdown)."""
        if self._platform is not None:
            await self._platform.dispose()
        await self._app.dispose()


def _engine_pool_status(engine: AsyncEngine) -> dict[str, int]:
    pool: Any = engine.pool
    return {
        "size": int(pool.size()),
        "checked_out": int(pool.checkedout()),
        "checked_in": int(pool.checkedin()),
        # QueuePool counts its overflow from -size; only connections above it count.
        "overflow": max(0, int(pool.overflow())),
    }


class _ReadPool:
    """The connections of :meth:`Database.read`: a LIFO list, up to ``max_size``.

    Its own, not asyncpg's Pool: that one wraps every acquire in a timeout and
    resets every released connection with one more round trip (their cost is in
    docs/performance.md). Here a free connection is
    taken without awaiting anything, and release is a list append: read
    connections never open a transaction and every setting they get is
    transaction-local, so there is nothing to reset. Connections closed by the
    server (a restart, a terminated backend) or older than ``max_age_s`` are
    dropped when next taken; :meth:`Database.read` closes a connection whose state
    it does not know before releasing it.
    """

    def __init__(
        self, connect: Callable[[], Awaitable[Any]], *, max_size: int, max_age_s: float
    ) -> None:
        self._connect = connect
        self._max_size = max_size
        self._max_age_s = max_age_s if max_age_s > 0 else None
        self._idle: list[Any] = []
        self._born: dict[int, float] = {}
        self._size = 0  # connections open or opening, idle or in use
        self._opened = 0  # connections opened so far
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def acquire(self, timeout_s: float) -> Any:
        deadline: float | None = None
        while True:
            while self._idle:
                connection = self._idle.pop()
                if connection.is_closed() or self._too_old(connection):
                    self._forget(connection)
                    connection.terminate()
                    continue
                return connection
            if self._closed:
                raise asyncpg.InterfaceError("the read pool is closed")
            if self._size < self._max_size:
                self._size += 1
                try:
                    connection = await self._connect()
                    self._opened += 1
                except BaseException:
                    self._size -= 1
                    self._wake()
                    raise
                self._born[id(connection)] = time.monotonic()
                return connection
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + timeout_s
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, but leaving: pass the turn on
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def release(self, connection: Any) -> None:
        if self._closed or connection.is_closed():
            self._forget(connection)
            connection.terminate()
        else:
            self._idle.append(connection)
        self._wake()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            self._forget(connection)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=2)
            if not connection.is_closed():
                connection.terminate()
        self._wake()

    def stats(self) -> dict[str, int]:
        """The pool gauges (the keys of metrics.register_pool_collector)."""
        idle = len(self._idle)
        return {
            "size": self._max_size,
            "checked_out": self._size - idle,
            "checked_in": idle,
            "overflow": 0,
            "opened": self._opened,
        }

    def _too_old(self, connection: Any) -> bool:
        if self._max_age_s is None:
            return False
        return time.monotonic() - self._born.get(id(connection), 0.0) > self._max_age_s

    def _forget(self, connection: Any) -> None:
        if self._born.pop(id(connection), None) is not None:
            self._size -= 1

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class ReadQuery(Generic[_E]):
    """A hot read of one mapped entity, for :meth:`Database.read`: a call of a
    read function that a migration created with :func:`tenant_read_function_ddl`.

    ``ReadQuery(PolicyRow, "read_policy", ("id",))`` runs ``SELECT * FROM
    core.read_policy(<tenant>, '', <id>)`` (the schema is the entity's table's;
    the second argument is the retired cross-tenant flag, which read functions
    ignore); ``await reader.one(query, id=...)``. Rows come back as
    instances of the entity built directly from the record (no session, no
    identity map, no change tracking): read them, do not add them to a session.
    """

    def __init__(self, entity: type[_E], function: str, params: Sequence[str] = ()) -> None:
        mapper = sa_inspect(entity)
        schema = getattr(mapper.local_table, "schema", None)
        if schema is None:
            raise TypeError("a ReadQuery's table must be in a schema")
        for name in (function, *params):
            if not _IDENTIFIER.match(name):
                raise ValueError(f"not a plain identifier: {name!r}")
        self.params: tuple[str, ...] = tuple(params)
        # $1 the tenant, '' the retired cross-tenant flag, then the parameters.
        placeholders = ", ".join(["$1", "''", *(f"${i}" for i in range(2, len(params) + 2))])
        # Identifiers checked and quoted; every value is a parameter.
        self.sql: str = (
            f"SELECT * FROM {_quote_identifier(schema)}.{_quote_identifier(function)}"  # noqa: S608
            f"({placeholders})"
        )
        self._new_instance = mapper.class_manager.new_instance
        self._columns: tuple[tuple[str, str], ...] = tuple(
            (col.name, prop.key) for prop in mapper.column_attrs for col in prop.columns
        )

    def arguments(self, params: dict[str, Any]) -> list[Any]:
        if params.keys() != set(self.params):
            raise TypeError(f"expected the parameters {list(self.params)}, got {sorted(params)}")
        return [params[name] for name in self.params]

    def entity(self, record: Any) -> _E:
        obj: _E = self._new_instance()
        obj.__dict__.update({key: record[name] for name, key in self._columns})
        return obj


class ReadSession:
    """What :meth:`Database.read` yields: runs :class:`ReadQuery` objects."""

    __slots__ = ("_connection", "_tenant")

    def __init__(self, connection: Any, tenant: str) -> None:
        self._connection = connection
        self._tenant = tenant

    async def one(self, query: ReadQuery[_E], **params: Any) -> _E | None:
        records = await self._run(self._connection.fetchrow, query, params)
        return None if records is None else query.entity(records)

    async def all(self, query: ReadQuery[_E], **params: Any) -> list[_E]:
        records = await self._run(self._connection.fetch, query, params)
        return [query.entity(record) for record in records]

    async def _run(
        self, fetch: Callable[..., Awaitable[Any]], query: ReadQuery[Any], params: Any
    ) -> Any:
        arguments = query.arguments(params)
        try:
            if tracing.TRACER is None:
                return await fetch(query.sql, self._tenant, *arguments)
            with tracing.database_span(query.sql):
                return await fetch(query.sql, self._tenant, *arguments)
        except asyncpg.InternalClientError as exc:
            # An idle connection that received the server's shutdown notice
            # (57P01, a restart) is left consuming that error until its socket
            # closes; the next query on it fails with "cannot switch to state
            # ..., another operation is in progress". The server went away:
            # UNAVAILABLE, and Database.read discards the connection.
            raise errors.Unavailable(
                "the database is unavailable, retry later", reason="DATABASE_UNAVAILABLE"
            ) from exc


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


def platform_role_url(url: str, role: str = DEFAULT_PLATFORM_ROLE) -> str:
    """The same server and database, as the platform role (trust/peer auth setups):
    the default of ``database_platform_url``. Production sets it (with a password)."""
    return app_role_url(url, role)


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


def tenant_isolation_ddl(
    schema: str,
    table: str,
    *,
    column: str = "company_id",
    also_visible: str | None = None,
    also_writable: str | None = None,
    platform_role: str = DEFAULT_PLATFORM_ROLE,
) -> list[str]:
    """SQL that puts a tenant table under row-level security keyed on the unit of work.

    Two permissive policies. ``tenant_isolation`` (every role): a row is visible
    and writable only when its ``column`` equals the transaction's
    ``cardinsa.company_id``; an empty tenant matches nothing. ``also_visible`` /
    ``also_writable`` are extra SQL conditions OR-ed into its USING / WITH CHECK
    (e.g. ``company_id IS NULL`` for rows every tenant may read), written by
    migration code, never from a request. ``platform_access`` (the platform role
    only): every row. No setting widens the first: the application role, no
    member of the platform role, sees its tenant's rows and nothing else.

    FORCE makes the policies bind the table owner too; a data migration (run as
    the owner) that must see every tenant lifts it for its own transaction
    (``ALTER TABLE ... NO FORCE ROW LEVEL SECURITY``, then FORCE again before it
    commits). Idempotent; no ``%`` or ``:name`` in the text, so Alembic's
    ``op.execute`` runs it unchanged.
    """
    qualified = f"{_quote_identifier(schema)}.{_quote_identifier(table)}"
    platform = _quote_identifier(platform_role)
    own = (
        f"{_quote_identifier(column)} = "
        f"CAST(nullif(pg_catalog.current_setting('{TENANT_SETTING}', true), '') AS uuid)"
    )
    using = f"{own} OR {also_visible}" if also_visible else own
    check = f"{own} OR {also_writable}" if also_writable else own
    return [
        f"ALTER TABLE {qualified} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {qualified} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS tenant_isolation ON {qualified}",
        f"DROP POLICY IF EXISTS platform_access ON {qualified}",
        f"CREATE POLICY tenant_isolation ON {qualified} USING ({using}) WITH CHECK ({check})",
        f"CREATE POLICY platform_access ON {qualified} TO {platform} "
        "USING (true) WITH CHECK (true)",
    ]


def tenant_read_function_ddl(
    schema: str,
    function: str,
    *,
    table: str,
    params: Sequence[tuple[str, str]],
    where: str,
    order_by: str | None = None,
    limit: str | None = None,
) -> list[str]:
    """SQL that creates a read function for :class:`ReadQuery` / :meth:`Database.read`.

    ``<schema>.<function>(p_company_id text, p_cross_tenant text, <params>)`` sets the
    tenant transaction-locally, then returns ``SELECT * FROM <table>
    WHERE <where> [ORDER BY ...] [LIMIT ...]``. ``p_cross_tenant`` is ignored (the
    retired switch, kept so the signature of released functions stays: who sees
    more is the calling role's policy). ``params`` are ``(name, SQL type)``
    pairs that ``where`` refers to by name (and may use ``p_company_id``, the
    tenant as text, '' for none): give them names no column has (a ``p_``
    prefix), or PL/pgSQL reports them ambiguous. The query is static, so
    PL/pgSQL plans it once per connection. The function runs with the caller's
    rights (SECURITY INVOKER): row-level security and grants apply exactly as to
    the caller's own statements. Its ``search_path`` is pinned to ``pg_catalog,
    <schema>, pg_temp`` (temporary objects last, never first), so nothing the
    caller puts on its own path (a temporary or look-alike schema) is resolved
    inside. Idempotent (CREATE OR REPLACE);
    Alembic's ``op.execute`` runs it unchanged.
    """
    for name in (function, table, *(p for p, _ in params)):
        if not _IDENTIFIER.match(name):
            raise ValueError(f"not a plain identifier: {name!r}")
    if any(name in ("p_company_id", "p_cross_tenant") for name, _ in params):
        raise ValueError("p_company_id and p_cross_tenant are the function's own parameters")
    qualified = f"{_quote_identifier(schema)}.{_quote_identifier(function)}"
    table_ref = f"{_quote_identifier(schema)}.{_quote_identifier(table)}"
    signature = ", ".join(
        ["p_company_id text", "p_cross_tenant text", *(f"{name} {kind}" for name, kind in params)]
    )
    # Migration code supplies ``where`` (never a request value).
    query = f"SELECT * FROM {table_ref} WHERE {where}"  # noqa: S608
    if order_by:
        query += f" ORDER BY {order_by}"
    if limit:
        query += f" LIMIT {limit}"
    return [
        f"CREATE OR REPLACE FUNCTION {qualified}({signature}) "
        f"RETURNS SETOF {table_ref} LANGUAGE plpgsql VOLATILE SECURITY INVOKER "
        f"SET search_path = pg_catalog, {_quote_identifier(schema)}, pg_temp AS $body$ "
        "BEGIN "
        f"PERFORM pg_catalog.set_config('{TENANT_SETTING}', p_company_id, true); "
        f"RETURN QUERY {query}; "
        "END $body$",
    ]
