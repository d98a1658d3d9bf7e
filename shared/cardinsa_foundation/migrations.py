"""Alembic, the same way for every service.

Each service keeps its own migration history in its own schema (version table
``<schema>.alembic_version``). Its ``env.py`` is two lines that call
:func:`run_env`; operators and tests call :func:`upgrade` / :func:`downgrade`
(or ``python -m cardinsa_<service>.cli migrate``). Migrations run as the owner
role (``database_admin_url``); the services connect as ``cardinsa_app``, a role
that owns nothing, so row-level security applies to them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from cardinsa_foundation.db import DEFAULT_APP_ROLE, ensure_app_role, to_async_url

URL_KEY = "cardinsa.url"


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
) -> None:
    """Create the app role if needed, then migrate ``schema`` up to ``revision``."""
    await ensure_app_role(admin_url, app_role)
    config = alembic_config(script_location, admin_url, schema)
    config.attributes["app_role"] = app_role
    await asyncio.to_thread(command.upgrade, config, revision)


async def downgrade(script_location: Path, admin_url: str, schema: str, revision: str) -> None:
    config = alembic_config(script_location, admin_url, schema)
    await asyncio.to_thread(command.downgrade, config, revision)


def grant_app_role_ddl(schema: str, app_role: str = DEFAULT_APP_ROLE) -> list[str]:
    """What the services' role may do in ``schema``: use it, read and write rows.

    Never ownership, never DDL; audit tables are then narrowed to SELECT and
    INSERT by the migration that creates them.
    """
    return [
        f'GRANT USAGE ON SCHEMA "{schema}" TO "{app_role}"',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{app_role}"',
        f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{app_role}"',
    ]
