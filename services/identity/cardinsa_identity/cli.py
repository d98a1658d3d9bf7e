"""Operator commands of identity: create-platform-admin, create-service-key,
seed-demo, reencrypt, and migrate and downgrade (cardinsa_foundation.cli).

    python -m cardinsa_identity.cli migrate
    python -m cardinsa_identity.cli create-platform-admin --email ops@example.com
    python -m cardinsa_identity.cli seed-demo --company-id <uuid>
    python -m cardinsa_identity.cli reencrypt
    python -m cardinsa_identity.cli create-service-key --company-id <uuid> \
        --name core-service --permission companies.get_status

Generated passwords are printed once to the terminal (stdout), never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import uuid
from pathlib import Path

from cardinsa_foundation.cli import Commands, run_cli
from cardinsa_foundation.context import PLATFORM_ADMIN_ROLE
from cardinsa_foundation.db import service_database_url
from cardinsa_identity.application.bootstrap import (
    BootstrapResult,
    ensure_user_with_role,
    issue_service_key,
)
from cardinsa_identity.application.second_factor import reencrypt_factors
from cardinsa_identity.main import SERVICE_NAME, build
from cardinsa_identity.repository.models import SCHEMA
from cardinsa_identity.settings import IdentitySettings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
COMPANY_ADMIN_ROLE = "company-admin"
DEMO_EMAIL = "admin@demo.cardinsa.local"


async def bootstrap_user(
    settings: IdentitySettings,
    *,
    email: str,
    password: str | None,
    company_id: uuid.UUID | None,
    role: str,
) -> BootstrapResult:
    url, server = service_database_url(settings)
    app = build(settings, url, port=0, metrics_port=None)
    try:
        await app.prepare()
        return await ensure_user_with_role(
            app.ctx, email=email, password=password, company_id=company_id, role_name=role
        )
    finally:
        await app.ctx.keys.stop()
        app.ctx.hasher.close()
        await app.ctx.db.dispose()
        if server is not None and server.started_here:
            server.stop()


async def service_key(
    settings: IdentitySettings, *, company_id: uuid.UUID, name: str, permissions: list[str]
) -> str:
    url, server = service_database_url(settings)
    app = build(settings, url, port=0, metrics_port=None)
    try:
        return await issue_service_key(
            app.ctx, company_id=company_id, name=name, permissions=permissions
        )
    finally:
        app.ctx.hasher.close()
        await app.ctx.db.dispose()
        if server is not None and server.started_here:
            server.stop()


async def reencrypt(settings: IdentitySettings) -> int:
    """Rewrite the stored signing keys and TOTP secrets under the current
    encryption secret; the number rewritten."""
    url, server = service_database_url(settings)
    app = build(settings, url, port=0, metrics_port=None)
    try:

        def progress(done: int, total: int) -> None:
            print(f"signing keys: {done}/{total}", flush=True)

        keys = await app.ctx.keys.reencrypt(progress=progress)

        def factors(checked: int, rewritten: int) -> None:
            print(f"totp secrets: {checked} checked, {rewritten} re-encrypted", flush=True)

        secrets = await reencrypt_factors(app.ctx.db, app.ctx.secrets_cipher, progress=factors)
        print(f"re-encrypted {keys} signing keys and {secrets} totp secrets", flush=True)
        return keys + secrets
    finally:
        app.ctx.hasher.close()
        await app.ctx.db.dispose()
        if server is not None and server.started_here:
            server.stop()


def _print_result(result: BootstrapResult, role: str) -> None:
    state = "created" if result.created else "already exists"
    print(f"{role} {result.email} ({state}) in company {result.company_id}")
    if result.password:
        print(f"  password (shown once): {result.password}")


def _add_commands(sub: Commands) -> None:
    p = sub.add_parser("create-platform-admin", help="create the first platform administrator")
    p.add_argument("--email", required=True)
    p.add_argument("--company-id", default=None, help="the operator's company (default: a new id)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    k = sub.add_parser(
        "create-service-key",
        help="issue an API key to a platform service account (earlier keys are revoked)",
    )
    k.add_argument("--company-id", required=True, help="the platform operator's company")
    k.add_argument("--name", required=True, help="service account name, e.g. core-service")
    k.add_argument("--permission", action="append", required=True, help="repeat for several")
    sub.add_parser(
        "reencrypt",
        help="rewrite the stored signing keys under the current signing-key encryption "
        "secret (after a rotation; idempotent)",
    )
    s = sub.add_parser("seed-demo", help="create the demo company's admin (idempotent)")
    s.add_argument("--company-id", required=True)
    s.add_argument(
        "--email",
        default=None,
        help="the admin's email (default: CARDINSA_DEMO_ADMIN_EMAIL, else " + DEMO_EMAIL + ")",
    )


def _run(args: argparse.Namespace, settings: IdentitySettings) -> None:
    if args.command == "create-platform-admin":
        password = None
        if args.password_stdin:
            password = (
                sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()
            )
        company = uuid.UUID(args.company_id) if args.company_id else None
        result = asyncio.run(
            bootstrap_user(
                settings,
                email=args.email,
                password=password,
                company_id=company,
                role=PLATFORM_ADMIN_ROLE,
            )
        )
        _print_result(result, "platform admin")
    elif args.command == "create-service-key":
        key = asyncio.run(
            service_key(
                settings,
                company_id=uuid.UUID(args.company_id),
                name=args.name,
                permissions=args.permission,
            )
        )
        print(key)
    elif args.command == "reencrypt":
        asyncio.run(reencrypt(settings))
    elif args.command == "seed-demo":
        password = (
            settings.demo_admin_password.get_secret_value()
            if settings.demo_admin_password
            else None
        )
        # An explicit --email wins over the environment's demo admin.
        email = args.email or settings.demo_admin_email or DEMO_EMAIL
        result = asyncio.run(
            bootstrap_user(
                settings,
                email=email,
                password=password,
                company_id=uuid.UUID(args.company_id),
                role=COMPANY_ADMIN_ROLE,
            )
        )
        _print_result(result, "demo company admin")


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        argv,
        name=SERVICE_NAME,
        settings_cls=IdentitySettings,
        migrations=MIGRATIONS,
        schema=SCHEMA,
        add_commands=_add_commands,
        run=_run,
    )


if __name__ == "__main__":
    sys.exit(main())
