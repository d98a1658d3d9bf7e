"""Settings of core's lifecycle scheduler (``python -m cardinsa_core.scheduler``).

A module of its own: ``cardinsa_core.settings`` holds the one settings class of
the core service (deployment checks find it there); the scheduler declares its
class as ``SETTINGS_CLASS``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from cardinsa_core.settings import CoreSettings


class SchedulerSettings(CoreSettings):
    """The lifecycle scheduler's settings (``python -m cardinsa_core.scheduler``):
    core's, plus its own. Unlike the core server it reads across tenants (which
    companies have due policies), so it connects as the platform role too."""

    USES_PLATFORM_ROLE: ClassVar[bool] = True

    # 0: no metrics endpoint.
    scheduler_metrics_port: int = Field(default=9054, ge=0, le=65535)
    # Seconds between passes (a pass catches up everything due by then).
    scheduler_interval_s: float = Field(default=60.0, gt=0)
    # Policies read and moved per batch (per company and kind).
    scheduler_batch_size: int = Field(default=100, ge=1, le=10_000)
    # How often a standby replica tries to become the leader.
    scheduler_lock_retry_s: float = Field(default=5.0, gt=0)
    # Whether --now may name an instant after the real clock. Moving policies
    # before their date is irreversible (a policy expired or a cancellation
    # completed early takes the cover away before it ends); only tests and
    # rehearsals on a copy of the data need it. Refused in production.
    scheduler_allow_future_clock: bool = False

    def _production_problems(self) -> list[tuple[str, str]]:
        problems = super()._production_problems()
        if self.scheduler_allow_future_clock:
            problems.append(
                (
                    "scheduler_allow_future_clock",
                    "CARDINSA_SCHEDULER_ALLOW_FUTURE_CLOCK must be false in production",
                )
            )
        return problems
