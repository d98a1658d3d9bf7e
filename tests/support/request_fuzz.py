"""Hostile requests for any RPC, generated from its protobuf descriptor (hypothesis).

Nothing here knows a Cardinsa method: :func:`message_strategy` walks the request
message's descriptor and draws a value for every field it decides to set --
strings (random unicode, NUL, control and bidi characters, SQL and template
payloads, UUID-like and not, up to 64 KiB), integers at the type's boundaries,
booleans, known and unknown enum numbers, nested messages, repeated and map
fields (empty, a few, hundreds), and the well-known types at their limits
(Timestamp at year 1 and 9999 and beyond, negative nanos; Duration; FieldMask
with real, nested and made-up paths; google.type.Date and Money with invalid
parts; Struct). :class:`Hints` feeds in what only the test knows -- ids that
exist, emails of real accounts, plausible values per field name -- so part of
the examples gets past validation and reaches the database.

Adding an RPC to a proto adds it to every suite that iterates the descriptors
(:func:`rpc_methods`): the core service joins by listing its service
descriptors, with no code per method.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.api import annotations_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message
from hypothesis import strategies as st

from cardinsa.common.v1 import common_pb2

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT32_MAX, UINT64_MAX = 2**32 - 1, 2**64 - 1

# Timestamp/Duration limits of the protobuf spec (0001-01-01 .. 9999-12-31).
TIMESTAMP_MIN_SECONDS = -62_135_596_800
TIMESTAMP_MAX_SECONDS = 253_402_300_799
DURATION_MAX_SECONDS = 315_576_000_000

# The length of the longest strings the generator sends (the "very long" case).
LONG_STRING = 64 * 1024

# Strings that have broken parsers, databases and templates somewhere.
HOSTILE_STRINGS: tuple[str, ...] = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x00" * 16,
    "\t\r\n\x0b\x0c",
    "\x1b[31mred\x1b[0m",
    "\u202eevil\u202c",  # right-to-left override
    "\ufeff",  # byte order mark
    "\u200b",  # zero-width space
    "\uffff\ufffe",
    "\U0010ffff",
    "🙂👩‍👩‍👧‍👦🏳️‍🌈",
    "ﬃ İ ß Ω≈ç√ ｆｕｌｌ",  # noqa: RUF001 - confusable letters on purpose
    "ḁ̸̡̛̗̙͍̘̻̘̼̓͋͐͛̾͑̇̈́ͅ",
    "'",
    '"',
    "\\",
    "' OR '1'='1",
    "x' OR '1'='1' --",
    '" OR ""="',
    "'; DROP TABLE users; --",
    "1; SELECT pg_sleep(10)",
    "$$; DROP TABLE users; $$",
    "%",
    "_",
    "%s%s%n%x",
    "{{7*7}}${7*7}",
    "${jndi:ldap://127.0.0.1/a}",
    "<script>alert(1)</script>",
    "../../../../etc/passwd",
    "C:\\Windows\\system32",
    "null",
    "None",
    "undefined",
    "NaN",
    "Infinity",
    "-0",
    "-1",
    "0x7fffffff",
    "99999999999999999999999999999999",
    "1e309",
    "true",
    "*",
    "**",
    "()",
    "((((",
    "a" * 255,
    "a" * 256,
)

# Shapes that look like (or almost like) a UUID.
UUID_LIKE: tuple[str, ...] = (
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
    "00000000000000000000000000000000",
    "{00000000-0000-0000-0000-000000000000}",
    "urn:uuid:00000000-0000-0000-0000-000000000000",
    "00000000-0000-0000-0000-00000000000",
    "00000000-0000-0000-0000-0000000000000",
    "0000000g-0000-0000-0000-000000000000",
    " 00000000-0000-0000-0000-000000000000",
    "00000000-0000-0000-0000-000000000000\x00",
)


def _uuid_shapes() -> st.SearchStrategy[str]:
    real = st.uuids().map(str)
    return st.one_of(
        real,
        real.map(str.upper),
        real.map(lambda u: u.replace("-", "")),
        real.map(lambda u: "{" + u + "}"),
        real.map(lambda u: u[:-1]),
        st.sampled_from(UUID_LIKE),
    )


def long_strings(max_length: int = LONG_STRING) -> st.SearchStrategy[str]:
    """Very long strings, built by repetition (hypothesis cannot draw 64 KiB cheaply)."""
    lengths = sorted({n for n in (257, 1025, 4097, 16_385, max_length) if n <= max_length})
    pieces = st.sampled_from(["a", "é", "🙂", "\x00", "'", "(", "%", "ab\u202e", "\\"])
    return st.tuples(pieces, st.sampled_from(lengths)).map(lambda t: (t[0] * t[1])[: t[1]])


def hostile_text() -> st.SearchStrategy[str]:
    """Any string: random unicode (no surrogates: protobuf strings are UTF-8),
    the hostile list, UUID shapes and very long ones."""
    return st.one_of(
        st.text(max_size=40),
        st.text(alphabet=st.characters(codec="utf-8", min_codepoint=0), max_size=12),
        st.sampled_from(HOSTILE_STRINGS),
        _uuid_shapes(),
        long_strings(),
    )


# --------------------------------------------------------------------- filter


FILTER_OPERATORS = ("=", "!=", "<", "<=", ">", ">=", ":")
FILTER_FIELD_GUESSES = (
    "email",
    "display_name",
    "name",
    "state",
    "create_time",
    "update_time",
    "company_id",
    "id",
    "action",
    "entity_id",
    "country",
    "given_name",
    "user.email",
    "password_hash",
    "__class__",
)

# Filters written to break out of the filter language into SQL, or to exhaust
# the parser. None of them may match a row that does not literally contain the
# payload: the answer is INVALID_ARGUMENT or an empty page.
FILTER_INJECTIONS: tuple[str, ...] = (
    "email = \"x' OR '1'='1\"",
    'email = "x\' OR 1=1 --"',
    "email = 'x' OR '1'='1'",
    "email = x' OR '1'='1",
    'email = "x"; DROP TABLE users; --',
    '"; DROP TABLE users; --',
    "'; DROP TABLE users; --",
    'email = "\\"; DROP TABLE users; --"',
    "display_name = \"a') OR ('1'='1\"",
    "state = ACTIVE OR 1 = 1",
    "state = ACTIVE) OR (1=1",
    "1 = 1",
    "1=1",
    "TRUE",
    "true",
    "email = $$x$$",
    'email = "x" UNION SELECT password_hash FROM identity.users',
    'email = "x" OR email = (SELECT email FROM identity.users LIMIT 1)',
    'email = "\\u0000"',
    'email = "a\x00b"',
    'email\x00 = "a"',
    'create_time > "1970-01-01T00:00:00Z"; SELECT pg_sleep(10)',
    'create_time > "0000-00-00T00:00:00Z"',
    'create_time > "99999-01-01T00:00:00Z"',
    'create_time > "2024-13-45T25:61:61Z"',
    "id = \"00000000-0000-0000-0000-000000000000' OR '1'='1\"",
    'email = "x" AND AND',
    'email = "unterminated',
    'email ~ "x"',
    'lower(email) = "x"',
    "email = email",
    ",",
    "(" * 64 + 'email = "x"' + ")" * 64,
    "(" * 10_000,
    ")" * 10_000,
    " OR ".join(['email = "x"'] * 60),
    'email = "' + "x" * 100_000 + '"',
    "e" * 100_000,
)

# Valid-or-not filters that stress the parser and may legitimately match rows.
FILTER_STRESS: tuple[str, ...] = (
    'NOT NOT NOT NOT email = "x"',
    '-(-(-(email = "x")))',
    "id = 00000000-0000-0000-0000-000000000000 OR id != 00000000-0000-0000-0000-000000000000",
    'company_id = "*"',
    "email = *",
    "email:*",
    'create_time > "9999-12-31T23:59:59.999999999+23:59"',
    'create_time < "0001-01-01T00:00:00Z"',
    'display_name = "%"',
    'display_name = "_"',
    'display_name:"%_\\\\"',
    "state = null",
)

ORDER_BY_INJECTIONS: tuple[str, ...] = (
    "email; DROP TABLE users",
    "email; DROP TABLE users; --",
    "email desc; SELECT pg_sleep(10)",
    "(SELECT 1)",
    "1",
    "email asc asc",
    "email desc, email",
    "email, , email",
    'email collate "C"',
    "email nulls first",
    "case when 1=1 then email else id end",
    "password_hash",
    "email\x00",
    "\u202eemail",
    ",".join(["email"] * 500),
    "email " * 20_000,
)


def filter_strategy(fields: Sequence[str] = FILTER_FIELD_GUESSES) -> st.SearchStrategy[str]:
    """AIP-160-shaped filters with hostile values, plus the injection list."""
    names = st.sampled_from(tuple(fields) or FILTER_FIELD_GUESSES)
    values = st.one_of(
        st.sampled_from(HOSTILE_STRINGS).map(lambda s: '"' + s.replace('"', '\\"') + '"'),
        st.text(max_size=20).map(lambda s: '"' + s + '"'),
        st.text(alphabet=string.ascii_letters + string.digits + "-_.*", max_size=12),
        st.sampled_from(
            [
                "ACTIVE",
                "null",
                "true",
                "*",
                "42",
                "-1",
                "2024-01-01",
                '"2024-01-31T00:00:00Z"',
                '"not a time"',
                str(INT64_MAX) + "0",
            ]
        ),
        _uuid_shapes(),
    )
    comparison = st.builds(
        lambda n, op, v: f"{n} {op} {v}", names, st.sampled_from(FILTER_OPERATORS), values
    )
    expression = st.recursive(
        comparison,
        lambda inner: st.one_of(
            st.builds(lambda a, b: f"{a} AND {b}", inner, inner),
            st.builds(lambda a, b: f"{a} OR {b}", inner, inner),
            st.builds(lambda a: f"NOT {a}", inner),
            st.builds(lambda a: f"({a})", inner),
            st.builds(lambda a: f"-({a})", inner),
        ),
        max_leaves=6,
    )
    return st.one_of(expression, st.sampled_from(FILTER_INJECTIONS + FILTER_STRESS), hostile_text())


def order_by_strategy(fields: Sequence[str] = FILTER_FIELD_GUESSES) -> st.SearchStrategy[str]:
    names = st.sampled_from(tuple(fields) or FILTER_FIELD_GUESSES)
    item = st.builds(
        lambda n, d: f"{n}{d}", names, st.sampled_from(["", " asc", " desc", " DESC", " up"])
    )
    return st.one_of(
        st.lists(item, min_size=1, max_size=4).map(", ".join),
        st.sampled_from(ORDER_BY_INJECTIONS),
        hostile_text(),
    )


# ---------------------------------------------------------------------- hints


@dataclass(frozen=True, repr=False)
class Hints:
    """What the test knows that the descriptors do not.

    ``ids`` maps an id key (``user_id``, ``company_id``; ``user.id`` counts as
    ``user_id``, see :func:`id_key`) to ids that exist; ``values`` maps a field
    name (``email``, ``country``, ``permissions``) to values worth trying. Both
    are mixed with hostile values, never used alone.
    """

    ids: Mapping[str, Sequence[str]] = field(default_factory=dict)
    values: Mapping[str, Sequence[Any]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Hints({len(self.ids)} id keys, {len(self.values)} field names)"


def id_key(path: Sequence[str], name: str) -> str:
    """``user.id`` → ``user_id``; ``role_binding.user_id`` → ``user_id``."""
    if name == "id" and path:
        return f"{path[-1]}_id"
    return name


def _string_strategy(fd: FieldDescriptor, path: Sequence[str], hints: Hints) -> Any:
    name = fd.name
    options: list[st.SearchStrategy[str]] = [hostile_text()]
    known = hints.values.get(name)
    if known:
        strategy = st.sampled_from(list(known))
        options += [strategy, strategy]  # weighted: get past validation more often
    if name == "id" or name.endswith("_id"):
        ids = list(hints.ids.get(id_key(path, name), ())) + list(hints.ids.get(name, ()))
        shapes = _uuid_shapes()
        options += [shapes, st.sampled_from(ids), st.sampled_from(ids)] if ids else [shapes]
    if name == "filter":
        options += [filter_strategy(), filter_strategy()]
    elif name == "order_by":
        options += [order_by_strategy(), order_by_strategy()]
    elif name.endswith("email"):
        local = st.text(alphabet=string.ascii_lowercase + string.digits + "._+-", max_size=20)
        options.append(local.map(lambda s: f"{s}@example.com"))
    return st.one_of(*options)


def _int_strategy(fd: FieldDescriptor) -> st.SearchStrategy[int]:
    t = fd.type
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        low, high = 0, UINT32_MAX
    elif t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        low, high = 0, UINT64_MAX
    elif t in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        low, high = INT64_MIN, INT64_MAX
    else:
        low, high = INT32_MIN, INT32_MAX
    edges = sorted(
        {v for v in (0, 1, -1, 2, 19, 20, 21, 100, 101, 1000, low, high) if low <= v <= high}
    )
    edges += [v for v in (low + 1, high - 1, high // 2) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _enum_strategy(fd: FieldDescriptor) -> st.SearchStrategy[int]:
    known = [v.number for v in fd.enum_type.values]
    unknown = [-1, max(known) + 1, 99, INT32_MAX, INT32_MIN]
    return st.sampled_from(known + unknown)


def _timestamp(cls: type[Message]) -> st.SearchStrategy[Message]:
    seconds = st.one_of(
        st.sampled_from(
            [
                0,
                -1,
                1,
                1_700_000_000,
                4_102_444_800,  # 2100
                TIMESTAMP_MIN_SECONDS,  # year 1
                TIMESTAMP_MIN_SECONDS - 1,
                TIMESTAMP_MAX_SECONDS,  # year 9999
                TIMESTAMP_MAX_SECONDS + 1,
                INT64_MIN,
                INT64_MAX,
            ]
        ),
        st.integers(TIMESTAMP_MIN_SECONDS, TIMESTAMP_MAX_SECONDS),
    )
    nanos = st.sampled_from([0, 1, 999_999_999, 1_000_000_000, -1, INT32_MIN, INT32_MAX])
    return st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, nanos)


def _duration(cls: type[Message]) -> st.SearchStrategy[Message]:
    seconds = st.sampled_from(
        [0, 1, -1, 60, DURATION_MAX_SECONDS, DURATION_MAX_SECONDS + 1, INT64_MIN, INT64_MAX]
    )
    nanos = st.sampled_from([0, 1, 999_999_999, 1_000_000_000, -1, -999_999_999, INT32_MIN])
    return st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, nanos)


def _date(cls: type[Message]) -> st.SearchStrategy[Message]:
    return st.builds(
        lambda y, m, d: cls(year=y, month=m, day=d),
        st.sampled_from([0, 1, 1970, 2024, 2025, 9999, 10_000, -1, INT32_MAX, INT32_MIN]),
        st.sampled_from([0, 1, 2, 12, 13, -1, INT32_MAX]),
        st.sampled_from([0, 1, 28, 29, 30, 31, 32, -1, INT32_MIN]),
    )


def _money(cls: type[Message], hints: Hints) -> st.SearchStrategy[Message]:
    currencies = ["EUR", "KES", "JPY", "BHD", "eur", "XXX", "XTS", "ABC", "EURO", "€", ""]
    currencies += [c for c in hints.values.get("currency_code", ()) if isinstance(c, str)]
    return st.builds(
        lambda c, u, n: cls(currency_code=c, units=u, nanos=n),
        st.one_of(st.sampled_from(currencies), hostile_text()),
        st.sampled_from([0, 1, -1, 100, 1_000_000, 10**15, INT64_MIN, INT64_MAX]),
        st.sampled_from(
            [0, 1, -1, 500_000_000, 999_999_999, -999_999_999, 1_000_000_000, INT32_MIN]
        ),
    )


def _field_mask(cls: type[Message], sibling_paths: Sequence[str]) -> st.SearchStrategy[Message]:
    path = st.one_of(
        st.sampled_from(list(sibling_paths) or ["id"]),
        st.sampled_from(
            [
                "*",
                "",
                "id",
                "etag",
                "state",
                "company_id",
                "create_time",
                "a.b.c",
                "..",
                ".",
                "password_hash",
            ]
        ),
        hostile_text(),
    )
    real = st.sampled_from(list(sibling_paths) or ["id"])
    return st.one_of(
        st.lists(real, min_size=1, max_size=2, unique=True),
        st.lists(path, max_size=6),
    ).map(lambda paths: cls(paths=paths))


def _json_value() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.sampled_from(HOSTILE_STRINGS),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=8,
    )


def _struct(cls: type[Message]) -> st.SearchStrategy[Message]:
    def build(values: dict[str, Any]) -> Message:
        message = cls()
        message.update(values)  # type: ignore[attr-defined]
        return message

    return st.dictionaries(st.text(max_size=12), _json_value(), max_size=4).map(build)


def _paths_of(descriptor: Descriptor, prefix: str = "", depth: int = 0) -> list[str]:
    """Field paths of a message (``contact.email``), for FieldMask examples."""
    paths: list[str] = []
    for fd in descriptor.fields:
        paths.append(prefix + fd.name)
        if (
            depth < 1
            and fd.type == FieldDescriptor.TYPE_MESSAGE
            and not fd.is_repeated
            and fd.message_type.full_name.startswith("cardinsa.")
        ):
            paths += _paths_of(fd.message_type, prefix + fd.name + ".", depth + 1)
    return paths


def _small(value: Any) -> bool:
    """Whether a value can be repeated hundreds of times and stay far below gRPC's
    4 MiB message limit (oversized messages are a separate attack)."""
    if isinstance(value, Message):
        return value.ByteSize() <= 256
    if isinstance(value, str | bytes):
        return len(value) <= 256
    return True


def _is_map(fd: FieldDescriptor) -> bool:
    return fd.type == FieldDescriptor.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry


class _Builder:
    def __init__(self, hints: Hints, max_depth: int) -> None:
        self.hints = hints
        self.max_depth = max_depth

    def message(
        self, descriptor: Descriptor, path: Sequence[str] = (), depth: int = 0
    ) -> st.SearchStrategy[Message]:
        cls = message_factory.GetMessageClass(descriptor)
        well_known = self._well_known(descriptor, cls, path)
        if well_known is not None:
            return well_known
        fields: dict[str, st.SearchStrategy[Any]] = {}
        for fd in descriptor.fields:
            strategy = self.field(fd, descriptor, path, depth)
            if strategy is not None:
                fields[fd.name] = strategy
        return st.fixed_dictionaries({}, optional=fields).map(lambda values: _build(cls, values))

    def _well_known(
        self, descriptor: Descriptor, cls: type[Message], path: Sequence[str]
    ) -> st.SearchStrategy[Message] | None:
        name = descriptor.full_name
        if name == "google.protobuf.Timestamp":
            return _timestamp(cls)
        if name == "google.protobuf.Duration":
            return _duration(cls)
        if name == "google.type.Date":
            return _date(cls)
        if name == "google.type.Money":
            return _money(cls, self.hints)
        if name == "google.protobuf.Struct":
            return _struct(cls)
        if name == "google.protobuf.Empty":
            return st.just(cls())
        if name in ("google.protobuf.Any", "google.protobuf.Value", "google.protobuf.ListValue"):
            return st.just(cls())
        return None

    def field(
        self, fd: FieldDescriptor, parent: Descriptor, path: Sequence[str], depth: int
    ) -> st.SearchStrategy[Any] | None:
        if _is_map(fd):
            key_fd = fd.message_type.fields_by_name["key"]
            value_fd = fd.message_type.fields_by_name["value"]
            key = self.scalar(key_fd, path)
            value = self.single(value_fd, parent, path, depth)
            if key is None or value is None:
                return None
            return st.one_of(
                st.dictionaries(key, value, max_size=3),
                st.tuples(key, value).map(
                    lambda kv: {f"{kv[0]}_{i}": kv[1] for i in range(100 if _small(kv[0]) else 2)}
                ),
            )
        single = self.single(fd, parent, path, depth)
        if single is None:
            return None
        if fd.is_repeated:
            return st.one_of(
                st.lists(single, max_size=3),
                single.map(lambda v: [v] * (300 if _small(v) else 2)),
            )
        return single

    def single(
        self, fd: FieldDescriptor, parent: Descriptor, path: Sequence[str], depth: int
    ) -> st.SearchStrategy[Any] | None:
        if fd.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
            if fd.message_type.full_name == "google.protobuf.FieldMask":
                siblings = [
                    p
                    for other in parent.fields
                    if other.type == FieldDescriptor.TYPE_MESSAGE
                    and other.message_type.full_name.startswith("cardinsa.")
                    for p in _paths_of(other.message_type)
                ]
                return _field_mask(message_factory.GetMessageClass(fd.message_type), siblings)
            if depth >= self.max_depth:
                return None
            return self.message(fd.message_type, [*path, fd.name], depth + 1)
        return self.scalar(fd, path)

    def scalar(self, fd: FieldDescriptor, path: Sequence[str]) -> st.SearchStrategy[Any] | None:
        t = fd.type
        known = self.hints.values.get(fd.name)
        if t == FieldDescriptor.TYPE_STRING:
            return _string_strategy(fd, path, self.hints)
        if t == FieldDescriptor.TYPE_BYTES:
            return st.one_of(st.binary(max_size=64), long_strings().map(str.encode))
        if t == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if t == FieldDescriptor.TYPE_ENUM:
            return _enum_strategy(fd)
        if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            width = 32 if t == FieldDescriptor.TYPE_FLOAT else 64
            return st.floats(width=width)
        ints = _int_strategy(fd)
        if known:
            return st.one_of(ints, st.sampled_from([k for k in known if isinstance(k, int)] or [0]))
        return ints


def _assign(message: Message, fd: FieldDescriptor, value: Any) -> None:
    if _is_map(fd):
        container = getattr(message, fd.name)
        value_fd = fd.message_type.fields_by_name["value"]
        for key, item in value.items():
            if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
                container[key].CopyFrom(item)
            else:
                container[key] = item
        return
    if fd.is_repeated:
        container = getattr(message, fd.name)
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value:
                container.add().CopyFrom(item)
        else:
            container.extend(value)
        return
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(message, fd.name).CopyFrom(value)
        return
    setattr(message, fd.name, value)


def _build(cls: type[Message], values: Mapping[str, Any]) -> Message:
    message = cls()
    by_name = message.DESCRIPTOR.fields_by_name
    for name, value in values.items():
        try:
            _assign(message, by_name[name], value)
        except (ValueError, TypeError):
            # A value the Python runtime itself refuses to put on the wire (an
            # unknown number of a closed enum): the server can never receive it.
            continue
    return message


# Generated requests stay below this size: gRPC's default receive limit is 4 MiB,
# and what exceeds it never reaches a handler (an attack of its own).
MAX_REQUEST_BYTES = 3 * 1024 * 1024


def message_strategy(
    descriptor: Descriptor, hints: Hints | None = None, *, max_depth: int = 3
) -> st.SearchStrategy[Message]:
    """Requests of type ``descriptor`` with any subset of fields set to hostile values
    (at most :data:`MAX_REQUEST_BYTES` serialized)."""
    return (
        _Builder(hints or Hints(), max_depth)
        .message(descriptor)
        .filter(lambda m: m.ByteSize() <= MAX_REQUEST_BYTES)
    )


# -------------------------------------------------------------- descriptors


def authorization_rule(method: MethodDescriptor) -> str:
    """``public``, ``authenticated``, ``permission`` or ``denied`` (no declaration)."""
    options = method.GetOptions()
    extension: Any = common_pb2.authorization
    if not options.HasExtension(extension):
        return "denied"
    return str(options.Extensions[extension].WhichOneof("rule"))


def required_permission(method: MethodDescriptor) -> str | None:
    options = method.GetOptions()
    extension: Any = common_pb2.authorization
    if not options.HasExtension(extension):
        return None
    rule = options.Extensions[extension]
    return str(rule.permission) if rule.WhichOneof("rule") == "permission" else None


def http_rule(method: MethodDescriptor) -> tuple[str, str]:
    """``(verb, path)`` of the method's google.api.http annotation."""
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    verb = rule.WhichOneof("pattern") or ""
    return verb, str(getattr(rule, verb)) if verb else ""


