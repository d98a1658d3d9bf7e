"""Keyset pagination, filters and order_by against a real PostgreSQL.

A table of a few thousand rows with many duplicate sort values and NULLs is walked
page by page under many orderings; every row must come exactly once and in the
order computed independently in Python, and a deep page must read no more rows
(and use the same index) as the first one.
"""

from __future__ import annotations

import functools
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import (
    DateTime,
    Index,
    MetaData,
    Numeric,
    String,
    Uuid,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cardinsa_foundation.errors import InvalidArgument
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec, parse_order_by
from cardinsa_foundation.paging import OrderTerm, Page, paginate, query_fingerprint

SCHEMA = "paging_it"
SECRET = "integration-test-page-token-secret-0123"
COMPANY_A = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
COMPANY_B = uuid.UUID("bbbbbbbb-0000-4000-8000-000000000002")
ROWS_A = 6000
ROWS_B = 500


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


class Item(Base):
    __tablename__ = "items"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    company_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    # "C" collation: PostgreSQL orders the strings as Python does.
    name: Mapped[str] = mapped_column(String(collation="C"))
    email: Mapped[str | None] = mapped_column(String(collation="C"))
    score: Mapped[int]
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))


Index("ix_items_create_time", Item.company_id, Item.create_time, Item.id)
Index("ix_items_name", Item.company_id, Item.name, Item.id)
Index("ix_items_email", Item.company_id, Item.email, Item.id)
Index("ix_items_score_name", Item.company_id, Item.score.desc(), Item.name, Item.id)

ORDER_FIELDS: dict[str, Any] = {
    "name": Item.name,
    "email": Item.email,
    "score": Item.score,
    "create_time": Item.create_time,
    "amount": Item.amount,
}
DEFAULT_ORDER = [OrderTerm(Item.create_time, descending=True, name="create_time")]
FILTER = FilterSpec(
    {
        "name": FilterField(Item.name, FieldType.STRING),
        "email": FilterField(Item.email, FieldType.STRING),
        "score": FilterField(Item.score, FieldType.INTEGER),
        "create_time": FilterField(Item.create_time, FieldType.TIMESTAMP),
        "amount": FilterField(Item.amount, FieldType.DECIMAL),
    }
)


@dataclass(frozen=True)
class Row:
    id: uuid.UUID
    company_id: uuid.UUID
    name: str
    email: str | None
    score: int
    create_time: datetime
    amount: Decimal | None


def make_rows(company: uuid.UUID, count: int, rng: random.Random) -> list[Row]:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        Row(
            id=uuid.UUID(int=rng.getrandbits(128), version=4),
            company_id=company,
            name=f"name-{rng.randint(0, 79):03d}",  # ~75 rows per name
            email=None if rng.random() < 0.25 else f"user{rng.randint(0, 400)}@example.com",
            score=rng.randint(0, 9),  # ~600 rows per score: large tie groups
            create_time=base + timedelta(minutes=rng.randint(0, 999)),  # ~6 per minute
            amount=None if rng.random() < 0.2 else Decimal(rng.randint(0, 500)) / 4,
        )
        for _ in range(count)
    ]


@dataclass
class Dataset:
    engine: AsyncEngine
    rows: dict[uuid.UUID, list[Row]]
    statements: list[tuple[str, Any]]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dataset(test_database_url: str) -> AsyncIterator[Dataset]:
    rng = random.Random(20240131)
    rows = {
        COMPANY_A: make_rows(COMPANY_A, ROWS_A, rng),
        COMPANY_B: make_rows(COMPANY_B, ROWS_B, rng),
    }
    engine = create_async_engine(test_database_url, pool_size=2)
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        await conn.run_sync(Base.metadata.create_all)
        for company_rows in rows.values():
            await conn.execute(insert(Item), [vars(row) for row in company_rows])
        await conn.execute(text(f"ANALYZE {SCHEMA}.items"))

    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "paging_it.items" in statement and statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield Dataset(engine, rows, statements)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await engine.dispose()


