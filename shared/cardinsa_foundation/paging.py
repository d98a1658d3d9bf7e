"""List pagination for every Cardinsa service (AIP-158): page sizes, opaque page
tokens and keyset queries. There is no other way to page a list.

A service's List handler writes roughly::

    order = parse_order_by(request.order_by, ORDER_FIELDS, default=DEFAULT_ORDER)
    stmt = select(User).where(User.company_id == company_id)
    condition = USER_FILTER.parse(request.filter)
    if condition is not None:
        stmt = stmt.where(condition)
    page = await paginate(
        session,
        stmt,
        order=order,
        page_size=request.page_size,
        page_token=request.page_token,
        fingerprint=query_fingerprint(
            filter=request.filter,
            order_by=request.order_by,
            show_deleted=request.show_deleted,
        ),
        secret=settings.page_token_secret,
    )
    return ListUsersResponse(
        users=[to_proto(user) for user in page.items], next_page_token=page.next_page_token
    )

Page size
    ``0`` means the default (20), anything above the maximum (100) is clamped, a
    negative size is INVALID_ARGUMENT (``page_size``, reason ``INVALID_PAGE_SIZE``).

Page tokens
    A token is the url-safe base64 (no padding) of a version byte, a compact JSON
    payload carrying the keyset position (the sort-key values of the last row of
    the page, and optionally an expiry) and an HMAC-SHA256 over the payload, the
    query fingerprint and the shape of the ordering. The key is derived from the
    ``page_token_secret`` setting. The fingerprint binds the token to the request
    that produced it -- filter, order_by, show_deleted, parent, the caller's
    company id, the RPC method and whatever else the service passes -- so a token
    that is malformed, forged, signed with another key, expired, or replayed with
    other parameters or by another tenant fails the MAC check, and the only answer
    is INVALID_ARGUMENT on ``page_token`` with reason ``INVALID_PAGE_TOKEN``. A
    token is not encrypted: it reveals the sort-key values of a row the caller has
    already received, nothing else. ``page_size`` is not part of the fingerprint:
    AIP-158 lets a client change it between pages.

Keyset pagination
    Rows are ordered by the requested terms followed by the primary key (appended
    automatically when absent, in the direction of the last term), so the order is
    total and deterministic. A page fetches ``page_size + 1`` rows *after* the last
    row of the previous page with a WHERE condition on the sort keys -- never
    OFFSET -- so every page costs what the first one costs, given an index that
    matches the ordering:

    * keys all NOT NULL and in one direction (the usual ``create_time desc``):
      one query, ``WHERE (k1, k2, id) < (:v1, :v2, :v3)``, an index range scan
      starting exactly at the position;
    * mixed directions or nullable keys: the rows after the position form a few
      consecutive regions -- those tying with it on the leading run of keys
      (``k1 = :v1 AND (k2, id) > (:v2, :v3)``), then those strictly after it
      (``k1 < :v1``), and for a nullable leading key its NULLs -- each an index
      range of its own, so a page never reads the rows before the position even
      when millions tie on the first key. The extra row fetched tells which
      region the next page starts in, and the token records it, so a page is one
      query except when it crosses from one region into the next.

NULLs
    A NULL sorts as if it were greater than every value -- PostgreSQL's own
    default: ``ASC NULLS LAST`` and ``DESC NULLS FIRST`` (written out in the
    ORDER BY of nullable keys) -- so a plain b-tree index serves both directions.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import functools
import hashlib
import hmac
import json
import math
import struct
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Generic, NamedTuple, TypeVar, overload

from pydantic import SecretStr
from sqlalchemy import ColumnElement, Row, Select, and_, inspect, literal, or_, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.util.typing import TupleAny

from cardinsa_foundation.context import current_company_id, method_var
from cardinsa_foundation.errors import FieldViolation, InvalidArgument

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Cursor",
    "OrderTerm",
    "Page",
    "decode_page_token",
    "encode_page_token",
    "keyset_queries",
    "normalize_page_size",
    "paginate",
    "query_fingerprint",
]

DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_SIZE: Final = 100
MAX_PAGE_TOKEN_LENGTH: Final = 4096
INVALID_PAGE_TOKEN: Final = "INVALID_PAGE_TOKEN"  # noqa: S105 - an error reason
INVALID_PAGE_SIZE: Final = "INVALID_PAGE_SIZE"

_T = TypeVar("_T")
_TOKEN_VERSION: Final = 1
_MAC_SIZE: Final = 32
_KEY_LABEL: Final = b"cardinsa/page-token/v1"
_B64_ALPHABET: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_KEY_LABEL_PREFIX: Final = "_cardinsa_k"


# --------------------------------------------------------------------------- sizes


def normalize_page_size(
    page_size: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE
) -> int:
    """Apply the AIP-158 rules: 0 → ``default``, above ``maximum`` → ``maximum``,
    negative → INVALID_ARGUMENT on ``page_size``."""
    if page_size < 0:
        raise InvalidArgument(
            "page_size must not be negative.",
            reason=INVALID_PAGE_SIZE,
            metadata={"page_size": str(page_size)},
            field_violations=[FieldViolation("page_size", "must be 0 (default) or positive")],
        )
    if page_size == 0:
        return default
    return min(page_size, maximum)


# --------------------------------------------------------------------------- ordering


@dataclasses.dataclass(frozen=True, slots=True, init=False, eq=False)
class OrderTerm:
    """One sort key: a column (or SQL expression) and its direction.

    ``nullable`` says whether the key can be NULL; by default it is read from the
    column (``Column.nullable``) and assumed true for any other expression, which
    is always correct but gives the planner a looser bound. ``name`` identifies
    the term inside page tokens (defaults to the column's key).
    """

    column: ColumnElement[Any]
    descending: bool
    nullable: bool
    name: str

    def __init__(
        self,
        column: ColumnElement[Any] | QueryableAttribute[Any],
        descending: bool = False,
        *,
        nullable: bool | None = None,
        name: str | None = None,
    ) -> None:
        element = _as_column(column)
        if nullable is None:
            declared = getattr(element, "nullable", None)
            nullable = declared if isinstance(declared, bool) else True
        if name is None:
            key = getattr(element, "key", None)
            name = key if isinstance(key, str) and key else type(element).__name__
        object.__setattr__(self, "column", element)
        object.__setattr__(self, "descending", descending)
        object.__setattr__(self, "nullable", nullable)
        object.__setattr__(self, "name", name)

    def clause(self) -> ColumnElement[Any]:
        """The ORDER BY element (NULLs explicit for nullable keys, see module doc)."""
        if self.descending:
            ordered = self.column.desc()
            return ordered.nulls_first() if self.nullable else ordered
        ordered = self.column.asc()
        return ordered.nulls_last() if self.nullable else ordered


def _as_column(column: ColumnElement[Any] | QueryableAttribute[Any]) -> ColumnElement[Any]:
    if isinstance(column, ColumnElement):
        return column
    element = column.__clause_element__()
    if not isinstance(element, ColumnElement):  # pragma: no cover - relationship attributes
        raise TypeError(f"{column!r} is not a column expression")
    return element


@functools.lru_cache(maxsize=512)
def _entity_primary_key(entity: Any) -> tuple[ColumnElement[Any], ...]:
    mapper = inspect(entity).mapper
    return tuple(
        _as_column(getattr(entity, mapper.get_property_by_column(col).key))
        for col in mapper.primary_key
    )


def _primary_key(stmt: Select[Any], descriptions: Sequence[Any]) -> Sequence[ColumnElement[Any]]:
    """The primary-key columns of the statement's main entity or table."""
    entity = descriptions[0].get("entity") if descriptions else None
    if entity is not None:
        return _entity_primary_key(entity)
    froms = stmt.get_final_froms()
    if len(froms) == 1:
        primary_key: list[ColumnElement[Any]] = list(froms[0].primary_key)
        if primary_key:
            return primary_key
    raise ValueError("cannot find the primary key of this statement; pass tiebreaker= explicitly")


def _complete_order(
    stmt: Select[Any],
    order: Sequence[OrderTerm],
    tiebreaker: Sequence[ColumnElement[Any] | QueryableAttribute[Any]] | None,
    descriptions: Sequence[Any] | None = None,
) -> tuple[OrderTerm, ...]:
    """``order`` followed by the unique tiebreaker columns it does not already contain."""
    if tiebreaker is not None:
        unique_cols: Sequence[ColumnElement[Any]] = [_as_column(c) for c in tiebreaker]
    else:
        if descriptions is None:
            descriptions = stmt.column_descriptions
        unique_cols = _primary_key(stmt, descriptions)
    terms = list(order)
    last_descending = terms[-1].descending if terms else False
    for col in unique_cols:
        if not any(term.column.compare(col) for term in terms):
            terms.append(OrderTerm(col, last_descending, nullable=False))
    return tuple(terms)


def _order_shape(terms: Sequence[OrderTerm]) -> bytes:
    return ",".join(f"{t.name}:{'d' if t.descending else 'a'}" for t in terms).encode()


# --------------------------------------------------------------------------- fingerprint


class _Current(enum.Enum):
    VALUE = "current"


CURRENT: Final = _Current.VALUE
"""Default of :func:`query_fingerprint` arguments read from the request context."""

FingerprintValue = str | int | bool | None


def query_fingerprint(
    *,
    filter: str = "",
    order_by: str = "",
    show_deleted: bool = False,
    parent: str = "",
    company_id: str | _Current | None = CURRENT,
    method: str | _Current | None = CURRENT,
    **extra: FingerprintValue,
) -> bytes:
    """A digest of everything that defines a List query except the page size/token.

    ``company_id`` and ``method`` default to the caller's company (from the
    verified token) and the RPC being served, so a token cannot be replayed by
    another tenant or against another List method. Pass every other request
    parameter that changes the result set as keyword arguments.
    """
    if company_id is CURRENT:
        company_id = current_company_id()
    if method is CURRENT:
        method = method_var.get()
    for key, value in extra.items():
        if value is not None and not isinstance(value, str | int | bool):
            raise TypeError(f"fingerprint parameter {key!r} must be str, int, bool or None")
    document = [filter, order_by, show_deleted, parent, company_id, method, sorted(extra.items())]
    canonical = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).digest()


