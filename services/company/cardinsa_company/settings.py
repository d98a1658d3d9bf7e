"""Settings of the company service (on top of the foundation's)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from cardinsa_foundation.config import Settings


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
