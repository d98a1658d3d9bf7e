"""Erasure rules, the personal-data settings and the exact-match-only filter."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Column, LargeBinary, MetaData, Table
from sqlalchemy.dialects import postgresql

from cardinsa_core.domain.claims import ClaimState
from cardinsa_core.domain.personal_data import (
    CLAIM_OPEN,
    POLICY_IN_FORCE,
    erasure_blocker,
    pseudonym,
)
from cardinsa_core.domain.policies import PolicyState
from cardinsa_core.settings import DEV_PERSONAL_DATA_HASH_KEY, DEV_PERSONAL_DATA_KEY, CoreSettings
from cardinsa_foundation.errors import InvalidArgument
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec
from cardinsa_foundation.server import EXIT_CONFIG

STRONG = "x" * 40


@pytest.mark.parametrize("state", ["BOUND", "IN_FORCE", "CANCEL_PENDING"])
def test_a_running_policy_blocks_erasure(state: str) -> None:
    assert erasure_blocker([state, "EXPIRED"], [])[0] == POLICY_IN_FORCE  # type: ignore[index]


@pytest.mark.parametrize("state", ["DRAFT", "SUBMITTED", "UNDER_REVIEW", "APPROVED"])
def test_an_open_claim_blocks_erasure(state: str) -> None:
    assert erasure_blocker(["CANCELLED"], [state, "PAID"])[0] == CLAIM_OPEN  # type: ignore[index]


def test_finished_business_allows_erasure() -> None:
    finished_policies = ["DRAFT", "QUOTED", "CANCELLED", "LAPSED", "EXPIRED"]
    finished_claims = ["DENIED", "PAID", "CLOSED", "WITHDRAWN"]
    assert {s.value for s in PolicyState} >= set(finished_policies)
    assert {s.value for s in ClaimState} >= set(finished_claims)
    assert erasure_blocker(finished_policies, finished_claims) is None
    assert erasure_blocker([], []) is None


def test_pseudonym() -> None:
    holder = uuid.UUID("12345678-aaaa-bbbb-cccc-ddddeeeeffff")
    assert pseudonym(holder) == "erased-12345678"


@pytest.mark.parametrize("field", ["personal_data_key", "personal_data_hash_key"])
def test_production_refuses_the_development_personal_data_keys(field: str) -> None:
    values = {
        "environment": "production",
        "database_url": "postgresql://u:p@db/x",
        "database_platform_url": "postgresql://p:q@db/x",
        "signing_key_encryption_key": STRONG,
        "page_token_secret": STRONG,
        "personal_data_key": STRONG + "a",
        "personal_data_hash_key": STRONG + "b",
    }
    values[field] = {
        "personal_data_key": DEV_PERSONAL_DATA_KEY,
        "personal_data_hash_key": DEV_PERSONAL_DATA_HASH_KEY,
    }[field]
    with pytest.raises(ValidationError) as caught:
        CoreSettings(_env_file=None, **values)  # type: ignore[arg-type]
    assert f"CARDINSA_{field.upper()} still has its development default" in str(caught.value)
    assert DEV_PERSONAL_DATA_KEY not in str(caught.value)


def test_previous_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDINSA_PERSONAL_DATA_PREVIOUS_KEYS", f"{STRONG}a, {STRONG}b")
    settings = CoreSettings(_env_file=None)
    assert [s.get_secret_value() for s in settings.personal_data_previous_keys] == [
        f"{STRONG}a",
        f"{STRONG}b",
    ]
    monkeypatch.setenv("CARDINSA_PERSONAL_DATA_PREVIOUS_KEYS", f'["{STRONG}c"]')
    assert len(CoreSettings(_env_file=None).personal_data_previous_keys) == 1
    monkeypatch.setenv("CARDINSA_PERSONAL_DATA_PREVIOUS_KEYS", "short")
    with pytest.raises(ValidationError) as caught:
        CoreSettings(_env_file=None)
    assert "short" not in str(caught.value)


def _lookup_spec() -> tuple[FilterSpec, list[str]]:
    seen: list[str] = []

    def lookup(value: str) -> bytes:
        seen.append(value)
        return b"h:" + value.encode()

    table = Table("t", MetaData(), Column("h", LargeBinary))
    return FilterSpec({"secret": FilterField(table.c.h, FieldType.STRING, lookup=lookup)}), seen


def test_a_lookup_field_matches_the_mapped_value_exactly() -> None:
    spec, seen = _lookup_spec()
    condition = spec.parse('secret = "DE 123"')
    assert condition is not None and seen == ["DE 123"]
    compiled = condition.compile(dialect=postgresql.dialect())
    assert b"h:DE 123" in compiled.params.values()
    assert spec.parse('secret != "x"') is not None
    assert spec.parse("secret:*") is not None  # presence


@pytest.mark.parametrize(
    "text", ['secret = "DE*"', 'secret:"DE"', 'secret > "A"', 'secret = "*123"']
)
def test_a_lookup_field_refuses_anything_but_exact_match(text: str) -> None:
    spec, seen = _lookup_spec()
    with pytest.raises(InvalidArgument) as caught:
        spec.parse(text)
    assert "exactly" in str(caught.value.field_violations)
    assert seen == []


def test_a_production_core_without_personal_data_keys_exits_78(tmp_path: Path) -> None:
    """The real entry point: refused before any worker or database connection,
    exit code 78 (configuration), both keys named, no value and no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDINSA_")}
    env.pop("DATABASE_URL", None)
    env.pop("ENVIRONMENT", None)
    env.update(
        {
            "CARDINSA_ENVIRONMENT": "production",
            "CARDINSA_DATABASE_URL": "postgresql://app:pw-0123456789@db.internal/cardinsa",
            "CARDINSA_DATABASE_PLATFORM_URL": "postgresql://p:pw-0123456789@db.internal/x",
            "CARDINSA_SIGNING_KEY_ENCRYPTION_KEY": STRONG,
            "CARDINSA_PAGE_TOKEN_SECRET": STRONG,
            "CARDINSA_PERSONAL_DATA_KEY": DEV_PERSONAL_DATA_KEY,
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "cardinsa_core.main"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EXIT_CONFIG, (done.stdout, done.stderr)
    assert "CARDINSA_PERSONAL_DATA_KEY" in done.stderr
    assert "CARDINSA_PERSONAL_DATA_HASH_KEY" in done.stderr
    assert DEV_PERSONAL_DATA_KEY not in done.stderr and STRONG not in done.stderr
    assert "Traceback" not in done.stderr
