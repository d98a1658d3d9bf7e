"""`make up`'s launcher and a stop signal that lands while it starts a child.

The launcher module installs its signal handlers when imported, so it runs in
a Python process of its own here, never inside pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys
    from cardinsa_tools import suite

    real_popen = subprocess.Popen

    def popen_then_signal(*args, **kwargs):
        child = real_popen(*args, **kwargs)
        # The signal arrives after the fork and exec, before the launcher has
        # recorded the child (inside Popen it waits for the exec's outcome).
        os.kill(os.getpid(), signal.SIGTERM)
        return child

    subprocess.Popen = popen_then_signal
    signal.signal(signal.SIGTERM, suite.SIGNALS.handler)

    class Launch:
        children = []
        spawn = suite.Launch.spawn

    launch = Launch()
    interrupted = False
    try:
        launch.spawn([sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
    except KeyboardInterrupt:
        interrupted = True
    recorded = [child.pid for child in launch.children]
    for child in launch.children:
        child.kill()
        child.wait()
    print(json.dumps({"interrupted": interrupted, "recorded": recorded}))
    """
)


def test_a_signal_while_a_child_starts_waits_until_the_launcher_has_recorded_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # The start still ends (stop runs next) but the child is one stop will find.
    assert seen["interrupted"] is True
    assert len(seen["recorded"]) == 1


def test_a_signal_outside_a_child_start_ends_the_start_at_once() -> None:
    script = textwrap.dedent(
        """
        import os, signal
        from cardinsa_tools import suite
        signal.signal(signal.SIGTERM, suite.SIGNALS.handler)
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
        except KeyboardInterrupt:
            print("interrupted")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "interrupted", done.stderr
