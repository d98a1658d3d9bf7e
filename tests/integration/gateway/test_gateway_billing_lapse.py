"""Lapse for non-payment, seen through the REST gateway: a MONTHLY policy bound
over REST whose first instalment stays unpaid is lapsed by the lifecycle
scheduler's own process (``python -m cardinsa_core.scheduler --once``, run as of
a day past the product's grace period), and reinstating it over REST is refused
with the arrears named until they are paid. The servers, Envoy and the company
are the schemathesis module's ``suite``; the scheduler runs on its database."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from test_gateway_billing_rest import Client, monthly_policy
from test_gateway_schemathesis import Suite, suite

from cardinsa_foundation.db import app_role_url, platform_role_url

pytestmark = pytest.mark.asyncio(loop_scope="session")

__all__ = ["suite"]  # the fixture, shared with the schemathesis module

#: ``monthly_policy``'s product gives 15 days of grace.
GRACE_DAYS = 15


async def run_scheduler(database: str, company_id: str, now: datetime, log: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDINSA_")}
    env.update(
        CARDINSA_ENVIRONMENT="test",
        CARDINSA_DATABASE_URL=app_role_url(database),
        CARDINSA_DATABASE_PLATFORM_URL=platform_role_url(database),
        CARDINSA_SCHEDULER_METRICS_PORT="0",
        CARDINSA_SCHEDULER_ALLOW_FUTURE_CLOCK="true",
    )
    args = ["--once", "--company", company_id, "--now", now.isoformat()]
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cardinsa_core.scheduler", *args, env=env, stdout=out, stderr=out
        )
        try:
            code = await asyncio.wait_for(process.wait(), timeout=120)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    output = await asyncio.to_thread(log.read_text, errors="replace")
    assert code == 0, output[-3000:]
    return output


async def test_an_instalment_unpaid_past_grace_lapses_the_policy_over_rest(
    suite: Suite, identity_database: str, tmp_path: Path
) -> None:
    client = Client(suite)
    today = datetime.now(UTC).date()
    policy = await monthly_policy(client, today)
    path = f"/v1/policies/{policy['id']}"

    # Within the grace period nothing lapses (the first instalment is overdue).
    within = datetime.combine(today + timedelta(days=GRACE_DAYS - 1), time(12), tzinfo=UTC)
    await run_scheduler(identity_database, suite.ids["company_id"], within, tmp_path / "a.log")
    kept = await client.ok("GET", path)
    assert kept["state"] == "IN_FORCE", kept
    first = (await client.ok("GET", f"{path}/invoices?page_size=100"))["invoices"][0]
    assert first["state"] == "OVERDUE", first

    past = datetime.combine(today + timedelta(days=GRACE_DAYS + 1), time(12), tzinfo=UTC)
    await run_scheduler(identity_database, suite.ids["company_id"], past, tmp_path / "b.log")
    lapsed = await client.ok("GET", path)
    assert lapsed["state"] == "LAPSED", lapsed

    status, refused = await client.call(
        "POST", f"{path}:reinstate", {"etag": lapsed["etag"], "note": "paid up"}
    )
    assert status == 400, (status, refused)
    assert refused["details"][0]["reason"] == "PREMIUM_ARREARS", refused
    assert first["number"] in str(refused), refused
