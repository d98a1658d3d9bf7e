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

:meth:`RowBatch.update` adds the UPDATE of a row read (and locked) in the same
transaction to the statement, as the ORM's flush writes it: the attributes
named, every column with an ``onupdate`` that is not among them, and -- for a
versioned row -- the next version, matched on the primary key and the version
the row was read at. A row that no longer matches fails the whole statement
with the ORM's own ``StaleDataError``.

:func:`from_record` is the other half: a mapped instance (not in any session)
from a row an asyncpg query returned, for the domain code that reads rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapper
from sqlalchemy.orm.exc import StaleDataError
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
        self.version_key = (
            mapper.get_property_by_column(self.version_column).key
            if self.version_column is not None
            else ""
        )
        self.version_generator = mapper.version_id_generator
        self.columns: list[tuple[Any, str, Any]] = []
        self.keys: dict[str, tuple[Any, Any]] = {}
        for column in table.columns:
            key = mapper.get_property_by_column(column).key
            processor = column.type._cached_bind_processor(dialect)
            self.columns.append((column, key, processor))
            self.keys[key] = (column, processor)
        self.primary_key = [
            (column, mapper.get_property_by_column(column).key) for column in table.primary_key
        ]
        #: Columns an UPDATE sets when not written: (column, key, SQL text or None, callable).
        self.on_update: list[tuple[Any, str, str | None, Any]] = []
        for column, key, _ in self.columns:
            generate = column.onupdate
            if generate is None or column is self.version_column:
                continue
            if generate.is_clause_element:
                sql = str(generate.arg.compile(dialect=dialect))
                self.on_update.append((column, key, sql, None))
            elif generate.is_callable:
                self.on_update.append((column, key, None, generate.arg))