# --------------------------------------------------------------------------- token codec


def _invalid_token(description: str = "is not valid for this request") -> InvalidArgument:
    return InvalidArgument(
        "The page_token is not valid for this request; repeat the request without it "
        "to start from the first page.",
        reason=INVALID_PAGE_TOKEN,
        field_violations=[FieldViolation("page_token", description)],
    )


@functools.lru_cache(maxsize=8)
def _derived_key(secret: bytes) -> bytes:
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def _secret_bytes(secret: SecretStr | str | bytes) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    raw = secret.encode() if isinstance(secret, str) else secret
    if len(raw) < 16:
        raise ValueError("the page token secret must be at least 16 bytes long")
    return raw


def _mac(key: bytes, fingerprint: bytes, shape: bytes, body: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in (fingerprint, shape):
        mac.update(struct.pack(">I", len(part)))
        mac.update(part)
    mac.update(body)
    return mac.digest()


def _encode_value(value: Any) -> Any:
    # Order matters: bool is an int, datetime is a date, StrEnum is a str.
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, enum.Enum):
        return ["e", value.name]
    if isinstance(value, int | str):
        return value
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, date):
        return ["d", value.isoformat()]
    if isinstance(value, uuid.UUID):
        return ["u", value.hex]
    if isinstance(value, Decimal):
        return ["n", str(value)]
    if isinstance(value, float):
        return ["f", repr(value)]
    raise TypeError(f"cannot put a {type(value).__name__} sort key into a page token")


