"""`make premium-story`, run exactly as the README gives it, and its table checked.

The command starts a suite of its own (it does not use the e2e package's
``suite``), drives one policy through bind, endorsement, a scheduled
cancellation and a reinstatement over REST, and prints the policy's premium
transactions. The test reads the kinds in order, checks that the amounts sum
to the written premium (each row's running sum and the policy's
``written_premium`` printed on the last line), that the cancellation returns
(negative) and that the reinstatement charges exactly that back. It runs the
command in a process group of its own; should the command not end in time it
gets Ctrl-C (SIGINT to the group; it then stops its suite itself), then SIGKILL.
Afterwards the suite's launcher (whose PID the command prints) must be gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
from decimal import Decimal

import pytest

from cardinsa_foundation.config import PROJECT_ROOT
from cardinsa_tools.procfs import cmdline, port_is_free

pytestmark = pytest.mark.integration

RUN_TIMEOUT_S = 400
ROW = re.compile(
    r"^\s+(?P<seq>\d+)\s+(?P<kind>[A-Z]+)\s+(?P<start>\d{4}-\d\d-\d\d)\.\.(?P<end>\d{4}-\d\d-\d\d)"
    r"\s+(?P<premium>-?\d+\.\d\d)\s+(?P<tax>-?\d+\.\d\d)\s+(?P<fee>-?\d+\.\d\d)"
    r"\s+(?P<amount>-?\d+\.\d\d)\s+(?P<written>-?\d+\.\d\d)(?:\s+(?P<method>[A-Z_]+))?\s*$"
)
VERDICT = re.compile(
    r"sum of the amounts (?P<sum>-?\d+\.\d\d) EUR, written_premium of the policy "
    r"(?P<written>-?\d+\.\d\d) EUR: (?P<verdict>OK|MISMATCH)"
)


def readme_command() -> str:
    """The `make premium-story` line of the README's bash blocks (before its comment)."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL)
    found = [
        line.split("#", 1)[0].strip()
        for block in blocks
        for line in block.splitlines()
        if "premium-story" in line or "premium_story" in line
    ]
    assert len(found) == 1, found
    return found[0]


def run(command: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    process = subprocess.Popen(
        shlex.split(command),
        cwd=PROJECT_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # Ctrl-C: the command stops what it started; then whatever is left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        pytest.fail(f"{command} did not end within {RUN_TIMEOUT_S} s:\n{output[-4000:]}")
    return process.returncode, output


def test_make_premium_story_prints_the_transactions_summing_to_the_written_premium() -> None:
    command = readme_command()
    assert command == "make premium-story"
    code, output = run(command)
    # Whatever happened, the suite the command started is stopped.
    launcher = re.search(r"suite launcher pid (\d+), gateway 127\.0\.0\.1:(\d+)", output)
    assert launcher, output[-4000:]
    pid, gateway_port = int(launcher.group(1)), int(launcher.group(2))
    assert "cardinsa_tools.suite" not in cmdline(pid), f"the suite (pid {pid}) still runs"
    assert port_is_free(gateway_port), f"the gateway's port {gateway_port} is still taken"
    assert code == 0, output[-4000:]

    rows = [found.groupdict() for line in output.splitlines() if (found := ROW.match(line))]
    assert [row["kind"] for row in rows] == ["NEW", "ENDORSE", "CANCEL", "REINSTATE"], output
    assert [int(row["seq"]) for row in rows] == [1, 2, 3, 4]
    money = {
        name: [Decimal(row[name]) for row in rows]
        for name in ("premium", "tax", "fee", "amount", "written")
    }
    # Each amount is its premium, tax and fee; the written column is their running sum.
    for index in range(len(rows)):
        assert money["amount"][index] == (
            money["premium"][index] + money["tax"][index] + money["fee"][index]
        ), rows[index]
        assert money["written"][index] == sum(money["amount"][: index + 1]), rows[index]
    new, endorse, cancel, reinstate = money["amount"]
    assert new > 0 and endorse > 0, rows  # the child joins: an additional premium
    assert cancel < 0 and reinstate == -cancel, rows
    assert money["tax"][3] == -money["tax"][2] and money["premium"][3] == -money["premium"][2]
    assert money["fee"][0] > 0 and money["fee"][1:] == [0, 0, 0], rows  # the fee: once, kept
    assert rows[2]["method"] == "SHORT_RATE"  # MEMBER_REQUEST, the product has a penalty
    assert (rows[2]["start"], rows[2]["end"]) == (rows[3]["start"], rows[3]["end"])
    assert rows[0]["end"] == rows[1]["end"] == rows[2]["end"], rows  # one term

    verdict = VERDICT.search(output)
    assert verdict, output[-4000:]
    assert verdict["verdict"] == "OK"
    assert Decimal(verdict["sum"]) == Decimal(verdict["written"]) == sum(money["amount"])
    # The quote's breakdown was printed, with its tax and fee lines.
    assert re.search(r"^\s+TAX\s+premium tax 19 %\s+\d+\.\d\d$", output, flags=re.MULTILINE)
    assert re.search(r"^\s+FEE\s+policy fee\s+25\.00$", output, flags=re.MULTILINE)
    assert re.search(r"took \d+\.\d s", output)
