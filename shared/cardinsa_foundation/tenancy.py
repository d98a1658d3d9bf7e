"""Is this tenant allowed to act? Asked of the company service, cached briefly.

Every service refuses calls from a principal whose company is not ACTIVE
(suspended or closed). The answer comes from the company service over gRPC
(``CompanyService/GetCompanyStatus``), authenticated as a service account, with
a deadline; it is cached for ``ttl_s`` seconds, so a suspension takes effect
everywhere within ``ttl_s`` (plus the duration of calls already running) —
that is the documented bound. An unknown company is refused like a suspended
one. When the company service cannot be reached and no cached answer exists,
calls fail with UNAVAILABLE rather than being let through.

Service-to-service credentials live here too: a service account's access
token, obtained from identity with an API key and renewed before it expires.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cardinsa_foundation.context import Principal, PrincipalKind
from cardinsa_foundation.errors import NotFound, PermissionDenied, Unavailable

ACTIVE = "ACTIVE"
# What the company service means by an unset max_backdate_days / renewal_offer_days.
DEFAULT_MAX_BACKDATE_DAYS = 30
DEFAULT_RENEWAL_OFFER_DAYS = 30


@dataclass(frozen=True, slots=True)
class TenantStatus:
    company_id: str
    state: str
    default_currency: str = ""
    time_zone: str = ""
    locale: str = ""
    # ACTIVE and not deleted: the one thing that decides whether users may act.
    active: bool | None = None
    # The company's feature flags (a flag not listed is off), read-only: one
    # cached status is shared by every caller.
    feature_flags: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))
    # The company's settings, defaults filled in by the company service.
    max_backdate_days: int = DEFAULT_MAX_BACKDATE_DAYS
    renewal_offer_days: int = DEFAULT_RENEWAL_OFFER_DAYS
    # The name documents issued for the company show, and its country.
    legal_name: str = ""
    country: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.feature_flags, MappingProxyType):
            flags = MappingProxyType(dict(self.feature_flags))
            object.__setattr__(self, "feature_flags", flags)

    @property
    def may_act(self) -> bool:
        return self.active if self.active is not None else self.state == ACTIVE


# Fetches a company's status; raises NotFound for an unknown company.
StatusFetcher = Callable[[str], Awaitable[TenantStatus]]


def tenant_inactive(company_id: str, state: str) -> PermissionDenied:
    return PermissionDenied(
        "the company is not active; its users cannot act",
        reason="TENANT_NOT_ACTIVE",
        metadata={"company_id": company_id, "state": state},
    )


class TenantStatusCache:
    def __init__(
        self, fetch: StatusFetcher, *, ttl_s: float = 10.0, max_entries: int = 10_000
    ) -> None:
        self._fetch = fetch
        self.ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, TenantStatus | None]] = {}
        self._inflight: dict[str, asyncio.Future[TenantStatus | None]] = {}

    async def status(self, company_id: str) -> TenantStatus | None:
        """The company's status (None: no such company), at most ``ttl_s`` old."""
        now = time.monotonic()
        cached = self._entries.get(company_id)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        pending = self._inflight.get(company_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[TenantStatus | None] = asyncio.get_running_loop().create_future()
        self._inflight[company_id] = future
        try:
            try:
                value: TenantStatus | None = await self._fetch(company_id)
            except NotFound:
                value = None
            except Exception as exc:
                error = Unavailable(
                    "cannot confirm the company's status right now; retry later",
                    reason="TENANT_STATUS_UNAVAILABLE",
                )
                future.set_exception(error)
                future.exception()  # mark retrieved: waiters re-raise it themselves
                raise error from exc
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[company_id] = (time.monotonic(), value)
            future.set_result(value)
            return value
        finally:
            self._inflight.pop(company_id, None)

    async def require_active(self, company_id: str | None) -> TenantStatus:
        if not company_id:
            raise PermissionDenied("the caller belongs to no company", reason="NO_TENANT")
        status = await self.status(company_id)
        if status is None:
            raise tenant_inactive(company_id, "UNKNOWN")
        if not status.may_act:
            raise tenant_inactive(company_id, status.state if status.state != ACTIVE else "DELETED")
        return status

    async def check_principal(self, principal: Principal) -> None:
        """For ``CallPipeline(principal_check=...)``: refuse inactive tenants.

        Platform administrators and the platform's own service accounts (a
        service account without a company, e.g. identity calling company) act
        for the platform, not for a tenant, and are not checked.
        """
        if principal.is_platform_admin:
            return
        if principal.company_id is None and principal.kind is PrincipalKind.SERVICE_ACCOUNT:
            return
        await self.require_active(principal.company_id)

    def forget(self, company_id: str) -> None:
        self._entries.pop(company_id, None)


class ServiceCredentials:
    """A service account's access token, renewed shortly before it expires.

    ``obtain`` returns ``(token, expires_at_epoch_seconds)`` — an API-key
    exchange with identity, or identity signing one for itself.
    """

    def __init__(
        self, obtain: Callable[[], Awaitable[tuple[str, float]]], *, renew_before_s: float = 60
    ) -> None:
        self._obtain = obtain
        self._renew_before_s = renew_before_s
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        if self._token is not None and time.time() < self._expires_at - self._renew_before_s:
            return self._token
        async with self._lock:
            if self._token is None or time.time() >= self._expires_at - self._renew_before_s:
                self._token, self._expires_at = await self._obtain()
        return self._token

    def forget(self) -> None:
        """Drop the token (refused: revoked, say); the next call obtains a new one."""
        self._token = None

    async def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {await self.token()}"),)


def api_key_credentials(
    identity_channel: Any, api_key: str, *, timeout_s: float = 3.0
) -> ServiceCredentials:
    """Credentials from an API key, exchanged with identity over gRPC."""
    from cardinsa.identity.v1 import auth_service_pb2, auth_service_pb2_grpc

    stub = auth_service_pb2_grpc.AuthServiceStub(identity_channel)  # type: ignore[no-untyped-call]

    async def obtain() -> tuple[str, float]:
        reply = await stub.ExchangeApiKey(
            auth_service_pb2.ExchangeApiKeyRequest(api_key=api_key), timeout=timeout_s
        )
        return reply.access_token, float(reply.access_token_expire_time.seconds)

    return ServiceCredentials(obtain)


# Worth another attempt: the company service (or the path to it) was briefly
# unavailable or slow. Anything else (NOT_FOUND, PERMISSION_DENIED, ...) is an
# answer, and is not asked again.
RETRYABLE_STATUS_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})


