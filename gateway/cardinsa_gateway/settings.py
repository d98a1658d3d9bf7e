"""Gateway settings, from the environment (``CARDINSA_*``) and ``.env``.

Values the services share keep the services' variable names, so one ``.env``
configures both sides consistently: ``CARDINSA_JWT_ISSUER``,
``CARDINSA_JWT_AUDIENCE``, ``CARDINSA_CORS_ORIGINS``, ``CARDINSA_GATEWAY_SECRET``,
``CARDINSA_JWKS_CACHE_TTL_S``, ``CARDINSA_ENVIRONMENT``, ``CARDINSA_METRICS_HOST``,
``CARDINSA_TRACING_*``.
Gateway-only values are ``CARDINSA_GATEWAY_*``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MIN_PRODUCTION_SECRET_LENGTH = 32


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CARDINSA_",
        env_file=(PROJECT_ROOT / ".env", Path(".env")),
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        hide_input_in_errors=True,
    )

    environment: str = Field(
        default="development",
        validation_alias=AliasChoices("CARDINSA_ENVIRONMENT", "ENVIRONMENT", "environment"),
    )

    # --- listener and admin ---------------------------------------------------
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=0, le=65535)
    # The admin interface always binds to 127.0.0.1: it can stop Envoy.
    gateway_admin_port: int = Field(default=9901, ge=0, le=65535)
    # Envoy's statistics for Prometheus: GET /metrics on a listener of its own
    # (0: none). The address is the services' metrics address (CARDINSA_METRICS_HOST).
    gateway_metrics_port: int = Field(default=9902, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # Proxies in front of the gateway whose X-Forwarded-For entries are trusted.
    gateway_trusted_hops: int = Field(default=0, ge=0)

    # --- upstreams ------------------------------------------------------------
    gateway_upstream_host: str = "127.0.0.1"
    gateway_connect_timeout_s: float = Field(default=2.0, gt=0)
    gateway_health_interval_s: float = Field(default=2.0, gt=0)
    gateway_health_timeout_s: float = Field(default=1.0, gt=0)
    gateway_read_retries: int = Field(default=2, ge=0)
    # Worker i of a service listens on its port + i x this (the services' setting).
    worker_port_step: int = Field(default=100, ge=1)

    # --- tokens (shared with the services) ------------------------------------
    jwt_issuer: str = "cardinsa-identity"
    jwt_audience: str = "cardinsa"
    jwks_cache_ttl_s: int = Field(default=300, ge=1)
    # Where Envoy fetches the JWKS. Unset: from identity through the gateway's
    # own listener (GET /.well-known/jwks.json), so no extra port is needed.
    gateway_jwks_uri: str | None = None
    # Proof the gateway puts on every upstream call (the services then trust its
    # client-address header). Unset: the header is only stripped.
    gateway_secret: SecretStr | None = None

    # --- HTTP edge -------------------------------------------------------------
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://localhost:3000"]
    )
    gateway_max_request_bytes: int = Field(default=1_048_576, ge=1024)
    gateway_max_response_bytes: int = Field(default=8_388_608, ge=1024)
    # Overall local rate limit (all clients together), requests per second.
    gateway_rate_limit_rps: int = Field(default=1000, ge=1)
    gateway_rate_limit_burst: int = Field(default=2000, ge=1)
    # Login: at most this many attempts per client address per window.
    gateway_login_limit: int = Field(default=10, ge=1)
    gateway_login_window_s: int = Field(default=60, ge=1)
    gateway_hsts_max_age_s: int = Field(default=63_072_000, ge=0)
    gateway_access_log: str = "/dev/stdout"

    # --- tracing (shared with the services) -----------------------------------
    # On: Envoy starts or continues each request's trace (W3C traceparent) and
    # sends its spans over OTLP/gRPC to the collector at the endpoint.
    tracing_enabled: bool = False
    tracing_otlp_endpoint: str = "http://127.0.0.1:4317"
    tracing_sample_ratio: float = Field(default=1.0, ge=0, le=1)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("tracing_otlp_endpoint", mode="after")
    @classmethod
    def _otlp_url(cls, value: str) -> str:
        url = urlsplit(value.strip())
        if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
            raise ValueError("CARDINSA_TRACING_OTLP_ENDPOINT must be http(s)://host:port")
        _ = url.port  # ValueError for a port that is not one
        return value.strip()

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> GatewaySettings:
        taken = {self.gateway_port, self.gateway_admin_port}
        if self.gateway_metrics_port and self.gateway_metrics_port in taken:
            raise ValueError(
                "CARDINSA_GATEWAY_METRICS_PORT must differ from CARDINSA_GATEWAY_PORT "
                "and CARDINSA_GATEWAY_ADMIN_PORT"
            )
        if "*" in self.cors_origins:
            raise ValueError("CARDINSA_CORS_ORIGINS must list origins, not '*'")
        if self.environment.strip().lower() == "production":
            secret = self.gateway_secret.get_secret_value() if self.gateway_secret else ""
            if len(secret) < MIN_PRODUCTION_SECRET_LENGTH:
                raise ValueError(
                    "CARDINSA_GATEWAY_SECRET must be set in production "
                    f"(at least {MIN_PRODUCTION_SECRET_LENGTH} characters)"
                )
        return self

    @property
    def secret(self) -> str | None:
        return self.gateway_secret.get_secret_value() if self.gateway_secret else None
