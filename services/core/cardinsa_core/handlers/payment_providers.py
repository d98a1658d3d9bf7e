"""PaymentProviderService servicer: a provider's raw event and its headers."""

from __future__ import annotations

from typing import Any

from cardinsa.core.v1 import payment_provider_service_pb2 as pb
from cardinsa.core.v1 import payment_provider_service_pb2_grpc
from cardinsa_core.application.payment_providers import ProviderEvents


class PaymentProviderServicer(payment_provider_service_pb2_grpc.PaymentProviderServiceServicer):
    def __init__(self, events: ProviderEvents) -> None:
        self.events = events

    async def ReceiveProviderEvent(
        self, request: pb.ReceiveProviderEventRequest, context: Any
    ) -> pb.ReceiveProviderEventResponse:
        # The gateway passes the HTTP headers on as metadata (lower-case names).
        headers = {
            str(key): str(value)
            for key, value in (context.invocation_metadata() or ())
            if not str(key).endswith("-bin")
        }
        received = await self.events.receive(request.provider, headers, request.event.data)
        return pb.ReceiveProviderEventResponse(
            event_id=received.event_id, recorded=received.recorded, payment=received.payment
        )
