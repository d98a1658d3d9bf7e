# ruff: noqa: S608 - table and column names come from the catalog, values are bound.
"""EXPLAIN the SQL a List RPC really runs, over tables large enough that a
sequential scan would be the wrong plan.

The pieces the per-service modules (``test_*_list_plans.py``) put together:

- :func:`clone_rows`: bulk-fill a table from one real row (made through the
  API, so every value is one the application can read back): ``count`` copies
  in one ``INSERT ... SELECT generate_series``, with new ids, spread
  ``create_time`` values, unique columns made unique and -- where a foreign key
  points at the ``id`` of another cloned table -- the parent of the same series
  number, so copy ``g`` of a claim log entry hangs off copy ``g`` of a claim.
  Run as the superuser with ``session_replication_role = replica`` (no
  triggers, no foreign-key checks: the append-only and outbox triggers stay
  out of it); :func:`drop_clones` removes exactly these rows again.
- :class:`SqlCapture`: a ``before_cursor_execute`` listener on the service's
  own engine that records the statements (and their bound parameters) a call
  sends, so the test EXPLAINs what the repository generated, not a copy.
- :func:`explain`: ``EXPLAIN (ANALYZE, FORMAT JSON)`` of one captured statement
  with its parameters, as the role that sent it, inside a transaction with the
  tenant set (``cardinsa.company_id``) and rolled back, so row-level security
  adds its predicate as in production; :func:`seq_scans` names the relations
  read by ``Seq Scan``, :func:`discarded` the nodes that read rows only to
  throw them away (an index walked for its order while a filter it does not
  hold removes the rows: no Seq Scan, yet every row of the tenant read).
- :func:`explain_generic`: the generic plan of the same statement (``PREPARE``,
  ``EXPLAIN EXECUTE`` under ``plan_cache_mode = force_generic_plan``): asyncpg
  prepares every statement, and PostgreSQL may switch a prepared statement to
  its generic plan after five executions.
- :class:`PlanChecker`: one List call (and its next page) through the running
  server; a Seq Scan on a filled table (in the plan for the values or in the
  generic plan), or a node discarding more than :data:`MAX_DISCARDED_ROWS` of
  its rows, is a problem.
- :func:`filter_cases` / :func:`order_cases`: the filters and orderings to try,
  derived from the List's own :class:`~cardinsa_foundation.filtering.FilterSpec`
  and ``order_by`` fields: a field added later is tried without anyone listing it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from cardinsa_foundation.filtering import FieldType, FilterSpec

#: Filters whose plan is not checked: no b-tree index serves them. Each with the reason.
UNINDEXED_FORMS: Mapping[str, str] = {
    "string ':' (has)": "a case-insensitive substring match (ILIKE '%x%'): a b-tree cannot "
    "serve it; it narrows the rows the List's order walks (company_id leads every index), "
    "a trigram index per field would be needed to do better",
    "string '*' wildcard": "a prefix/suffix/substring LIKE: same as ':' (a suffix or "
    "substring never uses a b-tree; a prefix would only under the C collation)",
    "'!=' and NOT": "a negation selects most rows; the List's order index is the plan",
}

#: A plan node may read and throw away this many rows of a filled table (a filter
#: the index does not hold, on the rows of one page's neighbourhood), no more.
MAX_DISCARDED_ROWS = 200

#: A value no row has, per field type (an equality or a range that selects almost
#: nothing is the case where a missing index shows: every row would be read).
_ABSENT: Mapping[FieldType, Sequence[str]] = {
    FieldType.STRING: ('= "no-such-value-0f3a"',),
    FieldType.INTEGER: ("= 987654321",),
    FieldType.DECIMAL: ("= 987654.25",),
    FieldType.TIMESTAMP: ('>= "2999-01-01T00:00:00Z"',),
    FieldType.DATE: (">= 2999-01-01", "< 1901-01-01"),
    FieldType.UUID: ("= 0f3a0000-0000-4000-8000-00000000beef",),
}


def filter_cases(spec: FilterSpec) -> list[str]:
    """One or more filters per field of ``spec``: every value of an enum or a
    boolean, and for other types a value that selects (almost) no row."""
    cases: list[str] = []
    for name, field in spec.fields.items():
        if field.type is FieldType.ENUM:
            cases += [f"{name} = {value}" for value in field.values]
        elif field.type is FieldType.BOOLEAN:
            cases += [f"{name} = true", f"{name} = false"]
        else:
            cases += [f"{name} {form}" for form in _ABSENT[field.type]]
    return cases


def order_cases(fields: Sequence[str]) -> list[str]:
    """Every ``order_by`` field, ascending and descending."""
    return [f"{name}{direction}" for name in fields for direction in ("", " desc")]


# --------------------------------------------------------------------------- capture


@dataclass(frozen=True)
class Captured:
    statement: str
    parameters: Any
    #: The database role that sent it (the service's, or the platform role's).
    role: str


class SqlCapture:
    """Records the SELECTs any engine of the process sends while :meth:`recording`
    is open (the service's tenant engine and its platform engine alike)."""

    def __init__(self) -> None:
        self._current: list[Captured] | None = None
        event.listen(Engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if self._current is None:
            return
        head = statement.lstrip()[:40].upper()
        if head.startswith("SELECT") and "SET_CONFIG(" not in head:
            role = conn.engine.url.username or ""
            self._current.append(Captured(statement, parameters, role))

    @contextmanager
    def recording(self) -> Iterator[list[Captured]]:
        self._current = found = []
        try:
            yield found
        finally:
            self._current = None

    def close(self) -> None:
        event.remove(Engine, "before_cursor_execute", self._record)


# --------------------------------------------------------------------------- explain


async def explain(
    engine: AsyncEngine, company_id: str | None, captured: Captured
) -> list[dict[str, Any]]:
    """The JSON plan of ``captured`` with its own parameters, as ``engine``'s role,
    with the tenant set as the service sets it; run (``ANALYZE``: the rows each
    node read and discarded are actual counts) in a transaction rolled back."""
    async with engine.connect() as conn, conn.begin():
        await conn.execute(
            text("SELECT set_config('cardinsa.company_id', :company, true)"),
            {"company": company_id or ""},
        )
        result = await conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF, FORMAT JSON, VERBOSE) "
            + captured.statement,
            captured.parameters,
        )
        raw = result.scalar_one()
        await conn.rollback()
    plan: list[dict[str, Any]] = json.loads(raw) if isinstance(raw, str) else raw
    return plan


