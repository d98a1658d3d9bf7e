"""The ``filter`` (AIP-160 subset) and ``order_by`` (AIP-132) languages of every List.

Each List RPC declares a :class:`FilterSpec` -- the whitelist of public field
names it can filter on, each mapped to a column or SQL expression and a type --
and a mapping of the fields it can order by. :meth:`FilterSpec.parse` turns the
request's ``filter`` into a SQLAlchemy condition; :func:`parse_order_by` turns
``order_by`` into :class:`~cardinsa_foundation.paging.OrderTerm` s for
:func:`~cardinsa_foundation.paging.paginate`. Every value from the client
becomes a bound parameter; no SQL text is ever built from the input. Anything
that is not understood is INVALID_ARGUMENT with a field violation on ``filter``
(reason ``INVALID_FILTER``) or ``order_by`` (reason ``INVALID_ORDER_BY``) that
says what and where -- never silently ignored.

Filter syntax (a subset of AIP-160)
===================================

An empty filter matches everything. Otherwise::

    filter      = expression
    expression  = sequence { "AND" sequence }
    sequence    = factor { factor }              (juxtaposition means AND)
    factor      = term { "OR" term }
    term        = [ "NOT" | "-" ] simple
    simple      = comparison | "(" expression ")"
    comparison  = field operator value
    operator    = "=" | "!=" | "<" | "<=" | ">" | ">=" | ":"
    field       = name { "." name }              (one of the documented fields)
    value       = "double-quoted string" | bare word | number | true | false | null | *

* Precedence, as AIP-160 defines it: ``OR`` binds tighter than ``AND``, so
  ``a = 1 AND b = 2 OR c = 3`` means ``a = 1 AND (b = 2 OR c = 3)``. Juxtaposition
  is AND: ``a = 1 b = 2`` means ``a = 1 AND b = 2``. ``NOT`` and ``-`` negate the
  comparison or parenthesised expression that follows (``-`` directly, with no
  space: ``-state = ACTIVE``, ``-(a = 1 OR b = 2)``). Use parentheses to group.
* ``AND``, ``OR``, ``NOT`` are upper case; ``true``, ``false`` and ``null`` lower case.
* Strings are in double quotes, with the escapes ``\\"``, ``\\\\``, ``\\*``,
  ``\\n``, ``\\r``, ``\\t`` and ``\\uXXXX``; a value without spaces or the
  characters ``( ) " ' < > = ! : ,`` may also be written bare (``state = ACTIVE``,
  ``display_name = Acme``). Timestamps contain ``:`` and must be quoted.
* Types of the documented fields, and the values they take:

  - string: any string. ``=`` is an exact, case-sensitive match; a ``*`` at the
    start and/or end of the value (with ``=`` or ``!=``) matches a suffix /
    prefix / substring, case-sensitively (``display_name = "Acme*"``); escape it
    as ``\\*`` to match a literal asterisk. ``:`` ("has") is a case-insensitive
    substring match (``email:"@example.com"``). ``< <= > >=`` compare by the
    database collation.
  - integer, decimal: ``42``, ``-7``, ``12.50`` (no exponent); all comparisons.
  - boolean: ``true``/``false``; ``=`` and ``!=``.
  - timestamp: RFC 3339 with a time zone, quoted: ``create_time >=
    "2024-01-31T00:00:00Z"``; fractions beyond microseconds are truncated; all
    comparisons.
  - date: ``YYYY-MM-DD`` (``effective_date < 2025-01-01``); all comparisons.
  - uuid: the canonical 36-character form; ``=`` and ``!=``.
  - enum: one of the documented names (``state = ACTIVE``); ``=`` and ``!=``.

* ``null`` (bare) is accepted only for fields documented as nullable, only with
  ``=`` (is NULL) and ``!=`` (is not NULL). ``field:*`` means the field is set
  (not NULL).
* Every comparison is true or false, never unknown: a comparison with an unset
  (NULL) field is false, except ``!=``, which is true (the value differs). So
  ``NOT a = "x"`` and ``a != "x"`` always select the same rows.
* Limits: at most 2 000 characters, 50 comparisons and 10 levels of parentheses
  (each List may document other limits).
* Not supported (rejected with INVALID_ARGUMENT): bare values without a field
  (global search), functions, comparing two fields, ``:`` on non-string fields,
  ordering operators on booleans, uuids and enums, single quotes. Error
  descriptions name the problem and, where it has one, its position
  ("at character N", counted from 1).

Order syntax (AIP-132)
======================

``order_by`` is a comma-separated list of documented fields, each optionally
followed by ``asc`` (the default) or ``desc``: ``"create_time desc, display_name"``.
A field may appear once. An empty ``order_by`` gives the List's default order.
Rows with equal values keep a stable order (the id breaks ties), and NULLs sort
after every value in ascending order and before them in descending order.
"""