def is_read(method: MethodDescriptor) -> bool:
    """A method whose REST mapping is GET: it must never change stored data."""
    return http_rule(method)[0] == "get"


def is_standard_create(method: MethodDescriptor) -> bool:
    verb, path = http_rule(method)
    return verb == "post" and method.name.startswith("Create") and ":" not in path


#: Methods that end the caller's own session, and with it (a revocation, within
#: milliseconds) the token every later call of a suite sends: the suites that
#: call every RPC with one shared token leave them out. Their refusals are
#: tested where a token of its own is spent (test_attack_revoked_tokens).
#: Streaming methods (WatchRevocations) are left out too: these suites call
#: unary; the stream is tested in tests/integration/revocation.
SESSION_ENDING: frozenset[str] = frozenset({"cardinsa.identity.v1.AuthService.Logout"})


def rpc_methods(
    services: Iterable[ServiceDescriptor],
) -> list[tuple[ServiceDescriptor, MethodDescriptor]]:
    return [
        (service, method)
        for service in services
        for method in service.methods
        if method.full_name not in SESSION_ENDING
        and not (method.client_streaming or method.server_streaming)
    ]


def rpc_path(service: ServiceDescriptor, method: MethodDescriptor) -> str:
    return f"/{service.full_name}/{method.name}"


