"""Settings of the core service (on top of the foundation's)."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator

from cardinsa_foundation.config import Settings


class CoreSettings(Settings):
    # Core has no cross-tenant code path: it never connects as the platform role.
    USES_PLATFORM_ROLE: ClassVar[bool] = False

    core_port: int = Field(default=50053, ge=0, le=65535)
    core_metrics_port: int = Field(default=9053, ge=0, le=65535)
    # Identity: where the JWKS that verifies access tokens comes from, and the
    # API key core exchanges for its own service-account token.
    identity_address: str = "127.0.0.1:50051"
    service_api_key: SecretStr | None = None
    # Company service (tenant state and default currency). Unset: the fallback
    # below is used and every tenant counts as active.
    company_address: str | None = None
    company_call_timeout_s: float = Field(default=2.0, gt=0)
    tenant_status_ttl_s: float = Field(default=10.0, ge=0)
    # Fallback while the company service is not wired: a currency per company
    # id (JSON object) and one for every other company.
    default_currency: str = "USD"
    tenant_currencies: dict[str, str] = Field(default_factory=dict)
    # Business rules.
    reinstatement_window_days: int = Field(default=30, ge=0, le=3650)
    claim_approval_band_limits: tuple[Decimal, Decimal] = (Decimal(1000), Decimal(5000))
    policy_number_prefix: str = "POL"
    claim_number_prefix: str = "CLM"
    gateway_secret: SecretStr | None = None

    @field_validator("default_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if len(value) != 3 or not value.isalpha() or not value.isupper():
            raise ValueError("must be a three-letter ISO 4217 code")
        return value

    @field_validator("policy_number_prefix", "claim_number_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        from cardinsa_core.domain.numbering import valid_prefix

        if not valid_prefix(value):
            raise ValueError("1-10 upper-case letters and digits, starting with a letter")
        return value

    @field_validator("claim_approval_band_limits")
    @classmethod
    def _bands(cls, value: tuple[Decimal, Decimal]) -> tuple[Decimal, Decimal]:
        if not Decimal(0) < value[0] < value[1]:
            raise ValueError("two increasing positive limits")
        return value
