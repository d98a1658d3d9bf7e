"""The AIP-160 filter subset and AIP-132 order_by, checked on the PostgreSQL SQL they produce."""

from __future__ import annotations

import enum
import re
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Date,
    DateTime,
    Enum,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Uuid,
    func,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cardinsa_foundation.errors import InvalidArgument
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec, parse_order_by
from cardinsa_foundation.paging import OrderTerm


class State(enum.Enum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


metadata = MetaData()
t = Table(
    "t",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String, nullable=False),
    Column("email", String, nullable=True),
    Column("n", Integer, nullable=False),
    Column("big", BigInteger, nullable=False),
    Column("small", SmallInteger, nullable=False),
    Column("amount", Numeric(12, 2), nullable=False),
    Column("flag", Boolean, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("local_time", DateTime(timezone=False), nullable=False),
    Column("day", Date, nullable=True),
    Column("state", Enum(State), nullable=False),
    Column("kind", String, nullable=False),
)

SPEC = FilterSpec(
    {
        "id": FilterField(t.c.id, FieldType.UUID),
        "display_name": FilterField(t.c.name, FieldType.STRING),
        "email": FilterField(t.c.email, FieldType.STRING),
        "n": FilterField(t.c.n, FieldType.INTEGER),
        "big": FilterField(t.c.big, FieldType.INTEGER),
        "small": FilterField(t.c.small, FieldType.INTEGER),
        "amount": FilterField(t.c.amount, FieldType.DECIMAL),
        "flag": FilterField(t.c.flag, FieldType.BOOLEAN),
        "create_time": FilterField(t.c.create_time, FieldType.TIMESTAMP),
        "local_time": FilterField(t.c.local_time, FieldType.TIMESTAMP),
        "day": FilterField(t.c.day, FieldType.DATE),
        "state": FilterField(t.c.state, FieldType.ENUM, values=State),
        "kind": FilterField(t.c.kind, FieldType.ENUM, values=["PERSON", "ORGANISATION"]),
        "owner.email": FilterField(func.lower(t.c.email), FieldType.STRING, nullable=False),
    }
)

PG = postgresql.dialect()  # type: ignore[no-untyped-call]
_PARAM = re.compile(
    r"%\((\w+)\)s(?:::(?:TIMESTAMP WITH(?:OUT)? TIME ZONE|NUMERIC\(\d+, \d+\)|[A-Z]+))?"
)


def render(condition: ColumnElement[bool] | None) -> str:
    """PostgreSQL SQL of a condition with each bound parameter shown as ``[repr]``."""
    assert condition is not None
    compiled = condition.compile(dialect=PG)
    params = compiled.params
    return _PARAM.sub(lambda m: f"[{params[m.group(1)]!r}]", str(compiled)).replace("%%", "%")


def sql(text: str) -> str:
    return render(SPEC.parse(text))


def error(text: str, spec: FilterSpec = SPEC) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        spec.parse(text)
    err = caught.value
    assert err.reason == "INVALID_FILTER"
    assert len(err.field_violations) == 1
    assert err.field_violations[0].field == "filter"
    assert err.field_violations[0].description in err.message
    return err


def description(text: str) -> str:
    return error(text).field_violations[0].description


# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize("text", ["", " ", "\t\n  "])
def test_empty_filter_matches_everything(text: str) -> None:
    assert SPEC.parse(text) is None


@pytest.mark.parametrize(
    ("op", "sql_op"), [("=", "="), ("!=", "!="), ("<", "<"), ("<=", "<="), (">", ">"), (">=", ">=")]
)
def test_every_comparison_operator_on_integers(op: str, sql_op: str) -> None:
    assert sql(f"n {op} 5") == f"t.n {sql_op} [5]"
    assert sql(f"n{op}5") == f"t.n {sql_op} [5]"  # spaces are optional


@pytest.mark.parametrize(("op", "sql_op"), [("<", "<"), ("<=", "<="), (">", ">"), (">=", ">=")])
def test_ordering_operators_on_strings(op: str, sql_op: str) -> None:
    assert sql(f'display_name {op} "m"') == f"t.name {sql_op} ['m']"


def test_string_equality_is_exact() -> None:
    assert sql('display_name = "Acme Ltd"') == "t.name = ['Acme Ltd']"
    assert sql('display_name != "Acme"') == "t.name != ['Acme']"
    assert sql("display_name = Acme") == "t.name = ['Acme']"  # bare word


def test_has_is_a_case_insensitive_substring_with_like_characters_escaped() -> None:
    assert sql('display_name:"50%_off"') == ("t.name ILIKE '%' || ['50/%/_off'] || '%' ESCAPE '/'")
    assert sql("display_name : acme") == "t.name ILIKE '%' || ['acme'] || '%' ESCAPE '/'"


def test_has_star_means_present() -> None:
    assert sql("email:*") == "t.email IS NOT NULL"
    # a quoted "*" is a literal asterisk for ':'
    assert sql('display_name:"*"') == "t.name ILIKE '%' || ['*'] || '%' ESCAPE '/'"


# --------------------------------------------------------------------------- precedence


def test_or_binds_tighter_than_and() -> None:
    # AIP-160: a AND b OR c means a AND (b OR c)
    assert sql("n = 1 AND n = 2 OR n = 3") == "t.n = [1] AND (t.n = [2] OR t.n = [3])"
    assert sql("n = 1 OR n = 2 AND n = 3") == "(t.n = [1] OR t.n = [2]) AND t.n = [3]"


def test_juxtaposition_means_and() -> None:
    assert sql("n = 1 n = 2") == "t.n = [1] AND t.n = [2]"
    assert sql("n = 1 n = 2 OR n = 3") == "t.n = [1] AND (t.n = [2] OR t.n = [3])"
    assert sql("n = 1 AND n = 2 n = 3") == "t.n = [1] AND t.n = [2] AND t.n = [3]"


def test_parentheses_group() -> None:
    assert sql("(n = 1 AND n = 2) OR n = 3") == "t.n = [1] AND t.n = [2] OR t.n = [3]"
    assert sql("((n = 1))") == "t.n = [1]"
    assert sql("(n = 1 OR n = 2) (n = 3 OR n = 4)") == (
        "(t.n = [1] OR t.n = [2]) AND (t.n = [3] OR t.n = [4])"
    )


def test_not_negates_only_the_next_term() -> None:
    assert sql("NOT n = 1 AND n = 2") == "t.n != [1] AND t.n = [2]"
    assert sql("NOT (n = 1 OR n = 2)") == "NOT (t.n = [1] OR t.n = [2])"
    assert sql("NOT n = 1 OR n = 2") == "t.n != [1] OR t.n = [2]"
    assert sql("NOT(n = 1)") == "t.n != [1]"


def test_minus_prefix_negates() -> None:
    assert sql("-n = 1") == "t.n != [1]"
    assert sql("-(n = 1 OR n = 2)") == "NOT (t.n = [1] OR t.n = [2])"
    assert sql('n = 1 -display_name:"x"') == (
        "t.n = [1] AND (t.name NOT ILIKE '%' || ['x'] || '%' ESCAPE '/')"
    )


def test_negative_number_value_is_not_a_negation() -> None:
    assert sql("n > -5") == "t.n > [-5]"
    assert sql("n=-5") == "t.n = [-5]"


# --------------------------------------------------------------------------- strings


def test_string_escapes() -> None:
    assert sql(r'display_name = "say \"hi\""') == """t.name = ['say "hi"']"""
    assert sql(r'display_name = "back\\slash"') == r"t.name = ['back\\slash']"
    assert sql(r'display_name = "a\nb\tc\rd"') == r"t.name = ['a\nb\tc\rd']"
    assert sql(r'display_name = "caf\u00e9"') == "t.name = ['café']"
    assert sql(r'display_name = "star\*"') == "t.name = ['star*']"
    assert sql('display_name = "ünïcödé ✓"') == "t.name = ['ünïcödé ✓']"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r'display_name = "a\qb"', r"unknown escape \q in a string (at character 18)"),
        (r'display_name = "\u12"', r"\u must be followed by four hexadecimal digits"),
        (r'display_name = "\u0000"', r"\u0000 is not an allowed character"),
        (r'display_name = "\ud800"', r"\ud800 is not an allowed character"),
        ('display_name = "open', "unterminated string (at character 16)"),
        ('display_name = "ends with backslash\\', "unterminated string"),
        ('display_name = "nul\x00"', "a string must not contain a NUL character"),
        ("display_name = nul\x00", "must not contain a NUL character"),
        ("display_name = 'single'", "strings must be in double quotes (at character 16)"),
    ],
)
def test_string_errors(text: str, expected: str) -> None:
    assert expected in description(text)