class RowBatch:
    """Mapped instances to insert in one statement (see the module docstring)."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self.rows: list[Any] = []
        #: Per row: None (insert) or what its UPDATE writes.
        self._updates: list[_Pending | None] = []

    def add(self, instance: Any) -> None:
        """Insert ``instance`` (a new row)."""
        self.rows.append(instance)
        self._updates.append(None)

    def update(self, instance: Any, keys: Iterable[str], *, steps: int = 1) -> None:
        """Update ``instance`` (a row read in this transaction) with the
        attributes ``keys`` (see the module docstring). The next version and
        the Python ``onupdate`` values are set on ``instance`` now (what it
        says of itself, its etag, is what the statement will store); the other
        values are read when the statement is built. ``steps``: the changes
        the row went through, each announced with a version of its own (a
        bind that also activates): the version moves that many times, as it
        would with one flush per change."""
        plan = _plan(type(instance), self._dialect)
        pending = _Pending(frozenset(keys))
        for _, key, sql, generate in plan.on_update:
            if key not in pending.keys and sql is None:
                setattr(instance, key, generate(None))
                pending.generated.append(key)
        if plan.version_column is not None:
            old = instance.__dict__.get(plan.version_key)
            generator = plan.version_generator
            pending.version = old
            new = old
            for _ in range(steps):
                new = generator(new) if callable(generator) else new + 1
            setattr(instance, plan.version_key, new)
        self.rows.append(instance)
        self._updates.append(pending)

    def statement(self) -> tuple[str, list[Any], list[list[tuple[str, str]]]]:
        """The SQL, its arguments, and per row the (attribute, result column)
        pairs of the values the database fills in."""
        parts: list[str] = []
        arguments: list[Any] = []
        returned: list[list[tuple[str, str]]] = []
        selected: list[str] = []
        quote = self._dialect.identifier_preparer
        for index, (instance, keys) in enumerate(zip(self.rows, self._updates, strict=True)):
            plan = _plan(type(instance), self._dialect)
            if keys is not None:
                part, updated, columns = self._update(index, instance, plan, keys, arguments)
                parts.append(part)
                returned.append(updated)
                selected.append(f"(SELECT count(*) FROM r{index}) AS r{index}_n")  # noqa: S608
                selected.extend(columns)
                continue
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
                        selected.append(
                            f"(SELECT {name} FROM r{index}) AS {back[-1][1]}"  # noqa: S608
                        )
                        continue
                if processor is not None and value is not None:
                    value = processor(value)
                arguments.append(value)
                names.append(quote.quote(column.name))
                placeholders.append(f"${len(arguments)}")
            if not server:
                selected.append(f"(SELECT count(*) FROM r{index}) AS r{index}_n")  # noqa: S608
            returning = f" RETURNING {', '.join(server or ['1'])}"
            parts.append(
                # Quoted identifiers and $n placeholders only; the values are arguments.
                f"r{index} AS (INSERT INTO {quote.format_table(plan.table)} "  # noqa: S608
                f"({', '.join(names)}) VALUES ({', '.join(placeholders)}){returning})"
            )
            returned.append(back)
        # Every row is referenced from the select list, in the order added:
        # each sub-statement runs when its first reference is evaluated, left
        # to right, so rows are written in that order (a clock_timestamp()
        # default orders them as one flush per row did); an update's count
        # tells whether it matched (checked in :meth:`insert`).
        final = f"SELECT {', '.join(selected)}"
        return f"WITH {', '.join(parts)} {final}", arguments, returned

    def _update(
        self,
        index: int,
        instance: Any,
        plan: _Plan,
        pending: _Pending,
        arguments: list[Any],
    ) -> tuple[str, list[tuple[str, str]], list[str]]:
        quote = self._dialect.identifier_preparer
        state = instance.__dict__

        def bind(key: str, value: Any) -> str:
            processor = plan.keys[key][1]
            arguments.append(
                processor(value) if processor is not None and value is not None else value
            )
            return f"${len(arguments)}"

        sets = [
            f"{quote.quote(plan.keys[key][0].name)} = {bind(key, state.get(key))}"
            for key in sorted(pending.keys) + pending.generated
        ]
        back: list[tuple[str, str]] = []
        server: list[str] = []
        for column, key, sql, _ in plan.on_update:
            if key not in pending.keys and sql is not None:
                name = quote.quote(column.name)
                sets.append(f"{name} = {sql}")
                back.append((key, f"r{index}_{len(back)}"))
                server.append(name)
        where = [
            f"{quote.quote(column.name)} = {bind(key, state.get(key))}"
            for column, key in plan.primary_key
        ]
        version = plan.version_column
        if version is not None:
            key = plan.version_key
            sets.append(f"{quote.quote(version.name)} = {bind(key, state.get(key))}")
            where.append(f"{quote.quote(version.name)} = {bind(key, pending.version)}")
        returning = ", ".join(server or ["1"])
        selected = [
            f"(SELECT {name} FROM r{index}) AS {alias}"  # noqa: S608
            for name, (_, alias) in zip(server, back, strict=True)
        ]
        part = (
            # Quoted identifiers and $n placeholders only; the values are arguments.
            f"r{index} AS (UPDATE {quote.format_table(plan.table)} "  # noqa: S608
            f"SET {', '.join(sets)} WHERE {' AND '.join(where)} RETURNING {returning})"
        )
        return part, back, selected

    async def insert(self, connection: Any) -> None:
        """Insert every row (on an asyncpg connection, in its transaction) and
        set the values the database chose on the instances."""
        if not self.rows:
            return
        sql, arguments, returned = self.statement()
        record = await connection.fetchrow(sql, *arguments)
        for index, (instance, keys) in enumerate(zip(self.rows, self._updates, strict=True)):
            if keys is not None and record[f"r{index}_n"] != 1:
                raise StaleDataError(
                    f"UPDATE of {type(instance).__name__} matched "
                    f"{record[f'r{index}_n']} rows instead of 1"
                )
        for instance, back in zip(self.rows, returned, strict=True):
            for key, alias in back:
                setattr(instance, key, record[alias])


@dataclass(slots=True)
class _Pending:
    """An UPDATE added to a batch: the attributes it writes, the Python
    ``onupdate`` columns it sets besides, and the version the row was read at."""

    keys: frozenset[str]
    generated: list[str] = field(default_factory=list)
    version: Any = None


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
