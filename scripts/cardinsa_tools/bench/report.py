"""The table, the machine it ran on, and the JSON of a run."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cardinsa_foundation.config import PROJECT_ROOT
from cardinsa_tools.bench.profiles import Profile
from cardinsa_tools.bench.scenarios import Row
from cardinsa_tools.bench.seed import SeedResult
from cardinsa_tools.bench.suite import Suite

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
        "p99.9 ms",
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
                _fmt(row.p999_ms, ".2f"),
                _fmt(row.requests, ","),
                _fmt(row.server_ok, ","),
                errors,
                _fmt(row.cpu_us, ",.0f" if row.cpu_us is None or row.cpu_us >= 10 else ".2f")
                + (f" +{row.envoy_cpu_us:,.0f} envoy" if row.envoy_cpu_us is not None else "")
                + (f" +{row.pg_cpu_us:,.0f} pg" if row.pg_cpu_us is not None else ""),
                _fmt(row.peak_mb, ".1f"),
                row.target,
                holds,
            )
        )
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]
    right = {1, 2, 3, 4, 5, 6, 7, 9, 10}

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


@dataclass
class Figures:
    """One run's figures and what they were measured on."""

    profile: Profile
    started: dt.datetime
    suite: Suite
    seed: SeedResult
    rows: list[Row]
    busy_before: float
    busy_after: float

    @property
    def missed(self) -> list[str]:
        return [r.scenario for r in self.rows if r.holds is False]


def print_table(figures: Figures) -> None:
    """The table, with the machine it ran on and what else ran there."""
    busy_before, busy_after = figures.busy_before, figures.busy_after
    print()
    print(
        f"Cardinsa benchmark ({figures.profile.name}), {git_revision()}, {os.cpu_count()} CPUs "
        f"({cpu_model()}), {figures.started:%Y-%m-%d %H:%M} UTC"
    )
    print(
        f"other load on the machine while the suite idled: {busy_before:.0%} before, "
        f"{busy_after:.0%} after"
        + (
            "  -- busy: ratios and req/s are unreliable, compare CPU µs/call"
            if max(busy_before, busy_after) > 0.15
            else ""
        )
    )
    print(render_table(figures.rows))
    for row in figures.rows:
        if row.note:
            print(f"  {row.scenario}: {row.note}")
    missed = figures.missed
    print()
    print("all targets hold" if not missed else "targets missed: " + "; ".join(missed))


def write_json(figures: Figures, output_dir: Path) -> Path:
    """The same figures as JSON, ``<started>-<profile>.json`` in ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    started, seed = figures.started, figures.seed
    out = output_dir / f"{started:%Y%m%dT%H%M%SZ}-{figures.profile.name}.json"
    out.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "profile": asdict(figures.profile),
                "revision": git_revision(),
                "machine": {
                    "cpus": os.cpu_count(),
                    "cpu": cpu_model(),
                    "kernel": platform.release(),
                    "python": platform.python_version(),
                },
                "tools": tool_versions(),
                "machine_busy": {
                    "before": round(figures.busy_before, 3),
                    "after": round(figures.busy_after, 3),
                },
                "suite": {
                    "started_here": figures.suite.process is not None,
                    "workers": figures.suite.endpoints.workers,
                },
                "data": {
                    "companies": len(seed.companies),
                    "counts": seed.counts,
                    # Before the run: what ApproveClaim could approve.
                    "claims_under_review": len(seed.companies[0].reviewed),
                    # Before the run: what BindPolicy could bind.
                    "quoted_for_bind": len(seed.companies[0].quoted),
                    "growth_companies": [
                        {"index": g.index, "policies": g.policies, "claims": g.claims}
                        for g in seed.growth
                    ],
                    "seed_seconds": round(seed.seconds, 1),
                },
                "rows": [asdict(r) for r in figures.rows],
                "targets_missed": figures.missed,
            },
            indent=2,
        )
        + "\n"
    )
    return out