from __future__ import annotations

import enum
import functools
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NamedTuple, NoReturn, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    Select,
    SmallInteger,
    and_,
    literal,
    not_,
    or_,
    select,
)
from sqlalchemy.orm import QueryableAttribute

from cardinsa_foundation.errors import FieldViolation, InvalidArgument
from cardinsa_foundation.paging import OrderTerm

__all__ = [
    "FieldType",
    "FilterField",
    "FilterSpec",
    "parse_order_by",
]

INVALID_FILTER: Final = "INVALID_FILTER"
INVALID_ORDER_BY: Final = "INVALID_ORDER_BY"
DEFAULT_MAX_LENGTH: Final = 2000
DEFAULT_MAX_DEPTH: Final = 10
DEFAULT_MAX_TERMS: Final = 50
MAX_ORDER_BY_LENGTH: Final = 1000

ColumnLike = ColumnElement[Any] | QueryableAttribute[Any]


class FieldType(enum.StrEnum):
    """The type of a filterable field; it decides the accepted values and operators."""

    STRING = "string"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    DATE = "date"
    UUID = "uuid"
    ENUM = "enum"


_EQUALITY: Final = frozenset({"=", "!="})
_ORDERING: Final = frozenset({"=", "!=", "<", "<=", ">", ">="})
_OPERATORS: Final[dict[FieldType, frozenset[str]]] = {
    FieldType.STRING: _ORDERING | {":"},
    FieldType.INTEGER: _ORDERING,
    FieldType.DECIMAL: _ORDERING,
    FieldType.BOOLEAN: _EQUALITY,
    FieldType.TIMESTAMP: _ORDERING,
    FieldType.DATE: _ORDERING,
    FieldType.UUID: _EQUALITY,
    FieldType.ENUM: _EQUALITY,
}

_OPERATOR_ORDER: Final = ("=", "!=", "<", "<=", ">", ">=", ":")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_KEYWORDS: Final = frozenset({"AND", "OR", "NOT"})


def _column(column: ColumnLike) -> ColumnElement[Any]:
    if isinstance(column, ColumnElement):
        return column
    element = column.__clause_element__()
    if not isinstance(element, ColumnElement):  # pragma: no cover - relationships
        raise TypeError(f"{column!r} is not a column expression")
    return element


class FilterField:
    """One filterable field: its column (or SQL expression) and type.

    ``nullable`` (default: read from the column, true for other expressions)
    decides whether ``null`` is accepted and how NULLs take part in comparisons.
    For ``FieldType.ENUM``, ``values`` gives the accepted names: a Python enum
    class (names → members), a mapping of names to the values to bind, or an
    iterable of names bound as themselves.

    ``lookup`` makes a string field exact-match only (``=`` and ``!=``, no
    wildcard, no ``:``): the value is passed through it and compared with the
    column, e.g. a keyed hash of a value that is stored only encrypted.
    """

    __slots__ = ("column", "lookup", "nullable", "operators", "type", "values")

    def __init__(
        self,
        column: ColumnLike,
        type_: FieldType,
        *,
        nullable: bool | None = None,
        values: type[enum.Enum] | Mapping[str, Any] | Iterable[str] | None = None,
        lookup: Callable[[str], Any] | None = None,
    ) -> None:
        self.column: ColumnElement[Any] = _column(column)
        self.type = FieldType(type_)
        if lookup is not None and self.type is not FieldType.STRING:
            raise ValueError("lookup= is only for string fields")
        self.lookup = lookup
        if nullable is None:
            declared = getattr(self.column, "nullable", None)
            nullable = declared if isinstance(declared, bool) else True
        self.nullable: bool = nullable
        self.operators: frozenset[str] = _EQUALITY if lookup else _OPERATORS[self.type]
        self.values: dict[str, Any] = {}
        if self.type is FieldType.ENUM:
            if values is None:
                raise ValueError("an enum filter field needs values=")
            if isinstance(values, type) and issubclass(values, enum.Enum):
                self.values = {member.name: member for member in values}
            elif isinstance(values, Mapping):
                self.values = dict(values)
            else:
                self.values = {name: name for name in values}
            if not self.values:
                raise ValueError("an enum filter field needs at least one value")
        elif values is not None:
            raise ValueError("values= is only for enum fields")

    def describe(self) -> str:
        text = self.type.value
        if self.type is FieldType.ENUM:
            text += " (" + ", ".join(self.values) + ")"
        return text + (", nullable" if self.nullable else "")