def test_wildcards_for_equality() -> None:
    assert sql('display_name = "Acme*"') == "t.name LIKE ['Acme'] || '%' ESCAPE '/'"
    assert sql('display_name = "*Ltd"') == "t.name LIKE '%' || ['Ltd'] ESCAPE '/'"
    assert sql('display_name = "*cm*"') == "t.name LIKE '%' || ['cm'] || '%' ESCAPE '/'"
    assert sql("display_name = Ac*") == "t.name LIKE ['Ac'] || '%' ESCAPE '/'"
    assert sql('display_name != "Acme*"') == "t.name NOT LIKE ['Acme'] || '%' ESCAPE '/'"
    assert sql('display_name = "*"') == "t.name LIKE '%' || [''] || '%' ESCAPE '/'"
    # LIKE metacharacters in the value are escaped, an escaped star is literal
    assert sql(r'display_name = "100%\**"') == "t.name LIKE ['100/%*'] || '%' ESCAPE '/'"


def test_wildcard_misuse_is_rejected() -> None:
    assert "only at the start or end" in description('display_name = "a*b"')
    assert "only allowed with = and !=" in description('display_name < "a*"')
    assert "only a wildcard for string fields" in description("n = 1*")


def test_values_are_always_bound_parameters() -> None:
    hostile = "x' OR 1=1; DROP TABLE t; --"
    condition = SPEC.parse(f'display_name = "{hostile}" OR email:"{hostile}"')
    assert condition is not None
    compiled = condition.compile(dialect=PG)
    assert "DROP" not in str(compiled)
    assert "1=1" not in str(compiled)
    assert sorted(compiled.params.values()) == [hostile, hostile]


