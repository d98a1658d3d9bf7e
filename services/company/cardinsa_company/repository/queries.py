"""What every company repository shares: List statements and unique-index errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation.models import SoftDeleteMixin

R = TypeVar("R", bound=SoftDeleteMixin)


def listing(
    model: type[R],
    *where: ColumnElement[bool],
    show_deleted: bool,
    condition: ColumnElement[bool] | None,
) -> Select[R]:
    """The List statement of ``model``: its scope, live rows unless ``show_deleted``,
    and the parsed filter."""
    stmt = select(model).where(*where)
    if not show_deleted:
        stmt = stmt.where(model.delete_time.is_(None))
    if condition is not None:
        stmt = stmt.where(condition)
    return stmt


def violated_constraint(exc: BaseException) -> str | None:
    """The name of the constraint a database error reports, if any (asyncpg puts it
    on the driver error that SQLAlchemy wraps)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        error = todo.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        name = getattr(error, "constraint_name", None)
        if isinstance(name, str):
            return name
        for nested in (getattr(error, "orig", None), error.__cause__):
            if isinstance(nested, BaseException):
                todo.append(nested)
    return None


async def flush(
    session: AsyncSession, unique: Mapping[str, Callable[[], Exception]] | None = None
) -> None:
    """Flush; a violated unique index named in ``unique`` raises that index's error."""
    try:
        await session.flush()
    except IntegrityError as exc:
        error: Callable[[], Any] | None = (unique or {}).get(violated_constraint(exc) or "")
        if error is not None:
            raise error() from exc
        raise
