"""The load generators: h2load (gRPC) and wrk (REST), run and parsed, and a
grpc.aio client for calls that must each be different (ApproveClaim)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardinsa_tools.bench.profiles import (
    GRPC_HEADERS,
)

# ------------------------------------------------------------------ load generators


@dataclass
class Load:
    """What the load generator saw."""

    tool: str
    requests: int  # answered, as the client counts them
    seconds: float
    rate: float
    p50_ms: float | None
    p99_ms: float | None
    client_errors: int  # failed/errored/timeout (h2load), non-2xx + socket errors (wrk)
    connections: int
    exact: bool  # a fixed number of requests (h2load -n): every one was answered
    command: str = ""
    detail: str = ""  # the client's own error report, when it has errors
    p999_ms: float | None = None
    #: The mixed client's calls per method path: (answered, client errors).
    per_path: dict[str, tuple[int, int]] | None = None


_H2_FINISHED = re.compile(r"finished in ([0-9.]+)(ms|s|us)?, ([0-9.]+) req/s")
_H2_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)


def parse_h2load(output: str) -> tuple[float, float, int, int]:
    """(seconds, req/s, done, failed+errored+timeout) from h2load's summary."""
    finished = _H2_FINISHED.search(output)
    counts = _H2_REQUESTS.search(output)
    if finished is None or counts is None:
        raise RuntimeError(f"unexpected h2load output:\n{output[-1500:]}")
    value, unit = float(finished.group(1)), finished.group(2) or "s"
    seconds = value / {"s": 1, "ms": 1e3, "us": 1e6}[unit]
    done = int(counts.group(3))
    bad = int(counts.group(5)) + int(counts.group(6)) + int(counts.group(7))
    return seconds, float(finished.group(3)), done, bad


def percentiles_from_logs(paths: Sequence[Path]) -> tuple[float | None, float | None]:
    """p50 and p99 (ms) from h2load --log-file lines: start µs, status, duration µs."""
    durations: list[int] = []
    for path in paths:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                parts = line.split("\t")
                if len(parts) >= 3 and parts[2].isdigit():
                    durations.append(int(parts[2]))
    if not durations:
        return None, None
    durations.sort()

    def pick(q: float) -> float:
        return durations[min(len(durations) - 1, math.ceil(q * len(durations)) - 1)] / 1000

    return pick(0.50), pick(0.99)


def run_h2load(
    url: str,
    bodies: Sequence[bytes],
    headers: Sequence[str],
    *,
    connections: int,
    streams: int,
    requests: int | None = None,
    duration: float | None = None,
    workdir: Path,
) -> Load:
    """One h2load per body, in parallel (each with ``connections``); -n or -D."""
    workdir.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[subprocess.Popen[str], Path]] = []
    commands = []
    per = None if requests is None else max(connections, requests // len(bodies))
    try:
        for index, body in enumerate(bodies):
            body_file = workdir / f"body-{index}.bin"
            body_file.write_bytes(body)
            log = workdir / f"latency-{index}.log"
            log.unlink(missing_ok=True)
            cmd = ["h2load", "-c", str(connections), "-m", str(streams), "-t", "1"]
            cmd += ["-d", str(body_file), "--log-file", str(log)]
            for header in (*GRPC_HEADERS, *headers):
                cmd += ["-H", header]
            if per is not None:
                cmd += ["-n", str(per)]
            else:
                cmd += ["-D", str(max(1, round(duration or 1)))]
            cmd.append(url)
            commands.append(
                " ".join(c if "authorization" not in c else "-H 'authorization: …'" for c in cmd)
            )
            procs.append(
                (
                    subprocess.Popen(
                        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                    ),
                    log,
                )
            )
        limit = 600.0 if per is not None else (duration or 1) + 60
        seconds, rate, done, bad = 0.0, 0.0, 0, 0
        for proc, _ in procs:
            try:
                out, _ = proc.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
                raise RuntimeError(f"h2load did not finish within {limit:.0f} s") from None
            s, _, d, b = parse_h2load(out)
            seconds, done, bad = max(seconds, s), done + d, bad + b
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    rate = done / seconds if seconds else 0.0
    p50, p99 = percentiles_from_logs([log for _, log in procs])
    return Load(
        "h2load",
        done,
        seconds,
        rate,
        p50,
        p99,
        bad,
        connections * len(bodies),
        exact=per is not None,
        command=commands[0],
    )


_WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m)\s*$", re.M)
_WRK_TOTAL = re.compile(r"(\d+) requests in ([0-9.]+)(us|ms|s|m)")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def wrk_error_detail(output: str) -> str:
    """wrk's own error lines (socket errors by kind, non-2xx), '' when none."""
    found = [m.group(0) for m in (_WRK_SOCKET.search(output), _WRK_NON2XX.search(output)) if m]
    return "; ".join(found)


def parse_wrk(output: str) -> tuple[int, float, int, dict[str, float]]:
    """(requests, seconds, non-2xx + socket errors, {'50': ms, '99': ms})."""
    total = _WRK_TOTAL.search(output)
    if total is None:
        raise RuntimeError(f"unexpected wrk output:\n{output[-1500:]}")
    seconds = float(total.group(2)) * _UNIT_S[total.group(3)]
    socket_errors = _WRK_SOCKET.search(output)
    errors = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    non2xx = _WRK_NON2XX.search(output)
    errors += int(non2xx.group(1)) if non2xx else 0
    latency = {
        m.group(1): float(m.group(2)) * _UNIT_S[m.group(3)] * 1000
        for m in _WRK_LATENCY.finditer(output)
    }
    return int(total.group(1)), seconds, errors, latency


