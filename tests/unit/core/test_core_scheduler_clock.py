"""The lifecycle scheduler's clock (--now), request ids and settings."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from cardinsa_core.application.lifecycle import (
    SYSTEM_SUBJECT,
    request_id_for,
    system_principal,
)
from cardinsa_core.repository.lifecycle import DueKind
from cardinsa_core.scheduler import LOCK_KEY, UsageError, make_clock, parse_now
from cardinsa_core.scheduler_settings import SchedulerSettings
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.use_cases import actor_uuid

REAL = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def real() -> datetime:
    return REAL


def test_now_takes_an_aware_timestamp_or_a_date() -> None:
    assert parse_now("2027-01-02T00:30:00Z") == datetime(2027, 1, 2, 0, 30, tzinfo=UTC)
    assert parse_now("2027-01-02T02:30:00+02:00") == datetime(2027, 1, 2, 0, 30, tzinfo=UTC)
    assert parse_now("2027-01-02") == datetime(2027, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize("value", ["2027-01-02T00:30:00", "tomorrow", "2027-13-01"])
def test_now_refuses_a_naive_or_malformed_value(value: str) -> None:
    with pytest.raises(UsageError):
        parse_now(value)


def test_without_now_the_clock_is_the_real_one() -> None:
    assert make_clock(None, allow_future=False, real=real)() == REAL


def test_a_past_now_shifts_the_clock_back() -> None:
    clock = make_clock(REAL - timedelta(days=3), allow_future=False, real=real)
    assert clock() == REAL - timedelta(days=3)


def test_a_future_now_is_refused_unless_allowed() -> None:
    ahead = REAL + timedelta(hours=1)
    with pytest.raises(UsageError, match="CARDINSA_SCHEDULER_ALLOW_FUTURE_CLOCK"):
        make_clock(ahead, allow_future=False, real=real)
    assert make_clock(ahead, allow_future=True, real=real)() == ahead
    # A few seconds of skew still count as now.
    assert make_clock(REAL + timedelta(seconds=2), allow_future=False, real=real)


def test_request_ids_are_deterministic_per_kind_policy_due_date_and_etag() -> None:
    policy = uuid.uuid4()
    day = date(2027, 1, 2)
    same = request_id_for(DueKind.ACTIVATE, policy, day, "e1")
    assert same == request_id_for(DueKind.ACTIVATE, policy, day, "e1")
    assert uuid.UUID(same).version == 5
    others = {
        request_id_for(DueKind.EXPIRE, policy, day, "e1"),
        request_id_for(DueKind.ACTIVATE, uuid.uuid4(), day, "e1"),
        request_id_for(DueKind.ACTIVATE, policy, day + timedelta(days=1), "e1"),
        # The policy changed since: the same due day is a new transition.
        request_id_for(DueKind.ACTIVATE, policy, day, "e2"),
    }
    assert same not in others and len(others) == 4


def test_the_system_principal_acts_in_the_policy_s_company_with_no_user_id() -> None:
    company = uuid.uuid4()
    principal = system_principal(company)
    assert principal.subject == SYSTEM_SUBJECT and principal.company_id == str(company)
    assert not principal.permissions
    assert actor_uuid(principal) is None  # versions record no user id for it


def test_the_lock_key_is_a_postgres_bigint() -> None:
    assert -(2**63) <= LOCK_KEY < 2**63


def test_scheduler_settings_use_the_platform_role_as_core_does() -> None:
    # Core's own cross-tenant path: the platform's callers of WatchEvents.
    assert SchedulerSettings.USES_PLATFORM_ROLE and CoreSettings.USES_PLATFORM_ROLE
    s = SchedulerSettings(_env_file=None, environment="test")  # type: ignore[call-arg]
    assert (s.scheduler_interval_s, s.scheduler_batch_size) == (60.0, 100)
    assert s.scheduler_allow_future_clock is False


def test_a_future_clock_is_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="ALLOW_FUTURE_CLOCK"):
        SchedulerSettings(  # type: ignore[call-arg]
            _env_file=None, environment="production", scheduler_allow_future_clock=True
        )