def string_field_paths(descriptor: Descriptor, prefix: Sequence[str] = ()) -> list[tuple[str, ...]]:
    """Every singular string field of a request, nested ones too (``("user", "email")``)."""
    found: list[tuple[str, ...]] = []
    for fd in descriptor.fields:
        if fd.is_repeated:
            continue
        if fd.type == FieldDescriptor.TYPE_STRING:
            found.append((*prefix, fd.name))
        elif fd.type == FieldDescriptor.TYPE_MESSAGE and fd.message_type.full_name.startswith(
            "cardinsa."
        ):
            found += string_field_paths(fd.message_type, (*prefix, fd.name))
    return found


def set_path(message: Message, path: Sequence[str], value: Any) -> None:
    target = message
    for name in path[:-1]:
        target = getattr(target, name)
    setattr(target, path[-1], value)


@dataclass
class CallResult:
    code: grpc.StatusCode
    response: Any = None
    error: grpc.aio.AioRpcError | None = None

    @property
    def details(self) -> str:
        return (self.error.details() or "") if self.error is not None else ""


async def call_rpc(
    channel: grpc.aio.Channel,
    service: ServiceDescriptor,
    method: MethodDescriptor,
    request: Message | bytes,
    *,
    metadata: Sequence[tuple[str, str]] = (),
    deadline_s: float = 30.0,
) -> CallResult:
    """Call any unary method by its descriptors; ``request`` may be raw bytes."""
    response_cls = message_factory.GetMessageClass(method.output_type)
    serializer: Callable[[Any], bytes] = (
        (lambda raw: raw) if isinstance(request, bytes) else (lambda m: m.SerializeToString())
    )
    stub = channel.unary_unary(
        rpc_path(service, method),
        request_serializer=serializer,
        response_deserializer=response_cls.FromString,
    )
    try:
        response = await stub(request, metadata=list(metadata), timeout=deadline_s)
    except grpc.aio.AioRpcError as error:
        return CallResult(error.code(), None, error)
    return CallResult(grpc.StatusCode.OK, response, None)