def _decode_value(raw: Any) -> Any:
    if raw is None or isinstance(raw, bool | str):
        return raw
    if isinstance(raw, int):
        return raw
    if isinstance(raw, list) and len(raw) == 2 and isinstance(raw[1], str):
        tag, text = raw
        decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
        if decoder is not None:
            return decoder(text)
    raise ValueError("bad value")


def _decode_float(text: str) -> float:
    value = float(text)
    if math.isnan(value) and text != "nan":  # pragma: no cover - defensive
        raise ValueError(text)
    return value


_DECODERS: Final[dict[str, Callable[[str], Any]]] = {
    "e": str,  # an enum member travels by name; SQLAlchemy's Enum type binds names
    "t": datetime.fromisoformat,
    "d": date.fromisoformat,
    "u": lambda text: uuid.UUID(hex=text),
    "n": Decimal,
    "f": _decode_float,
}


class Cursor(NamedTuple):
    """What a page token carries: the sort-key values of the last row returned and
    the region (see :func:`keyset_queries`) holding the next row."""

    position: tuple[Any, ...]
    region: int = 0


def encode_page_token(
    position: Sequence[Any],
    *,
    fingerprint: bytes,
    secret: SecretStr | str | bytes,
    shape: bytes = b"",
    region: int = 0,
    ttl: timedelta | None = None,
) -> str:
    """Sign a keyset position (the last row's sort-key values) into an opaque token."""
    payload: dict[str, Any] = {"k": [_encode_value(v) for v in position]}
    if region:
        payload["r"] = region
    if ttl is not None:
        payload["x"] = math.ceil(time.time() + ttl.total_seconds())
    body = (
        bytes([_TOKEN_VERSION])
        + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    )
    mac = _mac(_derived_key(_secret_bytes(secret)), fingerprint, shape, body)
    return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode("ascii")


