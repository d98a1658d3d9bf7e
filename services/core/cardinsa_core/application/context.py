"""What every core use case needs, and the rules every one of them applies.

The checks every service shares (who is calling, malformed ids, request ids,
masks, etags) come from :mod:`cardinsa_foundation.use_cases`; this module adds
core's own:

- The company a call acts in is the caller's own, from the verified token
  (:func:`own_company`); core has no cross-tenant code path (platform admins
  act in their own company here too), so no request field can name another
  company.
- An id that is malformed, unknown or another company's gives the same
  NOT_FOUND (:meth:`cardinsa_core.repository.rows.Resources.find`).
- A request id (AIP-155) is claimed first thing in the unit of work that acts
  (:func:`first_call`); a change of an existing resource opens it with
  :meth:`CoreContext.change`: request id, then the row locked and its etag
  checked, so of two calls with one etag exactly one wins.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Generic, NotRequired, TypedDict, TypeVar, Unpack
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.application.events import EventSink
from cardinsa_core.application.tenants import TenantDirectory, TenantFacts
from cardinsa_core.repository.models import AuditEventRow, IdempotencyRow
from cardinsa_core.repository.rows import Resources
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.audit import AuditWriter
from cardinsa_foundation.context import Principal
from cardinsa_foundation.db import Database
from cardinsa_foundation.errors import PermissionDenied
from cardinsa_foundation.idempotency import RequestIds, request_id_reused
from cardinsa_foundation.models import TenantResourceMixin
from cardinsa_foundation.paging import Page
from cardinsa_foundation.use_cases import (
    Paging,
    check_etag,
    check_request_id,
    deleted,
    invalid,
    lookup_uuid,
    not_found,
)

R = TypeVar("R", bound=TenantResourceMixin)
T = TypeVar("T")


class PageQuery(TypedDict):
    """Which page a List request asks for."""

    page_size: int
    page_token: str


class ListQuery(PageQuery):
    """What a standard List request (AIP-132) asks for."""

    filter: str
    order_by: str
    show_deleted: bool


def utc_now() -> datetime:
    return datetime.now(UTC)


def local_date(moment: datetime, time_zone: str) -> date:
    """The calendar date of ``moment`` in ``time_zone`` (UTC when unknown)."""
    try:
        zone: tzinfo = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    return moment.astimezone(zone).date()


@dataclass
class CoreContext(Paging):
    db: Database
    settings: CoreSettings
    audit: AuditWriter[AuditEventRow]
    tenants: TenantDirectory
    #: Where the use cases record what changed (the outbox, same transaction).
    events: EventSink
    #: The current time (injectable: tests move it; the scheduler takes --now).
    clock: Callable[[], datetime] = utc_now

    def today(self) -> date:
        """The UTC date (only where no company is involved)."""
        return self.clock().astimezone(UTC).date()

    async def facts(self, company_id: uuid.UUID) -> TenantFacts:
        return await self.tenants.facts(company_id)

    async def company_today(self, company_id: uuid.UUID) -> date:
        """Today for the business rules: the company's date in its time zone."""
        return self.today_of(await self.tenants.facts(company_id))

    def today_of(self, facts: TenantFacts) -> date:
        """Today in the time zone of a company whose facts are at hand."""
        return local_date(self.clock(), facts.time_zone)

    async def list_page(
        self,
        session: AsyncSession,
        resources: Resources[R],
        company: uuid.UUID,
        **query: Unpack[ListQuery],
    ) -> Page[R]:
        """One page of a standard List of the company's ``resources``."""
        filter, order_by, show_deleted = query["filter"], query["order_by"], query["show_deleted"]
        return await self.page(
            session,
            resources.query(company, filter=filter, show_deleted=show_deleted),
            order=resources.order_by(order_by),
            page_size=query["page_size"],
            page_token=query["page_token"],
            filter=filter,
            order_by=order_by,
            show_deleted=show_deleted,
        )

    @asynccontextmanager
    async def change(
        self,
        resources: Resources[R],
        company: uuid.UUID,
        resource_id: str,
        **options: Unpack[ChangeOptions],
    ) -> AsyncIterator[Change[R]]:
        """A unit of work that changes the company's resource ``resource_id``.

        The request id is claimed first; a replay (the request id already acted
        on this resource, with the same etag and arguments) gets the row as it
        is. Otherwise the row is locked (``FOR UPDATE``), then its etag checked,
        so of two calls with one etag exactly one wins, and a deleted one is
        refused unless ``allow_deleted``.
        """
        invalid("the request is not valid", check_request_id(options.get("request_id", "")))
        async with self.db.unit_of_work(company_id=company) as session:
            yield await _open(session, resources, company, resource_id, options)


def own_company(principal: Principal) -> uuid.UUID:
    """The caller's company: the only one a core call acts in."""
    if not principal.company_id:
        raise PermissionDenied("the caller belongs to no company", reason="NO_TENANT")
    return uuid.UUID(principal.company_id)


#: Claim an optional request id first thing in a unit of work (None: act; else
#: the resource the first call acted on). See :meth:`RequestIds.claim`.
first_call = RequestIds(IdempotencyRow).claim


class ChangeOptions(TypedDict):
    """How a call changes one existing resource (see :meth:`CoreContext.change`)."""

    #: The RPC's verb (``update``, ``bind``, ...): the request id's scope and the audit action.
    method: str
    etag: str
    #: The AIP-155 request id, if the RPC takes one.
    request_id: NotRequired[str]
    #: What else defines the call (a replay must repeat it).
    arguments: NotRequired[Sequence[object]]
    #: Whether a soft-deleted resource may be changed (delete, undelete).
    allow_deleted: NotRequired[bool]
    #: A check that needs the database but not the resource (permission before
    #: existence: an approval's band), run first in the unit of work.
    check: NotRequired[Callable[[AsyncSession], Awaitable[None]]]


@dataclass(frozen=True, slots=True)
class Change(Generic[R]):
    """The unit of work of a change and the row it acts on."""

    session: AsyncSession
    row: R
    #: The request id already acted on this resource: answer with ``row`` as it is.
    replay: bool


async def _open(
    session: AsyncSession,
    resources: Resources[R],
    company: uuid.UUID,
    resource_id: str,
    options: ChangeOptions,
) -> Change[R]:
    check = options.get("check")
    if check is not None:
        await check(session)
    key = lookup_uuid(resource_id)
    if key is None:
        raise not_found(resources.name, resource_id)
    method, etag = options["method"], options["etag"]
    seen = await first_call(
        session,
        company,
        method,
        options.get("request_id", ""),
        str(key),
        resource_id,
        etag,
        *options.get("arguments", ()),
    )
    if seen is not None:
        if seen != str(key):
            raise request_id_reused()
        return Change(session, await resources.find(session, company, resource_id), True)
    row = await resources.find(session, company, resource_id, lock=True)
    check_etag(row, etag)
    if row.delete_time is not None and not options.get("allow_deleted", False):
        raise deleted(resources.name)
    return Change(session, row, False)
