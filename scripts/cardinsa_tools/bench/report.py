"""The table, the machine it ran on, and the JSON of a run."""

from __future__ import annotations

import contextlib
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cardinsa_foundation.config import PROJECT_ROOT
from cardinsa_tools.bench.scenarios import Row

# ------------------------------------------------------------------ report


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def render_table(rows: Sequence[Row]) -> str:
    header = (
        "scenario",
        "req/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "requests",
        "server OK",
        "errors",
        "CPU µs/call",
        "peak MB",
        "target",
        "holds",
    )
    lines = []
    for row in rows:
        spec = ".2f" if row.ratio is None or row.ratio >= 0.1 else ".4f"
        ratio = "" if row.ratio is None else f"{row.ratio:{spec}} ({row.baseline})"
        errors = "" if row.errors is None else str(row.errors)
        if row.server_codes:
            errors += " " + ",".join(f"{k}:{v}" for k, v in sorted(row.server_codes.items()))
        if row.cancelled_at_stop:
            errors += f" (+{row.cancelled_at_stop} cancelled at stop)"
        holds = {True: "yes", False: "NO", None: ""}[row.holds]
        lines.append(
            (
                row.scenario,
                _fmt(row.rate, ",.0f"),
                ratio,
                _fmt(row.p50_ms, ".2f"),
                _fmt(row.p99_ms, ".2f"),
                _fmt(row.requests, ","),
                _fmt(row.server_ok, ","),
                errors,
                _fmt(row.cpu_us, ",.0f" if row.cpu_us is None or row.cpu_us >= 10 else ".2f")
                + (f" +{row.envoy_cpu_us:,.0f} envoy" if row.envoy_cpu_us is not None else ""),
                _fmt(row.peak_mb, ".1f"),
                row.target,
                holds,
            )
        )
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]
    right = {1, 2, 3, 4, 5, 6, 8, 9}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines)])


def git_revision() -> str:
    done = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def tool_versions() -> dict[str, str]:
    versions = {}
    for tool, flag in (("h2load", "--version"), ("wrk", "--version")):
        done = subprocess.run([tool, flag], capture_output=True, text=True, check=False)
        versions[tool] = (done.stdout or done.stderr).strip().splitlines()[0][:80]
    return versions


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
