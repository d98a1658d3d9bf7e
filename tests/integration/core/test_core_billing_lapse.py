"""Lapse for non-payment through the lifecycle scheduler's own process: an
instalment unpaid past the product's grace period marks the invoices OVERDUE
and lapses the policy (as the scheduler's system principal, once); a paid
policy stays in force; reinstating the lapsed one is refused with the arrears
named until they are paid."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from core_harness import Tenant, amount, money
from support.grpc_errors import error_info, precondition_violations
from test_core_scheduler import (
    TODAY,
    StatusLog,
    bound,
    for_company,
    get,
    run_once,
    scheduler_env,
    status_log,
)

from cardinsa.core.v1 import billing_service_pb2 as bb
from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import resources_pb2
from cardinsa_core.application.lifecycle import SYSTEM_SUBJECT

__all__ = ["scheduler_env", "status_log"]  # the fixtures, shared with the scheduler module

P = resources_pb2.Policy
INV = resources_pb2.Invoice
#: 35 days on: the first instalment (due today) is past the default 30-day grace.
AS_OF = datetime.combine(TODAY + timedelta(days=35), time(0, 30), tzinfo=UTC).isoformat()


async def invoices(tenant: Tenant, policy_id: str) -> list[resources_pb2.Invoice]:
    page = await tenant.harness.billing.ListInvoices(
        bb.ListInvoicesRequest(policy_id=policy_id, page_size=100), metadata=await tenant.md()
    )
    return list(page.invoices)


async def pay(tenant: Tenant, policy_id: str, value: Decimal) -> None:
    await tenant.harness.billing.RecordPayment(
        bb.RecordPaymentRequest(
            policy_id=policy_id, payment=resources_pb2.Payment(amount=money(str(value)))
        ),
        metadata=await tenant.md(),
    )


async def test_an_instalment_unpaid_past_grace_lapses_the_policy(
    tenant: Tenant, scheduler_env: dict[str, str], tmp_path: Path, status_log: StatusLog
) -> None:
    product = await tenant.product()
    unpaid = await bound(tenant, effective=TODAY, product=product)
    paid = await bound(tenant, effective=TODAY, product=product)
    first = (await invoices(tenant, paid.id))[0]
    await pay(tenant, paid.id, amount(first.amount))
    # Bound today from 40 days ago: its first instalment was due then, but it
    # was billed only today, so its grace period runs from today.
    backdated = await bound(tenant, effective=TODAY - timedelta(days=40), product=product)
    await run_once(scheduler_env, tmp_path, *for_company(tenant))
    assert (await get(tenant, backdated)).state == P.IN_FORCE
    assert (await invoices(tenant, backdated.id))[0].state == INV.OVERDUE

    for _ in range(2):  # and again: nothing twice
        await run_once(scheduler_env, tmp_path, *for_company(tenant, "--now", AS_OF))

    lapsed = await get(tenant, unpaid)
    assert lapsed.state == P.LAPSED
    assert (await get(tenant, backdated)).state == P.LAPSED
    assert await status_log.counts(tenant.company_id, "lapse") == {unpaid.id: 1, backdated.id: 1}
    rows = await status_log.rows(tenant.company_id, "lapse")
    assert all(r["actor_id"] == SYSTEM_SUBJECT and r["request_id"] for r in rows)
    states = [i.state for i in await invoices(tenant, unpaid.id)]
    assert states[:2] == [INV.OVERDUE, INV.OVERDUE] and set(states[2:]) == {INV.ISSUED}
    # the paid one: its second instalment is overdue, but within its grace period
    kept = await get(tenant, paid)
    assert kept.state == P.IN_FORCE
    assert [i.state for i in await invoices(tenant, paid.id)][:2] == [INV.PAID, INV.OVERDUE]

    # reinstatement: refused while the arrears are unpaid, naming them
    arrears = (await invoices(tenant, unpaid.id))[0]
    request = pb.ReinstatePolicyRequest(policy_id=unpaid.id, etag=lapsed.etag, note="paid up")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.harness.policies.ReinstatePolicy(request, metadata=await tenant.md())
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "PREMIUM_ARREARS"
    violations = precondition_violations(caught.value)
    assert [v[1] for v in violations] == [f"policies/{unpaid.id}/invoices/{arrears.id}"]
    assert arrears.number in violations[0][2]

    await pay(tenant, unpaid.id, amount(arrears.amount))
    # the payment moved the paid-to date: the policy's etag with it
    request.etag = (await get(tenant, unpaid)).etag
    back = await tenant.harness.policies.ReinstatePolicy(request, metadata=await tenant.md())
    assert back.state == P.IN_FORCE
