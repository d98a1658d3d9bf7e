"""One leader among replicas: a PostgreSQL advisory lock on a connection of its own.

The lifecycle scheduler and the event dispatcher's followers run in several
replicas and let one of them lead. The lock is held by a dedicated connection
(not a pooled one): when the leader dies, even by ``kill -9``, its connection
closes and the lock is free for a standby's next :meth:`Leadership.try_acquire`.
A leader checks :meth:`Leadership.still_leading` between steps: a connection
that no longer answers means the lock may already be another replica's.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any, Final

import asyncpg

from cardinsa_foundation.db import to_libpq_url

__all__ = ["Leadership", "lock_key"]

_DB_ERRORS: Final = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def lock_key(name: str) -> int:
    """A stable bigint advisory-lock key from a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Leadership:
    """``pg_try_advisory_lock(key)`` held on a connection of its own while leading.

    ``on_change`` is told True when this replica becomes the leader and False
    when it stops (released or lost), e.g. to set a gauge.
    """

    def __init__(
        self,
        url: str,
        key: int,
        *,
        connect_timeout_s: float,
        name: str,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._url = to_libpq_url(url)
        self._key = key
        self._timeout = connect_timeout_s
        self._name = name
        self._on_change = on_change or (lambda _leading: None)
        self._connection: Any = None

    @property
    def leading(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def try_acquire(self) -> bool:
        """Become the leader if nobody is; False (and no connection kept) otherwise."""
        if self.leading:
            return True
        connection = await asyncpg.connect(
            self._url,
            timeout=self._timeout,
            server_settings={"application_name": self._name},
        )
        try:
            got = await connection.fetchval("SELECT pg_try_advisory_lock($1)", self._key)
        except BaseException:
            connection.terminate()
            raise
        if not got:
            await connection.close()
            return False
        self._connection = connection
        self._on_change(True)
        return True

    async def still_leading(self) -> bool:
        """Whether the lock's connection still answers (a round trip)."""
        if not self.leading:
            self.lost()
            return False
        try:
            async with asyncio.timeout(self._timeout):
                await self._connection.fetchval("SELECT 1")
        except _DB_ERRORS:
            self.lost()
            return False
        return True

    def lost(self) -> None:
        """Drop the connection (and with it the lock) without a goodbye."""
        if self._connection is not None:
            self._connection.terminate()
            self._on_change(False)
        self._connection = None

    async def release(self) -> None:
        """Unlock and close; the next replica may lead."""
        if self._connection is None:
            return
        connection, self._connection = self._connection, None
        self._on_change(False)
        try:
            await connection.execute("SELECT pg_advisory_unlock($1)", self._key)
            await connection.close()
        except _DB_ERRORS:
            connection.terminate()
