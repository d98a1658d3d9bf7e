"""`.env.example` documents every setting the processes read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from cardinsa_foundation.config import Settings
from cardinsa_identity.settings import IdentitySettings

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
DOCUMENTED = set(re.findall(r"^#?\s*(CARDINSA_[A-Z0-9_]+)=", EXAMPLE.read_text(), re.MULTILINE))


@pytest.mark.parametrize("settings_cls", [Settings, IdentitySettings], ids=lambda c: c.__name__)
def test_every_setting_is_documented(settings_cls: type[BaseSettings]) -> None:
    expected = {f"CARDINSA_{name.upper()}" for name in settings_cls.model_fields}
    missing = sorted(expected - DOCUMENTED)
    assert not missing, f"add to .env.example: {missing}"


def test_nothing_documented_that_no_process_reads() -> None:
    known = {f"CARDINSA_{n.upper()}" for c in (Settings, IdentitySettings) for n in c.model_fields}
    # Services added later extend this list with their settings classes.
    unknown = sorted(
        n for n in DOCUMENTED - known if not n.startswith(("CARDINSA_COMPANY_", "CARDINSA_CORE_"))
    )
    assert not unknown, f"documented but read by nothing: {unknown}"
