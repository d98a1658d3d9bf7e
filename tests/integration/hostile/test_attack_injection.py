"""Attack suite: SQL and filter-language injection through ``filter`` and ``order_by``.

Every List RPC that takes a ``filter`` (found in the descriptors) gets the
injection list of support/request_fuzz.py plus payloads built for each of its
own filterable fields (the server names them when refusing an unknown one).
Answers must be INVALID_ARGUMENT or an empty page -- never INTERNAL, never slow
(``pg_sleep`` would show), never SQL or driver text in the message -- and
afterwards every table still exists and no row changed.
"""

from __future__ import annotations

import grpc
import pytest
from hostile_attacks import AttackLog
from hostile_harness import (
    TARGET_SPECS,
    Database,
    ServiceTarget,
    Tenants,
    changed,
    discover_fields,
    list_methods,
    own_request,
    repeated_items,
)
from support.request_fuzz import FILTER_INJECTIONS, ORDER_BY_INJECTIONS, call_rpc

TARGETS = [spec.name for spec in TARGET_SPECS]
# Text that would mean the database's or the driver's words reached the client.
LEAK_MARKERS = (
    "SELECT ",
    "INSERT ",
    "syntax error",
    "asyncpg",
    "sqlalchemy",
    "psycopg",
    "Traceback",
    'relation "',
    "SQLSTATE",
    "sqlstate",
    "pg_catalog",
)
# Fast enough that a payload's pg_sleep(10) would be caught.
CALL_TIMEOUT_S = 5.0


def _per_field(field: str) -> list[str]:
    return [
        f"{field} = \"x' OR '1'='1\"",
        f'{field} = "\'; DROP TABLE users; --"',
        f'{field} = "\\"); DROP TABLE users; --"',
        f'{field}:"\' OR 1=1 --"',
        f"{field} = \"*' OR '1'='1*\"",
        f'{field} = "a\\u0000b"',
        f'{field} = "%%%"',
        f'{field}:"_%_%_"',
        f"{field} = 1; DROP TABLE users",
        f"{field} = ' OR 1=1 --",
        f"{field} = \"x\" OR {field} = \"y' OR '1'='1\"",
        f'{field} = "\u202e\' OR 1=1"',
    ]


def _leaks(details: str, payload: str) -> list[str]:
    return [m for m in LEAK_MARKERS if m in details and m not in payload]


@pytest.fixture(params=TARGETS)
def target(
    request: pytest.FixtureRequest, hostile_targets: dict[str, ServiceTarget]
) -> ServiceTarget:
    return hostile_targets[request.param]


@pytest.fixture
def all_schemas(hostile_targets: dict[str, ServiceTarget]) -> list[str]:
    return sorted({s for t in hostile_targets.values() for s in t.schemas})


async def test_attack_sql_injection_through_filter_is_refused_or_matches_nothing(
    target: ServiceTarget,
    tenants: Tenants,
    hostile_db: Database,
    all_schemas: list[str],
    attacks: AttackLog,
) -> None:
    attacker = tenants.attacker
    lists = list_methods(target.services)
    if not lists:
        pytest.skip(f"{target.name} has no List RPC with a filter")
    tables = await hostile_db.existing_tables(all_schemas)
    before = await hostile_db.fingerprint(target.schemas, target.volatile_tables)
    sent = 0
    tried = f"{target.name}: {', '.join(m.name for _, m in lists)}"
    with attacks.attempt(
        "SQL injection via filter (quotes, UNION, NUL, 100 KB, 10 000 parens)", tried
    ):
        for service, method in lists:
            fields = await discover_fields(target.channel, service, method, attacker, "filter")
            payloads = list(FILTER_INJECTIONS) + [p for f in fields for p in _per_field(f)]
            for payload in payloads:
                request = own_request(method, attacker, filter=payload)
                answer = await call_rpc(
                    target.channel,
                    service,
                    method,
                    request,
                    metadata=attacker.bearer,
                    deadline_s=CALL_TIMEOUT_S,
                )
                sent += 1
                assert answer.code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), (
                    f"{method.name} filter={payload[:120]!r}: {answer.code.name} {answer.details!r}"
                )
                if answer.response is not None:
                    rows = repeated_items(answer.response)
                    assert not rows, (
                        f"{method.name} filter={payload[:120]!r} matched {len(rows)} rows"
                    )
                assert not _leaks(answer.details, payload), (
                    method.name,
                    payload[:80],
                    answer.details,
                )
        assert await hostile_db.existing_tables(all_schemas) == tables
        after = await hostile_db.fingerprint(target.schemas, target.volatile_tables)
        assert not changed(before, after), f"a filter changed rows: {changed(before, after)}"
    assert sent > len(FILTER_INJECTIONS)


async def test_attack_sql_injection_through_order_by_is_invalid_argument(
    target: ServiceTarget,
    tenants: Tenants,
    hostile_db: Database,
    all_schemas: list[str],
    attacks: AttackLog,
) -> None:
    attacker = tenants.attacker
    lists = [
        (s, m)
        for s in target.services
        for m in s.methods
        if "order_by" in m.input_type.fields_by_name
    ]
    if not lists:
        pytest.skip(f"{target.name} has no List RPC with an order_by")
    tables = await hostile_db.existing_tables(all_schemas)
    before = await hostile_db.fingerprint(target.schemas, target.volatile_tables)
    tried = f"{target.name}: {', '.join(m.name for _, m in lists)}"
    with attacks.attempt(
        "SQL injection via order_by (; DROP TABLE, subqueries, collate, 20 KB)", tried
    ):
        for service, method in lists:
            fields = await discover_fields(target.channel, service, method, attacker, "order_by")
            control = await call_rpc(
                target.channel,
                service,
                method,
                own_request(method, attacker, order_by=f"{fields[0]} desc"),
                metadata=attacker.bearer,
            )
            assert control.code is grpc.StatusCode.OK, (method.name, control)
            payloads = list(ORDER_BY_INJECTIONS) + [
                p
                for f in fields
                for p in (
                    f"{f}; DROP TABLE users",
                    f"{f} desc; SELECT pg_sleep(10)",
                    f"{f} desc nulls first",
                    f"{f}, (SELECT 1)",
                    f"{f} desc, {f}",
                    f'"{f}"',
                    f"{f}\x00",
                )
            ]
            for payload in payloads:
                request = own_request(method, attacker, order_by=payload)
                answer = await call_rpc(
                    target.channel,
                    service,
                    method,
                    request,
                    metadata=attacker.bearer,
                    deadline_s=CALL_TIMEOUT_S,
                )
                assert answer.code is grpc.StatusCode.INVALID_ARGUMENT, (
                    f"{method.name} order_by={payload[:120]!r}: "
                    f"{answer.code.name} {answer.details!r}"
                )
                assert not _leaks(answer.details, payload), (
                    method.name,
                    payload[:80],
                    answer.details,
                )
        assert await hostile_db.existing_tables(all_schemas) == tables
        after = await hostile_db.fingerprint(target.schemas, target.volatile_tables)
        assert not changed(before, after), f"an order_by changed rows: {changed(before, after)}"