# --------------------------------------------------------------------------- helpers


def order_terms(order_by: str) -> list[tuple[str, bool]]:
    """(attribute, descending) for an order_by string, with the id tiebreaker."""
    terms = [
        (term.name, term.descending)
        for term in parse_order_by(order_by, ORDER_FIELDS, default=DEFAULT_ORDER)
    ]
    return [*terms, ("id", terms[-1][1])]


def expected_ids(
    rows: Sequence[Row], order_by: str, keep: Callable[[Row], bool] = lambda _: True
) -> list[uuid.UUID]:
    """The order computed in Python: NULL greater than every value, id breaks ties."""
    terms = order_terms(order_by)

    def compare(a: Row, b: Row) -> int:
        for attribute, descending in terms:
            x, y = getattr(a, attribute), getattr(b, attribute)
            if x == y:
                continue
            if x is None:
                result = 1
            elif y is None:
                result = -1
            else:
                result = -1 if x < y else 1
            return -result if descending else result
        return 0

    return [row.id for row in sorted(filter(keep, rows), key=functools.cmp_to_key(compare))]


async def list_page(
    data: Dataset,
    *,
    company: uuid.UUID = COMPANY_A,
    order_by: str = "",
    filter_text: str = "",
    page_size: int = 20,
    page_token: str = "",
    columns: bool = False,
    fingerprint_company: uuid.UUID | None = None,
) -> Page[Any]:
    """What a List handler does: tenant condition, filter, order, paginate."""
    stmt: Any = select(Item.id, Item.name) if columns else select(Item)
    stmt = stmt.where(Item.company_id == company)
    condition = FILTER.parse(filter_text)
    if condition is not None:
        stmt = stmt.where(condition)
    async with AsyncSession(data.engine) as session:
        page: Page[Any] = await paginate(
            session,
            stmt,
            order=parse_order_by(order_by, ORDER_FIELDS, default=DEFAULT_ORDER),
            page_size=page_size,
            page_token=page_token,
            fingerprint=query_fingerprint(
                filter=filter_text,
                order_by=order_by,
                company_id=str(fingerprint_company or company),
                method="/test.ItemService/ListItems",
            ),
            secret=SECRET,
        )
    return page


async def walk(
    data: Dataset, *, page_sizes: Sequence[int], **query: Any
) -> tuple[list[uuid.UUID], int, int]:
    """Every page of a List; returns the ids, the number of pages and of queries."""
    ids: list[uuid.UUID] = []
    token, pages = "", 0
    data.statements.clear()
    while True:
        size = page_sizes[pages % len(page_sizes)]
        page = await list_page(data, page_size=size, page_token=token, **query)
        pages += 1
        ids.extend(item.id for item in page.items)
        if not page.next_page_token:
            break
        assert len(page.items) == size, "only the last page may be short"
        token = page.next_page_token
        assert pages < 10_000
    return ids, pages, len(data.statements)


# --------------------------------------------------------------------------- walks

ORDERINGS = [
    ("", [100]),  # default: create_time desc
    ("name", [50]),
    ("name desc", [37]),
    ("score desc, name", [40]),  # mixed directions, ~600 ties per score
    ("score, create_time desc", [25]),
    ("email", [50]),  # nullable, NULLs last
    ("email desc", [50]),  # nullable, NULLs first
    ("email desc, score", [30]),
    ("score, email desc, create_time", [45]),  # nullable key in the middle
    ("amount desc, name desc", [60]),
    ("create_time, name desc", [100]),
    ("score", [1, 7, 100, 3]),  # page size changes between pages (allowed by AIP-158)
]


