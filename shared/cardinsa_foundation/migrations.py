"""Alembic, the same way for every service.

Each service keeps its own migration history in its own schema (version table
``<schema>.alembic_version``). Its ``env.py`` is two lines that call
:func:`run_env`; operators and tests call :func:`upgrade` / :func:`downgrade`
(or ``python -m cardinsa_<service>.cli migrate``). Migrations run as the owner
role (``database_admin_url``); the services connect as ``cardinsa_app``, a role
that owns nothing, so row-level security applies to them, and their
cross-tenant code paths as ``cardinsa_platform`` (owns nothing either; its own
policy sees every tenant). :func:`upgrade` creates both roles when missing (the
embedded and test servers; production creates them beforehand, see
deploy/compose/postgres-init/).

What those roles may do in a schema -- grants, row-level security, append-only
tables, a migration history they cannot write -- is one call at the end of a
migration: :func:`secure_schema` (its SQL: :func:`secure_schema_ddl`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from cardinsa_foundation.audit import append_only_ddl
from cardinsa_foundation.db import (
    DEFAULT_APP_ROLE,
    DEFAULT_PLATFORM_ROLE,
    ensure_app_role,
    tenant_isolation_ddl,
    to_async_url,
)

P = ParamSpec("P")
URL_KEY = "cardinsa.url"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def alembic_config(script_location: Path, url: str, schema: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("version_table_schema", schema)
    # Passed through attributes, not the ini, so a password never lands in a
    # config file or in alembic's logged options.
    config.attributes[URL_KEY] = to_async_url(url)
    config.attributes["schema"] = schema
    return config


def run_env(target_metadata: MetaData) -> None:
    """Body of a service's ``migrations/env.py``."""
    from alembic import context

    config = context.config
    schema = config.attributes.get("schema") or target_metadata.schema
    url = config.attributes.get(URL_KEY)
    if url is None:
        raise RuntimeError("run migrations through cardinsa_foundation.migrations.upgrade()")

    def run(connection: Connection) -> None:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=False,
            compare_type=True,
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(run)
        finally:
            await engine.dispose()

    if context.is_offline_mode():
        raise RuntimeError("offline (SQL script) migrations are not supported")
    _run_coroutine(main())


def _run_coroutine(coro: Any) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    # Called from inside a running loop (tests, the dev suite): run in a thread.
    import threading

    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="alembic")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


async def upgrade(
    script_location: Path,
    admin_url: str,
    schema: str,
    *,
    revision: str = "head",
    app_role: str = DEFAULT_APP_ROLE,
    platform_role: str = DEFAULT_PLATFORM_ROLE,
) -> None:
    """Create the app and platform roles if needed, then migrate ``schema`` up to
    ``revision``."""
    await ensure_app_role(admin_url, app_role)
    await ensure_app_role(admin_url, platform_role)
    config = alembic_config(script_location, admin_url, schema)
    config.attributes["app_role"] = app_role
    await asyncio.to_thread(command.upgrade, config, revision)


async def downgrade(script_location: Path, admin_url: str, schema: str, revision: str) -> None:
    config = alembic_config(script_location, admin_url, schema)
    await asyncio.to_thread(command.downgrade, config, revision)


def grant_app_role_ddl(
    schema: str,
    app_role: str = DEFAULT_APP_ROLE,
    platform_role: str | None = DEFAULT_PLATFORM_ROLE,
) -> list[str]:
    """What the services' roles (the application role and, unless None, the
    platform role) may do in ``schema``: use it, read and write rows.

    Never ownership, never DDL. Safe to run again after any later migration that
    adds a table (it covers every table of the schema): it then takes back what
    no service role may do, whoever granted it -- writes to the migration
    history (``alembic_version``) and UPDATE, DELETE and TRUNCATE on every table
    made append-only by :func:`cardinsa_foundation.audit.append_only_ddl`.
    No ``%`` or ``:name`` in the text (Alembic's ``op.execute`` runs it unchanged).
    """
    roles = [app_role] if platform_role is None else [app_role, platform_role]
    for name in (schema, *roles):
        _check_identifier(name)
    grantees = ", ".join(f'"{role}"' for role in roles)
    # Every name interpolated below passed _check_identifier.
    return [
        f'GRANT USAGE ON SCHEMA "{schema}" TO {grantees}',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO {grantees}',
        f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO {grantees}',
        "DO $narrow$ DECLARE t record; BEGIN "  # noqa: S608 - checked identifiers only
        "FOR t IN SELECT c.relname FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = '{schema}' AND c.relkind IN ('r', 'p') AND ("
        "c.relname = 'alembic_version' OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g "
        "WHERE g.tgrelid = c.oid AND g.tgname = c.relname || '_append_only')) LOOP "
        "EXECUTE 'REVOKE ' || CASE WHEN t.relname = 'alembic_version' "
        "THEN 'INSERT, ' ELSE '' END || 'UPDATE, DELETE, TRUNCATE ON ' "
        f"|| pg_catalog.quote_ident('{schema}') || '.' || pg_catalog.quote_ident(t.relname) "
        f"|| ' FROM {grantees}'; "
        "END LOOP; END $narrow$",
    ]