def _scans(plan: Any) -> list[dict[str, Any]]:
    """Every node of a JSON plan that reads a relation."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "Relation Name" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(plan)
    return found


def _relation(node: Mapping[str, Any]) -> str:
    return f"{node.get('Schema', '?')}.{node.get('Relation Name', '?')}"


def _literal(value: Any) -> str:
    """A bound value as a SQL literal (``EXECUTE`` takes its arguments as text)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        shown = "{" + ",".join('"' + str(v).replace('"', '\\"') + '"' for v in value) + "}"
    elif isinstance(value, datetime | date):
        shown = value.isoformat()
    elif isinstance(value, bytes):
        shown = "\\x" + value.hex()  # bytea
    else:
        shown = str(value)
    return "'" + shown.replace("'", "''") + "'"


async def explain_generic(
    engine: AsyncEngine, company_id: str | None, captured: Captured
) -> list[dict[str, Any]]:
    """The generic plan of ``captured`` (planned for any parameter values): what a
    prepared statement -- asyncpg prepares every statement -- runs once PostgreSQL
    prefers it to planning each execution. ``PREPARE``, then ``EXPLAIN EXECUTE``
    under ``plan_cache_mode = force_generic_plan``."""
    async with engine.connect() as conn, conn.begin():
        await conn.execute(
            text("SELECT set_config('cardinsa.company_id', :company, true)"),
            {"company": company_id or ""},
        )
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.execute("PREPARE cardinsa_plan_check AS " + captured.statement)
        await raw.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        arguments = ", ".join(_literal(value) for value in captured.parameters or ())
        call = f"cardinsa_plan_check({arguments})" if arguments else "cardinsa_plan_check"
        found = await raw.fetchval("EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE " + call)
        await raw.execute("DEALLOCATE cardinsa_plan_check")
        await conn.rollback()
    plan: list[dict[str, Any]] = json.loads(found) if isinstance(found, str) else found
    return plan


