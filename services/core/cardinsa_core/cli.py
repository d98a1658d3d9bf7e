"""Operator commands of core: migrate, downgrade (cardinsa_foundation.cli) and
reencrypt.

python -m cardinsa_core.cli migrate
python -m cardinsa_core.cli downgrade base
python -m cardinsa_core.cli reencrypt [--batch-size 500]

``reencrypt`` rewrites every encrypted personal-data value under the current
``CARDINSA_PERSONAL_DATA_KEY`` (after a key rotation; docs/personal-data.md),
batch by batch, printing its progress. It is idempotent: run it again after an
interruption.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from cardinsa_core.application.personal_data import ReencryptReport, reencrypt_all
from cardinsa_core.main import SERVICE_NAME
from cardinsa_core.repository import personal_data
from cardinsa_core.repository.models import SCHEMA
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.cli import Commands, run_cli
from cardinsa_foundation.db import Database, service_database_url
from cardinsa_foundation.envelope import EnvelopeError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


async def reencrypt(settings: CoreSettings, *, batch_size: int = 500) -> list[ReencryptReport]:
    """Re-encrypt all personal data under the current key, with progress on stdout."""
    keys = personal_data.use_settings(settings)
    print(f"re-encrypting personal data under key {keys.cipher.current_key_id}", flush=True)
    url, server = service_database_url(settings)
    db = Database(url, settings, application_name=f"{SERVICE_NAME}-reencrypt")
    try:

        def progress(table: str, seen: int, rewritten: int) -> None:
            print(f"{table}: {seen} rows checked, {rewritten} re-encrypted", flush=True)

        return await reencrypt_all(db, batch_size=batch_size, progress=progress)
    finally:
        await db.dispose()
        if server is not None and server.started_here:
            server.stop()


def _add_commands(sub: Commands) -> None:
    r = sub.add_parser(
        "reencrypt",
        help="rewrite all personal data under the current CARDINSA_PERSONAL_DATA_KEY "
        "(after a key rotation; idempotent)",
    )
    r.add_argument("--batch-size", type=int, default=500, help="rows per transaction")


def _run(args: argparse.Namespace, settings: CoreSettings) -> None:
    if args.command == "reencrypt":
        if args.batch_size < 1:
            raise ValueError("--batch-size must be at least 1")
        for report in asyncio.run(reencrypt(settings, batch_size=args.batch_size)):
            print(
                f"{report.table}: done, {report.seen} rows, "
                f"{report.rewritten} re-encrypted under the current key"
            )


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        argv,
        name=SERVICE_NAME,
        settings_cls=CoreSettings,
        migrations=MIGRATIONS,
        schema=SCHEMA,
        add_commands=_add_commands,
        run=_run,
        usage_errors=(ValueError, EnvelopeError),
    )


if __name__ == "__main__":
    sys.exit(main())