def decode_page_token(
    token: str,
    *,
    fingerprint: bytes,
    secret: SecretStr | str | bytes,
    shape: bytes = b"",
    expected_length: int | None = None,
) -> Cursor:
    """Verify a token from :func:`encode_page_token` and return its cursor.

    Anything wrong with it -- syntax, signature, key, fingerprint, shape, expiry,
    length -- raises the same INVALID_ARGUMENT (``page_token``,
    ``INVALID_PAGE_TOKEN``).
    """
    key = _derived_key(_secret_bytes(secret))
    if not token or len(token) > MAX_PAGE_TOKEN_LENGTH or not _B64_ALPHABET.issuperset(token):
        raise _invalid_token()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise _invalid_token() from None
    # Reject non-canonical encodings (stray bits in the last character), so that
    # exactly one string is valid for a given token.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        raise _invalid_token()
    if len(raw) <= _MAC_SIZE + 1 or raw[0] != _TOKEN_VERSION:
        raise _invalid_token()
    body, mac = raw[:-_MAC_SIZE], raw[-_MAC_SIZE:]
    if not hmac.compare_digest(mac, _mac(key, fingerprint, shape, body)):
        raise _invalid_token()
    # Authentic from here on: failures below mean an incompatible (older) token.
    try:
        payload = json.loads(body[1:])
        values = payload["k"]
        region = payload.get("r", 0)
        expiry = payload.get("x")
        if (
            not isinstance(values, list)
            or (expected_length is not None and len(values) != expected_length)
            or type(region) is not int
            or region < 0
        ):
            raise ValueError("bad position")
        position = tuple(_decode_value(v) for v in values)
    except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation):
        raise _invalid_token() from None
    if expiry is not None and (type(expiry) is not int or time.time() > expiry):
        raise _invalid_token("has expired")
    return Cursor(position, region)


# --------------------------------------------------------------------------- keyset


def _bind(term: OrderTerm, value: Any) -> ColumnElement[Any]:
    return literal(value, term.column.type)


