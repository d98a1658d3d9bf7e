"""A company's webhook subscriptions, and its deliveries (WebhookService).

Tenancy is the organization service's: :func:`company_scope` turns another
tenant's company into NOT_FOUND before anything is read, every query filters by
the company and the transaction's tenant is that company. A subscription,
delivery or attempt of another company or another subscription answers the same
NOT_FOUND as one that does not exist. Changes need a company that is neither
closed nor deleted; reads do not.

The signing secret is made here, stored only encrypted (bound to the
subscription id) and shown once, in the answer of the call that made it; a
retry of that call (same request id) answers without it, and nothing else --
audit log, logs, errors -- ever carries it.

A URL is judged twice: its shape (https, no credentials, ...) and where its host
points. The host is resolved here with the event loop's resolver and every
address it resolves to must be public; the dispatcher checks again at every
connection, since DNS can change after the subscription was made.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import uuid
from dataclasses import replace
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_company.application.context import (
    CompanyContext,
    CompanyScope,
    ListQuery,
    claim_request,
    company_scope,
    scope_company,
    writable_company,
)
from cardinsa_company.domain.organization import parse_mask
from cardinsa_company.domain.subscriptions import (
    SUBSCRIPTION_FIELDS,
    SubscriptionSpec,
    audited_url,
    check_redelivery,
    check_spec,
    normalize_spec,
    previous_secret_ttl,
    secret_hint,
    target_problem,
)
from cardinsa_company.domain.webhooks import SecretCipher, check_url, new_secret
from cardinsa_company.repository import webhooks as repo
from cardinsa_company.repository.models import (
    WebhookDeliveryAttemptRow,
    WebhookDeliveryRow,
    WebhookSubscriptionRow,
)
from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_foundation.errors import FailedPrecondition, FieldViolation, InvalidArgument
from cardinsa_foundation.paging import Page
from cardinsa_foundation.use_cases import (
    check_etag,
    check_request_id,
    lookup_uuid,
    not_found,
    require_principal,
)

CREATE_SUBSCRIPTION: Final = "CreateWebhookSubscription"
PREFIX: Final = "webhook_subscription"
#: A lookup that takes longer is treated as one that failed.
RESOLVE_TIMEOUT_S: Final = 5.0
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}


def _invalid(violations: list[FieldViolation]) -> InvalidArgument:
    return InvalidArgument("the webhook subscription is not valid", field_violations=violations)


def secret_cipher(settings: CompanyServiceSettings) -> SecretCipher:
    """The cipher of stored secrets, under the settings' current and previous keys."""
    return SecretCipher(
        settings.webhook_secret_encryption_key.get_secret_value(),
        previous_keys=[k.get_secret_value() for k in settings.webhook_secret_previous_keys],
    )


async def url_target_problem(url: str, *, allow_http: bool, allow_private: bool) -> str:
    """Why ``url`` may not receive webhooks ("" when it may): its shape, then every
    address its host is or resolves to. A host that does not resolve is refused:
    nothing could be delivered to it, and accepting it now would let it point
    anywhere later unchecked until the first delivery."""
    parts, why = check_url(url, allow_http=allow_http)
    if parts is None:
        return why
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    else:
        return target_problem([host], allow_private=allow_private)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 443)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, TimeoutError):
        return "the host name does not resolve"
    return target_problem([str(info[4][0]) for info in infos], allow_private=allow_private)