def seq_scans(plan: Any) -> list[str]:
    """``schema.table`` of every ``Seq Scan`` node in a JSON plan."""
    return [_relation(node) for node in _scans(plan) if node.get("Node Type") == "Seq Scan"]


def discarded(plan: Any) -> list[tuple[str, int, str]]:
    """(``schema.table``, rows, condition) of every node of an ANALYZEd plan that
    read rows only to throw them away by a condition no index applied (an index
    walked for its order while a filter it does not hold removes most rows)."""
    found = []
    for node in _scans(plan):
        removed = int(node.get("Rows Removed by Filter", 0)) * int(node.get("Actual Loops", 1))
        if removed:
            found.append((_relation(node), removed, str(node.get("Filter", ""))))
    return found


# --------------------------------------------------------------------------- bulk rows


def _link(table: str, company: str, salt: str) -> str:
    """The id of copy ``g`` of ``table`` in ``company`` (deterministic: children find it)."""
    return f"md5('{table}:{company}:{salt}:' || g)::uuid"


@dataclass(frozen=True)
class _Column:
    name: str
    type: str  # format_type()
    nullable: bool


async def _columns(conn: AsyncConnection, schema: str, table: str) -> list[_Column]:
    rows = await conn.execute(
        text(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull "
            "FROM pg_attribute a WHERE a.attrelid = to_regclass(:t) AND a.attnum > 0 "
            "AND NOT a.attisdropped AND a.attgenerated = '' AND a.attidentity = '' "
            "ORDER BY a.attnum"
        ),
        {"t": f"{schema}.{table}"},
    )
    return [_Column(name, type_, nullable) for name, type_, nullable in rows.all()]


async def _foreign_ids(conn: AsyncConnection, schema: str, table: str) -> dict[str, str]:
    """Column -> referenced table, for foreign keys whose column points at an ``id``."""
    rows = await conn.execute(
        text(
            "SELECT a.attname, rt.relname, ra.attname "
            "FROM pg_constraint c "
            "CROSS JOIN LATERAL unnest(c.conkey, c.confkey) AS k(col, refcol) "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.col "
            "JOIN pg_class rt ON rt.oid = c.confrelid "
            "JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = k.refcol "
            "WHERE c.contype = 'f' AND c.conrelid = to_regclass(:t)"
        ),
        {"t": f"{schema}.{table}"},
    )
    return {col: ref for col, ref, refcol in rows.all() if refcol == "id" and col != "company_id"}


async def _unique_sets(conn: AsyncConnection, schema: str, table: str) -> list[set[str]]:
    """The columns of each unique index (those inside its expressions too)."""
    rows = await conn.execute(
        text(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "WHERE i.indrelid = to_regclass(:t) AND i.indisunique"
        ),
        {"t": f"{schema}.{table}"},
    )
    columns = {c.name for c in await _columns(conn, schema, table)}
    sets = []
    for (definition,) in rows.all():
        keys = definition.split(" USING ", 1)[1].split(" WHERE ", 1)[0]
        sets.append({word for word in re.findall(r"[a-z_][a-z0-9_]*", keys) if word in columns})
    return sets


