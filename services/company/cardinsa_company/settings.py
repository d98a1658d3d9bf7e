"""Settings of the company service (on top of the foundation's)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from cardinsa_foundation.config import Settings

#: Development default of the webhook secret key; refused in production.
DEV_WEBHOOK_SECRET_ENCRYPTION_KEY = "dev-only-webhook-secret-encryption-key-change-me"  # noqa: S105


class CompanyServiceSettings(Settings):
    company_port: int = Field(default=50052, ge=0, le=65535)
    company_metrics_port: int = Field(default=9052, ge=0, le=65535)
    # Where identity serves gRPC: the JWKS that verifies access tokens comes from there.
    identity_address: str = "127.0.0.1:50051"
    # Deadline of one JWKS fetch from identity.
    identity_timeout_s: float = Field(default=2.0, gt=0)
    # API key of company's platform service account (permission
    # revocations.watch), exchanged with identity for the token that follows
    # identity's token revocations. Required in production.
    service_api_key: SecretStr | None = None
    # Proof that a call came through our gateway (then its client-address header
    # is trusted for the access log). Unset: only the gRPC peer.
    gateway_secret: SecretStr | None = None
    # Callers whose company is not active (suspended, closed, deleted, unknown)
    # are refused on every call; the company's state is cached this long, so a
    # suspension takes effect within that many seconds. Platform admins and the
    # platform's own service accounts are not checked.
    tenant_status_check: bool = True
    tenant_status_ttl_s: float = Field(default=10.0, ge=0)

    # --- webhooks (the API and the event dispatcher read the same settings) -----
    # Encrypts webhook signing secrets at rest (at least 32 bytes); previous keys,
    # comma-separated, still decrypt after a change of key.
    webhook_secret_encryption_key: SecretStr = SecretStr(DEV_WEBHOOK_SECRET_ENCRYPTION_KEY)
    webhook_secret_previous_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Webhook targets must be public hosts: a URL whose host is or resolves to a
    # loopback, private, link-local, shared, multicast or reserved address is
    # refused (at subscription and again at every connection, redirects
    # included). True allows them -- tests and a laptop's own receiver only;
    # refused in production.
    webhook_allow_private_targets: bool = False
    # Webhook URLs must be https; True also allows http (refused in production).
    webhook_allow_http: bool = False

    SECRET_DEFAULTS: ClassVar[Mapping[str, str]] = {
        **Settings.SECRET_DEFAULTS,
        "webhook_secret_encryption_key": DEV_WEBHOOK_SECRET_ENCRYPTION_KEY,
    }

    @field_validator("webhook_secret_previous_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def _production_problems(self) -> list[tuple[str, str]]:
        problems = super()._production_problems()
        for name in ("webhook_allow_private_targets", "webhook_allow_http"):
            if getattr(self, name):
                problems.append(
                    (name, f"CARDINSA_{name.upper()} is for tests and development only")
                )
        return problems

    def serving_problems(self) -> list[tuple[str, str]]:
        problems = super().serving_problems()
        key = self.service_api_key.get_secret_value().strip() if self.service_api_key else ""
        if self.revocation_check and not key.startswith("cdk_"):
            problems.append(
                (
                    "service_api_key",
                    "CARDINSA_SERVICE_API_KEY must be company's API key (cdk_..., permission "
                    "revocations.watch, from `python -m cardinsa_identity.cli "
                    "create-service-key`) to follow identity's token revocations",
                )
            )
        return problems
