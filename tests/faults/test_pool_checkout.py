"""A pooled connection the server closed is replaced before anyone uses it.

The engine does not use SQLAlchemy's pre-ping (three round trips per checkout);
a checkout hook looks at the driver connection's own state instead
(cardinsa_foundation.db). Here the server ends every pooled connection
(pg_terminate_backend, what a restart does to them) and the next unit of work
and the next read still succeed, on new connections, without a failed call.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy import text

from cardinsa_foundation.config import Settings
from cardinsa_foundation.db import Database, to_libpq_url

pytestmark = pytest.mark.integration


async def _backends(admin: asyncpg.Connection, name: str) -> list[int]:
    rows = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", name)
    return [row["pid"] for row in rows]


async def test_connections_closed_by_the_server_are_replaced_at_checkout(
    test_database_url: str,
) -> None:
    name = f"checkout-{uuid.uuid4().hex[:8]}"
    settings = Settings(_env_file=None, environment="test", db_pool_size=3, db_max_overflow=0)
    db = Database(test_database_url, settings, application_name=name)
    admin = await asyncpg.connect(to_libpq_url(test_database_url))
    try:
        # Fill the pool with three open connections.
        async def hold() -> None:
            async with db.unit_of_work(company_id=None) as session:
                await session.execute(text("SELECT pg_sleep(0.05)"))

        await asyncio.gather(hold(), hold(), hold())
        before = await _backends(admin, name)
        assert len(before) == 3

        for pid in before:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        await asyncio.sleep(0.3)  # the client side notices the closed sockets

        async with db.unit_of_work(company_id=None) as session:
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
        async with db.read(company_id=None) as reader:
            assert reader is not None
        after = await _backends(admin, name)
        assert after and not set(after) & set(before)
    finally:
        await admin.close()
        await db.dispose()
