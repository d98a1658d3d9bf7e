"""Payment confirmations pushed by payment providers (PaymentProviderService).

The call carries no access token: who sent it is proven by the provider's
signature over the raw body (``domain.payment_provider``). A verified
``payment.succeeded`` event is recorded through the same use case as a payment
entered through the API (:meth:`Billing.record_payment`: allocation oldest
first, paid-to date, outbox event, audit row), acting as the principal
``system:payment-provider:<name>`` of the event's company, which must be an
active tenant. Its request id is derived from the provider and the provider's
payment id, so a replay -- also days later, with a fresh signature, as
providers retry -- answers with the payment recorded the first time.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cardinsa_core.application.billing import MAX_REFERENCE, Billing, PaymentInput
from cardinsa_core.application.context import CoreContext
from cardinsa_core.application.inputs import MoneyInput
from cardinsa_core.application.lifecycle import acting_as
from cardinsa_core.domain.money import units_nanos
from cardinsa_core.domain.payment_provider import (
    PaymentConfirmation,
    PaymentProvider,
    SignedWebhookProvider,
)
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.context import Principal, PrincipalKind
from cardinsa_foundation.errors import CardinsaError, NotFound

__all__ = ["ProviderEvents", "Received", "provider_principal", "providers_from_settings"]

log = logging.getLogger(__name__)

#: Namespace of the request ids of provider payments (UUIDv5 of provider and payment id).
REQUEST_NAMESPACE: Final = uuid.UUID("6f1d2c1e-3b8a-5c4e-9a7d-2e5f8b0c4d13")
SUBJECT_PREFIX: Final = "system:payment-provider:"


@dataclass(frozen=True, slots=True)
class Received:
    """What one event did."""

    event_id: str
    recorded: bool
    payment: str = ""


def providers_from_settings(settings: CoreSettings) -> dict[str, PaymentProvider]:
    """The configured providers, each the signed-webhook adapter."""
    return {
        name: SignedWebhookProvider(
            name,
            tuple(s.get_secret_value() for s in secrets),
            tolerance_s=settings.payment_provider_tolerance_s,
        )
        for name, secrets in settings.payment_provider_secrets.items()
    }


def provider_principal(provider: str, company_id: uuid.UUID) -> Principal:
    """The provider acting in one company: it records payments, nothing else."""
    return Principal(
        subject=f"{SUBJECT_PREFIX}{provider}",
        kind=PrincipalKind.SERVICE_ACCOUNT,
        company_id=str(company_id),
        permissions=frozenset({"payments.record"}),
    )


def request_id_of(confirmation: PaymentConfirmation) -> str:
    return str(
        uuid.uuid5(
            REQUEST_NAMESPACE,
            f"{confirmation.provider}\x00{confirmation.provider_payment_id}",
        )
    )


class ProviderEvents:
    def __init__(
        self, ctx: CoreContext, billing: Billing, providers: Mapping[str, PaymentProvider]
    ) -> None:
        self.ctx = ctx
        self.billing = billing
        self.providers = dict(providers)

    async def receive(self, provider: str, headers: Mapping[str, str], body: bytes) -> Received:
        adapter = self.providers.get(provider)
        if adapter is None:
            # The same answer for every name not configured: nothing to probe.
            raise NotFound("no such payment provider", reason="UNKNOWN_PROVIDER")
        try:
            confirmation = adapter.confirmation(headers, body, self.ctx.clock())
        except CardinsaError as refused:
            # The reason tells an operator what to fix (a secret after a
            # rotation, a clock); neither the body nor a signature is logged.
            log.warning(
                "payment provider call refused",
                extra={"provider": provider, "reason": refused.reason},
            )
            raise
        if confirmation is None:
            event_id = _event_id(body)
            return Received(event_id=event_id, recorded=False)
        principal = provider_principal(provider, confirmation.company_id)
        request_id = request_id_of(confirmation)
        with acting_as(principal, request_id):
            await self.ctx.tenants.check_principal(principal)
            units, nanos = units_nanos(confirmation.amount.amount)
            reference = " ".join(
                part
                for part in (provider, confirmation.provider_payment_id, confirmation.reference)
                if part
            )[:MAX_REFERENCE]
            view = await self.billing.record_payment(
                str(confirmation.policy_id),
                PaymentInput(
                    amount=MoneyInput(units, nanos, confirmation.amount.currency),
                    received_date=confirmation.received_date,
                    reference=reference,
                ),
                request_id=request_id,
            )
        return Received(
            event_id=confirmation.event_id,
            recorded=True,
            payment=f"policies/{confirmation.policy_id}/payments/{view.row.id}",
        )


def _event_id(body: bytes) -> str:
    """The id of an event already verified and parsed (it has one)."""
    event = json.loads(body)
    return str(event["id"])
