"""`--workers N`: N processes, each on its own port, all stopped by one SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cardinsa_foundation.db import app_role_url


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base >= 65000:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", base))
                b.bind(("127.0.0.1", base + 1))
        except OSError:
            continue
        return base
    raise RuntimeError("no two consecutive free ports")


async def _serving(address: str, timeout_s: float = 60) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while asyncio.get_running_loop().time() < deadline:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    return False


async def test_two_workers_serve_on_consecutive_ports_and_stop_on_sigterm(
    identity_database: str,
) -> None:
    grpc_base, metrics_base = _free_port_pair(), _free_port_pair()
    env = {
        **os.environ,
        "CARDINSA_DATABASE_URL": app_role_url(identity_database),
        "CARDINSA_ENVIRONMENT": "test",
        "CARDINSA_IDENTITY_PORT": str(grpc_base),
        "CARDINSA_IDENTITY_METRICS_PORT": str(metrics_base),
        # Two consecutive free ports; the default spacing (100) is the launcher tests'.
        "CARDINSA_WORKER_PORT_STEP": "1",
        # The stop still goes through the drain, briefly (no gateway waits for it).
        "CARDINSA_DRAIN_DELAY_S": "0.2",
        "CARDINSA_LOG_LEVEL": "WARNING",
    }
    parent = subprocess.Popen(  # noqa: ASYNC220 - spawning does not block; waits go to a thread
        [sys.executable, "-m", "cardinsa_identity.main", "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for index in range(2):
            assert await _serving(f"127.0.0.1:{grpc_base + index}"), f"worker {index} not serving"
        parent.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(parent.wait, 30)
        assert code == 0
        for index in range(2):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", grpc_base + index))  # free again: the worker is gone
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