def run_wrk(url: str, headers: Sequence[str], *, connections: int, seconds: float) -> Load:
    threads = 2 if connections >= 2 else 1
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
    ]
    for header in headers:
        cmd += ["-H", header]
    cmd.append(url)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-1000:]}")
    requests, elapsed, errors, latency = parse_wrk(done.stdout)
    shown = " ".join(c if "authorization" not in c else "'authorization: …'" for c in cmd)
    detail = wrk_error_detail(done.stdout) if errors else ""
    return Load(
        "wrk",
        requests,
        elapsed,
        requests / elapsed if elapsed else 0.0,
        latency.get("50"),
        latency.get("99"),
        errors,
        connections,
        exact=False,
        command=shown,
        detail=detail,
    )


def gateway_failures(access_log: Path, offset: int | None) -> str:
    """What Envoy's access log says about the failed requests written after
    ``offset`` (the gateway's side of an error the services never counted).
    Requests the client abandoned (status 0, downstream disconnect) are left out."""
    if offset is None or not access_log.exists():
        return ""
    time.sleep(0.5)  # Envoy flushes its log every 250 ms
    found: dict[str, int] = {}
    with access_log.open("rb") as log:
        log.seek(offset)
        for raw in log:
            with contextlib.suppress(ValueError):
                entry = json.loads(raw)
                if entry.get("status") in (200, 0):
                    continue
                key = (
                    f"HTTP {entry.get('status')} {entry.get('details')} "
                    f"grpc-status {entry.get('grpc_status')}"
                )
                found[key] = found.get(key, 0) + 1
    return ", ".join(f"gateway logged {n} x {key}" for key, n in sorted(found.items()))


#: One call of a mixed load: method path, serialized request, metadata.
Call = tuple[str, bytes, tuple[tuple[str, str], ...]]


def run_distinct_calls(
    address: str,
    path: str,
    bodies: Sequence[bytes],
    metadata: Sequence[tuple[str, str]],
    *,
    connections: int,
    streams: int,
    seconds: float | None = None,
) -> Load:
    """Each of ``bodies`` (serialized request messages) sent once, over
    ``connections`` grpc.aio channels with ``streams`` calls in flight on each --
    the load of h2load ``-c connections -m streams``, for calls that may not be
    repeated (h2load sends one body over and over). With ``seconds``, no call
    starts after that time (a warm-up); otherwise every body is sent. The bodies
    sent are the first ``requests`` of the Load. Every call's status is seen
    here: the failures are the client's errors."""
    md = tuple(metadata)
    return run_calls(
        address,
        [(path, body, md) for body in bodies],
        connections=connections,
        streams=streams,
        seconds=seconds,
    )


def run_calls(
    address: str,
    calls: Sequence[Call],
    *,
    connections: int,
    streams: int,
    seconds: float | None = None,
) -> Load:
    """run_distinct_calls for calls of any methods and callers (the mixed
    workload): each call once, in order, its own path and metadata; the Load
    also counts the calls per path (``per_path``) for the server-side check."""
    return asyncio.run(
        _distinct_calls(
            address,
            calls,
            connections=connections,
            streams=streams,
            seconds=seconds,
        )
    )


async def _distinct_calls(
    address: str,
    calls: Sequence[Call],
    *,
    connections: int,
    streams: int,
    seconds: float | None,
) -> Load:
    import grpc

    # A channel of its own per connection (no shared subchannel): one HTTP/2
    # connection each, like h2load's.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(connections)]
    taken = 0
    durations: list[float] = []
    failures: dict[str, int] = {}
    per_path: dict[str, list[int]] = {}
    try:
        await asyncio.gather(*(channel.channel_ready() for channel in channels))
        started = time.perf_counter()
        deadline = None if seconds is None else started + seconds

        async def stream(channel: Any) -> None:
            nonlocal taken
            methods: dict[str, Any] = {}
            while taken < len(calls):
                if deadline is not None and time.perf_counter() > deadline:
                    return
                (path, body, metadata), taken = calls[taken], taken + 1
                call = methods.get(path)
                if call is None:
                    call = methods[path] = channel.unary_unary(path)  # bytes in, bytes out
                counts = per_path.setdefault(path, [0, 0])
                t0 = time.perf_counter()
                try:
                    await call(body, metadata=metadata, timeout=60)
                except grpc.aio.AioRpcError as error:
                    code = error.code().name
                    failures[code] = failures.get(code, 0) + 1
                    counts[1] += 1
                durations.append(time.perf_counter() - t0)
                counts[0] += 1

        await asyncio.gather(*(stream(c) for c in channels for _ in range(streams)))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
    durations.sort()

    def pick(q: float) -> float | None:
        if not durations:
            return None
        return durations[min(len(durations) - 1, math.ceil(q * len(durations)) - 1)] * 1000

    done = len(durations)
    paths = sorted(per_path)
    what = paths[0].rsplit("/", 1)[-1] if len(paths) == 1 else f"{len(paths)} methods"
    return Load(
        "grpc.aio",
        done,
        elapsed,
        done / elapsed if elapsed else 0.0,
        pick(0.50),
        pick(0.99),
        sum(failures.values()),
        connections,
        exact=True,
        command=(
            f"grpc.aio client (cardinsa_tools.bench.load.run_calls): {done} distinct "
            f"calls ({what}), {connections} channels x {streams} in flight"
        ),
        detail=", ".join(f"client saw {n} x {code}" for code, n in sorted(failures.items())),
        p999_ms=pick(0.999),
        per_path={path: (n, bad) for path, (n, bad) in per_path.items()},
    )
