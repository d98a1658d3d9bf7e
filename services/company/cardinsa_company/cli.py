"""Operator commands of the company service: register-company, and migrate and
downgrade (cardinsa_foundation.cli).

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
from cardinsa_company.handlers.events import company_events
from cardinsa_company.main import SERVICE_NAME
from cardinsa_company.repository.models import SCHEMA, AuditEventRow
from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_foundation.audit import AuditWriter
from cardinsa_foundation.cli import Commands, run_cli
from cardinsa_foundation.db import Database, service_database_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


async def register_company(
    settings: CompanyServiceSettings, company_id: uuid.UUID, profile: CompanyProfile
) -> bool:
    url, server = service_database_url(settings)
    db = Database(url, settings, application_name=f"{SERVICE_NAME}-cli")
    try:
        ctx = CompanyContext(
            db=db, settings=settings, audit=AuditWriter(AuditEventRow), events=company_events()
        )
        _, created = await ensure_company(ctx, company_id=company_id, profile=profile)
        return created
    finally:
        await db.dispose()
        if server is not None and server.started_here:
            server.stop()


def _add_commands(sub: Commands) -> None:
    r = sub.add_parser("register-company", help="register a company if missing (idempotent)")
    r.add_argument("--company-id", required=True)
    r.add_argument("--display-name", required=True)
    r.add_argument("--country", required=True, help="ISO 3166-1 alpha-2, e.g. DE")
    r.add_argument("--currency", required=True, help="ISO 4217, e.g. EUR")
    r.add_argument("--time-zone", required=True, help="IANA, e.g. Europe/Berlin")
    r.add_argument("--locale", default="en")


def _run(args: argparse.Namespace, settings: CompanyServiceSettings) -> None:
    # register-company, the one command of the company's own.
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


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        argv,
        name=SERVICE_NAME,
        settings_cls=CompanyServiceSettings,
        migrations=MIGRATIONS,
        schema=SCHEMA,
        add_commands=_add_commands,
        run=_run,
        usage_errors=(ValueError,),
    )


if __name__ == "__main__":
    sys.exit(main())
