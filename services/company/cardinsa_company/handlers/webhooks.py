"""WebhookService servicer: subscriptions, deliveries, attempts, redelivery."""

from __future__ import annotations

from typing import Any

from cardinsa.company.v1 import webhook_service_pb2, webhook_service_pb2_grpc, webhooks_pb2
from cardinsa_company.application.webhooks import WebhookUseCases
from cardinsa_company.handlers.convert import (
    attempt_to_proto,
    delivery_to_proto,
    list_query,
    subscription_spec,
    subscription_to_proto,
)

_pb = webhook_service_pb2
_Subscription = webhooks_pb2.WebhookSubscription


class WebhookServicer(webhook_service_pb2_grpc.WebhookServiceServicer):
    def __init__(self, webhooks: WebhookUseCases) -> None:
        self.webhooks = webhooks

    # ---------------------------------------------------------------- subscriptions

    async def CreateWebhookSubscription(
        self, request: _pb.CreateWebhookSubscriptionRequest, context: Any
    ) -> _Subscription:
        row, secret = await self.webhooks.create_subscription(
            request.company_id,
            subscription_spec(request.webhook_subscription),
            request_id=request.request_id,
        )
        return subscription_to_proto(row, secret)

    async def GetWebhookSubscription(
        self, request: _pb.GetWebhookSubscriptionRequest, context: Any
    ) -> _Subscription:
        return subscription_to_proto(
            await self.webhooks.get_subscription(
                request.company_id, request.webhook_subscription_id
            )
        )

    async def ListWebhookSubscriptions(
        self, request: _pb.ListWebhookSubscriptionsRequest, context: Any
    ) -> _pb.ListWebhookSubscriptionsResponse:
        page = await self.webhooks.list_subscriptions(request.company_id, list_query(request))
        return _pb.ListWebhookSubscriptionsResponse(
            webhook_subscriptions=[subscription_to_proto(s) for s in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateWebhookSubscription(
        self, request: _pb.UpdateWebhookSubscriptionRequest, context: Any
    ) -> _Subscription:
        subscription = request.webhook_subscription
        row = await self.webhooks.update_subscription(
            subscription.company_id,
            subscription.id,
            subscription_spec(subscription),
            list(request.update_mask.paths),
            subscription.etag,
        )
        return subscription_to_proto(row)

    async def DeleteWebhookSubscription(
        self, request: _pb.DeleteWebhookSubscriptionRequest, context: Any
    ) -> _Subscription:
        return subscription_to_proto(
            await self.webhooks.delete_subscription(
                request.company_id, request.webhook_subscription_id, request.etag
            )
        )

    async def RotateWebhookSecret(
        self, request: _pb.RotateWebhookSecretRequest, context: Any
    ) -> _Subscription:
        row, secret = await self.webhooks.rotate_secret(
            request.company_id,
            request.webhook_subscription_id,
            request.previous_secret_ttl_seconds,
            request.etag,
        )
        return subscription_to_proto(row, secret)

    # ---------------------------------------------------------------- deliveries

    async def ListWebhookDeliveries(
        self, request: _pb.ListWebhookDeliveriesRequest, context: Any
    ) -> _pb.ListWebhookDeliveriesResponse:
        page = await self.webhooks.list_deliveries(
            request.company_id, request.webhook_subscription_id, list_query(request)
        )
        return _pb.ListWebhookDeliveriesResponse(
            webhook_deliveries=[delivery_to_proto(d) for d in page.items],
            next_page_token=page.next_page_token,
        )

    async def ListWebhookDeliveryAttempts(
        self, request: _pb.ListWebhookDeliveryAttemptsRequest, context: Any
    ) -> _pb.ListWebhookDeliveryAttemptsResponse:
        page = await self.webhooks.list_attempts(
            request.company_id,
            request.webhook_subscription_id,
            request.delivery_id,
            list_query(request),
        )
        return _pb.ListWebhookDeliveryAttemptsResponse(
            webhook_delivery_attempts=[attempt_to_proto(a) for a in page.items],
            next_page_token=page.next_page_token,
        )

    async def RedeliverWebhookDelivery(
        self, request: _pb.RedeliverWebhookDeliveryRequest, context: Any
    ) -> webhooks_pb2.WebhookDelivery:
        return delivery_to_proto(
            await self.webhooks.redeliver(
                request.company_id, request.webhook_subscription_id, request.delivery_id
            )
        )
