"""`make bench` in its quick mode: the table and the JSON come out, and the
server-side error verification works. Speeds are never asserted.

The run is real: ``python -m cardinsa_tools.bench --quick`` starts its own suite (free ports,
its own embedded PostgreSQL in a temporary directory), seeds a little data,
loads every scenario for about a second (``--seconds 1``; the quick mode's
warm-ups as they are) with h2load and wrk, and stops everything. Where h2load
or wrk is missing and cannot be installed (not root, no apt-get), the test is
skipped. The parsing and the error arithmetic are
also checked without any load, on recorded tool output.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardinsa_foundation.config import PROJECT_ROOT
from cardinsa_tools.bench import load, profiles, seed, verification

RUN_TIMEOUT_S = 420


# ------------------------------------------------------------------ no load


H2LOAD_OUTPUT = """
finished in 2.01s, 4975.12 req/s, 389.43KB/s
requests: 10000 total, 10000 started, 10000 done, 10000 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 10000 2xx, 0 3xx, 0 4xx, 0 5xx
"""

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8080/v1/policies/x
  2 threads and 50 connections
  Latency Distribution
     50%    4.99ms
     75%    5.50ms
     90%    6.00ms
     99%    1.20s
  97000 requests in 10.00s, 20.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 12
Requests/sec:   9700.00
"""


def test_tool_output_is_parsed() -> None:
    seconds, rate, done, bad = load.parse_h2load(H2LOAD_OUTPUT)
    assert (seconds, rate, done, bad) == (2.01, 4975.12, 10000, 0)
    requests, elapsed, errors, latency = load.parse_wrk(WRK_OUTPUT)
    assert (requests, elapsed, errors) == (97000, 10.0, 15)
    assert latency == {"50": pytest.approx(4.99), "99": pytest.approx(1200.0)}


def _load(requests: int, client_errors: int = 0, *, exact: bool = True) -> object:
    return load.Load("h2load", requests, 1.0, requests, None, None, client_errors, 50, exact)


def _counts(**codes: int) -> dict[tuple[str, str, str, str], float]:
    return {
        ("grpc_server_handled_total", "pkg.Svc", "Get", code): float(n) for code, n in codes.items()
    }


def test_errors_come_from_the_server_counts_not_the_client() -> None:
    before = _counts(OK=100, NOT_FOUND=5)
    # h2load: every call "succeeded" (HTTP 200); the server says 7 were not OK.
    check = verification.verify(before, _counts(OK=193, NOT_FOUND=12), "pkg.Svc", "Get", _load(100))
    assert (check.server_ok, check.errors, check.server_codes) == (93, 7, {"NOT_FOUND": 7})
    # The server answered fewer OKs than the client counted: the rest are errors.
    check = verification.verify(before, _counts(OK=190, NOT_FOUND=5), "pkg.Svc", "Get", _load(100))
    assert check.errors == 10
    # wrk saw 3 non-2xx the server counted as NOT_FOUND: counted once, not twice;
    # its abandoned in-flight calls (CANCELLED, at most one per connection) are not errors.
    wrk = load.Load("wrk", 100, 1.0, 100.0, None, None, 3, 50, False)
    after = {**_counts(OK=197, NOT_FOUND=8, CANCELLED=4)}
    check = verification.verify(before, after, "pkg.Svc", "Get", wrk)
    assert (check.errors, check.cancelled_at_stop) == (3, 4)
    # A control that must fail entirely: every call an error.
    check = verification.verify({}, _counts(NOT_FOUND=500), "pkg.Svc", "Get", _load(500))
    assert (check.server_ok, check.errors) == (0, 500)


def test_company_sizes_add_up() -> None:
    for profile in (profiles.FULL, profiles.QUICK):
        sizes = profiles.company_sizes(profile)
        assert len(sizes) == profile.companies >= (10 if profile is profiles.FULL else 2)
        assert sum(p for p, _ in sizes) == profile.policies
        assert sum(c for _, c in sizes) == profile.claims
    assert profiles.FULL.policies >= 100_000 and profiles.FULL.claims >= 20_000


