"""Page sizes, page tokens (round trip and every tamper case) and the keyset SQL."""

from __future__ import annotations

import base64
import enum
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cardinsa_foundation import paging
from cardinsa_foundation.context import Principal, PrincipalKind, method_var, principal_var
from cardinsa_foundation.errors import InvalidArgument
from cardinsa_foundation.paging import (
    OrderTerm,
    decode_page_token,
    encode_page_token,
    keyset_queries,
    normalize_page_size,
    query_fingerprint,
)

SECRET = "unit-test-page-token-secret-0123456789"
OTHER_SECRET = "another-page-token-secret-9876543210"
PG = postgresql.dialect()  # type: ignore[no-untyped-call]


# --------------------------------------------------------------------------- page size


@pytest.mark.parametrize(
    ("given", "expected"),
    [(0, 20), (1, 1), (20, 20), (99, 99), (100, 100), (101, 100), (10**9, 100)],
)
def test_page_size_rules(given: int, expected: int) -> None:
    assert normalize_page_size(given) == expected


def test_page_size_custom_default_and_maximum() -> None:
    assert normalize_page_size(0, default=50, maximum=500) == 50
    assert normalize_page_size(1000, default=50, maximum=500) == 500


@pytest.mark.parametrize("given", [-1, -100])
def test_negative_page_size_is_invalid(given: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalize_page_size(given)
    err = caught.value
    assert err.reason == "INVALID_PAGE_SIZE"
    assert [v.field for v in err.field_violations] == ["page_size"]


# --------------------------------------------------------------------------- tokens


class Color(enum.Enum):
    RED = "r"


FP = query_fingerprint(filter="state = ACTIVE", order_by="create_time desc", company_id="c1")
POSITION: tuple[Any, ...] = (
    42,
    -7,
    'Acme "Ltd" ✓',
    "",
    None,
    True,
    False,
    datetime(2024, 1, 31, 9, 30, 0, 123456, tzinfo=UTC),
    datetime(2024, 1, 31, 9, 30, tzinfo=timezone(timedelta(hours=-5))),
    datetime(2024, 1, 31, 9, 30),
    date(2024, 2, 29),
    uuid.UUID("123e4567-e89b-12d3-a456-426614174000"),
    Decimal("12.50"),
    Decimal("-0.000001"),
    1.5,
)


def test_token_round_trip_preserves_every_type() -> None:
    token = encode_page_token(POSITION, fingerprint=FP, secret=SECRET)
    cursor = decode_page_token(token, fingerprint=FP, secret=SECRET)
    assert cursor.region == 0
    decoded = cursor.position
    assert decoded == POSITION
    assert [type(v) for v in decoded] == [type(v) for v in POSITION]
    assert decoded[8].utcoffset() == timedelta(hours=-5)
    assert str(decoded[12]) == "12.50"  # Decimal keeps its exponent


def test_token_is_url_safe_and_compact() -> None:
    token = encode_page_token(
        (datetime(2024, 1, 31, tzinfo=UTC), uuid.uuid4()), fingerprint=FP, secret=SECRET
    )
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(token) < 200


def test_enum_members_travel_by_name() -> None:
    token = encode_page_token((Color.RED,), fingerprint=FP, secret=SECRET)
    assert decode_page_token(token, fingerprint=FP, secret=SECRET).position == ("RED",)


def test_unsupported_sort_key_type_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        encode_page_token((object(),), fingerprint=FP, secret=SECRET)


def test_secret_forms_and_minimum_length() -> None:
    token = encode_page_token((1,), fingerprint=FP, secret=SecretStr(SECRET))
    assert decode_page_token(token, fingerprint=FP, secret=SECRET.encode()).position == (1,)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        encode_page_token((1,), fingerprint=FP, secret="short")


def assert_invalid_token(token: str, **kwargs: Any) -> InvalidArgument:
    arguments: dict[str, Any] = {"fingerprint": FP, "secret": SECRET, **kwargs}
    with pytest.raises(InvalidArgument) as caught:
        decode_page_token(token, **arguments)
    err = caught.value
    assert err.reason == "INVALID_PAGE_TOKEN"
    assert [v.field for v in err.field_violations] == ["page_token"]
    assert err.metadata == {}
    # nothing about why: same text for a forgery, a wrong key or another query
    assert err.message == (
        "The page_token is not valid for this request; repeat the request without it "
        "to start from the first page."
    )
    return err


@pytest.fixture
def token() -> str:
    return encode_page_token(POSITION[:5], fingerprint=FP, secret=SECRET)


def test_every_single_character_change_is_rejected(token: str) -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for index, char in enumerate(token):
        for replacement in {
            alphabet[(alphabet.index(char) + 1) % 64],
            alphabet[0] if char != "A" else "B",
        }:
            forged = token[:index] + replacement + token[index + 1 :]
            assert_invalid_token(forged)


def test_every_flipped_bit_of_the_decoded_token_is_rejected(token: str) -> None:
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for index in range(len(raw)):
        for bit in (0x01, 0x80):
            flipped = bytearray(raw)
            flipped[index] ^= bit
            assert_invalid_token(base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode())


def test_truncated_or_extended_tokens_are_rejected(token: str) -> None:
    assert_invalid_token(token[:-1])
    assert_invalid_token(token[:-4])
    assert_invalid_token(token[1:])
    assert_invalid_token(token + "A")
    assert_invalid_token(token + "AAAA")
    assert_invalid_token(token + "=" * (-len(token) % 4 or 4))  # padding is not accepted


def test_another_key_is_rejected(token: str) -> None:
    assert_invalid_token(token, secret=OTHER_SECRET)


def test_another_query_or_tenant_is_rejected(token: str) -> None:
    for other in (
        query_fingerprint(filter="state = SUSPENDED", order_by="create_time desc", company_id="c1"),
        query_fingerprint(filter="state = ACTIVE", order_by="create_time", company_id="c1"),
        query_fingerprint(filter="state = ACTIVE", order_by="create_time desc", company_id="c2"),
        query_fingerprint(
            filter="state = ACTIVE", order_by="create_time desc", company_id="c1", show_deleted=True
        ),
        query_fingerprint(
            filter="state = ACTIVE", order_by="create_time desc", company_id="c1", parent="p"
        ),
        query_fingerprint(
            filter="state = ACTIVE", order_by="create_time desc", company_id="c1", role="x"
        ),
    ):
        assert_invalid_token(token, fingerprint=other)


def test_another_ordering_shape_is_rejected() -> None:
    made = encode_page_token((1, 2), fingerprint=FP, secret=SECRET, shape=b"a:a,id:a")
    assert decode_page_token(made, fingerprint=FP, secret=SECRET, shape=b"a:a,id:a") == ((1, 2), 0)
    assert_invalid_token(made, shape=b"a:d,id:d")
    assert_invalid_token(made, shape=b"a:a,id:a", expected_length=3)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "A",
        "AA",
        "AAAA",
        "not a token",
        "!!!!",
        "token==",
        "ü" * 40,
        "A" * 5000,
        base64.urlsafe_b64encode(b"\x01" + b"x" * 60).rstrip(b"=").decode(),
        base64.urlsafe_b64encode(bytes(range(200))).rstrip(b"=").decode(),
    ],
)
def test_garbage_is_rejected(garbage: str) -> None:
    assert_invalid_token(garbage)


