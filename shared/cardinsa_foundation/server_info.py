"""What a running service says about itself, as one public RPC.

Each service exposes ``GetServerInfo`` (``GET /v1/info/<service>``) and answers it
with :meth:`ServerInfoProvider.build_message`: name, version, build commit and
time (:class:`~cardinsa_foundation.build.BuildInfo`), environment, start time,
uptime, the gRPC APIs it serves and the status of each dependency.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from cardinsa.common.v1 import common_pb2
from cardinsa_foundation.build import BuildInfo

# A dependency probe returns its latency in seconds or raises when unreachable.
DependencyProbe = Callable[[], Awaitable[float]]


class ServerInfoProvider:
    def __init__(
        self,
        *,
        build: BuildInfo,
        environment: str,
        apis: Sequence[str],
        dependencies: dict[str, DependencyProbe] | None = None,
    ) -> None:
        self.build = build
        self.name = build.service
        self.version = build.version
        self.environment = environment
        self.apis = list(apis)
        self.dependencies = dict(dependencies or {})
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
        built: Timestamp | None = None
        if self.build.build_time is not None:
            built = Timestamp()
            built.FromDatetime(self.build.build_time)
        overall = serving if all(s.status == serving for s in statuses) else not_serving
        return common_pb2.ServerInfo(
            name=self.name,
            version=self.version,
            build=self.build.commit,
            build_time=built,
            environment=self.environment,
            start_time=start,
            uptime_seconds=int(time.monotonic() - self._started),
            apis=self.apis,
            dependencies=statuses,
            status=overall,
        )