def test_a_load_of_several_methods_is_verified_method_by_method() -> None:
    def counts(method: str, **codes: int) -> dict[tuple[str, str, str, str], float]:
        return {
            ("grpc_server_handled_total", "pkg.Svc", method, code): float(n)
            for code, n in codes.items()
        }

    mixed = load.Load(
        "grpc.aio", 30, 1.0, 30.0, None, None, 1, 50, True,
        per_path={"/pkg.Svc/Get": (20, 0), "/pkg.Svc/Put": (10, 1)},
    )  # fmt: skip
    before = {**counts("Get", OK=5), **counts("Put", OK=5)}
    # Get: 20 OK. Put: 9 OK, and the one the client saw fail was ABORTED.
    after = {**counts("Get", OK=25), **counts("Put", OK=14, ABORTED=1)}
    check = verification.verify_calls(before, after, mixed)
    assert (check.server_ok, check.errors, check.server_codes) == (29, 1, {"Put:ABORTED": 1})
    # The server counted one Get fewer than the client saw answered: an error too.
    after = {**counts("Get", OK=24), **counts("Put", OK=14, ABORTED=1)}
    assert verification.verify_calls(before, after, mixed).errors == 2


def test_seed_chunks_add_up_from_any_chunk_on() -> None:
    copies, claims = 1_000_000 - 2, 200_000 - 1
    plan = seed.chunks(copies, claims)
    assert len(plan) == -(-copies // profiles.SEED_CHUNK)
    assert sum(chunk for _, chunk, _, _ in plan) == copies
    assert sum(n for _, _, _, n in plan) == claims
    for (first, chunk, claim_first, n), following in itertools.pairwise(plan):
        assert (following[0], following[2]) == (first + chunk, claim_first + n)
    # An interrupted run goes on from a whole chunk with the same chunks.
    assert seed.chunks(copies, claims, plan[3][0]) == plan[3:]
    assert seed.chunks(398, 59) == [(0, 398, 0, 59)]


# ------------------------------------------------------------------ a real run


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    # Not under pytest's basetemp: the embedded PostgreSQL runs as an
    # unprivileged user when we are root and must be able to traverse the path.
    base = Path(tempfile.mkdtemp(prefix="cardinsa-bench-smoke-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        _kill_leftovers(base)
        shutil.rmtree(base, ignore_errors=True)


def _kill_leftovers(base: Path) -> None:
    """Anything still running with this run's data directory in its environment
    (the bench stops its suite itself; this is for a bench that was killed)."""
    marker = f"CARDINSA_EMBEDDED_POSTGRES_DIR={base}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "environ").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
    with contextlib.suppress(Exception):
        from cardinsa_foundation.local_postgres import LocalPostgres

        for data_dir in base.rglob("postgres"):
            if (data_dir / "PG_VERSION").exists():
                LocalPostgres(data_dir, 0).stop()


@pytest.mark.integration
def test_quick_bench_prints_the_table_writes_json_and_verifies_errors() -> None:
    with _workdir() as base:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cardinsa_tools.bench",
                "--quick",
                # 1 s measured per scenario instead of the quick profile's 2.5: no
                # figure is asserted, only that every row is there, counted and
                # verified on the server (each still runs a warm-up and its calls).
                "--seconds",
                "1",
                "--state-dir",
                str(base / "state"),
                "--output-dir",
                str(base / "out"),
            ],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)  # the bench stops its suite on SIGTERM
            try:
                output, _ = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                output, _ = process.communicate()
            pytest.fail(f"the quick bench took over {RUN_TIMEOUT_S} s:\n{output[-3000:]}")
        if process.returncode == profiles.EXIT_NO_TOOLS:
            pytest.skip("h2load/wrk are missing and cannot be installed here")
        assert process.returncode == 0, output[-4000:]

        # One table, every scenario in it, then where the JSON went.
        assert "scenario" in output and "req/s" in output and "CPU µs/call" in output
        for name in (
            "noop: bare grpc.aio",
            "GetPolicy gRPC",
            "GetPolicy REST via gateway",
            "ListPolicies",
            "CreateClaim gRPC",
            "ApproveClaim gRPC",
            "BindPolicy gRPC",
            "mixed 80/20 reads/writes gRPC",
            "growth: mixed 80/20",
            "growth: server CPU µs/call",
            "control: GetPolicy of an unknown id",
            "argon2id verify alone",
            "Login gRPC",
            "peak memory (VmHWM) core",
            "peak memory (VmHWM) envoy",
        ):
            assert name in output, name
        written = sorted((base / "out").glob("*-quick.json"))
        assert len(written) == 1, output[-2000:]
        figures = json.loads(written[0].read_text())
        rows = {row["key"]: row for row in figures["rows"]}
        assert figures["data"]["counts"]["policies"] >= profiles.QUICK.policies
        assert str(written[0]) in output

        # The verification counts what h2load calls success: every call of the
        # control is NOT_FOUND on the server, so every one is an error.
        control = rows["control_not_found"]
        assert control["requests"] > 0
        assert control["errors"] == control["requests"]
        assert control["server_codes"] == {"NOT_FOUND": control["requests"]}
        assert control["holds"] is True
        # And a healthy scenario is verified call for call.
        get = rows["grpc_get_policy"]
        assert get["requests"] > 0 and get["server_ok"] == get["requests"]
        assert get["errors"] == 0
        for key in (
            "grpc_get_policy",
            "rest_get_policy",
            "grpc_create_claim",
            "grpc_approve_claim",
            "grpc_login",
        ):
            assert rows[key]["rate"] > 0 and rows[key]["ratio"] is not None, key
            assert rows[key]["p50_ms"] is not None and rows[key]["p99_ms"] is not None, key
        # ApproveClaim approved a claim under review with every call (each one
        # another claim, its payable amount): the server counted every one OK.
        approve = rows["grpc_approve_claim"]
        assert approve["baseline"] == "noop"
        assert approve["requests"] > 0 and approve["server_ok"] == approve["requests"]
        assert approve["errors"] == 0 and approve["holds"] is True
        assert "ran out of claims" not in approve["note"]
        assert figures["data"]["claims_under_review"] == profiles.QUICK.approve_claims
        # BindPolicy bound another quoted policy with every call: the server
        # counted every one OK, and SQL shows each sent BOUND or IN_FORCE with its
        # premium transaction and invoices.
        bind = rows["grpc_bind_policy"]
        assert bind["baseline"] == "noop" and bind["ratio"] is not None
        assert bind["requests"] > 0 and bind["server_ok"] == bind["requests"]
        assert bind["errors"] == 0 and bind["holds"] is True, bind["note"]
        assert "ran out of quoted policies" not in bind["note"]
        assert figures["data"]["quoted_for_bind"] == profiles.QUICK.bind_policies
        # The mixed workload and the growth rows: every call of every method
        # counted OK on the server, latencies to p99.9, core and PostgreSQL CPU.
        growth = [f"growth_{n}" for n in profiles.QUICK.growth_sizes]
        for key in ("grpc_mixed", *growth):
            row = rows[key]
            assert row["requests"] > 0 and row["server_ok"] == row["requests"], key
            assert row["errors"] == 0 and row["holds"] is True, (key, row["note"])
            assert row["p999_ms"] is not None and row["pg_cpu_us"] is not None, key
            assert "ran out" not in row["note"], key
            for method in ("GetPolicy", "ListPolicies", "GetClaim", "CreateClaim", "ApproveClaim"):
                assert method in row["note"], (key, method)
        flat = rows["growth_flat"]
        assert flat["baseline"] == growth[0] and flat["ratio"] is not None
        sizes = [g["policies"] for g in figures["data"]["growth_companies"]]
        assert sizes == list(profiles.QUICK.growth_sizes)
        assert figures["data"]["counts"]["growth_policies"] >= sum(sizes)
        # The revocation check's cost against GetPolicy's CPU per call (timed alone).
        check = rows["revocation_check"]
        assert check["cpu_us"] > 0 and check["ratio"] is not None
        # Tracing off: its hooks are timed and set against GetPolicy's CPU per call.
        tracing_off = rows["tracing_off"]
        assert tracing_off["baseline"] == "grpc_get_policy"
        assert tracing_off["cpu_us"] is not None and tracing_off["ratio"] is not None
        assert "tracing off" in output
        # The access log line every RPC writes: timed and set against GetPolicy's CPU.
        line = rows["access_line"]
        assert line["baseline"] == "grpc_get_policy"
        assert line["cpu_us"] > 0 and line["ratio"] is not None
        assert "access log line" in output
        memory = [row for key, row in rows.items() if key.startswith("memory_")]
        assert {row["key"] for row in memory} >= {
            "memory_identity",
            "memory_company",
            "memory_core",
            "memory_envoy",
        }
        assert all(row["peak_mb"] and row["peak_mb"] > 0 for row in memory)