def platform_role_ddl(platform_role: str = DEFAULT_PLATFORM_ROLE) -> list[str]:
    """The platform role, for a migration: created when missing (LOGIN, no
    superuser, no RLS bypass; needs CREATEROLE only then -- production creates
    it beforehand), refused when it is a superuser or bypasses row-level
    security, allowed to connect to this database. Idempotent; a role is
    cluster-wide, so every service's migration may run it.
    """
    _check_identifier(platform_role)
    role = f'"{platform_role}"'
    return [
        "DO $platform$ BEGIN "  # noqa: S608 - a checked identifier only
        "IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles "
        f"WHERE rolname = '{platform_role}') THEN "
        f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE; "
        "END IF; "
        "IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles "
        f"WHERE rolname = '{platform_role}' AND (rolsuper OR rolbypassrls)) THEN "
        f"RAISE EXCEPTION 'role {platform_role} is a superuser or bypasses row-level security'; "
        "END IF; "
        "EXECUTE 'GRANT CONNECT ON DATABASE ' || pg_catalog.quote_ident(current_database()) "
        f"|| ' TO {role}'; "
        "END $platform$",
    ]


@dataclass(frozen=True)
class TenantTable:
    """A table under row-level security, as :func:`secure_schema` takes it (the
    arguments of :func:`cardinsa_foundation.db.tenant_isolation_ddl`).

    ``column`` holds the row's company; ``also_visible`` / ``also_writable`` are
    extra SQL conditions (migration code, never a request value) OR-ed into the
    tenant policy's USING / WITH CHECK, e.g. ``company_id IS NULL``.
    """

    name: str
    column: str = "company_id"
    also_visible: str | None = None
    also_writable: str | None = None


def secure_schema_ddl(
    schema: str,
    *,
    tenant_tables: Iterable[str | TenantTable],
    append_only: Iterable[str] = ("audit_events",),
    no_update: Iterable[str] = (),
    app_role: str = DEFAULT_APP_ROLE,
    platform_role: str = DEFAULT_PLATFORM_ROLE,
) -> list[str]:
    """The security postamble of a service schema: the SQL that
    :data:`secure_schema` runs in a migration.

    One call at the end of every migration that adds or changes a table, with the
    schema's whole lists (not just the new table). In order: the platform role
    exists (:func:`platform_role_ddl`); each ``append_only`` table (the audit log
    by default) refuses UPDATE, DELETE and TRUNCATE by a trigger, for the owner
    too (:func:`cardinsa_foundation.audit.append_only_ddl`); the application and
    platform roles may use the schema, read and write the rows of every table and
    use its sequences, except any write to ``<schema>.alembic_version`` and
    UPDATE/DELETE/TRUNCATE on the append-only tables (:func:`grant_app_role_ddl`,
    which finds both in the catalogue); ``no_update`` tables (rows the services
    add and delete, never change) lose UPDATE; nothing beyond that -- no
    TRUNCATE, REFERENCES or TRIGGER on a table, no sequence UPDATE, no CREATE in
    the schema, whoever granted it; every ``tenant_tables`` entry (a name keyed
    on ``company_id``, or a :class:`TenantTable`) gets the ``tenant_isolation``
    and ``platform_access`` policies with FORCE
    (:func:`cardinsa_foundation.db.tenant_isolation_ddl`), which neither role can
    lift or drop (they own nothing). A table not in ``tenant_tables`` is
    platform-wide (no row-level security).

    Every statement is idempotent, so running it again, or after a later
    migration, is harmless. No ``%`` or ``:name`` in the text.
    """
    tables = [TenantTable(t) if isinstance(t, str) else t for t in tenant_tables]
    append_only = list(append_only)
    no_update = list(no_update)
    for name in (schema, app_role, platform_role, *append_only, *no_update):
        _check_identifier(name)
    grantees = f'"{app_role}", "{platform_role}"'
    statements = list(platform_role_ddl(platform_role))
    for table in append_only:
        statements += append_only_ddl(schema, table)
    statements += grant_app_role_ddl(schema, app_role, platform_role)
    statements += [f'REVOKE UPDATE ON "{schema}"."{t}" FROM {grantees}' for t in no_update]
    statements += [
        f'REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA "{schema}" FROM {grantees}',
        f'REVOKE UPDATE ON ALL SEQUENCES IN SCHEMA "{schema}" FROM {grantees}',
        f'REVOKE CREATE ON SCHEMA "{schema}" FROM {grantees}',
    ]
    for tenant in tables:
        statements += tenant_isolation_ddl(
            schema,
            tenant.name,
            column=tenant.column,
            also_visible=tenant.also_visible,
            also_writable=tenant.also_writable,
            platform_role=platform_role,
        )
    return statements


def in_migration(ddl: Callable[P, list[str]]) -> Callable[P, None]:
    """A function that returns SQL, made a migration step: same arguments; it runs
    each statement with Alembic's ``op.execute`` (inside a migration only)."""

    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        from alembic import op

        for statement in ddl(*args, **kwargs):
            op.execute(statement)

    run.__doc__ = ddl.__doc__
    return run


#: ``secure_schema(schema, tenant_tables=..., ...)``: :func:`secure_schema_ddl`,
#: applied in the migration that calls it.
secure_schema = in_migration(secure_schema_ddl)


def _check_identifier(name: str) -> None:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
