"""Ingestion: one source service's events, followed for one sink.

A :class:`Follower` per (source, sink): among the replicas one leads it (a
PostgreSQL advisory lock held on a connection of its own; when the leader dies,
even ``kill -9``, its connection closes and the lock is free), streams
``WatchEvents`` from the sink's cursor in ``company.event_cursors`` and, for
each response with events, lets the sink take them and stores the response's
cursor in one transaction (the platform role). A broken stream, a refused
batch or an unreachable database: the follower waits (backoff doubling up to
``dispatcher_reconnect_max_s``) and resumes from the stored cursor -- at least
once, never a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg
import grpc
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from cardinsa.events.v1 import events_pb2
from cardinsa_company.dispatcher import metrics
from cardinsa_company.dispatcher.sinks import EventSink
from cardinsa_company.dispatcher_settings import DispatcherSettings
from cardinsa_foundation.db import Database
from cardinsa_foundation.leadership import Leadership
from cardinsa_foundation.leadership import lock_key as leadership_key

log = logging.getLogger("cardinsa_company.dispatcher")

__all__ = ["Follower", "lock_key"]

#: ``source -> the stub's WatchEvents`` (a server-streaming multi-callable).
WatchFactory = Callable[[str], Any]
#: Call metadata (the service account's bearer token); None: none.
Metadata = Callable[[], Awaitable[tuple[tuple[str, str], ...]]]

_LOAD_CURSOR: Final = text(
    "SELECT cursor FROM company.event_cursors WHERE sink = :sink AND source = :source"
)
_STORE_CURSOR: Final = text(
    "INSERT INTO company.event_cursors (sink, source, cursor, update_time) "
    "VALUES (:sink, :source, :cursor, now()) "
    "ON CONFLICT (sink, source) DO UPDATE SET cursor = excluded.cursor, update_time = now()"
)
_DB_ERRORS: Final = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def lock_key(source: str, sink: str) -> int:
    """The advisory lock of the leader of (source, sink): a bigint from its name."""
    return leadership_key(f"cardinsa.company.event-dispatcher/{sink}/{source}")


class _LostLeadership(Exception):
    pass


class _EmptyStream(Exception):
    """The stream ended before its first message (a server refusing quietly)."""


class Follower:
    """Follows one source's events for one sink (see the module)."""

    def __init__(
        self,
        *,
        source: str,
        sink: EventSink,
        db: Database,
        lock_url: str,
        watch: Any,
        metadata: Metadata,
        forget_token: Callable[[], None] = lambda: None,
        settings: DispatcherSettings,
        stopping: asyncio.Event,
    ) -> None:
        self.source = source
        self.sink = sink
        self.db = db
        self.watch = watch
        self.metadata = metadata
        self.forget_token = forget_token
        self.settings = settings
        self.stopping = stopping
        self.leadership = Leadership(
            lock_url,
            lock_key(source, sink.name),
            connect_timeout_s=settings.db_connect_timeout_s,
            name=f"event-dispatcher-{sink.name}-{source}",
        )
        self._leader_gauge = metrics.LEADER.labels(source=source, sink=sink.name)
        self._failures = 0

    @property
    def _log_extra(self) -> dict[str, str]:
        return {"source": self.source, "sink": self.sink.name}

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    async def _pause(self) -> None:
        """Back off after a failure: base doubling to the maximum."""
        self._failures += 1
        base = self.settings.dispatcher_reconnect_base_s
        await self._wait(
            min(self.settings.dispatcher_reconnect_max_s, base * 2 ** (self._failures - 1))
        )

    async def lead(self) -> bool:
        """Wait until this replica leads (False: asked to stop first)."""
        waited = False
        while not self.stopping.is_set():
            try:
                if await self.leadership.try_acquire():
                    self._leader_gauge.set(1)
                    log.info("leading: following the source's events", extra=self._log_extra)
                    return True
            except _DB_ERRORS as error:
                log.warning(
                    "cannot reach the database to lead",
                    extra={**self._log_extra, "error": str(error)},
                )
            if not waited:
                log.info("another replica leads; waiting", extra=self._log_extra)
                waited = True
            await self._wait(self.settings.dispatcher_lock_retry_s)
        return False

    async def run(self) -> None:
        metrics.watch_source(self.source)
        try:
            while not self.stopping.is_set():
                if not await self.lead():
                    return
                while not self.stopping.is_set() and self.leadership.leading:
                    try:
                        await self.follow_once()
                    except _LostLeadership:
                        log.warning("lost the leader lock's connection", extra=self._log_extra)
                    except _EmptyStream:
                        log.warning("the watch ended at once; reconnecting", extra=self._log_extra)
                        await self._pause()
                    except grpc.aio.AioRpcError as error:
                        if error.code() is grpc.StatusCode.UNAUTHENTICATED:
                            self.forget_token()  # revoked or expired: a new one next time
                        log.warning(
                            "the watch failed; reconnecting",
                            extra={
                                **self._log_extra,
                                "code": error.code().name,
                                "details": error.details(),
                            },
                        )
                        await self._pause()
                    except (*_DB_ERRORS, SQLAlchemyError) as error:
                        log.warning(
                            "the database failed; resuming from the stored cursor",
                            extra={**self._log_extra, "error": str(error)},
                        )
                        await self._pause()
                    except Exception:
                        # The sink refused the batch (JetStream down, say).
                        log.exception("the batch was refused; trying again", extra=self._log_extra)
                        await self._pause()
                self._leader_gauge.set(0)
        finally:
            self._leader_gauge.set(0)
            await self.leadership.release()

    async def _load_cursor(self) -> str:
        async with self.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            value = await session.scalar(
                _LOAD_CURSOR, {"sink": self.sink.name, "source": self.source}
            )
        return str(value or "")

    async def follow_once(self) -> None:
        """One stream, from the stored cursor until it ends or fails."""
        cursor = await self._load_cursor()
        request = events_pb2.WatchEventsRequest(cursor=cursor)
        call = self.watch(request, metadata=await self.metadata())
        idle = self.settings.dispatcher_idle_timeout_s
        received = False
        try:
            while not self.stopping.is_set():
                reading = asyncio.ensure_future(call.read())
                stop = asyncio.ensure_future(self.stopping.wait())
                done, _ = await asyncio.wait(
                    {reading, stop}, timeout=idle, return_when=asyncio.FIRST_COMPLETED
                )
                stop.cancel()
                if reading not in done:
                    reading.cancel()
                    if not self.stopping.is_set():
                        log.warning("the watch went silent; reopening", extra=self._log_extra)
                    return
                response = reading.result()
                if response is grpc.aio.EOF:
                    if not received:
                        raise _EmptyStream
                    return  # the server ends streams now and then: resume
                received = True
                if not await self.leadership.still_leading():
                    raise _LostLeadership
                if response.cursor != cursor or response.events:
                    await self._take(response, cursor)
                    cursor = response.cursor
                self._failures = 0
        finally:
            call.cancel()

    async def _take(self, response: events_pb2.WatchEventsResponse, previous: str) -> None:
        events = list(response.events)
        async with self.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            if events:
                await self.sink.take(session, self.source, events)
            if response.cursor and response.cursor != previous:
                await session.execute(
                    _STORE_CURSOR,
                    {"sink": self.sink.name, "source": self.source, "cursor": response.cursor},
                )
        if events:
            metrics.took_events(self.source, self.sink.name, len(events))