# --------------------------------------------------------------------------- errors


def _snippet(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _FilterError(Exception):
    def __init__(self, description: str, position: int | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.position = position

    def to_invalid_argument(self) -> InvalidArgument:
        description = self.description
        metadata: dict[str, str] = {}
        if self.position is not None:
            description += f" (at character {self.position + 1})"
            metadata["position"] = str(self.position + 1)
        return InvalidArgument(
            f"Invalid filter: {description}.",
            reason=INVALID_FILTER,
            metadata=metadata,
            field_violations=[FieldViolation("filter", description)],
        )


def _fail(description: str, position: int | None = None) -> NoReturn:
    raise _FilterError(description, position)


# --------------------------------------------------------------------------- lexer


class _Tok(NamedTuple):
    kind: str  # WORD, STRING, OP, LPAREN, RPAREN, EOF
    text: str  # the word / operator, or the decoded string
    pos: int  # 0-based offset of the first character
    end: int  # offset just after the token
    stars: frozenset[int] = frozenset()  # STRING: offsets of unescaped '*' in text


_WORD = re.compile(r"""[^\s()"'<>=!:,]+""")
_OPERATOR = re.compile(r"<=|>=|!=|=|<|>|:")
_SPACE = re.compile(r"\s+")
_SIMPLE_ESCAPES: Final = {'"': '"', "\\": "\\", "*": "*", "n": "\n", "r": "\r", "t": "\t"}
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")


def _lex_string(text: str, start: int) -> _Tok:
    """A double-quoted string starting at ``start`` (the opening quote)."""
    out: list[str] = []
    stars: set[int] = set()
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            return _Tok("STRING", "".join(out), start, i + 1, frozenset(stars))
        if ch == "\\":
            if i + 1 >= n:
                break
            esc = text[i + 1]
            if esc == "u":
                digits = text[i + 2 : i + 6]
                if not _HEX4.fullmatch(digits):
                    _fail("\\u must be followed by four hexadecimal digits", i)
                code = int(digits, 16)
                if code == 0 or 0xD800 <= code <= 0xDFFF:
                    _fail(f"\\u{digits} is not an allowed character", i)
                out.append(chr(code))
                i += 6
                continue
            if esc not in _SIMPLE_ESCAPES:
                _fail(f"unknown escape \\{esc} in a string", i)
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
            continue
        if ch == "\x00":
            _fail("a string must not contain a NUL character", i)
        if ch == "*":
            stars.add(len(out))
        out.append(ch)
        i += 1
    _fail("unterminated string", start)


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            m = _SPACE.match(text, i)
            assert m is not None
            i = m.end()
            continue
        if ch == "(":
            tokens.append(_Tok("LPAREN", ch, i, i + 1))
            i += 1
        elif ch == ")":
            tokens.append(_Tok("RPAREN", ch, i, i + 1))
            i += 1
        elif ch == '"':
            tok = _lex_string(text, i)
            tokens.append(tok)
            i = tok.end
        elif m := _OPERATOR.match(text, i):
            tokens.append(_Tok("OP", m.group(), i, m.end()))
            i = m.end()
        elif m := _WORD.match(text, i):
            if "\x00" in m.group():
                _fail("the filter must not contain a NUL character", i)
            tokens.append(_Tok("WORD", m.group(), i, m.end()))
            i = m.end()
        elif ch == "'":
            _fail("strings must be in double quotes", i)
        elif ch == ",":
            _fail("unexpected ',' (functions are not supported)", i)
        else:
            _fail(f"unexpected character {ch!r}", i)
    tokens.append(_Tok("EOF", "", n, n))
    return tokens


# --------------------------------------------------------------------------- values


_INT = re.compile(r"[+-]?[0-9]+")
_DEC = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RFC3339 = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]"
    r"(?P<h>[0-9]{2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2})(?:\.(?P<frac>[0-9]{1,9}))?"
    r"(?P<tz>[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


def _integer_range(column: ColumnElement[Any]) -> tuple[int, int]:
    if isinstance(column.type, SmallInteger):
        return -(2**15), 2**15 - 1
    if isinstance(column.type, BigInteger) or not isinstance(column.type, Integer):
        return -(2**63), 2**63 - 1
    return -(2**31), 2**31 - 1


def _parse_timestamp(text: str) -> datetime:
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(text)
    frac = (m["frac"] or "").ljust(6, "0")[:6]
    tz_text = m["tz"]
    if tz_text in ("Z", "z"):
        tz: timezone = UTC
    else:
        sign = -1 if tz_text[0] == "-" else 1
        hours, minutes = int(tz_text[1:3]), int(tz_text[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(text)
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    day = date.fromisoformat(m["date"])
    return datetime(
        day.year, day.month, day.day, int(m["h"]), int(m["m"]), int(m["s"]), int(frac), tzinfo=tz
    )


# --------------------------------------------------------------------------- parser


class _Parser:
    __slots__ = ("depth", "i", "spec", "terms", "tokens")

    def __init__(self, spec: FilterSpec, tokens: list[_Tok]) -> None:
        self.spec = spec
        self.tokens = tokens
        self.i = 0
        self.terms = 0
        self.depth = 0

    # -- token helpers
    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def advance(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    @staticmethod
    def describe(tok: _Tok) -> str:
        if tok.kind == "EOF":
            return "the end of the filter"
        if tok.kind == "STRING":
            return f'the string "{_snippet(tok.text)}"'
        return f"'{_snippet(tok.text)}'"

    def starts_term(self, tok: _Tok) -> bool:
        return tok.kind == "LPAREN" or (tok.kind == "WORD" and tok.text not in ("AND", "OR"))

    # -- grammar
    def parse(self) -> ColumnElement[bool]:
        condition = self.expression()
        tok = self.peek()
        if tok.kind != "EOF":
            if tok.kind == "RPAREN":
                _fail("unbalanced ')'", tok.pos)
            _fail(f"unexpected {self.describe(tok)}", tok.pos)
        return condition

    def expression(self) -> ColumnElement[bool]:
        parts = [self.sequence()]
        while self.peek().kind == "WORD" and self.peek().text == "AND":
            self.advance()
            parts.append(self.sequence())
        return parts[0] if len(parts) == 1 else and_(*parts)

    def sequence(self) -> ColumnElement[bool]:
        parts = [self.factor()]
        while self.starts_term(self.peek()):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else and_(*parts)

    def factor(self) -> ColumnElement[bool]:
        parts = [self.term()]
        while self.peek().kind == "WORD" and self.peek().text == "OR":
            self.advance()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else or_(*parts)

    def term(self) -> ColumnElement[bool]:
        tok = self.peek()
        if tok.kind == "WORD" and tok.text == "NOT":
            self.advance()
            nxt = self.peek()
            if not (nxt.kind == "LPAREN" or (nxt.kind == "WORD" and nxt.text not in _KEYWORDS)):
                _fail(
                    f"expected a comparison or '(' after NOT, found {self.describe(nxt)}", nxt.pos
                )
            return not_(self.simple())
        if tok.kind == "WORD" and tok.text.startswith("-"):
            rest = tok.text[1:]
            if rest:
                # "-field": split the negation from the field name.
                self.tokens[self.i] = _Tok("WORD", rest, tok.pos + 1, tok.end)
            else:
                self.advance()
                nxt = self.peek()
                if nxt.kind != "LPAREN" or nxt.pos != tok.end:
                    _fail("'-' must be directly followed by a field or '('", tok.pos)
            return not_(self.simple())
        return self.simple()

    def simple(self) -> ColumnElement[bool]:
        tok = self.peek()
        if tok.kind == "LPAREN":
            self.advance()
            self.depth += 1
            if self.depth > self.spec.max_depth:
                _fail(f"parentheses nested deeper than {self.spec.max_depth} levels", tok.pos)
            if self.peek().kind == "RPAREN":
                _fail("empty parentheses", self.peek().pos)
            inner = self.expression()
            close = self.peek()
            if close.kind != "RPAREN":
                _fail(f"missing ')' for the '(' at character {tok.pos + 1}", close.pos)
            self.advance()
            self.depth -= 1
            return inner
        return self.comparison()

    def comparison(self) -> ColumnElement[bool]:
        tok = self.advance()
        if tok.kind != "WORD" or tok.text in _KEYWORDS:
            _fail(f"expected a field name, found {self.describe(tok)}", tok.pos)
        name = tok.text
        if not _FIELD_NAME.fullmatch(name):
            _fail(
                f"'{_snippet(name)}' is not a field name (a bare value without a field "
                "is not supported; write field = value)",
                tok.pos,
            )
        if self.peek().kind == "LPAREN":
            _fail("functions are not supported", self.peek().pos)
        field = self.spec.fields.get(name)
        if field is None:
            _fail(
                f"unknown field '{_snippet(name)}'; the fields you can filter on are "
                + ", ".join(sorted(self.spec.fields)),
                tok.pos,
            )
        op_tok = self.advance()
        if op_tok.kind != "OP":
            _fail(
                f"expected an operator (= != < <= > >= :) after '{name}', "
                f"found {self.describe(op_tok)}",
                op_tok.pos,
            )
        value = self.advance()
        if value.kind not in ("WORD", "STRING") or (
            value.kind == "WORD" and value.text in _KEYWORDS
        ):
            _fail(
                f"expected a value after '{name} {op_tok.text}', found {self.describe(value)}",
                value.pos,
            )
        self.terms += 1
        if self.terms > self.spec.max_terms:
            _fail(f"more than {self.spec.max_terms} comparisons", tok.pos)
        return _compare(name, field, op_tok, value)


# --------------------------------------------------------------------------- semantics


def _bind(field: FilterField, value: Any) -> ColumnElement[Any]:
    return literal(value, field.column.type)


def _positive(field: FilterField, condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """Make a comparison false (not unknown) when the field is NULL."""
    return and_(field.column.is_not(None), condition) if field.nullable else condition


def _negative(field: FilterField, condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """The complement of ``_positive(condition)``: true when the field is NULL."""
    return not_(_positive(field, condition))


def _compare(name: str, field: FilterField, op_tok: _Tok, value: _Tok) -> ColumnElement[bool]:
    op, col = op_tok.text, field.column
    text, bare = value.text, value.kind == "WORD"
    where = value.pos

    if bare and text == "null":
        if not field.nullable:
            _fail(f"field '{name}' is never null", where)
        if op not in _EQUALITY:
            _fail("null can only be compared with = or !=", op_tok.pos)
        return col.is_(None) if op == "=" else col.is_not(None)

    if op == ":" and bare and text == "*":
        return col.is_not(None)  # presence: field:*
    if op not in field.operators:
        if field.lookup is not None:
            _fail(f"field '{name}' can only be matched exactly (= or !=)", op_tok.pos)
        if op == ":":
            _fail(
                f"':' (has) is only supported on string fields; '{name}' is "
                f"{field.type.value}, use = instead",
                op_tok.pos,
            )
        _fail(
            f"operator '{op}' is not supported for {field.type.value} field '{name}' "
            f"(use {' '.join(op for op in _OPERATOR_ORDER if op in field.operators)})",
            op_tok.pos,
        )

    stars = frozenset(i for i, ch in enumerate(text) if ch == "*") if bare else value.stars

    if field.type is FieldType.STRING:
        return _compare_string(name, field, op, text, stars=stars, where=where)
    if stars:
        _fail(f"'*' is only a wildcard for string fields; '{name}' is {field.type.value}", where)

    bound: Any
    match field.type:
        case FieldType.INTEGER:
            if not _INT.fullmatch(text):
                _fail(f"'{_snippet(text)}' is not an integer (field '{name}')", where)
            bound = int(text)
            low, high = _integer_range(col)
            if not low <= bound <= high:
                _fail(f"{_snippet(text)} is out of range for field '{name}'", where)
        case FieldType.DECIMAL:
            if not _DEC.fullmatch(text):
                _fail(f"'{_snippet(text)}' is not a decimal number (field '{name}')", where)
            try:
                bound = Decimal(text)
            except InvalidOperation:  # pragma: no cover - the regex guards it
                _fail(f"'{_snippet(text)}' is not a decimal number (field '{name}')", where)
        case FieldType.BOOLEAN:
            if text not in ("true", "false"):
                _fail(f"field '{name}' takes true or false, not '{_snippet(text)}'", where)
            bound = text == "true"
        case FieldType.TIMESTAMP:
            try:
                bound = _parse_timestamp(text)
                if isinstance(col.type, DateTime) and not col.type.timezone:
                    bound = bound.astimezone(UTC).replace(tzinfo=None)  # naive UTC column
            except ValueError:
                _fail(
                    f"'{_snippet(text)}' is not an RFC 3339 timestamp with a time zone, "
                    f"e.g. \"2024-01-31T09:30:00Z\" (field '{name}')",
                    where,
                )
        case FieldType.DATE:
            try:
                if not _DATE.fullmatch(text):
                    raise ValueError(text)
                bound = date.fromisoformat(text)
            except ValueError:
                _fail(f"'{_snippet(text)}' is not a date YYYY-MM-DD (field '{name}')", where)
        case FieldType.UUID:
            if not _UUID.fullmatch(text):
                _fail(f"'{_snippet(text)}' is not a UUID (field '{name}')", where)
            bound = uuid.UUID(text)
        case FieldType.ENUM:
            if text not in field.values:
                _fail(
                    f"'{_snippet(text)}' is not a value of field '{name}'; "
                    "use one of " + ", ".join(field.values),
                    where,
                )
            bound = field.values[text]
        case _:  # pragma: no cover - exhaustive
            raise AssertionError(field.type)
    return _apply(field, op, _bind(field, bound))


def _apply(field: FilterField, op: str, rhs: ColumnElement[Any]) -> ColumnElement[bool]:
    col = field.column
    match op:
        case "=":
            return _positive(field, col == rhs)
        case "!=":
            return col.is_distinct_from(rhs) if field.nullable else col != rhs
        case "<":
            return _positive(field, col < rhs)
        case "<=":
            return _positive(field, col <= rhs)
        case ">":
            return _positive(field, col > rhs)
        case ">=":
            return _positive(field, col >= rhs)
    raise AssertionError(op)  # pragma: no cover


def _compare_string(
    name: str, field: FilterField, op: str, text: str, *, stars: frozenset[int], where: int
) -> ColumnElement[bool]:
    col = field.column
    if field.lookup is not None:
        if stars:
            _fail(f"field '{name}' can only be matched exactly (no '*' wildcard)", where)
        return _apply(field, op, _bind(field, field.lookup(text)))
    if op == ":":
        # Has: case-insensitive substring; '*' is literal here except for field:*.
        return _positive(field, col.icontains(text, autoescape=True))
    if not stars:
        return _apply(field, op, _bind(field, text))
    if op not in _EQUALITY:
        _fail(f"a '*' wildcard is only allowed with = and != (field '{name}')", where)
    last = len(text) - 1
    if not stars <= {0, last}:
        _fail(
            "'*' is a wildcard only at the start or end of the value; "
            "escape a literal asterisk as \\*",
            where,
        )
    leading, trailing = 0 in stars, last in stars
    core = text[int(leading) : len(text) - int(trailing)]  # "*" alone: leading and trailing
    if leading and trailing:
        like = col.contains(core, autoescape=True)
    elif leading:
        like = col.endswith(core, autoescape=True)
    else:
        like = col.startswith(core, autoescape=True)
    return _positive(field, like) if op == "=" else _negative(field, like)


# --------------------------------------------------------------------------- spec


class FilterSpec:
    """The filterable fields of one List RPC and the filter language over them.

    ``fields`` maps public field names (as written in ``filter``, e.g.
    ``display_name``, ``create_time``, ``owner.email``) to :class:`FilterField`.
    Valid filters are cached (``cache_size`` most recent), since a client sends
    the same filter for every page.
    """

    __slots__ = ("_cached", "fields", "max_depth", "max_length", "max_terms")

    def __init__(
        self,
        fields: Mapping[str, FilterField],
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_terms: int = DEFAULT_MAX_TERMS,
        cache_size: int = 256,
    ) -> None:
        for name in fields:
            if not _FIELD_NAME.fullmatch(name) or name in _KEYWORDS or name in ("true", "false"):
                raise ValueError(f"{name!r} cannot be a filter field name")
        self.fields: dict[str, FilterField] = dict(fields)
        self.max_length = max_length
        self.max_depth = max_depth
        self.max_terms = max_terms
        self._cached = functools.lru_cache(maxsize=cache_size)(self._parse)

    def parse(self, filter: str) -> ColumnElement[bool] | None:
        """The SQL condition for ``filter``, or None when it is empty (match all).

        Raises INVALID_ARGUMENT (``filter``, reason ``INVALID_FILTER``) with a
        precise description -- and the character position for syntax errors --
        for anything outside the documented language (see the module docs).
        """
        if not filter or filter.isspace():
            return None
        if len(filter) > self.max_length:
            raise _FilterError(f"longer than {self.max_length} characters").to_invalid_argument()
        try:
            return self._cached(filter)
        except _FilterError as error:
            raise error.to_invalid_argument() from None

    def _parse(self, text: str) -> ColumnElement[bool]:
        return _Parser(self, _tokenize(text)).parse()

    def describe(self) -> str:
        """One line per field (``name: type``), for the proto comments."""
        return "\n".join(f"{name}: {field.describe()}" for name, field in self.fields.items())


# --------------------------------------------------------------------------- order_by


def _order_error(description: str) -> InvalidArgument:
    return InvalidArgument(
        f"Invalid order_by: {description}.",
        reason=INVALID_ORDER_BY,
        field_violations=[FieldViolation("order_by", description)],
    )


def parse_order_by(
    order_by: str,
    allowed: Mapping[str, ColumnLike | OrderTerm],
    *,
    default: Sequence[OrderTerm] = (),
) -> list[OrderTerm]:
    """Parse an AIP-132 ``order_by`` (``"create_time desc, display_name"``).

    ``allowed`` maps the documented field names to columns (or to an
    :class:`OrderTerm` whose column and nullability are used, for expressions).
    An empty ``order_by`` returns ``default``. An unknown or repeated field, a
    direction other than ``asc``/``desc`` or an empty item is INVALID_ARGUMENT on
    ``order_by`` (reason ``INVALID_ORDER_BY``).
    """
    if not order_by or order_by.isspace():
        return list(default)
    if len(order_by) > MAX_ORDER_BY_LENGTH:
        raise _order_error(f"longer than {MAX_ORDER_BY_LENGTH} characters")
    terms: list[OrderTerm] = []
    seen: set[str] = set()
    for index, item in enumerate(order_by.split(","), start=1):
        words = item.split()
        if not words:
            raise _order_error(f"item {index} is empty")
        name = words[0]
        if name not in allowed:
            raise _order_error(
                f"cannot order by '{_snippet(name)}'; the fields you can order by are "
                + ", ".join(sorted(allowed))
            )
        if name in seen:
            raise _order_error(f"'{name}' appears more than once")
        seen.add(name)
        if len(words) == 1:
            descending = False
        elif len(words) == 2 and words[1].lower() in ("asc", "desc"):
            descending = words[1].lower() == "desc"
        else:
            raise _order_error(
                f"after '{name}' expected asc, desc, ',' or the end, "
                f"found '{_snippet(' '.join(words[1:]))}'"
            )
        target = allowed[name]
        if isinstance(target, OrderTerm):
            terms.append(OrderTerm(target.column, descending, nullable=target.nullable, name=name))
        else:
            terms.append(OrderTerm(target, descending, name=name))
    return terms


_Model = TypeVar("_Model")


def tenant_list_query(
    model: type[_Model],
    company_id: Any,
    *,
    spec: FilterSpec,
    filter: str,
    show_deleted: bool,
) -> Select[_Model]:
    """The SELECT of a standard List over a tenant-owned, soft-deletable model:
    the company's rows, deleted ones only with ``show_deleted``, narrowed by the
    parsed ``filter`` (INVALID_ARGUMENT for anything outside the language)."""
    condition = spec.parse(filter)
    columns: Any = model  # a mapped class with company_id and delete_time
    stmt = select(model).where(columns.company_id == company_id)
    if not show_deleted:
        stmt = stmt.where(columns.delete_time.is_(None))
    if condition is not None:
        stmt = stmt.where(condition)
    return stmt