@pytest.mark.parametrize(("order_by", "sizes"), ORDERINGS)
async def test_every_row_exactly_once_in_order(
    dataset: Dataset, order_by: str, sizes: list[int]
) -> None:
    ids, pages, queries = await walk(dataset, order_by=order_by, page_sizes=sizes)
    expected = expected_ids(dataset.rows[COMPANY_A], order_by)
    assert len(ids) == len(set(ids)) == ROWS_A
    assert ids == expected
    terms = order_terms(order_by)
    leading = terms[0][0]
    one_region = all(
        attribute not in {"email", "amount"} and descending == terms[0][1]
        for attribute, descending in terms
    )
    if one_region:
        assert queries == pages  # one index range per page
    else:
        # an extra query only where a page crosses into the next region
        distinct = len({getattr(row, leading) for row in dataset.rows[COMPANY_A]})
        assert pages <= queries <= pages + distinct + 2


def keep_filtered(row: Row) -> bool:
    return (
        row.score >= 3
        and (row.email is None or "1" in row.email.lower())
        and not row.name.startswith("name-01")
    )


@pytest.mark.parametrize(("order_by", "size"), [("", 13), ("email desc, score", 7), ("name", 50)])
async def test_filtered_walk(dataset: Dataset, order_by: str, size: int) -> None:
    filter_text = 'score >= 3 AND (email:"1" OR email = null) -name = "name-01*"'
    ids, _, _ = await walk(dataset, order_by=order_by, filter_text=filter_text, page_sizes=[size])
    expected = expected_ids(dataset.rows[COMPANY_A], order_by, keep_filtered)
    assert 500 < len(expected) < ROWS_A
    assert ids == expected


async def test_page_size_one_through_ties(dataset: Dataset) -> None:
    filter_text = 'score = 4 name = "name-00*"'
    ids, pages, _ = await walk(
        dataset, order_by="name desc", filter_text=filter_text, page_sizes=[1]
    )
    expected = expected_ids(
        dataset.rows[COMPANY_A],
        "name desc",
        lambda row: row.score == 4 and row.name.startswith("name-00"),
    )
    assert len(expected) > 20
    assert ids == expected
    assert pages == len(expected)


async def test_empty_result_and_exact_multiple(dataset: Dataset) -> None:
    page = await list_page(dataset, filter_text="score > 100")
    assert page.items == []
    assert page.next_page_token == ""
    ids, pages, _ = await walk(dataset, company=COMPANY_B, page_sizes=[100])
    assert pages == ROWS_B // 100  # no empty trailing page
    assert ids == expected_ids(dataset.rows[COMPANY_B], "")


async def test_core_column_selects_return_rows(dataset: Dataset) -> None:
    page = await list_page(dataset, order_by="name", page_size=5, columns=True)
    expected = expected_ids(dataset.rows[COMPANY_A], "name")[:5]
    assert [row.id for row in page.items] == expected
    assert all(isinstance(row.name, str) for row in page.items)
    following = await list_page(
        dataset, order_by="name", page_size=5, columns=True, page_token=page.next_page_token
    )
    assert [row.id for row in following.items] == expected_ids(dataset.rows[COMPANY_A], "name")[
        5:10
    ]


# --------------------------------------------------------------------------- tokens


async def test_a_token_is_bound_to_the_tenant_and_the_query(dataset: Dataset) -> None:
    first = await list_page(dataset, order_by="name", filter_text="score > 2")
    token = first.next_page_token
    assert token
    # the same caller continuing the same query is fine
    await list_page(dataset, order_by="name", filter_text="score > 2", page_token=token)
    replays: list[dict[str, Any]] = [
        {"order_by": "name", "filter_text": "score > 2", "company": COMPANY_B},  # other tenant
        {"order_by": "name desc", "filter_text": "score > 2"},  # other order
        {"order_by": "name", "filter_text": "score > 3"},  # other filter
        {"order_by": "name", "filter_text": "score > 2", "fingerprint_company": COMPANY_B},
    ]
    for replay in replays:
        with pytest.raises(InvalidArgument) as caught:
            await list_page(dataset, page_token=token, **replay)
        assert caught.value.reason == "INVALID_PAGE_TOKEN"
        assert [v.field for v in caught.value.field_violations] == ["page_token"]


