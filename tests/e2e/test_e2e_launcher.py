"""The launcher (`make up`, cardinsa_tools.suite) tells the truth while it starts:

- SIGINT and SIGTERM stop it at any moment of start-up, also when it inherited
  SIGINT ignored (``make up &`` from a script): nothing it started is left
  running, none of its ports stays taken;
- a service that fails during start-up ends the start-up at once, with that
  service's last log lines (here: its port is taken after the launcher checked
  it, so the service itself says which setting to change);
- a taken port, ports of two workers that collide, and a database that cannot
  be reached are each one line naming the setting, without a traceback and
  before anything is started.

Each test starts its own launcher (a suite of its own: temporary directory,
free ports, embedded PostgreSQL) and stops or checks it by PID.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardinsa_tools.procfs import free_ports
from e2e.suite_harness import SuiteProcess

pytestmark = pytest.mark.integration

#: Seconds the launcher may take to stop everything after a signal at start-up
#: (the services drain and stop within CARDINSA_GRACE_PERIOD_S=2, then PostgreSQL).
STOP_BOUND_S = 40.0
#: Seconds to refuse a configuration problem (no process is started for it).
REFUSE_BOUND_S = 60.0


@contextlib.contextmanager
def launcher() -> Iterator[SuiteProcess]:
    base = Path(tempfile.mkdtemp(prefix="cardinsa-launcher-"))
    base.chmod(0o755)
    suite = SuiteProcess(base)
    ok = False
    try:
        yield suite
        ok = True
    finally:
        # Each test checks the exit code itself; anything left running or any
        # port still taken is a problem.
        problems = [p for p in suite.stop() if not p.startswith("the launcher exited with")]
        if ok:
            assert not problems, problems
            shutil.rmtree(base, ignore_errors=True)


def wait_line(suite: SuiteProcess, text: str, bound_s: float = 150.0) -> None:
    assert suite.output is not None and suite.process is not None
    deadline = time.monotonic() + bound_s
    while not any(text in line for line in suite.output.snapshot()):
        suite._track_children()
        assert suite.process.poll() is None, suite.output.tail()
        assert time.monotonic() < deadline, suite.output.tail()
        time.sleep(0.05)
    suite._track_children()


def wait_handled(pid: int, signum: int, bound_s: float = 30.0) -> None:
    """Until the process catches ``signum`` (its first lines ran): a signal before
    the interpreter runs any line of the script cannot be handled by it."""
    deadline = time.monotonic() + bound_s
    while True:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(next(x for x in status.splitlines() if x.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signum - 1)):
            return
        assert time.monotonic() < deadline, status
        time.sleep(0.005)


def exit_code(suite: SuiteProcess, bound_s: float) -> int:
    assert suite.process is not None and suite.output is not None
    try:
        code = suite.process.wait(timeout=bound_s)
    except Exception as error:
        raise AssertionError(
            f"the launcher still runs {bound_s:.0f} s later:\n{suite.output.tail()}"
        ) from error
    suite.output.join(10)
    return code


@pytest.mark.parametrize(
    ("signum", "moment"),
    [
        (signal.SIGINT, None),  # at once: while it imports
        (signal.SIGINT, "[cardinsa] migrating company"),
        (signal.SIGTERM, "[cardinsa] starting the mail sink"),
        (signal.SIGTERM, "[cardinsa] waiting for core at"),
        (signal.SIGTERM, "[cardinsa] starting the event dispatcher"),
    ],
    ids=[
        "sigint-at-once",
        "sigint-while-migrating",
        "sigterm-as-the-mail-sink-starts",
        "sigterm-while-services-start",
        "sigterm-as-the-dispatcher-starts",
    ],
)
def test_a_signal_at_any_moment_of_start_up_stops_everything(
    signum: signal.Signals, moment: str | None
) -> None:
    with launcher() as suite:
        suite.start(sigint_ignored=True)
        assert suite.process is not None and suite.output is not None
        if moment is None:
            wait_handled(suite.process.pid, signum)
        else:
            wait_line(suite, moment)
        suite.process.send_signal(signum)  # the launcher alone, not its group
        code = exit_code(suite, STOP_BOUND_S)
        lines = suite.output.launcher_lines()
        assert "[cardinsa] ready" not in lines, lines
        assert not any("Traceback" in line for line in suite.output.snapshot()), lines
        if moment is None:
            assert code in (0, -signum), lines  # killed by it while importing, or stopped
        else:
            assert code == 0, lines
            assert lines[-1] == "[cardinsa] stopped", lines
        # suite.stop() (on leaving) reports anything left running or any port taken.


def test_a_service_that_fails_during_start_up_ends_it_with_its_last_lines() -> None:
    with launcher() as suite:
        suite.start()
        assert suite.output is not None
        # After the launcher's own port check, another program takes core's port.
        wait_line(suite, "[cardinsa] starting the embedded PostgreSQL")
        squatter = socket.socket()
        try:
            squatter.bind(("127.0.0.1", suite.ports.core))
            squatter.listen()
            code = exit_code(suite, REFUSE_BOUND_S + 120)
        finally:
            squatter.close()
        lines = suite.output.launcher_lines()
        assert code == 1, suite.output.tail()
        assert "[cardinsa] ready" not in lines
        failed = next(i for i, line in enumerate(lines) if "cannot start: core" in line)
        assert "during start-up; its last lines:" in lines[failed], lines[failed]
        shown = "\n".join(lines[failed + 1 :])
        assert f"cannot listen on 127.0.0.1:{suite.ports.core}" in shown, shown
        assert "CARDINSA_CORE_PORT" in shown, shown
        assert lines[-1] == "[cardinsa] stopped", lines
        assert not any("Traceback" in line for line in suite.output.snapshot())


def refused(suite: SuiteProcess, *args: str, taken: tuple[str, ...] = ()) -> str:
    """The launcher's one line for a problem found before anything starts."""
    suite.start(*args, taken=taken)
    code = exit_code(suite, REFUSE_BOUND_S)
    assert suite.output is not None
    output = suite.output.snapshot()
    assert code == 1, output
    assert not any("Traceback" in line for line in output), output
    problems = [line for line in output if line.startswith("[cardinsa] cannot start:")]
    assert len(problems) == 1, output
    # Nothing was started for it.
    assert not any("starting" in line for line in output), output
    return problems[0]


