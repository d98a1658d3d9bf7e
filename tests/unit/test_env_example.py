"""`.env.example` documents every setting the processes read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from cardinsa_company.dispatcher_settings import DispatcherSettings
from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.config import Settings
from cardinsa_gateway.settings import GatewaySettings
from cardinsa_identity.settings import IdentitySettings
from cardinsa_tools.mail_sink import MailSinkSettings

SETTINGS_CLASSES: list[type[BaseSettings]] = [
    Settings,
    IdentitySettings,
    CompanyServiceSettings,
    DispatcherSettings,
    CoreSettings,
    GatewaySettings,
    MailSinkSettings,
]

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
DOCUMENTED = set(re.findall(r"^#?\s*(CARDINSA_[A-Z0-9_]+)=", EXAMPLE.read_text(), re.MULTILINE))


@pytest.mark.parametrize("settings_cls", SETTINGS_CLASSES, ids=lambda c: c.__name__)
def test_every_setting_is_documented(settings_cls: type[BaseSettings]) -> None:
    expected = {f"CARDINSA_{name.upper()}" for name in settings_cls.model_fields}
    missing = sorted(expected - DOCUMENTED)
    assert not missing, f"add to .env.example: {missing}"


def test_nothing_documented_that_no_process_reads() -> None:
    known = {f"CARDINSA_{n.upper()}" for c in SETTINGS_CLASSES for n in c.model_fields}
    unknown = sorted(DOCUMENTED - known)
    assert not unknown, f"documented but read by nothing: {unknown}"
