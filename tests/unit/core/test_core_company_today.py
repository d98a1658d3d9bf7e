"""What "today" is for the business rules: the company's date in its own time zone,
and the settings fallback of the tenant directory answers with the time zones,
flags and limits of the settings.

Around midnight UTC the companies' dates differ from the UTC date: at
2027-03-01T21:30Z it is already 2027-03-02 in Riyadh (UTC+3, no DST), and at
2027-03-02T03:30Z it is still 2027-03-01 in Bogota (UTC-5, no DST).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest
import pytest_asyncio
from pydantic import ValidationError

from cardinsa_core.application.context import CoreContext, local_date
from cardinsa_core.application.tenants import SettingsTenantDirectory, TenantFacts
from cardinsa_core.handlers.events import core_events
from cardinsa_core.repository.models import AuditEventRow
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.audit import AuditWriter
from cardinsa_foundation.db import Database

RIYADH = uuid.UUID("00000000-0000-4000-8000-0000000000a3")
BOGOTA = uuid.UUID("00000000-0000-4000-8000-0000000000b5")
ELSEWHERE = uuid.UUID("00000000-0000-4000-8000-0000000000cc")

LATE_EVENING_UTC = datetime(2027, 3, 1, 21, 30, tzinfo=UTC)
EARLY_MORNING_UTC = datetime(2027, 3, 2, 3, 30, tzinfo=UTC)


def settings(**values: object) -> CoreSettings:
    return CoreSettings(_env_file=None, environment="test", **values)  # type: ignore[arg-type, call-arg]


def core_settings() -> CoreSettings:
    return settings(
        # Upper-case ids are found too (like tenant_currencies).
        tenant_time_zones={str(RIYADH).upper(): "Asia/Riyadh", str(BOGOTA): "America/Bogota"},
        tenant_feature_flags={str(RIYADH): {"flat_rating": True, "beta_ui": False}},
        max_backdate_days=10,
        renewal_offer_days=45,
    )


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest_asyncio.fixture
async def ctx() -> AsyncIterator[CoreContext]:
    """A core context as main builds it; its database is never connected to
    (nothing here reads or writes)."""
    config = core_settings()
    db = Database("postgresql://nobody@127.0.0.1:1/unused", config, application_name="test")
    try:
        yield CoreContext(
            db=db,
            settings=config,
            audit=AuditWriter(AuditEventRow),
            tenants=SettingsTenantDirectory(config),
            events=core_events(),
            clock=Clock(LATE_EVENING_UTC),
        )
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    ("moment", "zone", "expected"),
    [
        (LATE_EVENING_UTC, "Asia/Riyadh", date(2027, 3, 2)),
        (LATE_EVENING_UTC, "America/Bogota", date(2027, 3, 1)),
        (LATE_EVENING_UTC, "UTC", date(2027, 3, 1)),
        (EARLY_MORNING_UTC, "Asia/Riyadh", date(2027, 3, 2)),
        (EARLY_MORNING_UTC, "America/Bogota", date(2027, 3, 1)),
        (EARLY_MORNING_UTC, "UTC", date(2027, 3, 2)),
        # The last minute before the local midnight, and the first after it.
        (datetime(2027, 3, 1, 20, 59, tzinfo=UTC), "Asia/Riyadh", date(2027, 3, 1)),
        (datetime(2027, 3, 1, 21, 0, tzinfo=UTC), "Asia/Riyadh", date(2027, 3, 2)),
        (datetime(2027, 3, 2, 4, 59, tzinfo=UTC), "America/Bogota", date(2027, 3, 1)),
        (datetime(2027, 3, 2, 5, 0, tzinfo=UTC), "America/Bogota", date(2027, 3, 2)),
        # An unknown zone reads as UTC.
        (LATE_EVENING_UTC, "Nowhere/Atlantis", date(2027, 3, 1)),
        (LATE_EVENING_UTC, "", date(2027, 3, 1)),
    ],
)
def test_local_date(moment: datetime, zone: str, expected: date) -> None:
    assert local_date(moment, zone) == expected


async def test_company_today_is_the_companys_date_not_utcs(ctx: CoreContext) -> None:
    assert isinstance(ctx.clock, Clock)
    ctx.clock.now = LATE_EVENING_UTC
    assert ctx.today() == date(2027, 3, 1)
    assert await ctx.company_today(RIYADH) == date(2027, 3, 2)  # already tomorrow
    assert await ctx.company_today(BOGOTA) == date(2027, 3, 1)
    assert await ctx.company_today(ELSEWHERE) == date(2027, 3, 1)  # default_time_zone UTC
    ctx.clock.now = EARLY_MORNING_UTC
    assert ctx.today() == date(2027, 3, 2)
    assert await ctx.company_today(RIYADH) == date(2027, 3, 2)
    assert await ctx.company_today(BOGOTA) == date(2027, 3, 1)  # still yesterday
    assert await ctx.company_today(ELSEWHERE) == date(2027, 3, 2)


async def test_facts_come_from_the_settings(ctx: CoreContext) -> None:
    riyadh = await ctx.facts(RIYADH)
    assert riyadh == TenantFacts(
        time_zone="Asia/Riyadh",
        feature_flags={"flat_rating": True, "beta_ui": False},
        max_backdate_days=10,
        renewal_offer_days=45,
    )
    bogota = await ctx.facts(BOGOTA)
    assert (bogota.time_zone, dict(bogota.feature_flags)) == ("America/Bogota", {})
    assert (bogota.max_backdate_days, bogota.renewal_offer_days) == (10, 45)
    with pytest.raises(TypeError):
        riyadh.feature_flags["flat_rating"] = False  # type: ignore[index]
    assert (await ctx.facts(RIYADH)).feature_flags["flat_rating"] is True


async def test_the_default_time_zone_and_the_defaults() -> None:
    directory = SettingsTenantDirectory(settings(default_time_zone="America/Bogota"))
    assert await directory.facts(ELSEWHERE) == TenantFacts(
        time_zone="America/Bogota", feature_flags={}, max_backdate_days=30, renewal_offer_days=30
    )


@pytest.mark.parametrize(
    "values",
    [
        {"default_time_zone": "Mars/Olympus_Mons"},
        {"default_time_zone": ""},
        {"default_time_zone": "../../etc/passwd"},
        {"tenant_time_zones": {str(RIYADH): "Asia/Riyad"}},
        {"max_backdate_days": -1},
        {"max_backdate_days": 3651},
        {"renewal_offer_days": 0},
        {"renewal_offer_days": 366},
    ],
)
def test_invalid_time_zones_and_limits_stop_the_start(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        settings(**values)


def test_time_zones_and_flags_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDINSA_DEFAULT_TIME_ZONE", "Africa/Nairobi")
    monkeypatch.setenv("CARDINSA_TENANT_TIME_ZONES", f'{{"{RIYADH}": "Asia/Riyadh"}}')
    monkeypatch.setenv("CARDINSA_TENANT_FEATURE_FLAGS", f'{{"{RIYADH}": {{"flat_rating": true}}}}')
    monkeypatch.setenv("CARDINSA_MAX_BACKDATE_DAYS", "0")
    monkeypatch.setenv("CARDINSA_RENEWAL_OFFER_DAYS", "365")
    loaded = settings()
    assert loaded.default_time_zone == "Africa/Nairobi"
    assert loaded.tenant_time_zones == {str(RIYADH): "Asia/Riyadh"}
    assert loaded.tenant_feature_flags == {str(RIYADH): {"flat_rating": True}}
    assert (loaded.max_backdate_days, loaded.renewal_offer_days) == (0, 365)
