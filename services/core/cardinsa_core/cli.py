"""Operator commands of core: migrate and downgrade (cardinsa_foundation.cli).

python -m cardinsa_core.cli migrate
python -m cardinsa_core.cli downgrade base
"""

from __future__ import annotations

import sys
from pathlib import Path

from cardinsa_core.main import SERVICE_NAME
from cardinsa_core.repository.models import SCHEMA
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.cli import run_cli

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        argv, name=SERVICE_NAME, settings_cls=CoreSettings, migrations=MIGRATIONS, schema=SCHEMA
    )


if __name__ == "__main__":
    sys.exit(main())
