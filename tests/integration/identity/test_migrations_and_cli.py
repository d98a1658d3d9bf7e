"""The identity schema's migrations, the role the service connects as, and the
command-line bootstrap of the first platform admin.

Each test gets a fresh database of its own on the test server (dropped at the
end), so upgrading, downgrading and bootstrapping never touch the session's
shared identity database.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import insert, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from support.identity_harness import IdentityHarness, unique_email

from cardinsa_foundation.db import (
    CROSS_TENANT_SETTING,
    DEFAULT_APP_ROLE,
    DEFAULT_PLATFORM_ROLE,
    TENANT_SETTING,
    app_role_url,
    platform_role_url,
)
from cardinsa_foundation.migrations import downgrade, upgrade
from cardinsa_identity.cli import MIGRATIONS
from cardinsa_identity.domain.passwords import verify_password
from cardinsa_identity.repository.models import UserRow

SCHEMA = "identity"
TABLES = {
    "alembic_version",
    "api_keys",
    "audit_events",
    "email_changes",
    "idempotency_keys",
    "invitations",
    "login_challenges",
    "login_throttles",
    "mfa_policies",
    "mfa_recovery_codes",
    "outbox_events",
    "password_resets",
    "refresh_tokens",
    "revocations",
    "role_bindings",
    "roles",
    "service_accounts",
    "sessions",
    "signing_keys",
    "user_mfa",
    "users",
}
TENANT_TABLES = {
    "users",
    "sessions",
    "refresh_tokens",
    "role_bindings",
    "service_accounts",
    "api_keys",
    "password_resets",
    "idempotency_keys",
    "invitations",
    "email_changes",
    "user_mfa",
    "mfa_recovery_codes",
    "login_challenges",
    "mfa_policies",
    "roles",
    "audit_events",
    "outbox_events",
}
CLI_TIMEOUT_S = 120.0


def engine_for(url: str) -> AsyncEngine:
    return create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")


@pytest_asyncio.fixture
async def fresh_database(postgres_admin_url: str) -> AsyncIterator[str]:
    """Superuser URL of a new, empty database, dropped (forcibly) at the end."""
    name = f"cardinsa_test_{uuid.uuid4().hex[:12]}"
    admin = engine_for(postgres_admin_url)
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def tables(url: str) -> set[str]:
    engine = engine_for(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = :schema"),
                {"schema": SCHEMA},
            )
            return {row[0] for row in rows}
    finally:
        await engine.dispose()


async def run_cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """``python -m cardinsa_identity.cli ARGS``; killed (by its PID) if it outlives the test."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cardinsa_identity.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def cli_env(database_url: str) -> dict[str, str]:
    """The operator's environment: this process's, minus any CARDINSA_ setting, plus
    the fresh database (the service's role for serving, the owner for migrating)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDINSA_")}
    env.pop("DATABASE_URL", None)
    env.pop("ENVIRONMENT", None)
    env.update(
        CARDINSA_ENVIRONMENT="test",
        CARDINSA_DATABASE_URL=app_role_url(database_url),
        CARDINSA_DATABASE_ADMIN_URL=database_url,
        CARDINSA_LOG_LEVEL="INFO",
    )
    return env


# --------------------------------------------------------------------- tests


async def test_migrations_upgrade_downgrade_and_upgrade_again(fresh_database: str) -> None:
    assert await tables(fresh_database) == set()
    await upgrade(MIGRATIONS, fresh_database, SCHEMA)
    assert await tables(fresh_database) == TABLES

    await downgrade(MIGRATIONS, fresh_database, SCHEMA, "base")
    # Only Alembic's (now empty) version table is left in the schema.
    assert await tables(fresh_database) == {"alembic_version"}
    engine = engine_for(fresh_database)
    try:
        async with engine.connect() as connection:
            versions = (
                await connection.execute(text("SELECT count(*) FROM identity.alembic_version"))
            ).scalar_one()
            functions = (
                await connection.execute(
                    text(
                        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n "
                        "ON n.oid = p.pronamespace WHERE n.nspname = :schema"
                    ),
                    {"schema": SCHEMA},
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    assert versions == 0
    assert functions == 0

    # Repeatable: up again from scratch, and once more at head (a no-op).
    await upgrade(MIGRATIONS, fresh_database, SCHEMA)
    await upgrade(MIGRATIONS, fresh_database, SCHEMA)
    assert await tables(fresh_database) == TABLES


async def test_the_service_role_owns_nothing_and_is_bound_by_row_level_security(
    fresh_database: str,
) -> None:
    await upgrade(MIGRATIONS, fresh_database, SCHEMA)
    owner = engine_for(fresh_database)
    # Transactions, as the service has them: the tenant settings are transaction-local.
    app = create_async_engine(app_role_url(fresh_database), poolclass=NullPool)
    company_a, company_b = uuid.uuid4(), uuid.uuid4()
    try:
        async with owner.connect() as connection:
            role = (
                await connection.execute(
                    text(
                        "SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole "
                        "FROM pg_roles WHERE rolname = :role"
                    ),
                    {"role": DEFAULT_APP_ROLE},
                )
            ).one()
            assert tuple(role) == (False, False, False, False)
            owners: dict[str, str] = dict(
                (
                    await connection.execute(
                        text(
                            "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = :schema"
                        ),
                        {"schema": SCHEMA},
                    )
                ).all()
            )
            assert set(owners) == TABLES
            assert DEFAULT_APP_ROLE not in owners.values()
            schema_owner = (
                await connection.execute(
                    text("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = :s"),
                    {"s": SCHEMA},
                )
            ).scalar_one()
            assert schema_owner != DEFAULT_APP_ROLE
            security: dict[str, bool] = dict(
                (
                    await connection.execute(
                        text(
                            "SELECT c.relname, c.relrowsecurity AND c.relforcerowsecurity "
                            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = :s AND c.relkind = 'r'"
                        ),
                        {"s": SCHEMA},
                    )
                ).all()
            )
            assert {t for t, forced in security.items() if forced} == TENANT_TABLES
            # A user in each of two companies (the superuser is not bound by RLS).
            for company in (company_a, company_b):
                await connection.execute(
                    insert(UserRow).values(
                        id=uuid.uuid4(),
                        company_id=company,
                        email=unique_email("rls"),
                        password_hash="x",
                        version=1,
                    )
                )

        async def visible_users(company: uuid.UUID | None, cross: bool = False) -> int:
            async with app.connect() as connection, connection.begin():
                if company is not None:
                    await connection.execute(
                        text("SELECT set_config(:name, :value, true)"),
                        {"name": TENANT_SETTING, "value": str(company)},
                    )
                if cross:
                    await connection.execute(
                        text("SELECT set_config(:name, 'on', true)"),
                        {"name": CROSS_TENANT_SETTING},
                    )
                return int(
                    (
                        await connection.execute(text("SELECT count(*) FROM identity.users"))
                    ).scalar_one()
                )

        assert await visible_users(None) == 0
        assert await visible_users(company_a) == 1
        assert await visible_users(company_b) == 1
        assert await visible_users(uuid.uuid4()) == 0
        # The retired switch widens nothing for the service's role...
        assert await visible_users(None, cross=True) == 0
        assert await visible_users(company_a, cross=True) == 1
        # ...cross-tenant access is the platform role's own policy.
        platform = create_async_engine(platform_role_url(fresh_database), poolclass=NullPool)
        try:
            async with platform.connect() as connection:
                flags = (
                    await connection.execute(
                        text(
                            "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles "
                            "WHERE rolname = current_user"
                        )
                    )
                ).one()
                assert tuple(flags) == (DEFAULT_PLATFORM_ROLE, False, False)
                everyone = await connection.execute(text("SELECT count(*) FROM identity.users"))
                assert everyone.scalar_one() == 2
        finally:
            await platform.dispose()

        # No DDL, and the audit log is append-only for the service's role.
        for statement in (
            "ALTER TABLE identity.users ADD COLUMN sneaky int",
            "DROP TABLE identity.sessions",
            "DELETE FROM identity.audit_events",
            "UPDATE identity.audit_events SET action = 'x'",
            "TRUNCATE identity.audit_events",
            "CREATE TABLE identity.mine (id int)",
        ):
            with pytest.raises(DBAPIError) as caught:
                async with app.connect() as connection:
                    await connection.execute(text(statement))
            assert getattr(caught.value.orig, "sqlstate", None) == "42501", statement
    finally:
        await app.dispose()
        await owner.dispose()


async def test_the_running_service_connects_as_the_non_owner_role(
    identity: IdentityHarness,
) -> None:
    async with identity.app.ctx.db.unit_of_work(company_id=None) as session:
        row = (
            await session.execute(
                text(
                    "SELECT current_user, r.rolsuper, r.rolbypassrls FROM pg_roles r "
                    "WHERE r.rolname = current_user"
                )
            )
        ).one()
    assert tuple(row) == (DEFAULT_APP_ROLE, False, False)


async def test_create_platform_admin_from_the_command_line(
    fresh_database: str, tmp_path: Path
) -> None:
    env = cli_env(fresh_database)
    code, out, err = await run_cli("migrate", env=env, cwd=tmp_path)
    assert code == 0, err
    assert await tables(fresh_database) == TABLES

    email = unique_email("Ops")  # stored in lower case
    code, out, err = await run_cli("create-platform-admin", "--email", email, env=env, cwd=tmp_path)
    assert code == 0, err
    assert f"platform admin {email.lower()} (created)" in out
    match = re.search(r"password \(shown once\): (\S+)", out)
    assert match, out
    password = match.group(1)
    assert len(password) >= 20
    assert password not in err  # printed to the terminal, never logged

    engine = engine_for(fresh_database)
    try:
        async with engine.connect() as connection:
            user = (
                await connection.execute(
                    text(
                        "SELECT id, company_id, state, password_hash FROM identity.users "
                        "WHERE email = :email"
                    ),
                    {"email": email.lower()},
                )
            ).one()
            roles = (
                (
                    await connection.execute(
                        text(
                            "SELECT r.name FROM identity.role_bindings b "
                            "JOIN identity.roles r ON r.id = b.role_id "
                            "WHERE b.user_id = :user AND b.company_id = :company"
                        ),
                        {"user": user.id, "company": user.company_id},
                    )
                )
                .scalars()
                .all()
            )
            audited = (
                await connection.execute(
                    text(
                        "SELECT count(*) FROM identity.audit_events "
                        "WHERE action = 'user.bootstrap' AND entity_id = :user"
                    ),
                    {"user": str(user.id)},
                )
            ).scalar_one()
            signing_keys = (
                await connection.execute(text("SELECT count(*) FROM identity.signing_keys"))
            ).scalar_one()
    finally:
        await engine.dispose()
    assert f"in company {user.company_id}" in out
    assert user.state == "ACTIVE"
    assert roles == ["platform-admin"]
    assert user.password_hash.startswith("$argon2id$")
    assert verify_password(password, user.password_hash)[0]
    assert not verify_password(password + "x", user.password_hash)[0]
    assert audited == 1
    assert signing_keys >= 1

    # Idempotent: a second run finds the admin and prints no password.
    code, again, err = await run_cli(
        "create-platform-admin", "--email", email, env=env, cwd=tmp_path
    )
    assert code == 0, err
    assert "already exists" in again
    assert "password" not in again
    assert password not in again and password not in err

    # An invalid email is refused with a message, not a traceback.
    code, out, err = await run_cli(
        "create-platform-admin", "--email", "not-an-email", env=env, cwd=tmp_path
    )
    assert code == 2
    assert err.startswith("error:") and "Traceback" not in err


async def test_keys_issued_without_expiry_get_one_on_upgrade(fresh_database: str) -> None:
    """identity_0005: a key from before the maximum lifetime expires a year after its
    creation, and one already older than that gets a 30-day grace period."""
    await upgrade(MIGRATIONS, fresh_database, SCHEMA, revision="identity_0001")
    company = uuid.uuid4()
    account = uuid.uuid4()
    old, recent, dated = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    engine = engine_for(fresh_database)
    try:
        async with engine.connect() as connection:
            await connection.execute(
                text(f"SELECT set_config('{CROSS_TENANT_SETTING}', 'on', false)")
            )
            await connection.execute(
                text(
                    "INSERT INTO identity.service_accounts "
                    "(id, company_id, name, description, version) "
                    "VALUES (:id, :company, 'svc-migration', '', 1)"
                ),
                {"id": account, "company": company},
            )
            for key, age, expire in (
                (old, timedelta(days=400), None),
                (recent, timedelta(days=10), None),
                (dated, timedelta(days=10), timedelta(days=5)),
            ):
                await connection.execute(
                    text(
                        "INSERT INTO identity.api_keys (id, company_id, service_account_id, "
                        "prefix, secret_hash, display_name, permissions, expire_time, "
                        "create_time) VALUES (:id, :company, :account, :prefix, 'x', 'k', "
                        "'{}', :expire, :created)"
                    ),
                    {
                        "id": key,
                        "company": company,
                        "account": account,
                        "prefix": key.hex[:10],
                        "expire": None if expire is None else now + expire,
                        "created": now - age,
                    },
                )
        await upgrade(MIGRATIONS, fresh_database, SCHEMA)
        async with engine.connect() as connection:
            # After identity_0004 the switch widens nothing: read as the keys' tenant.
            await connection.execute(
                text(f"SELECT set_config('{TENANT_SETTING}', :company, false)"),
                {"company": str(company)},
            )
            rows = await connection.execute(
                text(
                    "SELECT id, round(extract(epoch FROM expire_time - now()) / 86400) "
                    "FROM identity.api_keys"
                )
            )
            days_left = {row[0]: int(row[1]) for row in rows}
    finally:
        await engine.dispose()
    assert days_left == {old: 30, recent: 355, dated: 5}