def test_a_taken_port_is_one_line_naming_its_setting() -> None:
    with launcher() as suite, socket.socket() as squatter:
        squatter.bind(("127.0.0.1", suite.ports.gateway))
        squatter.listen()
        line = refused(suite, taken=("gateway",))
        assert f"port {suite.ports.gateway} (CARDINSA_GATEWAY_PORT)" in line, line
        assert "already in use" in line and "set CARDINSA_GATEWAY_PORT" in line, line


def test_worker_ports_that_collide_are_one_line_naming_the_settings() -> None:
    with launcher() as suite:
        # identity's second worker would take company's port.
        suite.env["CARDINSA_COMPANY_PORT"] = str(suite.ports.identity + 1)
        suite.env["CARDINSA_WORKER_PORT_STEP"] = "1"
        line = refused(suite, "--workers", "2")
        assert f"port {suite.ports.identity + 1} is both" in line, line
        assert "CARDINSA_IDENTITY_PORT + 1 x CARDINSA_WORKER_PORT_STEP" in line, line
        assert "CARDINSA_COMPANY_PORT" in line, line


def test_an_unreachable_database_is_one_line_naming_its_setting() -> None:
    (closed,) = free_ports(1)
    with launcher() as suite:
        suite.env["CARDINSA_DATABASE_URL"] = f"postgresql://cardinsa@127.0.0.1:{closed}/cardinsa"
        line = refused(suite)
        assert f"cannot reach the database at 127.0.0.1:{closed}" in line, line
        assert "CARDINSA_DATABASE_URL" in line, line