# --------------------------------------------------------------------------- types


def test_integer_values_and_ranges() -> None:
    assert sql("n = +7") == "t.n = [7]"
    assert sql('n = "7"') == "t.n = [7]"  # quoted numbers are accepted
    assert sql(f"n = {2**31 - 1}") == f"t.n = [{2**31 - 1}]"
    assert "out of range" in description(f"n = {2**31}")
    assert sql(f"big = {2**63 - 1}") == f"t.big = [{2**63 - 1}]"
    assert "out of range" in description(f"big = {2**63}")
    assert "out of range" in description("small < 40000")
    assert "'1.5' is not an integer (field 'n')" in description("n = 1.5")
    assert "'abc' is not an integer" in description("n = abc")


def test_decimal_values() -> None:
    assert sql("amount >= 12.50") == "t.amount >= [Decimal('12.50')]"
    assert sql("amount < -0.5") == "t.amount < [Decimal('-0.5')]"
    assert sql("amount = 3") == "t.amount = [Decimal('3')]"
    for bad in ("1e5", "NaN", "Infinity", "1.2.3", "abc"):
        assert "is not a decimal number" in description(f"amount = {bad}")


def test_boolean_values() -> None:
    assert sql("flag = true") == "t.flag = [True]"
    assert sql("flag != false") == "t.flag != [False]"
    assert "takes true or false" in description("flag = TRUE")
    assert "takes true or false" in description("flag = 1")
    assert "operator '<' is not supported for boolean field 'flag'" in description("flag < true")


