"""Billing over gRPC: the instalments of a bind, payments that settle them
oldest first, credit, adjustments and credit notes of later transactions,
bad input, tenancy, permissions, request ids and two payments at once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from core_harness import TODAY, P, Tenant, amount, gdate, money, new_request_id, pydate
from sqlalchemy import text
from support.grpc_errors import field_violations

from cardinsa.core.v1 import billing_service_pb2 as bb
from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import resources_pb2

INV = resources_pb2.Invoice


async def invoices(tenant: Tenant, policy_id: str, role: str = "company-admin") -> list[Any]:
    page = await tenant.harness.billing.ListInvoices(
        bb.ListInvoicesRequest(policy_id=policy_id, page_size=100), metadata=await tenant.md(role)
    )
    return list(page.invoices)


async def pay(
    tenant: Tenant, policy_id: str, value: str, *, role: str = "company-admin", **extra: Any
) -> Any:
    return await tenant.harness.billing.RecordPayment(
        bb.RecordPaymentRequest(
            policy_id=policy_id,
            payment=resources_pb2.Payment(amount=money(value), reference="bank 1", **extra),
        ),
        metadata=await tenant.md(role),
    )


async def get_policy(tenant: Tenant, policy_id: str) -> Any:
    return await tenant.harness.policies.GetPolicy(
        pb.GetPolicyRequest(policy_id=policy_id), metadata=await tenant.md()
    )


def total(items: list[Any], field: str = "amount") -> Decimal:
    return sum((amount(getattr(i, field)) for i in items), Decimal(0))


async def test_a_monthly_policy_has_twelve_instalments_and_payments_settle_oldest_first(
    tenant: Tenant,
) -> None:
    policy = await tenant.in_force()
    found = await invoices(tenant, policy.id)
    assert len(found) == 12
    assert {i.kind for i in found} == {INV.INSTALMENT}
    assert total(found) == amount(policy.written_premium)
    assert [i.instalment for i in found] == list(range(1, 13))
    assert pydate(found[0].due_date) == pydate(policy.effective_date)
    # backdated by 30 days: the first is overdue at once, the rest not yet
    assert found[0].state == INV.OVERDUE
    assert found[2].state == INV.ISSUED
    assert not policy.HasField("paid_to_date")

    first, second = amount(found[0].amount), amount(found[1].amount)
    paid = await pay(tenant, policy.id, str(first + Decimal("1.00")))
    assert [(a.invoice_number, amount(a.amount)) for a in paid.allocations] == [
        (found[0].number, first),
        (found[1].number, Decimal("1.00")),
    ]
    assert amount(paid.unallocated) == 0
    after = await invoices(tenant, policy.id)
    assert after[0].state == INV.PAID
    assert after[1].state == INV.PARTIALLY_PAID
    assert amount(after[1].outstanding) == second - Decimal("1.00")
    assert pydate((await get_policy(tenant, policy.id)).paid_to_date) == pydate(found[0].period_end)

    # more than everything: the rest is held as credit
    rest = total(after, "outstanding")
    over = await pay(tenant, policy.id, str(rest + Decimal("10.00")))
    assert amount(over.unallocated) == Decimal("10.00")
    settled = await invoices(tenant, policy.id)
    assert {i.state for i in settled} == {INV.PAID}
    assert pydate((await get_policy(tenant, policy.id)).paid_to_date) == pydate(policy.expiry_date)

    listed = await tenant.harness.billing.ListPayments(
        bb.ListPaymentsRequest(policy_id=policy.id), metadata=await tenant.md("viewer")
    )
    assert [p.id for p in listed.payments] == [paid.id, over.id]
    one = await tenant.harness.billing.GetInvoice(
        bb.GetInvoiceRequest(policy_id=policy.id, invoice_id=found[3].id),
        metadata=await tenant.md("viewer"),
    )
    assert one.number == found[3].number

    # the events, in the outbox with the changes
    db = tenant.harness.app.ctx.db
    async with db.unit_of_work(company_id=uuid.UUID(tenant.company_id)) as session:
        types = list(
            await session.scalars(
                text(
                    "SELECT type FROM core.outbox_events WHERE subject = :s "
                    "AND type LIKE 'cardinsa.core.billing.%'"
                ),
                {"s": f"policies/{policy.id}"},
            )
        )
    assert types.count("cardinsa.core.billing.invoice_issued.v1") == 12
    assert types.count("cardinsa.core.billing.payment_recorded.v1") == 2
    assert types.count("cardinsa.core.billing.invoice_paid.v1") == 12


async def test_later_transactions_adjust_with_one_document_each(tenant: Tenant) -> None:
    holder = await tenant.holder(dependents=1)
    policy = await tenant.in_force(holder, with_dependents=False)
    md = await tenant.md()
    endorsed = await tenant.harness.policies.EndorsePolicy(
        pb.EndorsePolicyRequest(
            policy_id=policy.id,
            etag=policy.etag,
            effective_date=gdate(TODAY),
            policy=resources_pb2.Policy(
                insured_members=[
                    resources_pb2.InsuredMember(policyholder=True),
                    resources_pb2.InsuredMember(dependent_id=holder.dependents[0].id),
                ]
            ),
            update_mask={"paths": ["insured_members"]},
            description="child added",
        ),
        metadata=md,
    )
    found = await invoices(tenant, policy.id)
    adjustment = [i for i in found if i.kind == INV.ADJUSTMENT]
    assert len(adjustment) == 1 and amount(adjustment[0].amount) > 0
    assert total(found) == amount(endorsed.written_premium)

    cancelled = await tenant.harness.policies.CancelPolicy(
        pb.CancelPolicyRequest(
            policy_id=policy.id, etag=endorsed.etag, reason=P.MEMBER_REQUEST, note="moving"
        ),
        metadata=md,
    )
    found = await invoices(tenant, policy.id)
    (note,) = [i for i in found if i.kind == INV.CREDIT_NOTE]
    assert amount(note.amount) < 0
    assert total(found) == amount(cancelled.written_premium)
    # the refund settled the last instalments first: what stays open is the
    # premium of the cover the policy had
    assert total(found, "outstanding") == amount(cancelled.written_premium)
    assert next(i for i in found if i.instalment == 12).state == INV.PAID


async def test_bad_payments_get_precise_errors(tenant: Tenant) -> None:
    policy = await tenant.in_force()

    async def refused(value: str, **extra: Any) -> dict[str, str]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await tenant.harness.billing.RecordPayment(
                bb.RecordPaymentRequest(
                    policy_id=extra.pop("policy_id", policy.id),
                    payment=resources_pb2.Payment(
                        amount=money(value, extra.pop("currency", "USD")), **extra
                    ),
                ),
                metadata=await tenant.md(),
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        return field_violations(caught.value)

    assert "payment.amount" in await refused("0")
    assert "payment.amount" in await refused("-5")
    assert "payment.amount.currency_code" in await refused("5", currency="EUR")
    assert "payment.amount" in await refused("5.001")
    assert "payment.received_date" in await refused(
        "5", received_date=gdate(TODAY + timedelta(days=2))
    )
    assert "payment.reference" in await refused("5", reference="x" * 101)

    for policy_id in (str(uuid.uuid4()), "not-a-uuid"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pay(tenant, policy_id, "5")
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    other = await tenant.harness.tenant()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pay(other, policy.id, "5")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await other.harness.billing.ListInvoices(
            bb.ListInvoicesRequest(policy_id=policy.id), metadata=await other.md()
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # an invoice is only found under its own policy, and in its own company
    theirs = await other.in_force()
    their_invoice = (await invoices(other, theirs.id))[0]
    for caller, policy_id in ((tenant, policy.id), (other, policy.id)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await tenant.harness.billing.GetInvoice(
                bb.GetInvoiceRequest(policy_id=policy_id, invoice_id=their_invoice.id),
                metadata=await caller.md(),
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # an unsold policy takes no money
    draft = await tenant.draft(await tenant.holder(), await tenant.product())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pay(tenant, draft.id, "5")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_who_may_record_a_payment(tenant: Tenant) -> None:
    """A recorded payment keeps a policy from lapsing: agents and viewers cannot."""
    policy = await tenant.in_force()
    for role in ("agent", "viewer", "claims-adjuster", "underwriter"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pay(tenant, policy.id, "5", role=role)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, role
    recorded = await pay(tenant, policy.id, "5", role="billing-clerk")
    assert amount(recorded.amount) == Decimal(5)
    assert len(await invoices(tenant, policy.id, role="agent")) == 12


async def test_a_request_id_records_a_payment_once(tenant: Tenant) -> None:
    policy = await tenant.in_force()
    md = await tenant.md()
    request = bb.RecordPaymentRequest(
        policy_id=policy.id,
        payment=resources_pb2.Payment(amount=money("25")),
        request_id=new_request_id(),
    )
    first = await tenant.harness.billing.RecordPayment(request, metadata=md)
    again = await tenant.harness.billing.RecordPayment(request, metadata=md)
    assert again.id == first.id
    listed = await tenant.harness.billing.ListPayments(
        bb.ListPaymentsRequest(policy_id=policy.id), metadata=md
    )
    assert len(listed.payments) == 1
    request.payment.amount.CopyFrom(money("26"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.harness.billing.RecordPayment(request, metadata=md)
    assert caught.value.code() in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
    )


async def test_two_payments_at_once_never_allocate_the_same_open_amount(tenant: Tenant) -> None:
    policy = await tenant.in_force()
    found = await invoices(tenant, policy.id)
    owed = total(found, "outstanding")
    results = await asyncio.gather(
        pay(tenant, policy.id, str(owed)), pay(tenant, policy.id, str(owed))
    )
    allocated = sorted(amount(r.allocated) for r in results)
    assert allocated == [Decimal(0), owed]
    assert sorted(amount(r.unallocated) for r in results) == [Decimal(0), owed]
    after = await invoices(tenant, policy.id)
    assert {i.state for i in after} == {INV.PAID}
    assert all(amount(i.settled) == amount(i.amount) for i in after)


async def test_a_product_s_grace_period_is_validated_and_kept(tenant: Tenant) -> None:
    from cardinsa.core.v1 import product_service_pb2 as ps

    products, md = tenant.harness.products, await tenant.md()
    product = await tenant.product(activate=False)
    assert product.grace_period_days == 30
    for bad in (-1, 366):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await products.UpdateProduct(
                ps.UpdateProductRequest(
                    product=resources_pb2.Product(id=product.id, grace_period_days=bad),
                    update_mask={"paths": ["grace_period_days"]},
                ),
                metadata=md,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "product.grace_period_days" in field_violations(caught.value)
    changed = await products.UpdateProduct(
        ps.UpdateProductRequest(
            product=resources_pb2.Product(id=product.id, grace_period_days=0),
            update_mask={"paths": ["grace_period_days"]},
        ),
        metadata=md,
    )
    assert changed.HasField("grace_period_days") and changed.grace_period_days == 0
