"""What every aggregate's repository does the same way.

- :class:`Resources`: one kind of tenant-owned, soft-deletable row as requests
  name it: found by id (a malformed id, an unknown one and another company's
  give the same NOT_FOUND) and listed with AIP-160 filters and ``order_by``.
- :func:`children`: the rows that hang off one parent (versions, logs), for a page.
- :func:`assign`: store a domain value's columns on a row, naming those that changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from cardinsa_foundation.filtering import FilterSpec, parse_order_by, tenant_list_query
from cardinsa_foundation.models import TenantResourceMixin
from cardinsa_foundation.paging import OrderTerm
from cardinsa_foundation.use_cases import lookup_uuid, not_found

__all__ = ["Resources", "assign", "children", "find"]

R = TypeVar("R", bound=TenantResourceMixin)
C = TypeVar("C")


async def find(
    session: AsyncSession,
    model: type[R],
    company: uuid.UUID,
    resource_id: str,
    *,
    resource: str,
    lock: bool = False,
    share: bool = False,
) -> R:
    """The company's ``model`` row ``resource_id`` (``FOR UPDATE`` with ``lock``,
    ``FOR SHARE`` with ``share``), else NOT_FOUND naming ``resource``."""
    key = lookup_uuid(resource_id)
    row = None
    if key is not None:
        columns: Any = model
        stmt = select(model).where(columns.company_id == company, columns.id == key)
        if lock or share:
            stmt = stmt.with_for_update(read=not lock)
        row = (await session.scalars(stmt)).first()
    if row is None:
        raise not_found(resource, resource_id)
    return row


@dataclass(frozen=True)
class Resources(Generic[R]):
    """One kind of resource: its table, its name in errors, how lists filter and order it."""

    model: type[R]
    #: The resource as errors name it ("policy": POLICY_NOT_FOUND).
    name: str
    filter: FilterSpec
    #: The fields ``order_by`` may name (newest first when it names none).
    order: Mapping[str, Any]

    async def find(
        self,
        session: AsyncSession,
        company: uuid.UUID,
        resource_id: str,
        *,
        lock: bool = False,
        share: bool = False,
    ) -> R:
        return await find(
            session, self.model, company, resource_id, resource=self.name, lock=lock, share=share
        )

    def query(self, company: uuid.UUID, *, filter: str, show_deleted: bool) -> Select[R]:
        """The company's rows ``filter`` selects (INVALID_ARGUMENT for a bad filter)."""
        return tenant_list_query(
            self.model, company, spec=self.filter, filter=filter, show_deleted=show_deleted
        )

    def order_by(self, order_by: str) -> list[OrderTerm]:
        columns: Any = self.model
        return parse_order_by(order_by, self.order, default=[OrderTerm(columns.create_time, True)])


def children(
    model: type[C], company: uuid.UUID, parent: InstrumentedAttribute[Any], parent_id: uuid.UUID
) -> Select[C]:
    """The company's ``model`` rows whose ``parent`` column is ``parent_id``."""
    columns: Any = model
    return select(model).where(columns.company_id == company, parent == parent_id)


def assign(
    row: object,
    values: Mapping[str, object],
    *,
    normalize: Mapping[str, Callable[[Any], object]] | None = None,
) -> list[str]:
    """Set ``values`` on ``row``; the columns whose value changed (compared after
    ``normalize``, per column, of the current value)."""
    changed = []
    for column, value in values.items():
        current = getattr(row, column)
        if normalize and column in normalize:
            current = normalize[column](current)
        if current != value:
            setattr(row, column, value)
            changed.append(column)
    return changed
