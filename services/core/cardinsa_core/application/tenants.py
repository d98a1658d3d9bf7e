"""Which tenants may act, in which currency and time zone, with which flags
and limits: the company service's answer.

The application asks a :class:`TenantDirectory`; it does not care where the
answer comes from. Two implementations:

- :class:`CompanyServiceDirectory` asks the company service
  (``CompanyService/GetCompanyStatus`` through the foundation's
  ``company_status_fetcher``, as a service account, with retries, cached
  briefly by the foundation's ``TenantStatusCache``): a suspended or closed
  tenant's calls are refused and products default to the company's currency.
- :class:`SettingsTenantDirectory`, the fallback while the company service is
  not wired: every tenant with a company counts as active and its currency,
  time zone and feature flags come from the settings (``tenant_currencies``,
  ``tenant_time_zones``, ``tenant_feature_flags`` per company id, else
  ``default_currency``, ``default_time_zone`` and no flags), its limits from
  ``max_backdate_days`` and ``renewal_offer_days``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.context import Principal
from cardinsa_foundation.errors import PermissionDenied
from cardinsa_foundation.tenancy import TenantStatusCache

__all__ = ["CompanyServiceDirectory", "SettingsTenantDirectory", "TenantDirectory", "TenantFacts"]


@dataclass(frozen=True, slots=True)
class TenantFacts:
    """What the business rules need to know about a company."""

    #: IANA time zone: "today" for every rule is the company's date in it.
    time_zone: str = "UTC"
    #: Feature flags (a flag not listed is off); they choose the rating strategy.
    feature_flags: Mapping[str, bool] = field(default_factory=dict)
    #: How far before today a policy may start without an underwriter.
    max_backdate_days: int = 30
    #: How many days before expiry the renewal offer is made.
    renewal_offer_days: int = 30
    #: BCP 47 locale of the company (documents are issued in it); "" unknown.
    locale: str = ""
    #: Country of registration (ISO 3166-1 alpha-2); "" unknown.
    country: str = ""
    #: The name documents issued for the company show; "" unknown.
    legal_name: str = ""


class TenantDirectory(Protocol):
    """What core needs to know about tenants."""

    #: ``company-service`` or ``settings`` (for server info and logs).
    source: str

    async def check_principal(self, principal: Principal) -> None:
        """Refuse a caller whose company may not act (PERMISSION_DENIED)."""

    async def default_currency(self, company_id: uuid.UUID) -> str:
        """The company's ISO 4217 currency."""

    async def facts(self, company_id: uuid.UUID) -> TenantFacts:
        """The company's time zone, feature flags and limits."""


def _no_tenant() -> PermissionDenied:
    return PermissionDenied("the caller belongs to no company", reason="NO_TENANT")


class SettingsTenantDirectory:
    """Fallback: tenants are active; currencies, time zones, flags and limits
    come from the settings."""

    source = "settings"

    def __init__(self, settings: CoreSettings) -> None:
        self._default = settings.default_currency
        self._currencies = {k.lower(): v for k, v in settings.tenant_currencies.items()}
        self._default_time_zone = settings.default_time_zone
        self._time_zones = {k.lower(): v for k, v in settings.tenant_time_zones.items()}
        self._flags = {
            k.lower(): MappingProxyType(dict(v)) for k, v in settings.tenant_feature_flags.items()
        }
        self._max_backdate_days = settings.max_backdate_days
        self._renewal_offer_days = settings.renewal_offer_days

    async def check_principal(self, principal: Principal) -> None:
        if not principal.company_id:
            raise _no_tenant()

    async def default_currency(self, company_id: uuid.UUID) -> str:
        return self._currencies.get(str(company_id), self._default)

    async def facts(self, company_id: uuid.UUID) -> TenantFacts:
        key = str(company_id)
        return TenantFacts(
            time_zone=self._time_zones.get(key, self._default_time_zone),
            feature_flags=self._flags.get(key, MappingProxyType({})),
            max_backdate_days=self._max_backdate_days,
            renewal_offer_days=self._renewal_offer_days,
        )


class CompanyServiceDirectory:
    """The company service's view, cached; the settings fill in a missing currency.

    Time zone, feature flags and limits are the company's own (the company
    service fills in the defaults of unset settings); a company without a time
    zone (never: it is required there) reads as UTC.
    """

    source = "company-service"

    def __init__(self, cache: TenantStatusCache, fallback: SettingsTenantDirectory) -> None:
        self._cache = cache
        self._fallback = fallback

    async def check_principal(self, principal: Principal) -> None:
        await self._cache.check_principal(principal)

    async def default_currency(self, company_id: uuid.UUID) -> str:
        status = await self._cache.require_active(str(company_id))
        return status.default_currency or await self._fallback.default_currency(company_id)

    async def facts(self, company_id: uuid.UUID) -> TenantFacts:
        status = await self._cache.require_active(str(company_id))
        return TenantFacts(
            time_zone=status.time_zone or "UTC",
            feature_flags=status.feature_flags,
            max_backdate_days=status.max_backdate_days,
            renewal_offer_days=status.renewal_offer_days,
            locale=status.locale,
            country=status.country,
            legal_name=status.legal_name,
        )
