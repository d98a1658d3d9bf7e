"""Errors from the server's own counters (grpc_server_handled_total), never from
the load generator's success count (see the package docstring)."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from cardinsa_tools.bench.load import (
    Load,
)

# ------------------------------------------------------------------ server-side counts

_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\}\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(ports: Sequence[int]) -> dict[tuple[str, str, str, str], float]:
    """(metric, service, method, code) → value, summed over the ports (workers)."""
    found: dict[tuple[str, str, str, str], float] = {}
    for port in ports:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match is None or match.group(1) not in (
                "grpc_server_handled_total",
                "grpc_server_in_flight",
            ):
                continue
            labels = dict(_LABEL.findall(match.group(2)))
            key = (
                match.group(1),
                labels.get("grpc_service", ""),
                labels.get("grpc_method", ""),
                labels.get("grpc_code", ""),
            )
            found[key] = found.get(key, 0.0) + float(match.group(3))
    return found


def settle(
    ports: Sequence[int], service: str, method: str, timeout_s: float = 15
) -> dict[tuple[str, str, str, str], float]:
    """A scrape taken once no call of the method is in flight any more."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = scrape(ports)
        if counts.get(("grpc_server_in_flight", service, method, ""), 0.0) <= 0:
            return counts
        if time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


@dataclass
class Verified:
    server_ok: int
    server_codes: dict[str, int]  # non-OK codes the server counted
    cancelled_at_stop: int  # wrk's abandoned in-flight calls (≤ one per connection)
    errors: int


def verify(
    before: dict[tuple[str, str, str, str], float],
    after: dict[tuple[str, str, str, str], float],
    service: str,
    method: str,
    load: Load,
) -> Verified:
    """Errors from the server's counters (see the module docstring)."""
    codes: dict[str, int] = {}
    for key, value in after.items():
        metric, svc, meth, code = key
        if metric == "grpc_server_handled_total" and svc == service and meth == method:
            moved = round(value - before.get(key, 0.0))
            if moved:
                codes[code] = moved
    ok = codes.pop("OK", 0)
    cancelled = 0
    if not load.exact:
        cancelled = min(codes.get("CANCELLED", 0), load.connections)
        if cancelled:
            codes["CANCELLED"] -= cancelled
            if not codes["CANCELLED"]:
                del codes["CANCELLED"]
    # Every call the client saw fail is an error; of those it saw succeed, every one
    # the server did not count as OK is one too (h2load's gRPC errors), and so is
    # every non-OK the server counted that the client did not see as a failure.
    server_bad = sum(codes.values())
    client_good = load.requests - load.client_errors
    errors = load.client_errors + max(client_good - ok, server_bad - load.client_errors, 0)
    return Verified(ok, codes, cancelled, errors)


def settle_all(
    ports: Sequence[int], methods: Sequence[tuple[str, str]], timeout_s: float = 15
) -> dict[tuple[str, str, str, str], float]:
    """settle, once no call of any of ``methods`` ((service, method)) is in flight."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = scrape(ports)
        busy = sum(counts.get(("grpc_server_in_flight", s, m, ""), 0.0) for s, m in methods)
        if busy <= 0 or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def verify_calls(
    before: dict[tuple[str, str, str, str], float],
    after: dict[tuple[str, str, str, str], float],
    load: Load,
) -> Verified:
    """verify for a load of several methods (run_calls): each method's server
    counts against the client's calls of it, summed over the methods."""
    ok, errors = 0, 0
    codes: dict[str, int] = {}
    for path, (requests, client_errors) in sorted((load.per_path or {}).items()):
        service, _, method = path.strip("/").rpartition("/")
        one = Load(
            load.tool,
            requests,
            load.seconds,
            0.0,
            None,
            None,
            client_errors,
            load.connections,
            exact=True,
        )
        check = verify(before, after, service, method, one)
        ok, errors = ok + check.server_ok, errors + check.errors
        for code, n in check.server_codes.items():
            codes[f"{method}:{code}"] = codes.get(f"{method}:{code}", 0) + n
    return Verified(ok, codes, 0, errors)
