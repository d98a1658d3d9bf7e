"""The ``suite`` fixture: `make up` as one real process tree for the e2e package.

cardinsa_tools.suite runs in a temporary directory of its own (state directory,
embedded PostgreSQL data, access log, notifications), on free ports of
127.0.0.1, in its own process group. The fixture is package-scoped: every e2e
module shares one suite, which stops as soon as the last e2e test has run (not
at the end of the whole session, and only once: ~15 s of start-up).

Teardown is Ctrl-C (SIGINT to the group), then SIGKILL after a grace period;
it fails when anything the suite started is still running or any of its ports
is still taken. The suite's whole output is in ``<tmp>/suite.log``; its tail is
in the failure message of a failed test. The directory is removed after a
clean run and kept (and named) when a test failed or the stop went wrong.

The directory is not under pytest's basetemp: as root the embedded PostgreSQL
runs as an unprivileged system user, which must traverse the path, and every
pytest session that starts (another terminal, another agent) resets
``/tmp/pytest-of-<user>`` to mode 0700 — initdb would then fail mid-run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from e2e.suite_harness import SuiteProcess, delete_jetstream_stream


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed e2e test shows what the suite wrote last (launcher and service logs)."""
    report = yield
    suite = getattr(item, "funcargs", {}).get("suite")
    if report.failed and isinstance(suite, SuiteProcess) and suite.output is not None:
        suite.keep_files = True
        report.sections.append(
            (f"suite output (last lines; all in {suite.base})", suite.output.tail(80))
        )
    return report


@pytest.fixture(scope="package")
def suite() -> Iterator[SuiteProcess]:
    base = Path(tempfile.mkdtemp(prefix="cardinsa-e2e-"))
    handle = SuiteProcess(base)

    def last_resort() -> None:
        # The interpreter is exiting without the teardown below (pytest.exit, a
        # crash in a plugin): never leave the suite running.
        if handle.process is not None and handle.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(handle.process.pid, signal.SIGKILL)
            for proc in handle.tracked:
                if proc.alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)

    atexit.register(last_resort)
    try:
        handle.start()
        handle.wait_ready()
        yield handle
    except BaseException as error:  # also Ctrl-C while waiting: stop, then re-raise
        problems = handle.stop()
        if problems:
            error.add_note("while stopping the suite: " + "; ".join(problems))
        if isinstance(error, KeyboardInterrupt) and not problems:
            shutil.rmtree(base, ignore_errors=True)
        else:
            error.add_note(f"the suite's files (suite.log) are kept in {base}")
        raise
    else:
        problems = handle.stop()
        delete_jetstream_stream(handle.env)
        tail = handle.output.tail(40) if handle.output else ""
        assert not problems, "\n".join(
            [*problems, f"--- suite output (tail; all in {base}/suite.log) ---", tail]
        )
        stopped = handle.stop_lines()
        assert stopped and stopped[-1] == "[cardinsa] stopped", "\n".join(stopped) or tail
        if not handle.keep_files:
            shutil.rmtree(base, ignore_errors=True)
    finally:
        atexit.unregister(last_resort)
