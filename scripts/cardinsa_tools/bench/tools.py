"""The load generators (installed when missing) and the limits they need."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from typing import Any

from cardinsa_tools.bench.profiles import (
    EXIT_NO_TOOLS,
    TOOLS,
    say,
)

# ------------------------------------------------------------------ tools


def ensure_tools() -> None:
    """h2load and wrk, installed with apt-get when missing (root only)."""
    missing = [(tool, package) for tool, package in TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    packages = [package for _, package in missing]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        say(f"missing {', '.join(t for t, _ in missing)}: apt-get install {' '.join(packages)}")
        raise SystemExit(EXIT_NO_TOOLS)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    say(f"installing {', '.join(packages)} (apt-get)")
    done = subprocess.run(
        install, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        say("install failed; running apt-get update once and trying again")
        subprocess.run(
            ["apt-get", "update"], env=env, capture_output=True, timeout=900, check=False
        )
        done = subprocess.run(
            install, env=env, capture_output=True, text=True, timeout=900, check=False
        )
    still = [tool for tool, _ in missing if shutil.which(tool) is None]
    if still:
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
        say(f"could not install {', '.join(still)}")
        raise SystemExit(EXIT_NO_TOOLS)
    say(f"installed {', '.join(packages)}")


def raise_fd_limit() -> None:
    """1 000 connections need more than the usual 1 024 descriptors (Envoy inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65_536 if hard == resource.RLIM_INFINITY else min(hard, 65_536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 10) -> None:
    """SIGTERM by PID, then SIGKILL."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
