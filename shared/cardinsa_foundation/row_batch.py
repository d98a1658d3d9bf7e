"""Rows a hot write path inserts with one statement, built as the mapped classes.

A write that runs on :meth:`Database.transaction` (asyncpg, no ORM session)
still builds its rows as the service's mapped classes -- the resource row, its
log entry, the audit row of :class:`~cardinsa_foundation.audit.AuditWriter`,
the event of :class:`~cardinsa_foundation.outbox.Outbox` -- so what a row holds
has one definition whichever path wrote it. :class:`RowBatch` collects them the
way a session's ``add`` does (both writers take anything with ``add``:
:class:`SupportsAdd`) and inserts them all in one statement of data-modifying
CTEs: one round trip instead of one per row, and no unit of work (which cost
about half the CPU of a claim's creation).

Each column's value is what the ORM would have inserted: the attribute, else
the column's Python default (written back to the instance), else -- for a
column with only a server default -- nothing, and the value the database chose
comes back (``RETURNING``) onto the instance. The values go through the
dialect's bind processors, as the ORM's do (JSON serialised the same way). The
rows are inserted in the order they were added, in one statement, so foreign
keys between them hold when the statement ends.

:func:`from_record` is the other half: a mapped instance (not in any session)
from a row an asyncpg query returned, for the domain code that reads rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol, TypeVar

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapper
from sqlalchemy.sql.schema import Column

__all__ = ["RowBatch", "SupportsAdd", "from_record"]

_M = TypeVar("_M")
_MAX_CACHED: Final = 256


class SupportsAdd(Protocol):
    """What the audit and outbox writers need of a session: ``add``."""

    def add(self, instance: Any) -> None: ...


class _Plan:
    """How one row of a mapped class is inserted: its columns and how to fill them."""

    def __init__(self, mapper: Mapper[Any], dialect: Dialect) -> None:
        table = mapper.local_table
        self.table = table
        self.version_column = mapper.version_id_col
        self.version_generator = mapper.version_id_generator
        self.columns: list[tuple[Any, str, Any]] = []
        for column in table.columns:
            key = mapper.get_property_by_column(column).key
            processor = column.type._cached_bind_processor(dialect)
            self.columns.append((column, key, processor))


class RowBatch:
    """Mapped instances to insert in one statement (see the module docstring)."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self.rows: list[Any] = []

    def add(self, instance: Any) -> None:
        self.rows.append(instance)

    def statement(self) -> tuple[str, list[Any], list[list[tuple[str, str]]]]:
        """The SQL, its arguments, and per row the (attribute, result column)
        pairs of the values the database fills in."""
        parts: list[str] = []
        arguments: list[Any] = []
        returned: list[list[tuple[str, str]]] = []
        selected: list[str] = []
        quote = self._dialect.identifier_preparer
        for index, instance in enumerate(self.rows):
            plan = _plan(type(instance), self._dialect)
            names: list[str] = []
            placeholders: list[str] = []
            back: list[tuple[str, str]] = []
            server: list[str] = []
            state = instance.__dict__
            for column, key, processor in plan.columns:
                value = state.get(key)
                if value is None:
                    value = _default(instance, plan, column, key)
                    if value is _SERVER:
                        name = quote.quote(column.name)
                        server.append(name)
                        back.append((key, f"r{index}_{len(back)}"))
                        selected.append(f"r{index}.{name} AS {back[-1][1]}")
                        continue
                if processor is not None and value is not None:
                    value = processor(value)
                arguments.append(value)
                names.append(quote.quote(column.name))
                placeholders.append(f"${len(arguments)}")
            returning = f" RETURNING {', '.join(server)}" if server else ""
            parts.append(
                # Quoted identifiers and $n placeholders only; the values are arguments.
                f"r{index} AS (INSERT INTO {quote.format_table(plan.table)} "  # noqa: S608
                f"({', '.join(names)}) VALUES ({', '.join(placeholders)}){returning})"
            )
            returned.append(back)
        sources = [f"r{index}" for index, back in enumerate(returned) if back]
        final = (
            f"SELECT {', '.join(selected)} FROM {', '.join(sources)}"  # noqa: S608
            if selected
            else "SELECT 1"
        )
        return f"WITH {', '.join(parts)} {final}", arguments, returned

    async def insert(self, connection: Any) -> None:
        """Insert every row (on an asyncpg connection, in its transaction) and
        set the values the database chose on the instances."""
        if not self.rows:
            return
        sql, arguments, returned = self.statement()
        record = await connection.fetchrow(sql, *arguments)
        for instance, back in zip(self.rows, returned, strict=True):
            for key, alias in back:
                setattr(instance, key, record[alias])


class _ServerDefault:
    pass


_SERVER: Final = _ServerDefault()
_PLANS: dict[tuple[type[Any], str], _Plan] = {}


def _plan(model: type[Any], dialect: Dialect) -> _Plan:
    cache_key = (model, dialect.name)
    plan = _PLANS.get(cache_key)
    if plan is None:
        if len(_PLANS) >= _MAX_CACHED:
            _PLANS.clear()
        plan = _PLANS[cache_key] = _Plan(sa_inspect(model), dialect)
    return plan


def _default(instance: Any, plan: _Plan, column: Column[Any], key: str) -> Any:
    """The value the ORM would insert for an unset attribute (set on the
    instance), ``_SERVER`` for one the database fills, else None."""
    value: Any = None
    if column is plan.version_column and callable(plan.version_generator):
        value = plan.version_generator(None)
    elif column.default is not None and column.default.is_scalar:
        value = column.default.arg  # type: ignore[attr-defined]
    elif column.default is not None and column.default.is_callable:
        value = column.default.arg(None)  # type: ignore[attr-defined]
    elif column.server_default is not None:
        return _SERVER
    if value is not None:
        setattr(instance, key, value)
    return value


def from_record(model: type[_M], record: Mapping[str, Any]) -> _M:
    """A ``model`` instance (in no session) holding ``record``'s columns."""
    mapper = sa_inspect(model)
    values = {
        mapper.get_property_by_column(mapper.local_table.c[name]).key: record[name]
        for name in record.keys()  # noqa: SIM118 (an asyncpg Record iterates its values)
    }
    return model(**values)
