"""`make bench`: the command line (see the package docstring)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from cardinsa_tools.bench.calls import login
from cardinsa_tools.bench.profiles import (
    BENCH_DIR,
    FULL,
    QUICK,
    Profile,
    say,
)
from cardinsa_tools.bench.report import Figures, print_table, write_json
from cardinsa_tools.bench.scenarios import Bench, NoopServer, serve_noop
from cardinsa_tools.bench.seed import SeedResult, seed_all
from cardinsa_tools.bench.suite import Suite, bench_password
from cardinsa_tools.bench.tools import ensure_tools, raise_fd_limit
from cardinsa_tools.procfs import (
    machine_busy,
)

# ------------------------------------------------------------------ main


def hold(suite: Suite, seed: SeedResult, state_dir: Path, noop_port: int) -> None:
    large = seed.companies[0]
    token = asyncio.run(login(suite.endpoints.grpc("identity"), large.admin, seed.password))
    info = {
        "endpoints": asdict(suite.endpoints),
        "noop_port": noop_port,
        "pids": suite.pids(),
        "policy_id": large.in_force_policy,
        "claim_policy_id": large.claim_policy,
        "currency": large.currency,
        "token": token,
        "login_emails": [a.email for a in seed.logins],
    }
    path = state_dir / "hold.json"
    path.write_text(json.dumps(info, indent=2) + "\n")
    path.chmod(0o600)
    say(f"holding; {path} has the ports, pids and a token. Ctrl-C stops.")
    with contextlib.suppress(KeyboardInterrupt):
        while suite.process is None or suite.process.poll() is None:
            time.sleep(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke mode: tiny data, ~2.5 s per scenario (make test runs it)",
    )
    parser.add_argument(
        "--use-running",
        action="store_true",
        help="load the suite `make up` runs instead of starting one",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes per service (the targets are for 1)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="measured seconds per scenario (default 10, quick 2.5)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="suite state and PostgreSQL data (default .data/bench)",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="where the JSON goes (default .data/bench)"
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start from an empty database (removes the state dir's data)",
    )
    parser.add_argument(
        "--hold",
        action="store_true",
        help="start and seed, write <state-dir>/hold.json (ports, pids, a token, a policy "
        "id) and wait for Ctrl-C: for profiling with py-spy against a loaded suite",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="CARDINSA_X=VALUE",
        help="a setting for the suite started here (repeatable), e.g. to compare runs",
    )
    parser.add_argument("--serve-noop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_noop:
        asyncio.run(serve_noop())
        return 0

    profile = QUICK if args.quick else FULL
    if args.seconds:
        profile = Profile(**{**asdict(profile), "seconds": args.seconds})
    state_dir = (args.state_dir or BENCH_DIR / ("quick" if args.quick else "full")).resolve()
    output_dir = (args.output_dir or BENCH_DIR).resolve()
    ensure_tools()
    raise_fd_limit()
    if args.fresh and not args.use_running and state_dir.exists():
        say(f"removing {state_dir}")
        shutil.rmtree(state_dir)

    suite: Suite | None = None
    noop: NoopServer | None = None
    started = dt.datetime.now(dt.UTC)

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        if args.use_running:
            suite = Suite.running(state_dir, args.workers)
        else:
            extra = dict(item.split("=", 1) for item in args.env)
            suite = Suite.start(state_dir, args.workers, timeout_s=180, extra_env=extra)
        noop = NoopServer()
        seed = asyncio.run(seed_all(suite, profile, bench_password(state_dir)))
        if args.hold:
            hold(suite, seed, state_dir, noop.port)
            return 0
        busy_before = machine_busy()
        with tempfile.TemporaryDirectory(prefix="cardinsa-bench-") as work:
            bench = Bench(suite, seed, profile, Path(work), noop)
            bench.run()
            bench.memory()
            bench.growth()
        busy_after = machine_busy()
        figures = Figures(
            profile, started, suite, seed, list(bench.rows.values()), busy_before, busy_after
        )
        print_table(figures)
        out = write_json(figures, output_dir)
        print(f"figures written to {out}")
        return 0
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        # A second signal (Ctrl-C twice, a supervisor's TERM after ours) must
        # not cut the clean-up short: the suite's processes, PostgreSQL
        # included, are stopped whatever arrives meanwhile.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if noop is not None:
            noop.stop()
        if suite is not None:
            suite.stop()


if __name__ == "__main__":
    sys.exit(main())