async def test_tenants_see_only_their_rows(dataset: Dataset) -> None:
    ids, _, _ = await walk(dataset, company=COMPANY_B, order_by="email desc", page_sizes=[33])
    assert ids == expected_ids(dataset.rows[COMPANY_B], "email desc")
    assert not set(ids) & {row.id for row in dataset.rows[COMPANY_A]}


async def test_invalid_filter_or_order_never_reaches_the_database(dataset: Dataset) -> None:
    dataset.statements.clear()
    with pytest.raises(InvalidArgument):
        await list_page(dataset, filter_text="nope = 1")
    with pytest.raises(InvalidArgument):
        await list_page(dataset, order_by="nope")
    with pytest.raises(InvalidArgument):
        await list_page(dataset, page_size=-1)
    with pytest.raises(InvalidArgument):
        await list_page(dataset, page_token="forged")
    assert dataset.statements == []


# --------------------------------------------------------------------------- plans


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(plan_nodes(child))
    return nodes


async def explain(data: Dataset, statement: str, parameters: Any) -> dict[str, Any]:
    async with data.engine.connect() as conn:
        result = await conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters
        )
        document = result.scalar_one()
    parsed = json.loads(document) if isinstance(document, str) else document
    plan: dict[str, Any] = parsed[0]["Plan"]
    return plan


def rows_read(plan: dict[str, Any]) -> int:
    """Rows the index scans produced or discarded (loops included)."""
    return sum(
        (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0))
        * node.get("Actual Loops", 1)
        for node in plan_nodes(plan)
        if node["Node Type"] in ("Index Scan", "Index Only Scan")
    )


@pytest.mark.parametrize(
    ("order_by", "index"),
    [
        ("", "ix_items_create_time"),
        ("score desc, name", "ix_items_score_name"),
        ("email", "ix_items_email"),
    ],
)
async def test_a_deep_page_costs_what_the_first_costs(
    dataset: Dataset, order_by: str, index: str, capsys: pytest.CaptureFixture[str]
) -> None:
    size = 20
    dataset.statements.clear()
    page = await list_page(dataset, order_by=order_by, page_size=size)
    first_statements = list(dataset.statements)
    for _ in range(150):  # page 151: 3 000 rows deep
        page = await list_page(
            dataset, order_by=order_by, page_size=size, page_token=page.next_page_token
        )
    dataset.statements.clear()
    await list_page(dataset, order_by=order_by, page_size=size, page_token=page.next_page_token)
    deep_statements = list(dataset.statements)
    assert deep_statements

    first_read = 0
    for statement, parameters in first_statements:
        first_read += rows_read(await explain(dataset, statement, parameters))
    deep_read = 0
    for statement, parameters in deep_statements:
        assert "OFFSET" not in statement.upper()
        plan = await explain(dataset, statement, parameters)
        nodes = plan_nodes(plan)
        kinds = {node["Node Type"] for node in nodes}
        assert "Seq Scan" not in kinds
        assert "Sort" not in kinds  # the index gives the order
        scans = [n for n in nodes if n["Node Type"] in ("Index Scan", "Index Only Scan")]
        assert scans
        assert {n["Index Name"] for n in scans} == {index}
        assert all("Index Cond" in n for n in scans)
        deep_read += rows_read(plan)
        with capsys.disabled():
            print(
                f"\n[order_by={order_by!r}] deep page: {scans[0]['Node Type']} using "
                f"{scans[0]['Index Name']}, Index Cond: {scans[0]['Index Cond']}, "
                f"rows read {rows_read(plan)}"
            )
    # The first page reads page_size + 1 rows; a page 3 000 rows deep reads no more
    # (plus one row per extra region query).
    assert first_read <= size + 1
    assert deep_read <= size + 1 + len(deep_statements)