def _vary(column: _Column, tag: str) -> str:
    """An expression making ``column`` differ for each copy ``g`` (and ``tag``)."""
    kind = column.type
    if kind == "text" or kind.startswith("character"):
        return f"t.{column.name} || '-{tag}-' || g"
    if kind in ("integer", "bigint", "smallint"):
        return f"t.{column.name} + 100000 + g"
    if kind == "date":
        return f"t.{column.name} + g"
    if kind == "uuid":
        return "gen_random_uuid()"
    if kind.startswith("timestamp"):
        return f"t.{column.name} - g * interval '1 second'"
    raise ValueError(f"cannot vary a {kind} column ({column.name})")


@dataclass(frozen=True)
class Clones:
    """What :func:`clone_rows` inserted (for :func:`drop_clones`)."""

    schema: str
    table: str
    company: str
    salt: str
    count: int


async def clone_rows(
    conn: AsyncConnection,
    schema: str,
    table: str,
    *,
    template: Mapping[str, Any],
    company: str,
    count: int,
    cloned: frozenset[str],
    salt: str = "bulk",
    keep_parents: str = "",
) -> Clones:
    """Insert ``count`` copies of the row of ``schema.table`` that matches
    ``template`` (column = value, the first by id when several do) into ``company``.

    Foreign keys onto the ``id`` of a table in ``cloned`` point at that table's
    copy with the same number (unless ``keep_parents`` names a column: then the
    copies stay under the template's parent, e.g. many log entries of one claim).
    ``conn`` must be the superuser's, in a transaction with
    ``session_replication_role = replica``.
    """
    columns = await _columns(conn, schema, table)
    foreign = {} if keep_parents else await _foreign_ids(conn, schema, table)
    foreign = {col: ref for col, ref in foreign.items() if ref in cloned}
    names = {c.name for c in columns}
    linked = set(foreign) | {"id", "company_id"} | ({keep_parents} if keep_parents else set())
    exprs: dict[str, str] = {}
    for column in columns:
        if column.name == "id":
            exprs["id"] = _link(table, company, salt)
        elif column.name == "company_id":
            exprs["company_id"] = f"'{uuid.UUID(company)}'::uuid"
        elif column.name in foreign:
            parent = _link(foreign[column.name], company, salt)
            exprs[column.name] = (
                f"CASE WHEN t.{column.name} IS NULL THEN NULL ELSE {parent} END"
                if column.nullable
                else parent
            )
        elif column.name in ("create_time", "update_time"):
            exprs[column.name] = f"t.{column.name} - g * interval '17 seconds'"
    for unique in await _unique_sets(conn, schema, table):
        nullable = {c.name for c in columns if c.nullable}
        if (linked - nullable - {keep_parents, "company_id"}) & unique:
            continue  # unique through the copy's own id or parent
        free = [c for c in columns if c.name in unique and c.name not in linked | set(exprs)]
        free.sort(key=lambda c: c.type == "uuid")  # a uuid may be a kept parent: last
        if free:
            exprs[free[0].name] = _vary(free[0], f"{company[:8]}{salt[:1]}")
    if "id" not in names:
        raise ValueError(f"{schema}.{table} has no id column to clone by")
    where = " AND ".join(f"{name} = :{name}" for name in template)
    column_list = ", ".join(f'"{c.name}"' for c in columns)
    select_list = ", ".join(exprs.get(c.name, f't."{c.name}"') for c in columns)
    await conn.execute(
        text(
            f"INSERT INTO {schema}.{table} ({column_list}) "
            f"SELECT {select_list} FROM (SELECT * FROM {schema}.{table} "
            f"WHERE {where} ORDER BY id LIMIT 1) t CROSS JOIN generate_series(1, :count) g"
        ),
        {**template, "count": count},
    )
    return Clones(schema, table, company, salt, count)


async def drop_clones(conn: AsyncConnection, clones: Sequence[Clones]) -> None:
    """Delete the rows :func:`clone_rows` made (same connection rules)."""
    for c in reversed(clones):
        await conn.execute(
            text(
                f"DELETE FROM {c.schema}.{c.table} "
                f"WHERE id IN (SELECT {_link(c.table, c.company, c.salt)} "
                "FROM generate_series(1, :count) g)"
            ),
            {"company": c.company, "count": c.count},
        )


