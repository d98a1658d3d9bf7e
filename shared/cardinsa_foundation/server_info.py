"""What the seed's ``/api/v1/``, ``/version`` and ``/status`` answered, as one RPC.

Each service exposes ``GetServerInfo`` (public) and answers it with
:meth:`ServerInfoProvider.build`: name, version, build, environment, start time,
uptime, the gRPC APIs it serves and the status of each dependency.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from cardinsa.common.v1 import common_pb2

# A dependency probe returns its latency in seconds or raises when unreachable.
DependencyProbe = Callable[[], Awaitable[float]]


class ServerInfoProvider:
    def __init__(
        self,
        *,
        name: str,
        version: str,
        environment: str,
        apis: Sequence[str],
        dependencies: dict[str, DependencyProbe] | None = None,
        build: str | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.environment = environment
        self.apis = list(apis)
        self.dependencies = dict(dependencies or {})
        self.build = build or os.environ.get("CARDINSA_BUILD", "dev")
        self.start_time = datetime.now(UTC)
        self._started = time.monotonic()

    async def build_message(self) -> common_pb2.ServerInfo:
        serving = common_pb2.SERVING_STATUS_SERVING
        not_serving = common_pb2.SERVING_STATUS_NOT_SERVING
        statuses = []
        for dep_name, probe in self.dependencies.items():
            try:
                latency_s = await probe()
                statuses.append(
                    common_pb2.DependencyStatus(
                        name=dep_name, status=serving, latency_ms=round(latency_s * 1000, 3)
                    )
                )
            except Exception:
                statuses.append(common_pb2.DependencyStatus(name=dep_name, status=not_serving))
        start = Timestamp()
        start.FromDatetime(self.start_time)
        overall = serving if all(s.status == serving for s in statuses) else not_serving
        return common_pb2.ServerInfo(
            name=self.name,
            version=self.version,
            build=self.build,
            environment=self.environment,
            start_time=start,
            uptime_seconds=int(time.monotonic() - self._started),
            apis=self.apis,
            dependencies=statuses,
            status=overall,
        )