def _strictly_after(term: OrderTerm, value: Any) -> ColumnElement[bool] | None:
    """Rows whose key comes strictly after ``value`` (NULL = greatest); None = no row."""
    col = term.column
    if value is None:
        return col.is_not(None) if term.descending else None
    if term.descending:
        return col < _bind(term, value)
    if term.nullable:
        return or_(col > _bind(term, value), col.is_(None))
    return col > _bind(term, value)


def _tie(term: OrderTerm, value: Any) -> ColumnElement[bool]:
    return term.column.is_(None) if value is None else term.column == _bind(term, value)


def _run(terms: Sequence[OrderTerm], values: Sequence[Any]) -> int:
    """Length of the leading run of NOT NULL keys going the first key's direction."""
    run = 0
    while (
        run < len(terms)
        and not terms[run].nullable
        and values[run] is not None
        and terms[run].descending == terms[0].descending
    ):
        run += 1
    return run


def _run_sides(
    terms: Sequence[OrderTerm], values: Sequence[Any], run: int
) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """Both sides of a comparison on the first ``run`` keys (a row value when run > 1)."""
    if run == 1:
        return terms[0].column, _bind(terms[0], values[0])
    return (
        tuple_(*(t.column for t in terms[:run])),
        tuple_(*(_bind(t, v) for t, v in zip(terms[:run], values[:run], strict=True))),
    )


def _after(terms: Sequence[OrderTerm], values: Sequence[Any]) -> ColumnElement[bool] | None:
    """Rows strictly after ``values``: after(i) = gt(i) OR (tie(i) AND after(i+1)).

    A run of NOT NULL keys in one direction is compared as one row value. None
    means no row at all.
    """
    if not terms:
        return None
    run = _run(terms, values)
    if run:
        lhs, rhs = _run_sides(terms, values, run)
        gt: ColumnElement[bool] | None = lhs < rhs if terms[0].descending else lhs > rhs
        ties = [_tie(t, v) for t, v in zip(terms[:run], values[:run], strict=True)]
    else:
        run = 1
        gt = _strictly_after(terms[0], values[0])
        ties = [_tie(terms[0], values[0])]
    rest = _after(terms[run:], values[run:])
    tail = None if rest is None else and_(*ties, rest)
    if gt is None:
        return tail
    return gt if tail is None else or_(gt, tail)


@dataclasses.dataclass(frozen=True, slots=True)
class _Region:
    """A contiguous slice of the rows after a position, in sort order.

    ``condition`` builds its WHERE (index-bounded); ``holds`` tells, for the sort
    keys of a row known to lie after the position, whether it is in this region
    rather than a later one.
    """

    condition: Callable[[], ColumnElement[bool]]
    holds: Callable[[Sequence[Any]], bool]


def _always(_keys: Sequence[Any]) -> bool:
    return True


def _after_bounded(terms: Sequence[OrderTerm], values: Sequence[Any]) -> ColumnElement[bool] | None:
    """:func:`_after` plus a redundant range on its leading run, for the index."""
    run = _run(terms, values)
    if not run or run == len(terms):
        return _after(terms, values)
    lhs, rhs = _run_sides(terms, values, run)
    rest = _after(terms[run:], values[run:])
    strict = lhs < rhs if terms[0].descending else lhs > rhs
    if rest is None:
        return strict
    bound = lhs <= rhs if terms[0].descending else lhs >= rhs
    ties = [_tie(t, v) for t, v in zip(terms[:run], values[:run], strict=True)]
    return and_(bound, or_(strict, and_(*ties, rest)))