# --------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class ListCall:
    """One List request to try: the RPC, its request fields, and whether the
    next page (the keyset condition of a page token) is tried too."""

    method: Any  # google.protobuf.descriptor.MethodDescriptor
    fields: Mapping[str, Any]
    next_page: bool = True

    @property
    def label(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.fields.items() if not k.endswith("_id"))
        return f"{self.method.name}({shown})"


def list_methods(*modules: Any) -> list[Any]:
    """Every ``List*`` method of every service of the ``*_pb2`` modules."""
    return [
        method
        for module in modules
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        if method.name.startswith("List")
    ]


@dataclass
class PlanChecker:
    """Runs List calls against a live server and EXPLAINs the SQL they sent."""

    channel: Any  # grpc.aio.Channel
    capture: SqlCapture
    #: Role -> an engine of that role, to EXPLAIN what the role sent.
    explain_engines: Mapping[str, AsyncEngine]
    company_id: str
    metadata: Sequence[tuple[str, str]]
    #: Tables whose Seq Scan fails (the big, tenant-owned ones; schema.table).
    big_tables: frozenset[str]
    #: Other relations a plan may read by Seq Scan, each with the reason (small
    #: by nature; statements on them are EXPLAINed too, their Seq Scans pass).
    allowed: Mapping[str, str]

    async def _call(self, method: Any, fields: Mapping[str, Any]) -> tuple[Any, list[Captured]]:
        from google.protobuf import message_factory

        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        rpc = self.channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        with self.capture.recording() as captured:
            response = await rpc(request_cls(**fields), metadata=list(self.metadata))
        return response, captured

    async def problems(self, call: ListCall) -> list[str]:
        """What is wrong with the plans of ``call`` (and of its next page): one line each."""
        found: list[str] = []
        response, captured = await self._call(call.method, call.fields)
        pages = [(call.label, captured)]
        token = getattr(response, "next_page_token", "")
        if call.next_page:
            if not token:
                found.append(f"{call.label}: no next page to check (too few rows)")
            else:
                _, captured = await self._call(call.method, {**call.fields, "page_token": token})
                pages.append((call.label + " page 2", captured))
        for label, statements in pages:
            touched = [s for s in statements if self._is_checked(s.statement)]
            if not touched:
                found.append(f"{label}: sent no SELECT on a checked table")
            for statement in touched:
                engine = self.explain_engines[statement.role]
                plan = await explain(engine, self.company_id, statement)
                sql = " ".join(statement.statement.split())[:600]
                for relation in seq_scans(plan):
                    if relation in self.big_tables or relation not in self.allowed:
                        found.append(f"{label}: Seq Scan on {relation}\n    {sql}")
                for relation, rows, condition in discarded(plan):
                    if relation in self.big_tables and rows > MAX_DISCARDED_ROWS:
                        found.append(
                            f"{label}: reads {rows} rows of {relation} to discard them "
                            f"(Filter: {condition[:200]})\n    {sql}"
                        )
                generic = await explain_generic(engine, self.company_id, statement)
                for relation in seq_scans(generic):
                    if relation in self.big_tables or relation not in self.allowed:
                        found.append(f"{label}: generic plan: Seq Scan on {relation}\n    {sql}")
        return found

    def _is_checked(self, statement: str) -> bool:
        return any(
            re.search(rf"\b{re.escape(table)}\b(?!\.)", statement)
            for table in self.big_tables | set(self.allowed)
        )


async def missing_indexes(engine: AsyncEngine, metadata: Any, schema: str) -> set[str]:
    """Indexes the models declare (``metadata``) that the migrated ``schema`` lacks:
    an index added to a model needs its migration, and the other way round."""
    declared = {str(index.name) for table in metadata.tables.values() for index in table.indexes}
    async with engine.connect() as conn:
        found = set(
            (
                await conn.execute(
                    text("SELECT indexname FROM pg_indexes WHERE schemaname = :s"), {"s": schema}
                )
            ).scalars()
        )
    return declared - found


