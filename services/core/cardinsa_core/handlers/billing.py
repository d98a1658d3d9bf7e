"""BillingService servicer."""

from __future__ import annotations

from typing import Any

from cardinsa.core.v1 import billing_service_pb2 as pb
from cardinsa.core.v1 import billing_service_pb2_grpc, resources_pb2
from cardinsa_core.application.billing import Billing, PaymentInput
from cardinsa_core.handlers.convert import (
    billing_payment_to_proto,
    from_date,
    from_money,
    invoice_to_proto,
)


class BillingServicer(billing_service_pb2_grpc.BillingServiceServicer):
    def __init__(self, billing: Billing) -> None:
        self.billing = billing

    async def ListInvoices(
        self, request: pb.ListInvoicesRequest, context: Any
    ) -> pb.ListInvoicesResponse:
        page = await self.billing.list_invoices(
            request.policy_id, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListInvoicesResponse(
            invoices=[invoice_to_proto(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def GetInvoice(
        self, request: pb.GetInvoiceRequest, context: Any
    ) -> resources_pb2.Invoice:
        return invoice_to_proto(
            await self.billing.get_invoice(request.policy_id, request.invoice_id)
        )

    async def RecordPayment(
        self, request: pb.RecordPaymentRequest, context: Any
    ) -> resources_pb2.Payment:
        payment = request.payment
        view = await self.billing.record_payment(
            request.policy_id,
            PaymentInput(
                amount=from_money(payment, "amount"),
                received_date=from_date(payment, "received_date", "payment.received_date"),
                reference=payment.reference,
            ),
            request_id=request.request_id,
        )
        return billing_payment_to_proto(view)

    async def ListPayments(
        self, request: pb.ListPaymentsRequest, context: Any
    ) -> pb.ListPaymentsResponse:
        page = await self.billing.list_payments(
            request.policy_id, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListPaymentsResponse(
            payments=[billing_payment_to_proto(v) for v in page.items],
            next_page_token=page.next_page_token,
        )