def test_authentic_token_with_another_version_or_bad_payload_is_rejected() -> None:
    key = paging._derived_key(SECRET.encode())
    for body in (b"\x02" + b'{"k":[1]}', b"\x01" + b"not json", b"\x01" + b'{"k":[["zz","1"]]}'):
        mac = paging._mac(key, FP, b"", body)
        forged = base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode()
        assert_invalid_token(forged)


def test_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1_800_000_000.0
    monkeypatch.setattr(paging, "time", SimpleNamespace(time=lambda: now))
    made = encode_page_token((1,), fingerprint=FP, secret=SECRET, ttl=timedelta(minutes=10))
    assert decode_page_token(made, fingerprint=FP, secret=SECRET).position == (1,)
    now += 601
    err = assert_invalid_token(made)
    assert err.field_violations[0].description == "has expired"


# --------------------------------------------------------------------------- fingerprint


@pytest.fixture
def caller() -> Iterator[None]:
    principal = Principal("u1", PrincipalKind.USER, "company-a")
    token_p = principal_var.set(principal)
    token_m = method_var.set("/cardinsa.identity.v1.UserService/ListUsers")
    yield
    principal_var.reset(token_p)
    method_var.reset(token_m)


def test_fingerprint_binds_the_callers_company_and_method(caller: None) -> None:
    implicit = query_fingerprint(filter="x")
    assert implicit == query_fingerprint(
        filter="x", company_id="company-a", method="/cardinsa.identity.v1.UserService/ListUsers"
    )
    assert implicit != query_fingerprint(filter="x", company_id="company-b")
    assert implicit != query_fingerprint(filter="x", method="/cardinsa.identity.v1.X/ListRoles")
    assert implicit != query_fingerprint(filter="x", company_id=None)