def company_status_fetcher(
    company_channel: Any,
    credentials: ServiceCredentials,
    *,
    timeout_s: float = 2.0,
    attempts: int = 3,
    backoff_s: float = 0.1,
) -> StatusFetcher:
    """Fetch a tenant's status from the company service (``GetCompanyStatus``).

    Authenticated as the calling service's account (``credentials``), with a
    deadline of ``timeout_s`` per attempt and up to ``attempts`` attempts on
    UNAVAILABLE / DEADLINE_EXCEEDED (backoff ``backoff_s``, doubling): the call
    is an idempotent read. An unknown company raises :class:`NotFound` (the
    cache then treats it like an inactive one); a soft-deleted company, ACTIVE
    in name only, has the state ``DELETED``. The status carries the company's
    feature flags and its ``max_backdate_days`` / ``renewal_offer_days`` (the
    company service fills in their defaults; from one that predates them,
    ``0`` / :data:`DEFAULT_RENEWAL_OFFER_DAYS`).
    """
    import grpc

    from cardinsa.company.v1 import company_service_pb2, company_service_pb2_grpc, resources_pb2

    stub = company_service_pb2_grpc.CompanyServiceStub(company_channel)  # type: ignore[no-untyped-call]

    async def fetch(company_id: str) -> TenantStatus:
        request = company_service_pb2.GetCompanyStatusRequest(company_id=company_id)
        for attempt in range(attempts):
            try:
                reply = await stub.GetCompanyStatus(
                    request, timeout=timeout_s, metadata=await credentials.metadata()
                )
                break
            except grpc.aio.AioRpcError as error:
                if error.code() is grpc.StatusCode.NOT_FOUND:
                    raise NotFound("no such company", reason="COMPANY_NOT_FOUND") from None
                if error.code().name not in RETRYABLE_STATUS_CODES or attempt == attempts - 1:
                    raise
                await asyncio.sleep(backoff_s * 2**attempt)
        state = resources_pb2.Company.State.Name(reply.state)
        if not reply.active and state == ACTIVE:
            state = "DELETED"
        return TenantStatus(
            company_id=reply.company_id or company_id,
            state=state,
            default_currency=reply.default_currency,
            time_zone=reply.time_zone,
            locale=reply.locale,
            active=reply.active,
            feature_flags=dict(reply.feature_flags),
            # 0 is a valid max_backdate_days; renewal_offer_days is at least 1, so
            # 0 there means a company service that predates the field.
            max_backdate_days=reply.max_backdate_days,
            renewal_offer_days=reply.renewal_offer_days or DEFAULT_RENEWAL_OFFER_DAYS,
            legal_name=reply.legal_name,
            country=reply.country,
        )

    return fetch