def _regions(terms: Sequence[OrderTerm], values: Sequence[Any]) -> list[_Region]:
    """The rows after ``values``: consecutive, disjoint regions, each one index range.

    * All keys NOT NULL and one direction: one region, ``(k1, .., kn) > (v1, .., vn)``.
    * Otherwise, with R the leading run of NOT NULL keys in one direction (or the
      leading key alone when it is nullable): first the rows that tie with the
      position on R and come after it on the remaining keys (``R = v AND ...``),
      then the rows strictly after it on R (``R > v``); a nullable leading key
      splits the latter into its non-NULL values and its NULLs.

    Each region bounds the index scan by equality/range on its leading keys, so a
    page never reads rows before the position, however many rows tie on the
    first key (a low-cardinality key such as a state with mixed directions).
    """
    first, v1 = terms[0], values[0]
    desc = first.descending
    run = _run(terms, values)

    def strictly_after_run() -> ColumnElement[bool]:
        lhs, rhs = _run_sides(terms, values, run)
        return lhs < rhs if desc else lhs > rhs

    if run == len(terms):
        return [_Region(strictly_after_run, _always)]

    width = max(run, 1)
    head_values = tuple(values[:width])
    regions: list[_Region] = []
    # after() is empty only when every remaining key is ascending and at NULL.
    if any(
        v is not None or t.descending for t, v in zip(terms[width:], values[width:], strict=True)
    ):

        def ties_then_after() -> ColumnElement[bool]:
            ties = [_tie(t, v) for t, v in zip(terms[:width], values[:width], strict=True)]
            rest = _after_bounded(terms[width:], values[width:])
            assert rest is not None
            return and_(*ties, rest)

        regions.append(_Region(ties_then_after, lambda keys: tuple(keys[:width]) == head_values))
    if run:
        regions.append(_Region(strictly_after_run, _always))
        return regions

    col = first.column
    if v1 is None:
        if desc:  # NULLs first: every non-NULL value follows
            regions.append(_Region(lambda: col.is_not(None), _always))
        return regions
    if desc:
        regions.append(_Region(lambda: col < _bind(first, v1), _always))
    else:
        regions.append(_Region(lambda: col > _bind(first, v1), lambda keys: keys[0] is not None))
        regions.append(_Region(lambda: col.is_(None), _always))  # NULLs sort last
    return regions


def _region_of(regions: Sequence[_Region], keys: Sequence[Any]) -> int:
    return next(i for i, region in enumerate(regions) if region.holds(keys))


def keyset_queries(
    stmt: Select[Any],
    *,
    order: Sequence[OrderTerm],
    position: Sequence[Any] | None,
    limit: int,
    region: int = 0,
    tiebreaker: Sequence[ColumnElement[Any] | QueryableAttribute[Any]] | None = None,
) -> list[Select[Any]]:
    """The SELECTs :func:`paginate` may run, in order, for the rows after ``position``.

    One per region (see :func:`_regions`) from ``region`` on; :func:`paginate`
    runs the next one only while the page is not full, and the page token
    remembers the region holding the next row, so a page is one query except
    when it crosses from one region into the next. Each statement has the sort
    keys appended as labelled columns, the full ORDER BY and ``LIMIT limit`` --
    never an OFFSET. Exposed for tests and EXPLAIN.
    """
    plan = _Plan(stmt, _complete_order(stmt, order, tiebreaker))
    if position is None:
        return [plan.first(limit)]
    return [plan.base.where(r.condition()).limit(limit) for r in plan.regions(position)[region:]]


class _Plan:
    __slots__ = ("base", "terms")

    def __init__(self, stmt: Select[Any], terms: tuple[OrderTerm, ...]) -> None:
        self.terms = terms
        keys = [t.column.label(f"{_KEY_LABEL_PREFIX}{i}") for i, t in enumerate(terms)]
        self.base = (
            stmt.add_columns(*keys)
            .order_by(None)
            .order_by(*(t.clause() for t in terms))
            .offset(None)
        )

    def first(self, limit: int) -> Select[Any]:
        return self.base.limit(limit)

    def regions(self, position: Sequence[Any]) -> list[_Region]:
        if len(position) != len(self.terms):
            raise ValueError("position does not match the ordering")
        return _regions(self.terms, position)


# --------------------------------------------------------------------------- paginate


@dataclasses.dataclass(frozen=True, slots=True)
class Page(Generic[_T]):
    """One page of a List: the items and the token of the next page ("" at the end)."""

    items: list[_T]
    next_page_token: str


