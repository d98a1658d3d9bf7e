"""Settings of the event dispatcher (``python -m cardinsa_company.dispatcher``).

A module of its own: ``cardinsa_company.settings`` holds the one settings class
of the company service (deployment checks find it there); the dispatcher
declares its class as ``SETTINGS_CLASS`` (``cardinsa_company.dispatcher``).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from cardinsa_company.settings import CompanyServiceSettings

#: The services whose events the dispatcher can follow.
SOURCES: Final = ("identity", "company", "core")


class DispatcherSettings(CompanyServiceSettings):
    """The event dispatcher's settings: company's (the webhook settings, the
    database, ``service_api_key``), plus its own. It reads and writes every
    company's deliveries, so it connects as the platform role."""

    USES_PLATFORM_ROLE: ClassVar[bool] = True

    # 0: no metrics endpoint.
    dispatcher_metrics_port: int = Field(default=9055, ge=0, le=65535)

    # --- ingestion ---------------------------------------------------------------
    # The services whose EventService.WatchEvents the dispatcher follows
    # (comma-separated: identity, company, core).
    dispatcher_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(SOURCES)
    )
    # Where each source serves gRPC.
    dispatcher_identity_address: str = "127.0.0.1:50051"
    dispatcher_company_address: str = "127.0.0.1:50052"
    dispatcher_core_address: str = "127.0.0.1:50053"
    # How often a standby replica tries to become a source's leader.
    dispatcher_lock_retry_s: float = Field(default=5.0, gt=0)
    # First and longest wait between reconnections of a broken watch (doubling).
    dispatcher_reconnect_base_s: float = Field(default=0.5, gt=0)
    dispatcher_reconnect_max_s: float = Field(default=30.0, gt=0)
    # A watch silent for this long (the services send a heartbeat every few
    # seconds) is reopened.
    dispatcher_idle_timeout_s: float = Field(default=30.0, gt=0)

    # --- JetStream (optional) ----------------------------------------------------
    # NATS server URL (nats://host:4222): every event is also published to
    # JetStream. Unset: webhooks only.
    dispatcher_nats_url: str | None = None
    dispatcher_nats_stream: str = "CARDINSA_EVENTS"
    dispatcher_nats_subject_prefix: str = "cardinsa.events"

    # --- deliveries ----------------------------------------------------------------
    # Deliveries in flight at once per replica (a hanging receiver holds one).
    dispatcher_concurrency: int = Field(default=8, ge=1, le=1000)
    # How often an idle replica looks for due deliveries.
    dispatcher_poll_interval_s: float = Field(default=1.0, gt=0)
    # A claimed delivery is this replica's for this long; after it (a crash) any
    # replica attempts it again. Longer than an attempt can take.
    dispatcher_lease_s: float = Field(default=120.0, gt=0)
    # Deadline of one HTTP attempt (connect, send, answer), redirects included.
    dispatcher_delivery_timeout_s: float = Field(default=10.0, gt=0)
    # Retry backoff: base x 2^(attempt-1), at most max; half fixed, half random.
    dispatcher_retry_base_s: float = Field(default=30.0, gt=0)
    dispatcher_retry_max_s: float = Field(default=21600.0, gt=0)
    # Attempts before a delivery is dead-lettered (redeliver starts a new budget).
    dispatcher_max_attempts: int = Field(default=10, ge=1, le=100)

    @field_validator("dispatcher_sources", mode="before")
    @classmethod
    def _split_sources(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("dispatcher_sources")
    @classmethod
    def _known_sources(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in SOURCES]
        if unknown:
            raise ValueError(f"unknown sources {unknown}: each must be one of {list(SOURCES)}")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> DispatcherSettings:
        # An attempt may take the timeout per hop (three redirects at most): a
        # lease shorter than that would let another replica repeat it meanwhile.
        if self.dispatcher_lease_s <= 4 * self.dispatcher_delivery_timeout_s:
            raise ValueError(
                "dispatcher_lease_s must be longer than 4 x dispatcher_delivery_timeout_s"
            )
        return self

    def source_address(self, source: str) -> str:
        return str(getattr(self, f"dispatcher_{source}_address"))

    def serving_problems(self) -> list[tuple[str, str]]:
        # Not company's own check (its key follows revocations): the
        # dispatcher's key watches events.
        key = self.service_api_key.get_secret_value().strip() if self.service_api_key else ""
        if not key.startswith("cdk_"):
            return [
                (
                    "service_api_key",
                    "CARDINSA_SERVICE_API_KEY must be the dispatcher's API key (cdk_..., "
                    "permission events.watch, from `python -m cardinsa_identity.cli "
                    "create-service-key`) to watch the services' events",
                )
            ]
        return []
