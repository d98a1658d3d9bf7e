"""Operator commands of core: migrate and downgrade.

python -m cardinsa_core.cli migrate
python -m cardinsa_core.cli downgrade base
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from cardinsa_core.main import SERVICE_NAME
from cardinsa_core.repository.models import SCHEMA
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.config import get_settings
from cardinsa_foundation.db import resolve_database_url
from cardinsa_foundation.logging import configure_logging
from cardinsa_foundation.migrations import downgrade, upgrade

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


async def migrate(settings: CoreSettings, revision: str, *, down: bool = False) -> None:
    admin_url, server = resolve_database_url(settings, admin=True)
    try:
        if down:
            await downgrade(MIGRATIONS, admin_url, SCHEMA, revision)
        else:
            await upgrade(MIGRATIONS, admin_url, SCHEMA, revision=revision)
    finally:
        if server is not None and server.started_here:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cardinsa-core-cli")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("migrate", help="migrate the core schema (as the owner role)")
    m.add_argument("--revision", default="head")
    d = sub.add_parser("downgrade", help="migrate the core schema down to REVISION")
    d.add_argument("revision")
    args = parser.parse_args(argv)

    settings = get_settings(CoreSettings)
    configure_logging(settings.log_level, settings.log_json, SERVICE_NAME)
    if args.command == "migrate":
        asyncio.run(migrate(settings, args.revision))
        print(f"core schema migrated to {args.revision}")
    else:
        asyncio.run(migrate(settings, args.revision, down=True))
        print(f"core schema migrated down to {args.revision}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