@dataclass(frozen=True)
class Fill:
    """How to fill a service's listed tables (see :func:`fill_tables`)."""

    schema: str
    #: Tables filled from one row of the company under test, parents before children.
    tables: Sequence[str]
    #: Child table -> the column naming its parent: also ``child_rows`` rows under
    #: the parent the test reads the child List of (``parents[column]``).
    children: Mapping[str, str]
    rows: int = 3000
    other_rows: int = 1500
    other_companies: int = 2
    child_rows: int = 60
    #: Table -> (rows, other_rows) where a company has few rows of it by nature.
    sizes: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    #: Tables without ``company_id`` whose ``id`` is the company's (the companies).
    platform_tables: frozenset[str] = frozenset()


async def fill_tables(
    url: str, fill: Fill, company: str, parents: Mapping[str, str]
) -> list[Clones]:
    """Fill ``fill.tables`` (superuser ``url``): ``rows`` rows in ``company`` and
    ``other_rows`` in each of ``other_companies`` new ones, each table from its
    first row in ``company``; then ANALYZE. Fails when a table has no such row."""
    others = [str(uuid.uuid4()) for _ in range(fill.other_companies)]
    engine = create_async_engine(url, poolclass=NullPool)
    made: list[Clones] = []
    cloned = frozenset(fill.tables)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            for table in fill.tables:
                # The templates: real rows, chosen before any copy exists.
                rows, other_rows = fill.sizes.get(table, (fill.rows, fill.other_rows))
                if table in fill.platform_tables:  # one row per company: copies of ours
                    template = {"id": await _first(conn, fill.schema, table, id=company)}
                    targets = [(company, rows + other_rows * fill.other_companies)]
                else:
                    template = {"id": await _first(conn, fill.schema, table, company_id=company)}
                    targets = [(company, rows)] + [(other, other_rows) for other in others]
                for target, count in targets:
                    made.append(
                        await clone_rows(
                            conn,
                            fill.schema,
                            table,
                            template=template,
                            company=target,
                            count=count,
                            cloned=cloned,
                        )
                    )
                if table in fill.children:
                    parent = fill.children[table]
                    child = await _first(
                        conn, fill.schema, table, company_id=company, **{parent: parents[parent]}
                    )
                    made.append(
                        await clone_rows(
                            conn,
                            fill.schema,
                            table,
                            template={"id": child},
                            company=company,
                            count=fill.child_rows,
                            cloned=cloned,
                            salt="children",
                            keep_parents=parent,
                        )
                    )
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in fill.tables:
                await conn.execute(text(f"ANALYZE {fill.schema}.{table}"))
                scope = "true" if table in fill.platform_tables else "company_id = :c"
                rows = await conn.scalar(
                    text(f"SELECT count(*) FROM {fill.schema}.{table} WHERE {scope}"),
                    {"c": uuid.UUID(company)},
                )
                # A table without a template row stays empty: nothing would be checked.
                least = fill.sizes.get(table, (fill.rows, 0))[0]
                assert rows is not None and rows > least, f"{table}: {rows} rows"
    finally:
        await engine.dispose()
    return made


async def _first(conn: AsyncConnection, schema: str, table: str, **where: str) -> Any:
    """The id of the first row (by id) of ``table`` matching ``where``."""
    condition = " AND ".join(f"{name} = CAST(:{name} AS uuid)" for name in where)
    found = await conn.scalar(
        text(f"SELECT id FROM {schema}.{table} WHERE {condition} ORDER BY id LIMIT 1"), where
    )
    assert found is not None, f"no row of {schema}.{table} to fill it from ({where})"
    return found


async def empty_tables(url: str, made: Sequence[Clones]) -> None:
    """Remove what :func:`fill_tables` inserted (superuser ``url``)."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await drop_clones(conn, made)
    finally:
        await engine.dispose()
