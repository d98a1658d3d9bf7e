"""Processes and ports as Linux's /proc shows them (PIDs, CPU time, peak memory)."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens on ``host:port`` (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports nothing listens on (held open together while picked)."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(probe)
            probe.bind(("127.0.0.1", 0))
        ports = [int(probe.getsockname()[1]) for probe in held]
    finally:
        for probe in held:
            probe.close()
    assert len(set(ports)) == count
    busy = [port for port in ports if not port_is_free(port)]
    assert not busy, f"ports picked as free are in use: {busy}"
    return ports


def free_port_block(count: int = 1, step: int = 1) -> int:
    """A port p of 127.0.0.1 with p + i x ``step`` free for every i < ``count``
    (the ports of a service's workers, CARDINSA_WORKER_PORT_STEP apart)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count * step >= 65_000:
            continue
        held: list[socket.socket] = []
        try:
            for offset in range(count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", base + offset * step))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return base
    raise RuntimeError(f"no block of {count} free ports {step} apart")


def listening_pids(port: int) -> list[int]:
    """PIDs of the processes listening on TCP ``port`` of this machine."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if (
                    len(parts) > 9
                    and parts[3] == "0A"
                    and int(parts[1].rsplit(":", 1)[1], 16) == port
                ):
                    inodes.add(f"socket:[{parts[9]}]")
    if not inodes:
        return []
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:
            continue
    return sorted(found)


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port``, or None."""
    return next(iter(listening_pids(port)), None)


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def cmdline(pid: int) -> str:
    """The command line of ``pid``, words joined by spaces ('' once it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time the processes have used so far (threads included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


def machine_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over ``seconds`` (from /proc/stat): what else runs.
    Taken while the suite idles, it says whether the ratios can be trusted."""

    def snap() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(values), values[3] + values[4]

    total0, idle0 = snap()
    time.sleep(seconds)
    total1, idle1 = snap()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident set (VmHWM) of ``pid`` in MB, None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
