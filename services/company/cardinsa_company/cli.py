"""Operator commands of the company service: migrate, downgrade, register-company.

    python -m cardinsa_company.cli migrate
    python -m cardinsa_company.cli register-company --company-id <uuid> \\
        --display-name "Demo Insurance" --country DE --currency EUR --time-zone Europe/Berlin

Migrations run as the owner role (``database_admin_url``); the service itself
connects as ``cardinsa_app``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path

from cardinsa_company.application.bootstrap import ensure_company
from cardinsa_company.application.context import CompanyContext
from cardinsa_company.domain.companies import CompanyProfile
from cardinsa_company.main import SERVICE_NAME
from cardinsa_company.repository.models import SCHEMA, AuditEventRow
from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_foundation.audit import AuditWriter
from cardinsa_foundation.config import get_settings
from cardinsa_foundation.db import Database, resolve_database_url, service_database_url
from cardinsa_foundation.errors import CardinsaError
from cardinsa_foundation.logging import configure_logging
from cardinsa_foundation.migrations import downgrade, upgrade

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


async def migrate(settings: CompanyServiceSettings, revision: str, *, down: bool = False) -> None:
    admin_url, server = resolve_database_url(settings, admin=True)
    try:
        if down:
            await downgrade(MIGRATIONS, admin_url, SCHEMA, revision)
        else:
            await upgrade(MIGRATIONS, admin_url, SCHEMA, revision=revision)
    finally:
        if server is not None and server.started_here:
            server.stop()


async def register_company(
    settings: CompanyServiceSettings, company_id: uuid.UUID, profile: CompanyProfile
) -> bool:
    url, server = service_database_url(settings)
    db = Database(url, settings, application_name=f"{SERVICE_NAME}-cli")
    try:
        ctx = CompanyContext(db=db, settings=settings, audit=AuditWriter(AuditEventRow))
        _, created = await ensure_company(ctx, company_id=company_id, profile=profile)
        return created
    finally:
        await db.dispose()
        if server is not None and server.started_here:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cardinsa-company-cli")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("migrate", help="migrate the company schema (as the owner role)")
    m.add_argument("--revision", default="head")
    d = sub.add_parser("downgrade", help="migrate the company schema down to REVISION")
    d.add_argument("revision")
    r = sub.add_parser("register-company", help="register a company if missing (idempotent)")
    r.add_argument("--company-id", required=True)
    r.add_argument("--display-name", required=True)
    r.add_argument("--country", required=True, help="ISO 3166-1 alpha-2, e.g. DE")
    r.add_argument("--currency", required=True, help="ISO 4217, e.g. EUR")
    r.add_argument("--time-zone", required=True, help="IANA, e.g. Europe/Berlin")
    r.add_argument("--locale", default="en")
    args = parser.parse_args(argv)

    settings = get_settings(CompanyServiceSettings)
    configure_logging(settings.log_level, settings.log_json, SERVICE_NAME)
    try:
        if args.command == "migrate":
            asyncio.run(migrate(settings, args.revision))
            print(f"company schema migrated to {args.revision}")
        elif args.command == "downgrade":
            asyncio.run(migrate(settings, args.revision, down=True))
            print(f"company schema migrated down to {args.revision}")
        elif args.command == "register-company":
            profile = CompanyProfile(
                display_name=args.display_name,
                country=args.country,
                default_currency=args.currency,
                time_zone=args.time_zone,
                locale=args.locale,
            )
            created = asyncio.run(register_company(settings, uuid.UUID(args.company_id), profile))
            state = "registered" if created else "already registered"
            print(f"company {args.company_id} {state}")
    except CardinsaError as error:
        details = "; ".join(f"{v.field}: {v.description}" for v in error.field_violations)
        print(f"error: {error}{' (' + details + ')' if details else ''}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
