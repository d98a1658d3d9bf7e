"""The supervisor of ``--workers N`` (cardinsa_foundation.server.run_workers), with
real processes: small worker programs stand in for the services so that each
exit, restart and give-up can be caused on purpose.

A worker program records each start in a file (its index and the restart count
the supervisor passed), and what it is told: SIGTERM (then it exits 0) or the
give-up signal (then it writes "held" and keeps running, as a service worker
keeps reporting NOT_SERVING).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cardinsa_foundation.server import EXIT_CONFIG

pytestmark = pytest.mark.integration

WORKER = r"""
import os, signal, sys, time
from pathlib import Path

log = Path(sys.argv[1])
index = int(os.environ["CARDINSA_WORKER_INDEX"])
restarts = os.environ["CARDINSA_WORKER_RESTARTS"]
mode = sys.argv[2]

def note(text):
    with log.open("a") as out:
        out.write(f"{index} {text}\n")

if mode == "follow":
    from cardinsa_foundation.server import follow_supervisor
    follow_supervisor()
    note(f"pid {os.getpid()}")
note(f"start {restarts}")
signal.signal(signal.SIGTERM, lambda *_: (note("term"), sys.exit(0)))
signal.signal(signal.SIGUSR1, lambda *_: note("held"))
if mode == "crash" or (mode == "crash-1" and index == 1):
    sys.exit(3)
if mode == "config" and index == 1:
    sys.exit(int(sys.argv[3]))
if mode == "crash-once" and index == 1 and restarts == "0":
    sys.exit(3)
while True:
    time.sleep(0.05)
"""

SUPERVISOR = r"""
import sys
from cardinsa_foundation.logging import configure_logging
from cardinsa_foundation.server import run_workers

configure_logging("INFO", True, "fake")
sys.exit(run_workers(
    2, [sys.argv[1], *sys.argv[2:]], restart_limit=2, restart_window_s=60,
    first_backoff_s=0.05, max_backoff_s=0.2,
))
"""


def supervise(tmp_path: Path, *mode: str) -> tuple[subprocess.Popen[str], Path]:
    program = tmp_path / "worker.py"
    program.write_text(WORKER)
    log = tmp_path / "events.log"
    log.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDINSA_")}
    process = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(program), str(log), *mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, log


def events(log: Path) -> list[str]:
    return log.read_text().splitlines()


def wait_for(log: Path, wanted: str, process: subprocess.Popen[str], bound_s: float = 30) -> None:
    deadline = time.monotonic() + bound_s
    while wanted not in events(log):
        assert process.poll() is None or wanted in events(log), (process.returncode, events(log))
        assert time.monotonic() < deadline, events(log)
        time.sleep(0.05)


def finish(process: subprocess.Popen[str]) -> tuple[int, list[dict[str, object]]]:
    try:
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return process.returncode, lines


def test_a_worker_that_exits_is_restarted_and_counted(tmp_path: Path) -> None:
    process, log = supervise(tmp_path, "crash-once")
    wait_for(log, "1 start 1", process)  # the restart, told its count
    wait_for(log, "0 start 0", process)
    process.send_signal(signal.SIGTERM)
    code, lines = finish(process)
    assert code == 0
    assert sorted(events(log)) == ["0 start 0", "0 term", "1 start 0", "1 start 1", "1 term"]
    exited = [line for line in lines if line["message"] == "worker exited"]
    assert [(e["worker"], e["exit_code"]) for e in exited] == [(1, 3)]
    restarted = [line for line in lines if line["message"] == "worker restarted"]
    assert [(r["worker"], r["restarts"]) for r in restarted] == [(1, 1)]


def test_after_the_limit_the_supervisor_gives_up_and_the_others_stop_serving(
    tmp_path: Path,
) -> None:
    process, log = supervise(tmp_path, "crash-1")
    wait_for(log, "0 held", process)
    # Worker 1: the first start and two restarts (the limit), then no more.
    assert [e for e in events(log) if e.startswith("1 ")] == [
        "1 start 0",
        "1 start 1",
        "1 start 2",
    ]
    assert process.poll() is None  # worker 0 still runs, reporting NOT_SERVING
    process.send_signal(signal.SIGINT)
    code, lines = finish(process)
    assert code == 1
    given_up = [line for line in lines if line["message"] == "giving up on a worker"]
    assert len(given_up) == 1 and given_up[0]["worker"] == 1
    assert sum(line["message"] == "worker exited" for line in lines) == 3


def test_a_configuration_error_is_not_restarted(tmp_path: Path) -> None:
    process, log = supervise(tmp_path, "config", str(EXIT_CONFIG))
    wait_for(log, "0 held", process)
    assert [e for e in events(log) if e.startswith("1 ")] == ["1 start 0"]
    process.send_signal(signal.SIGTERM)
    code, _ = finish(process)
    assert code == 1


def test_when_every_worker_is_gone_the_supervisor_exits(tmp_path: Path) -> None:
    process, log = supervise(tmp_path, "crash")
    code, lines = finish(process)
    assert code == 1
    assert sum(e.endswith("start 0") for e in events(log)) == 2
    assert sum(line["message"] == "giving up on a worker" for line in lines) == 2
    assert lines[-1]["message"] == "every worker is gone; the supervisor exits"


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    """A supervisor killed with SIGKILL (nothing forwards SIGTERM) leaves no
    orphan worker holding its ports: each worker gets SIGTERM from the kernel."""
    process, log = supervise(tmp_path, "follow")
    pids: list[int] = []
    try:
        wait_for(log, "0 start 0", process)
        wait_for(log, "1 start 0", process)
        pids = [int(line.split()[2]) for line in events(log) if " pid " in line]
        assert len(pids) == 2
        process.kill()
        process.wait()
        deadline = time.monotonic() + 30
        while not {"0 term", "1 term"} <= set(events(log)):
            assert time.monotonic() < deadline, events(log)
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