def test_timestamps_are_rfc3339_with_a_zone() -> None:
    utc = datetime(2024, 1, 31, 9, 30, tzinfo=UTC)
    assert sql('create_time >= "2024-01-31T09:30:00Z"') == f"t.create_time >= [{utc!r}]"
    plus2 = datetime(2024, 1, 31, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    assert sql('create_time < "2024-01-31t09:30:00+02:00"') == f"t.create_time < [{plus2!r}]"
    frac = datetime(2024, 1, 31, 9, 30, 0, 123456, tzinfo=UTC)
    assert sql('create_time > "2024-01-31T09:30:00.123456789Z"') == f"t.create_time > [{frac!r}]"
    # a naive (timestamp without time zone) column gets the instant in naive UTC
    naive = datetime(2024, 1, 31, 7, 30)
    assert sql('local_time = "2024-01-31T09:30:00+02:00"') == f"t.local_time = [{naive!r}]"


@pytest.mark.parametrize(
    "value",
    [
        '"2024-01-31T09:30:00"',  # no zone
        '"2024-01-31 09:30:00Z"',  # space instead of T
        '"2024-02-30T09:30:00Z"',  # no such day
        '"2024-01-31T24:00:00Z"',
        '"2024-01-31T09:30:60Z"',
        '"2024-01-31T09:30:00+25:00"',
        '"yesterday"',
        "2024-01-31",
        '"2024-01-31T09:30:00.Z"',
    ],
)
def test_bad_timestamps(value: str) -> None:
    assert "is not an RFC 3339 timestamp with a time zone" in description(f"create_time > {value}")


def test_dates() -> None:
    assert sql("day < 2025-01-01") == f"t.day IS NOT NULL AND t.day < [{date(2025, 1, 1)!r}]"
    assert sql('day = "2025-01-01"').endswith(f"t.day = [{date(2025, 1, 1)!r}]")
    for bad in ("20250101", "2025-13-01", "2025-1-1", '"2025-01-01T00:00:00Z"'):
        assert "is not a date YYYY-MM-DD" in description(f"day = {bad}")


def test_uuids() -> None:
    value = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")
    assert sql(f"id = {value}") == f"t.id = [{value!r}]"
    assert sql(f'id != "{str(value).upper()}"') == f"t.id != [{value!r}]"
    for bad in ("123", value.hex, f"{{{value}}}", f"urn:uuid:{value}"):
        assert "is not a UUID" in description(f'id = "{bad}"')
    assert "operator '>' is not supported for uuid field 'id'" in description(f"id > {value}")


def test_enums_by_name() -> None:
    assert sql("state = ACTIVE") == "t.state = [<State.ACTIVE: 'active'>]"
    assert sql('state != "SUSPENDED"') == "t.state != [<State.SUSPENDED: 'suspended'>]"
    assert sql("kind = PERSON") == "t.kind = ['PERSON']"
    assert description("state = active") == (
        "'active' is not a value of field 'state'; use one of ACTIVE, SUSPENDED (at character 9)"
    )
    assert "operator '<' is not supported for enum field 'state' (use = !=)" in description(
        "state < ACTIVE"
    )


def test_has_is_only_for_strings() -> None:
    assert "':' (has) is only supported on string fields; 'n' is integer" in description("n:1")


def test_expression_fields() -> None:
    assert sql('owner.email = "a@b.c"') == "lower(t.email) = ['a@b.c']"


# --------------------------------------------------------------------------- null


def test_null_only_for_nullable_fields_and_equality() -> None:
    assert sql("email = null") == "t.email IS NULL"
    assert sql("email != null") == "t.email IS NOT NULL"
    assert description("display_name = null") == (
        "field 'display_name' is never null (at character 16)"
    )
    assert "null can only be compared with = or !=" in description("email < null")
    assert sql('email = "null"') == "t.email IS NOT NULL AND t.email = ['null']"  # quoted: text


def test_comparisons_on_nullable_fields_are_two_valued() -> None:
    # NULL never satisfies a comparison, except !=; NOT is then an exact complement.
    assert sql('email = "a"') == "t.email IS NOT NULL AND t.email = ['a']"
    assert sql('email != "a"') == "t.email IS DISTINCT FROM ['a']"
    assert sql('NOT email = "a"') == "NOT (t.email IS NOT NULL AND t.email = ['a'])"
    assert sql('email = "a*"') == "t.email IS NOT NULL AND (t.email LIKE ['a'] || '%' ESCAPE '/')"
    assert sql('email != "a*"') == (
        "NOT (t.email IS NOT NULL AND (t.email LIKE ['a'] || '%' ESCAPE '/'))"
    )


# --------------------------------------------------------------------------- syntax errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nope = 1", "unknown field 'nope'; the fields you can filter on are amount, big, "),
        ("n", "expected an operator (= != < <= > >= :) after 'n', found the end of the filter"),
        ("n 5", "expected an operator (= != < <= > >= :) after 'n', found '5' (at character 3)"),
        ("n =", "expected a value after 'n =', found the end of the filter (at character 4)"),
        ("n = AND", "expected a value after 'n =', found 'AND' (at character 5)"),
        ("n = (1)", "expected a value after 'n =', found '(' (at character 5)"),
        ("(n = 1", "missing ')' for the '(' at character 1 (at character 7)"),
        ("n = 1)", "unbalanced ')' (at character 6)"),
        ("()", "empty parentheses (at character 2)"),
        ("n = 1 AND", "expected a field name, found the end of the filter (at character 10)"),
        ("AND n = 1", "expected a field name, found 'AND' (at character 1)"),
        ("n = 1 OR OR n = 2", "expected a field name, found 'OR' (at character 10)"),
        ('"acme"', 'expected a field name, found the string "acme" (at character 1)'),
        ("acme*", "'acme*' is not a field name (a bare value without a field is not supported"),
        ("42", "'42' is not a field name"),
        ("n = 1 = 2", "unexpected '=' (at character 7)"),
        ("NOT NOT n = 1", "expected a comparison or '(' after NOT, found 'NOT'"),
        ("- n = 1", "'-' must be directly followed by a field or '(' (at character 1)"),
        ("n ! 1", "unexpected character '!' (at character 3)"),
        ("has(n)", "functions are not supported (at character 4)"),
        ("has(n, 1)", "unexpected ',' (functions are not supported) (at character 6)"),
        ("n = 1, n = 2", "unexpected ',' (functions are not supported) (at character 6)"),
        ("n = 1 and n = 2", "unknown field 'and'"),  # keywords are upper case
    ],
)
def test_syntax_errors_say_what_and_where(text: str, expected: str) -> None:
    assert expected in description(text)