def test_fingerprint_distinguishes_every_parameter() -> None:
    base: dict[str, Any] = {"company_id": "c", "method": "m"}
    variants = [
        query_fingerprint(**base),
        query_fingerprint(filter="a", **base),
        query_fingerprint(order_by="a", **base),
        query_fingerprint(show_deleted=True, **base),
        query_fingerprint(parent="a", **base),
        query_fingerprint(extra="a", **base),
        query_fingerprint(extra=1, **base),
        query_fingerprint(extra=True, **base),
        query_fingerprint(extra=None, **base),
        query_fingerprint(filter="a,b", **base),
        query_fingerprint(filter="a", order_by="b", **base),
        query_fingerprint(filter="a\x00b", **base),
    ]
    assert len(set(variants)) == len(variants)
    assert query_fingerprint(a=1, b=2, **base) == query_fingerprint(b=2, a=1, **base)
    with pytest.raises(TypeError):
        query_fingerprint(bad=1.5, **base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- keyset SQL


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    company_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str]
    email: Mapped[str | None]
    score: Mapped[int]
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


core = Table(
    "rows",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False),
    Column("email", String),
)

CID = uuid.UUID(int=1)
IID = uuid.UUID(int=2)
WHEN = datetime(2024, 1, 1, tzinfo=UTC)


_PARAM = re.compile(r"%\((\w+)\)s(?:::(?:TIMESTAMP WITH(?:OUT)? TIME ZONE|[A-Z]+))?")


def where_and_order(query: Any) -> str:
    """The WHERE/ORDER BY/LIMIT of a query with bound values shown as ``[repr]``."""
    compiled = query.compile(dialect=PG)
    params = compiled.params
    text = _PARAM.sub(lambda m: f"[{params[m.group(1)]!r}]", str(compiled))
    assert "OFFSET" not in text.upper()
    return " ".join(text.split("FROM items", 1)[-1].split())


C, ID = f"[{CID!r}]", f"[{IID!r}]"


def test_first_page_orders_by_the_terms_then_the_primary_key() -> None:
    (query,) = keyset_queries(select(Item), order=[OrderTerm(Item.name)], position=None, limit=21)
    text = where_and_order(query)
    assert text == ("ORDER BY items.name ASC, items.company_id ASC, items.id ASC LIMIT [21]")


def test_same_direction_not_null_keys_use_one_row_comparison() -> None:
    (query,) = keyset_queries(
        select(Item),
        order=[OrderTerm(Item.create_time, descending=True)],
        position=(WHEN, CID, IID),
        limit=21,
    )
    assert where_and_order(query).startswith(
        "WHERE (items.create_time, items.company_id, items.id) < "
        f"([{WHEN!r}], {C}, {ID}) "
        "ORDER BY items.create_time DESC, items.company_id DESC, items.id DESC LIMIT [21]"
    )


def test_mixed_directions_read_the_ties_then_the_rest() -> None:
    order = [OrderTerm(Item.score, descending=True), OrderTerm(Item.name)]
    ties, rest = keyset_queries(select(Item), order=order, position=(5, "m", CID, IID), limit=21)
    assert where_and_order(ties).startswith(
        f"WHERE items.score = [5] AND (items.name, items.company_id, items.id) > (['m'], {C}, {ID})"
        " ORDER BY items.score DESC, items.name ASC, items.company_id ASC, items.id ASC LIMIT [21]"
    )
    assert where_and_order(rest).startswith("WHERE items.score < [5] ORDER BY")
    # a token that says the next row is past the ties starts with the second region
    (only,) = keyset_queries(
        select(Item), order=order, position=(5, "m", CID, IID), limit=21, region=1
    )
    assert where_and_order(only).startswith("WHERE items.score < [5] ORDER BY")


def test_three_direction_changes_bound_every_level() -> None:
    order = [OrderTerm(Item.score), OrderTerm(Item.create_time, descending=True)]
    ties, rest = keyset_queries(
        select(Item), order=order, position=(5, WHEN, IID), limit=21, tiebreaker=[Item.id]
    )
    assert where_and_order(ties).startswith(
        f"WHERE items.score = [5] AND (items.create_time, items.id) < ([{WHEN!r}], {ID}) ORDER BY"
    )
    assert where_and_order(rest).startswith("WHERE items.score > [5] ORDER BY")
    order = [OrderTerm(Item.score), OrderTerm(Item.name, descending=True), OrderTerm(Item.id)]
    ties, rest = keyset_queries(
        select(Item), order=order, position=(5, "m", IID), limit=21, tiebreaker=[Item.id]
    )
    # inside the ties of the first key, the second is range-bounded too
    assert where_and_order(ties).startswith(
        "WHERE items.score = [5] AND items.name <= ['m'] AND "
        f"(items.name < ['m'] OR items.name = ['m'] AND items.id > {ID}) ORDER BY"
    )


