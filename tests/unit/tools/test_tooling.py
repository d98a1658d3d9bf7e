"""cardinsa_tools without a suite: the seed's named parameters and the launcher's ports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cardinsa_tools.bench import seed_sql
from cardinsa_tools.launcher import SuitePorts, suite_environment
from cardinsa_tools.procfs import port_is_free


def test_named_parameters_become_asyncpg_positions_in_order_of_first_use() -> None:
    sql, args = seed_sql.named(
        "SELECT :b::int, :a::uuid::text, :b, time '08:05', 'system:bench-seed'",
        {"a": "A", "b": 2, "unused": 0},
    )
    assert sql == "SELECT $1::int, $2::uuid::text, $1, time '08:05', 'system:bench-seed'"
    assert args == [2, "A"]


def test_a_name_without_a_value_is_refused() -> None:
    with pytest.raises(KeyError, match=":missing"):
        seed_sql.named("SELECT :missing::int", {})


def test_every_seed_statement_binds_only_the_bulk_copy_values() -> None:
    values = dict.fromkeys(
        (
            "company",
            "policy_first",
            "policy_copies",
            "policy_total",
            "spacing",
            "claim_first",
            "claim_copies",
            "in_force",
            "claim",
            "holder",
        ),
        0,
    )
    used: set[str] = set()
    for statement in seed_sql.BULK_COPY:
        sql, args = seed_sql.named(statement, values)
        numbers = {int(n) for n in re.findall(r"\$(\d+)", sql)}
        assert numbers == set(range(1, len(args) + 1)), sql
        used |= {name for name in values if f":{name}" in statement}
    assert used == set(values)


def test_the_quoted_top_up_binds_only_its_values() -> None:
    values = dict.fromkeys(("company", "count", "quoted", "domain"), 0)
    used: set[str] = set()
    for statement in (*seed_sql.QUOTED_TOP_UP, seed_sql.QUOTED, seed_sql.QUOTED_REDATE):
        sql, args = seed_sql.named(statement, values)
        numbers = {int(n) for n in re.findall(r"\$(\d+)", sql)}
        assert numbers == set(range(1, len(args) + 1)), sql
        used |= {name for name in values if f":{name}" in statement}
    assert used == set(values)


def test_free_ports_are_distinct_free_and_leave_room_for_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ports = SuitePorts.free(workers=2, step=100, gateway_metrics=False)
    assert ports.gateway_metrics == 0 and "gateway_metrics" not in ports.all()
    taken = [
        port + worker * 100
        for name, port in ports.all().items()
        for worker in range(2 if name.split("_")[0] in {"identity", "company", "core"} else 1)
    ]
    assert len(set(taken)) == len(taken)
    assert all(port_is_free(port) for port in taken)
    # The caller's own settings never reach the suite.
    monkeypatch.setenv("CARDINSA_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("CARDINSA_SOMETHING_ELSE", "x")
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    env = suite_environment(ports, Path("/data/pg"), Path("/data"), CARDINSA_LOG_LEVEL="WARNING")
    assert "CARDINSA_SOMETHING_ELSE" not in env and "DATABASE_URL" not in env
    assert env["CARDINSA_LOG_LEVEL"] == "WARNING"
    assert env["CARDINSA_CORE_PORT"] == str(ports.core)
    assert env["CARDINSA_EMBEDDED_POSTGRES_DIR"] == "/data/pg"
    assert env["CARDINSA_WORKER_PORT_STEP"] == "100"
    assert env["CARDINSA_DATABASE_URL"] == ""
