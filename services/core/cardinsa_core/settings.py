"""Settings of the core service (on top of the foundation's)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Final
from zoneinfo import available_timezones

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from cardinsa_foundation.config import Settings, split_secret_list

#: A provider's signing secret is at least this long (a shared HMAC key).
MIN_PROVIDER_SECRET_LENGTH = 32

# Development defaults of the personal-data secrets (public, hence refused in
# production like the foundation's).
DEV_PERSONAL_DATA_KEY: Final = "dev-only-personal-data-encryption-key-not-secret"
DEV_PERSONAL_DATA_HASH_KEY: Final = "dev-only-personal-data-lookup-hash-key-not-secret"


class CoreSettings(Settings):
    # One cross-tenant path: the platform's callers of EventService.WatchEvents
    # read every company's events as the platform role.
    USES_PLATFORM_ROLE: ClassVar[bool] = True
    SECRET_DEFAULTS: ClassVar[Mapping[str, str]] = {
        **Settings.SECRET_DEFAULTS,
        "personal_data_key": DEV_PERSONAL_DATA_KEY,
        "personal_data_hash_key": DEV_PERSONAL_DATA_HASH_KEY,
    }

    # Personal data at rest (docs/personal-data.md): the key-encryption secret
    # that wraps new values, earlier ones still accepted for reading while a
    # rotation runs (JSON list or comma-separated; `cli reencrypt` rewrites
    # everything under the current one), and the secret of the keyed hash that
    # finds a national id by exact match.
    personal_data_key: SecretStr = SecretStr(DEV_PERSONAL_DATA_KEY)
    personal_data_previous_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    personal_data_hash_key: SecretStr = SecretStr(DEV_PERSONAL_DATA_HASH_KEY)

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
    # id (JSON object) and one for every other company; the same for the IANA
    # time zone ("today" for the business rules) and the feature flags (per
    # company id: flag name -> on/off; a company not listed has none); one
    # backdating limit and one renewal offer period for every company.
    default_currency: str = "USD"
    tenant_currencies: dict[str, str] = Field(default_factory=dict)
    default_time_zone: str = "UTC"
    tenant_time_zones: dict[str, str] = Field(default_factory=dict)
    tenant_feature_flags: dict[str, dict[str, bool]] = Field(default_factory=dict)
    max_backdate_days: int = Field(default=30, ge=0, le=3650)
    renewal_offer_days: int = Field(default=30, ge=1, le=365)
    # Business rules.
    reinstatement_window_days: int = Field(default=30, ge=0, le=3650)
    claim_approval_band_limits: tuple[Decimal, Decimal] = (Decimal(1000), Decimal(5000))
    policy_number_prefix: str = "POL"
    claim_number_prefix: str = "CLM"
    gateway_secret: SecretStr | None = None
    # Payment providers that may push payment confirmations
    # (PaymentProviderService): provider name -> its signing secrets, the
    # current one first, then any still accepted while a rotation overlaps
    # (JSON object of lists). None configured: every provider is unknown.
    payment_provider_secrets: dict[str, list[SecretStr]] = Field(default_factory=dict)
    # How far a provider's signature timestamp may be from our clock.
    payment_provider_tolerance_s: int = Field(default=300, ge=30, le=3600)

    @field_validator("personal_data_previous_keys", mode="before")
    @classmethod
    def _split_previous_keys(cls, value: Any) -> Any:
        return split_secret_list(value)

    @field_validator("personal_data_key", "personal_data_hash_key", "personal_data_previous_keys")
    @classmethod
    def _long_enough(cls, value: Any) -> Any:
        from cardinsa_foundation.envelope import MIN_SECRET_BYTES

        for secret in value if isinstance(value, list) else [value]:
            if len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"at least {MIN_SECRET_BYTES} bytes (a random secret)")
        return value

    @field_validator("service_api_key", mode="after")
    @classmethod
    def _empty_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @property
    def usable_service_api_key(self) -> str | None:
        """The service API key when it has the shape identity issues (``cdk_...``);
        an empty value or a placeholder (the dev env files') counts as none."""
        if self.service_api_key is None:
            return None
        key = self.service_api_key.get_secret_value().strip()
        return key if key.startswith("cdk_") else None

    def serving_problems(self) -> list[tuple[str, str]]:
        problems = super().serving_problems()
        if self.company_address and self.usable_service_api_key is None:
            problems.append(
                (
                    "service_api_key",
                    "CARDINSA_SERVICE_API_KEY must be core's API key (cdk_..., from "
                    "`python -m cardinsa_identity.cli create-service-key`) to call the "
                    "company service (CARDINSA_COMPANY_ADDRESS is set)",
                )
            )
        elif self.revocation_check and self.usable_service_api_key is None:
            problems.append(
                (
                    "service_api_key",
                    "CARDINSA_SERVICE_API_KEY must be core's API key (cdk_..., permission "
                    "revocations.watch) to follow identity's token revocations",
                )
            )
        return problems

    @field_validator("payment_provider_secrets")
    @classmethod
    def _provider_secrets(cls, value: dict[str, list[SecretStr]]) -> dict[str, list[SecretStr]]:
        for name, secrets in value.items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", name):
                raise ValueError(
                    f"provider {name!r}: names are 1-40 lower-case letters, digits and '-'"
                )
            if not secrets:
                raise ValueError(f"provider {name!r}: at least one signing secret")
            for secret in secrets:
                if len(secret.get_secret_value()) < MIN_PROVIDER_SECRET_LENGTH:
                    raise ValueError(
                        f"provider {name!r}: signing secrets have at least "
                        f"{MIN_PROVIDER_SECRET_LENGTH} characters"
                    )
        return value

    @field_validator("default_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if len(value) != 3 or not value.isalpha() or not value.isupper():
            raise ValueError("must be a three-letter ISO 4217 code")
        return value

    @field_validator("default_time_zone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        return _check_time_zone(value)

    @field_validator("tenant_time_zones")
    @classmethod
    def _time_zones(cls, value: dict[str, str]) -> dict[str, str]:
        for company, zone in value.items():
            try:
                _check_time_zone(zone)
            except ValueError as error:
                raise ValueError(f"company {company}: {error}") from None
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


def _check_time_zone(value: str) -> str:
    """An IANA time zone key this host knows (checked against the list of zones,
    as the company service does, never by loading a file named after the value)."""
    if value not in available_timezones():
        raise ValueError(f"{value[:80]!r} is not an IANA time zone (such as UTC, Europe/Berlin)")
    return value