def test_nullable_key_ascending_reads_the_nulls_after_the_values() -> None:
    order = [OrderTerm(Item.email)]
    ties, values, nulls = keyset_queries(
        select(Item), order=order, position=("m", CID, IID), limit=21
    )
    assert where_and_order(ties).startswith(
        f"WHERE items.email = ['m'] AND (items.company_id, items.id) > ({C}, {ID}) "
        "ORDER BY items.email ASC NULLS LAST, items.company_id ASC, items.id ASC"
    )
    assert where_and_order(values).startswith("WHERE items.email > ['m'] ORDER BY")
    assert where_and_order(nulls).startswith("WHERE items.email IS NULL ORDER BY")
    # inside the NULLs only their own ties remain
    (only,) = keyset_queries(select(Item), order=order, position=(None, CID, IID), limit=21)
    assert where_and_order(only).startswith(
        f"WHERE items.email IS NULL AND (items.company_id, items.id) > ({C}, {ID}) ORDER BY"
    )


def test_nullable_key_descending_reads_the_values_after_the_nulls() -> None:
    order = [OrderTerm(Item.email, descending=True)]
    ties, values = keyset_queries(select(Item), order=order, position=("m", CID, IID), limit=21)
    assert where_and_order(ties).startswith(
        f"WHERE items.email = ['m'] AND (items.company_id, items.id) < ({C}, {ID}) "
        "ORDER BY items.email DESC NULLS FIRST"
    )
    assert where_and_order(values).startswith("WHERE items.email < ['m'] ORDER BY")
    nulls, values = keyset_queries(select(Item), order=order, position=(None, CID, IID), limit=21)
    assert where_and_order(nulls).startswith(
        f"WHERE items.email IS NULL AND (items.company_id, items.id) < ({C}, {ID}) ORDER BY"
    )
    assert where_and_order(values).startswith("WHERE items.email IS NOT NULL ORDER BY")


def test_nullable_key_in_second_place() -> None:
    order = [OrderTerm(Item.name), OrderTerm(Item.email, descending=True)]
    ties, rest = keyset_queries(select(Item), order=order, position=("n", None, CID, IID), limit=5)
    assert where_and_order(ties).startswith(
        "WHERE items.name = ['n'] AND (items.email IS NOT NULL OR items.email IS NULL "
        f"AND (items.company_id, items.id) < ({C}, {ID})) ORDER BY"
    )
    assert where_and_order(rest).startswith("WHERE items.name > ['n'] ORDER BY")


def test_region_of_the_next_row() -> None:
    terms = [OrderTerm(Item.email), OrderTerm(Item.id)]
    regions = paging._regions(terms, ("m", IID))
    assert len(regions) == 3
    assert paging._region_of(regions, ("m", uuid.UUID(int=3))) == 0  # a tie
    assert paging._region_of(regions, ("n", uuid.UUID(int=0))) == 1  # a greater value
    assert paging._region_of(regions, (None, uuid.UUID(int=0))) == 2  # the NULLs


def test_present_primary_key_is_not_repeated_and_core_tables_work() -> None:
    order = [OrderTerm(core.c.id, descending=True)]
    (query,) = keyset_queries(select(core), order=order, position=(10,), limit=3)
    text = str(query.compile(dialect=PG))
    assert "WHERE rows.id < %(param_1)s::INTEGER ORDER BY rows.id DESC" in text
    assert "OFFSET" not in text


def test_explicit_tiebreaker() -> None:
    stmt = select(core.c.name, core.c.email)
    (query,) = keyset_queries(
        stmt, order=[OrderTerm(core.c.name)], position=None, limit=3, tiebreaker=[core.c.id]
    )
    assert "ORDER BY rows.name ASC, rows.id ASC" in str(query.compile(dialect=PG))


def test_statement_without_primary_key_needs_a_tiebreaker() -> None:
    from sqlalchemy import literal_column

    with pytest.raises(ValueError, match="tiebreaker"):
        keyset_queries(select(literal_column("1")), order=[], position=None, limit=3)


def test_order_term_defaults() -> None:
    term = OrderTerm(Item.email)
    assert (term.name, term.descending, term.nullable) == ("email", False, True)
    assert OrderTerm(Item.name).nullable is False
    assert OrderTerm(Item.name, name="display_name").name == "display_name"