def test_error_metadata_carries_the_position() -> None:
    err = error("n = 1 AND")
    assert err.metadata == {"position": "10"}
    assert err.message == (
        "Invalid filter: expected a field name, found the end of the filter (at character 10)."
    )


def test_long_input_is_truncated_in_messages() -> None:
    name = "x" * 500
    desc = description(f"{name} = 1")
    assert len(desc) < 300
    assert "xxx…" in desc


# --------------------------------------------------------------------------- limits


def test_max_length() -> None:
    text = " OR ".join(["n = 1"] * 222) + " n = 1"  # 2 000 characters
    assert len(text) == 2000
    small = FilterSpec({"n": FilterField(t.c.n, FieldType.INTEGER)}, max_terms=1000)
    assert small.parse(text) is not None
    err = error(text + " ", small)
    assert err.field_violations[0].description == "longer than 2000 characters"


def test_max_terms() -> None:
    assert SPEC.parse(" ".join(["n = 1"] * 50)) is not None
    assert "more than 50 comparisons" in description(" ".join(["n = 1"] * 51))


def test_max_depth() -> None:
    assert SPEC.parse("(" * 10 + "n = 1" + ")" * 10) is not None
    assert "parentheses nested deeper than 10 levels (at character 11)" in description(
        "(" * 11 + "n = 1" + ")" * 11
    )
    assert "nested deeper" in description("-(" * 11 + "n = 1" + ")" * 11)


def test_custom_limits() -> None:
    spec = FilterSpec(
        {"n": FilterField(t.c.n, FieldType.INTEGER)}, max_length=20, max_depth=1, max_terms=2
    )
    assert (
        error("n = 1 n = 2 n = 3", spec)
        .field_violations[0]
        .description.startswith("more than 2 comparisons")
    )
    assert "deeper than 1" in error("((n = 1))", spec).message
    assert "longer than 20" in error("n = 1 OR n = 2 OR n = 3", spec).message


# --------------------------------------------------------------------------- spec