@overload
async def paginate(
    session: AsyncSession | AsyncConnection,
    stmt: Select[_T],
    *,
    order: Sequence[OrderTerm],
    page_size: int,
    page_token: str,
    fingerprint: bytes,
    secret: SecretStr | str | bytes,
    tiebreaker: Sequence[ColumnElement[Any] | QueryableAttribute[Any]] | None = ...,
    ttl: timedelta | None = ...,
    default_page_size: int = ...,
    max_page_size: int = ...,
) -> Page[_T]: ...


@overload
async def paginate(
    session: AsyncSession | AsyncConnection,
    stmt: Select[*TupleAny],
    *,
    order: Sequence[OrderTerm],
    page_size: int,
    page_token: str,
    fingerprint: bytes,
    secret: SecretStr | str | bytes,
    tiebreaker: Sequence[ColumnElement[Any] | QueryableAttribute[Any]] | None = ...,
    ttl: timedelta | None = ...,
    default_page_size: int = ...,
    max_page_size: int = ...,
) -> Page[Row[*TupleAny]]: ...


async def paginate(
    session: AsyncSession | AsyncConnection,
    stmt: Select[Any],
    *,
    order: Sequence[OrderTerm],
    page_size: int,
    page_token: str,
    fingerprint: bytes,
    secret: SecretStr | str | bytes,
    tiebreaker: Sequence[ColumnElement[Any] | QueryableAttribute[Any]] | None = None,
    ttl: timedelta | None = None,
    default_page_size: int = DEFAULT_PAGE_SIZE,
    max_page_size: int = MAX_PAGE_SIZE,
) -> Page[Any]:
    """Run one page of ``stmt`` with keyset pagination.

    ``stmt`` is the List query with its WHERE conditions (tenant, soft delete,
    filter); its own ORDER BY, LIMIT and OFFSET are replaced. ``order`` is the
    requested ordering (from :func:`cardinsa_foundation.filtering.parse_order_by`);
    the primary key of the statement's entity (or ``tiebreaker``) is appended so
    the order is total. ``page_size`` is the raw request value (normalised here),
    ``page_token`` the raw request token ("" for the first page), ``fingerprint``
    from :func:`query_fingerprint`, ``secret`` the ``page_token_secret`` setting.

    Items are what the statement selects: the entity (or value) for a statement
    with a single column/entity, otherwise the whole row (with the sort keys
    appended as ``_cardinsa_k<i>`` columns).
    """
    size = normalize_page_size(page_size, default=default_page_size, maximum=max_page_size)
    descriptions = stmt.column_descriptions
    terms = _complete_order(stmt, order, tiebreaker, descriptions)
    shape = _order_shape(terms)
    cursor = (
        decode_page_token(
            page_token,
            fingerprint=fingerprint,
            secret=secret,
            shape=shape,
            expected_length=len(terms),
        )
        if page_token
        else None
    )
    plan = _Plan(stmt, terms)
    nkeys = len(terms)
    rows: list[Any] = []
    if cursor is None:
        rows.extend((await session.execute(plan.first(size + 1))).all())
    else:
        regions = plan.regions(cursor.position)
        if cursor.region >= len(regions):
            raise _invalid_token()
        for region in regions[cursor.region :]:
            query = plan.base.where(region.condition()).limit(size + 1 - len(rows))
            rows.extend((await session.execute(query)).all())
            if len(rows) > size:
                break

    single = len(descriptions) == 1
    items = [row[0] if single else row for row in rows[:size]]
    next_token = ""
    if len(rows) > size:
        last_keys = tuple(rows[size - 1][-nkeys:])
        following = tuple(rows[size][-nkeys:])
        next_token = encode_page_token(
            last_keys,
            fingerprint=fingerprint,
            secret=secret,
            shape=shape,
            region=_region_of(_regions(terms, last_keys), following),
            ttl=ttl,
        )
    return Page(items, next_token)