class WebhookUseCases:
    def __init__(self, ctx: CompanyContext) -> None:
        self.ctx = ctx
        self.cipher = secret_cipher(ctx.settings)

    # ================================================================ subscriptions

    async def create_subscription(
        self, company_id: str, spec: SubscriptionSpec, *, request_id: str
    ) -> tuple[WebhookSubscriptionRow, str]:
        """The new subscription and its secret; a retry with the same request id:
        the first call's subscription and "" (the secret was shown once)."""
        scope = company_scope(require_principal(), company_id)
        spec = normalize_spec(spec)
        if spec.state == "STATE_UNSPECIFIED":
            spec = replace(spec, state="ACTIVE")
        violations = check_spec(
            spec, prefix=PREFIX, allow_http=self.ctx.settings.webhook_allow_http
        ) + check_request_id(request_id)
        if violations:
            raise _invalid(violations)
        await self._check_target(spec.url)
        new_id = uuid.uuid4()
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            earlier = await claim_request(
                session,
                scope.company_id,
                CREATE_SUBSCRIPTION,
                request_id,
                str(new_id),
                spec,
            )
            if earlier is not None:
                return await self._subscription(session, scope, earlier), ""
            await writable_company(session, scope, company_id, "webhooks")
            secret = new_secret()
            row = repo.new_subscription(
                new_id,
                scope.company_id,
                url=spec.url,
                event_types=list(spec.event_types),
                description=spec.description,
                state=spec.state,
                secret_ciphertext=self.cipher.encrypt(str(new_id), secret),
                secret_hint=secret_hint(secret),
            )
            session.add(row)
            await session.flush()
            await self.ctx.record(
                session,
                scope,
                "webhook_subscription.create",
                row.id,
                ["url", "event_types", "description", "state", "secret"],
                url=audited_url(row.url),
                event_types=list(row.event_types),
                state=row.state,
                secret_hint=row.secret_hint,
            )
            return row, secret

    async def get_subscription(
        self, company_id: str, subscription_id: str
    ) -> WebhookSubscriptionRow:
        scope = company_scope(require_principal(), company_id)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await scope_company(session, scope, company_id)
            return await self._subscription(session, scope, subscription_id)

    async def list_subscriptions(
        self, company_id: str, query: ListQuery
    ) -> Page[WebhookSubscriptionRow]:
        scope = company_scope(require_principal(), company_id)
        stmt = repo.subscriptions_listing(scope.company_id, show_deleted=query.show_deleted)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await scope_company(session, scope, company_id)
            return await self.ctx.list_page(
                session, stmt, query, order=repo.SUBSCRIPTION_ORDER, parent=str(scope.company_id)
            )

    async def update_subscription(
        self,
        company_id: str,
        subscription_id: str,
        spec: SubscriptionSpec,
        mask_paths: list[str],
        etag: str,
    ) -> WebhookSubscriptionRow:
        scope = company_scope(require_principal(), company_id)
        mask = parse_mask(mask_paths, SUBSCRIPTION_FIELDS, "webhook subscription")
        spec = normalize_spec(spec)
        violations = check_spec(
            spec, prefix=PREFIX, allow_http=self.ctx.settings.webhook_allow_http, fields=mask
        )
        if violations:
            raise _invalid(violations)
        if "url" in mask:
            await self._check_target(spec.url)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            row = await self._changing(session, scope, company_id, subscription_id, etag)
            self._require_live(row)
            values = {
                "url": spec.url,
                "event_types": list(spec.event_types),
                "description": spec.description,
                "state": spec.state,
            }
            changed = [f for f in sorted(mask) if values[f] != getattr(row, f)]
            if not changed:
                return row
            for field in changed:
                setattr(row, field, values[field])
            await session.flush()
            await self.ctx.record(
                session,
                scope,
                "webhook_subscription.update",
                row.id,
                changed,
                **{f: values[f] for f in changed if f in ("event_types", "state")},
                **({"url": audited_url(spec.url)} if "url" in changed else {}),
            )
            return row

    async def delete_subscription(
        self, company_id: str, subscription_id: str, etag: str
    ) -> WebhookSubscriptionRow:
        scope = company_scope(require_principal(), company_id)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            row = await self._changing(session, scope, company_id, subscription_id, etag)
            if row.delete_time is None:
                row.soft_delete()
                await session.flush()
                await self.ctx.record(
                    session, scope, "webhook_subscription.delete", row.id, ["delete_time"]
                )
            return row

    async def rotate_secret(
        self, company_id: str, subscription_id: str, ttl_seconds: int, etag: str
    ) -> tuple[WebhookSubscriptionRow, str]:
        """The subscription with a new secret, and that secret. The old one stays,
        still encrypted, next to it until the overlap ends (a rotation during an
        overlap ends the earlier overlap: only the two newest secrets sign)."""
        scope = company_scope(require_principal(), company_id)
        ttl = previous_secret_ttl(ttl_seconds)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            row = await self._changing(session, scope, company_id, subscription_id, etag)
            self._require_live(row)
            secret = new_secret()
            now = await repo.database_now(session)
            row.previous_secret_ciphertext = row.secret_ciphertext
            row.previous_secret_expire_time = now + ttl
            row.secret_ciphertext = self.cipher.encrypt(str(row.id), secret)
            row.secret_hint = secret_hint(secret)
            await session.flush()
            await self.ctx.record(
                session,
                scope,
                "webhook_subscription.rotate_secret",
                row.id,
                ["secret", "secret_hint", "previous_secret_expire_time"],
                secret_hint=row.secret_hint,
                previous_secret_expire_time=row.previous_secret_expire_time.isoformat(),
            )
            return row, secret

    # ================================================================ deliveries

    async def list_deliveries(
        self, company_id: str, subscription_id: str, query: ListQuery
    ) -> Page[WebhookDeliveryRow]:
        scope = company_scope(require_principal(), company_id)
        condition = repo.DELIVERY_FILTER.parse(query.filter)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await scope_company(session, scope, company_id)
            subscription = await self._subscription(session, scope, subscription_id)
            stmt = repo.deliveries_listing(scope.company_id, subscription.id, condition)
            return await self.ctx.list_page(
                session,
                stmt,
                query,
                order=repo.DELIVERY_ORDER,
                parent=f"{scope.company_id}/{subscription.id}",
            )

    async def list_attempts(
        self, company_id: str, subscription_id: str, delivery_id: str, query: ListQuery
    ) -> Page[WebhookDeliveryAttemptRow]:
        scope = company_scope(require_principal(), company_id)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await scope_company(session, scope, company_id)
            subscription = await self._subscription(session, scope, subscription_id)
            delivery = await self._delivery(session, scope, subscription, delivery_id)
            stmt = repo.attempts_listing(scope.company_id, delivery.id)
            return await self.ctx.list_page(
                session,
                stmt,
                query,
                order=repo.ATTEMPT_ORDER,
                parent=f"{scope.company_id}/{subscription.id}/{delivery.id}",
            )

    async def redeliver(
        self, company_id: str, subscription_id: str, delivery_id: str
    ) -> WebhookDeliveryRow:
        """A finished delivery back in the queue, due now, with the same event."""
        scope = company_scope(require_principal(), company_id)
        async with self.ctx.db.unit_of_work(company_id=scope.company_id) as session:
            await writable_company(session, scope, company_id, "webhooks")
            subscription = await self._subscription(session, scope, subscription_id)
            delivery = await self._delivery(session, scope, subscription, delivery_id, lock=True)
            if subscription.delete_time is not None:
                raise self._deleted(subscription)
            check_redelivery(delivery.state, str(delivery.id))
            previous = delivery.state
            await repo.requeue(session, delivery)
            await self.ctx.record(
                session,
                scope,
                "webhook_delivery.redeliver",
                delivery.id,
                ["state", "attempt_count", "next_attempt_time"],
                subscription_id=str(subscription.id),
                event_id=str(delivery.event_id),
                from_state=previous,
            )
            return delivery

    # ================================================================ helpers

    async def _check_target(self, url: str) -> None:
        settings = self.ctx.settings
        why = await url_target_problem(
            url,
            allow_http=settings.webhook_allow_http,
            allow_private=settings.webhook_allow_private_targets,
        )
        if why:
            raise _invalid([FieldViolation(f"{PREFIX}.url", why)])

    async def _changing(
        self,
        session: AsyncSession,
        scope: CompanyScope,
        company_id: str,
        subscription_id: str,
        etag: str,
    ) -> WebhookSubscriptionRow:
        """A subscription about to change: the company writable, the row locked
        and its etag current."""
        await writable_company(session, scope, company_id, "webhooks")
        row = await self._subscription(session, scope, subscription_id, lock=True)
        check_etag(row, etag)
        return row

    @staticmethod
    async def _subscription(
        session: AsyncSession, scope: CompanyScope, subscription_id: str, *, lock: bool = False
    ) -> WebhookSubscriptionRow:
        key = lookup_uuid(subscription_id)
        row = None
        if key is not None:
            row = await repo.find_subscription(session, scope.company_id, key, lock=lock)
        if row is None:
            raise not_found("webhook subscription", subscription_id)
        return row

    @staticmethod
    async def _delivery(
        session: AsyncSession,
        scope: CompanyScope,
        subscription: WebhookSubscriptionRow,
        delivery_id: str,
        *,
        lock: bool = False,
    ) -> WebhookDeliveryRow:
        key = lookup_uuid(delivery_id)
        row = None
        if key is not None:
            row = await repo.find_delivery(
                session, scope.company_id, subscription.id, key, lock=lock
            )
        if row is None:
            raise not_found("webhook delivery", delivery_id)
        return row

    @staticmethod
    def _deleted(row: WebhookSubscriptionRow) -> FailedPrecondition:
        return FailedPrecondition(
            "the webhook subscription is deleted",
            reason="WEBHOOK_SUBSCRIPTION_DELETED",
            metadata={"subscription_id": str(row.id)},
        )

    def _require_live(self, row: WebhookSubscriptionRow) -> None:
        if row.delete_time is not None:
            raise self._deleted(row)