def test_orm_attributes_and_caching() -> None:
    class Base(DeclarativeBase):
        pass

    class Thing(Base):
        __tablename__ = "things"
        id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
        label: Mapped[str | None]

    spec = FilterSpec({"label": FilterField(Thing.label, FieldType.STRING)})
    assert spec.fields["label"].nullable is True
    first = spec.parse('label = "a"')
    assert first is spec.parse('label = "a"')  # cached: pages repeat the filter
    assert render(first) == "things.label IS NOT NULL AND things.label = ['a']"
    for _ in range(2):  # invalid filters are not cached and fail every time
        with pytest.raises(InvalidArgument):
            spec.parse("label = ")


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="cannot be a filter field name"):
        FilterSpec({"AND": FilterField(t.c.n, FieldType.INTEGER)})
    with pytest.raises(ValueError, match="cannot be a filter field name"):
        FilterSpec({"bad name": FilterField(t.c.n, FieldType.INTEGER)})
    with pytest.raises(ValueError, match="needs values"):
        FilterField(t.c.state, FieldType.ENUM)
    with pytest.raises(ValueError, match="only for enum fields"):
        FilterField(t.c.n, FieldType.INTEGER, values=["A"])


def test_enum_values_as_mapping() -> None:
    spec = FilterSpec({"s": FilterField(t.c.kind, FieldType.ENUM, values={"PERSON": "p"})})
    assert render(spec.parse("s = PERSON")) == "t.kind = ['p']"


def test_describe_lists_fields_for_the_proto_comments() -> None:
    lines = SPEC.describe().splitlines()
    assert "state: enum (ACTIVE, SUSPENDED)" in lines
    assert "email: string, nullable" in lines
    assert "create_time: timestamp" in lines


# --------------------------------------------------------------------------- order_by

ORDER_FIELDS: dict[str, Any] = {
    "display_name": t.c.name,
    "create_time": t.c.create_time,
    "email": t.c.email,
    "name_ci": OrderTerm(func.lower(t.c.name), nullable=False),
}


def order_error(text: str) -> str:
    with pytest.raises(InvalidArgument) as caught:
        parse_order_by(text, ORDER_FIELDS)
    err = caught.value
    assert err.reason == "INVALID_ORDER_BY"
    assert [v.field for v in err.field_violations] == ["order_by"]
    return err.field_violations[0].description


def test_order_by_fields_and_directions() -> None:
    terms = parse_order_by("create_time desc, display_name", ORDER_FIELDS)
    assert [(term.name, term.descending) for term in terms] == [
        ("create_time", True),
        ("display_name", False),
    ]
    assert terms[0].column is t.c.create_time
    assert terms[0].nullable is False
    terms = parse_order_by("  email   ASC ,display_name DESC ", ORDER_FIELDS)
    assert [(term.name, term.descending, term.nullable) for term in terms] == [
        ("email", False, True),
        ("display_name", True, False),
    ]


def test_order_by_expression_templates_keep_their_nullability() -> None:
    (term,) = parse_order_by("name_ci desc", ORDER_FIELDS)
    assert term.nullable is False
    assert term.descending is True
    assert str(term.column.compile(dialect=PG)) == "lower(t.name)"


def test_order_by_empty_gives_the_default() -> None:
    default = [OrderTerm(t.c.create_time, True)]
    assert parse_order_by("", ORDER_FIELDS, default=default) == default
    assert parse_order_by("   ", ORDER_FIELDS, default=default) == default
    assert parse_order_by("", ORDER_FIELDS) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nope", "cannot order by 'nope'; the fields you can order by are create_time, "),
        ("display_name, display_name desc", "'display_name' appears more than once"),
        ("display_name descending", "after 'display_name' expected asc, desc, ',' or the end"),
        ("display_name desc asc", "found 'desc asc'"),
        ("display_name,", "item 2 is empty"),
        (",display_name", "item 1 is empty"),
        ("display_name create_time", "found 'create_time'"),
        ("x" * 1001, "longer than 1000 characters"),
    ],
)
def test_order_by_errors(text: str, expected: str) -> None:
    assert expected in order_error(text)
