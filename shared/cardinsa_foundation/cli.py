"""The operator command line every service shares: ``migrate`` and ``downgrade``.

A service's ``cli.main()`` calls :func:`run_cli` with its schema, its
migrations folder, and (optionally) its own commands::

    python -m cardinsa_<service>.cli migrate [--revision REV]
    python -m cardinsa_<service>.cli downgrade REV

Migrations run as the owner role (``database_admin_url``); the services
connect as ``cardinsa_app``. An embedded database started for the command is
stopped afterwards. A refused command (:class:`CardinsaError`, or one of the
service's ``usage_errors``) prints ``error: ...`` on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cardinsa_foundation.config import Settings, get_settings
from cardinsa_foundation.db import resolve_database_url
from cardinsa_foundation.errors import CardinsaError
from cardinsa_foundation.logging import configure_logging
from cardinsa_foundation.migrations import downgrade, upgrade

SettingsT = TypeVar("SettingsT", bound=Settings)
# argparse's sub-parsers object (``parser.add_subparsers()``): add_parser(...).
Commands = Any


async def migrate(
    settings: Settings, migrations: Path, schema: str, revision: str, *, down: bool = False
) -> None:
    """Migrate ``schema`` up (or ``down``) to ``revision`` as the owner role."""
    admin_url, server = resolve_database_url(settings, admin=True)
    try:
        if down:
            await downgrade(migrations, admin_url, schema, revision)
        else:
            await upgrade(migrations, admin_url, schema, revision=revision)
    finally:
        if server is not None and server.started_here:
            server.stop()


def run_cli(
    argv: list[str] | None,
    *,
    name: str,
    settings_cls: type[SettingsT],
    migrations: Path,
    schema: str,
    add_commands: Callable[[Commands], None] | None = None,
    run: Callable[[argparse.Namespace, SettingsT], None] | None = None,
    usage_errors: tuple[type[Exception], ...] = (),
) -> int:
    """``cardinsa-<name>-cli``: migrate, downgrade, and the commands
    ``add_commands`` declares, which ``run(args, settings)`` carries out."""
    parser = argparse.ArgumentParser(prog=f"cardinsa-{name}-cli")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("migrate", help=f"migrate the {name} schema (as the owner role)")
    m.add_argument("--revision", default="head")
    d = sub.add_parser("downgrade", help=f"migrate the {name} schema down to REVISION")
    d.add_argument("revision")
    if add_commands is not None:
        add_commands(sub)
    args = parser.parse_args(argv)

    settings = get_settings(settings_cls)
    configure_logging(settings.log_level, settings.log_json, name)
    try:
        if args.command in ("migrate", "downgrade"):
            down = args.command == "downgrade"
            asyncio.run(migrate(settings, migrations, schema, args.revision, down=down))
            print(f"{name} schema migrated {'down ' if down else ''}to {args.revision}")
        elif run is not None:
            run(args, settings)
    except CardinsaError as error:
        details = "; ".join(f"{v.field}: {v.description}" for v in error.field_violations)
        print(f"error: {error}{' (' + details + ')' if details else ''}", file=sys.stderr)
        return 2
    except usage_errors as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
