"""Policies over gRPC: quote → bind → in force, endorse, cancel, reinstate,
lapse, renew, expire, with their versions and status log."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import grpc
import pytest
from core_harness import TODAY, P, Tenant, amount, clock_at, gdate, mask, money, pydate
from support.grpc_errors import error_info, field_violations

from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import resources_pb2


async def test_quote_bind_and_the_policy_is_in_force(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    holder = await tenant.holder(dependents=1)
    product = await tenant.product(base_premium="333.33")
    draft = await tenant.draft(holder, product)
    assert draft.state == P.DRAFT and draft.policy_number == "" and draft.version == 0
    # The product's 12-month term: the day before the same date next year.
    start = pydate(draft.effective_date)
    assert pydate(draft.expiry_date) == start.replace(year=start.year + 1) - timedelta(days=1)
    quoted = await policies.QuotePolicy(
        pb.QuotePolicyRequest(policy_id=draft.id, etag=draft.etag), metadata=md
    )
    assert quoted.state == P.QUOTED
    # Two insured members at 333.33 each, exactly.
    assert amount(quoted.premium) == Decimal("666.66") and quoted.premium.currency_code == "USD"
    bound = await policies.BindPolicy(
        pb.BindPolicyRequest(policy_id=quoted.id, etag=quoted.etag), metadata=md
    )
    assert bound.state == P.IN_FORCE  # effective date already reached
    assert bound.policy_number == "POL-00000001"
    assert bound.version == 1 and bound.bind_time.seconds and bound.activate_time.seconds
    log = await policies.ListPolicyStatusChanges(
        pb.ListPolicyStatusChangesRequest(policy_id=bound.id), metadata=md
    )
    assert [(c.transition, c.to_state) for c in reversed(log.policy_status_changes)] == [
        ("create", P.DRAFT),
        ("quote", P.QUOTED),
        ("bind", P.BOUND),
        ("activate", P.IN_FORCE),
    ]
    versions = await policies.ListPolicyVersions(
        pb.ListPolicyVersionsRequest(policy_id=bound.id), metadata=md
    )
    assert [v.version for v in versions.policy_versions] == [1]


async def test_an_update_of_a_quote_returns_it_to_draft(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("agent")
    quoted = await tenant.quoted(await tenant.holder(), await tenant.product())
    updated = await policies.UpdatePolicy(
        pb.UpdatePolicyRequest(
            policy=resources_pb2.Policy(
                id=quoted.id, etag=quoted.etag, payment_frequency=P.QUARTERLY
            ),
            update_mask=mask("payment_frequency"),
        ),
        metadata=md,
    )
    assert updated.state == P.DRAFT and not updated.HasField("premium")
    assert updated.payment_frequency == P.QUARTERLY
    # An agent cannot bind: that is the underwriter's.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.BindPolicy(pb.BindPolicyRequest(policy_id=updated.id), metadata=md)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_endorse_makes_a_new_immutable_version(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    holder = await tenant.holder(dependents=2)
    policy = await tenant.in_force(holder)
    day = TODAY - timedelta(days=5)
    endorsed = await policies.EndorsePolicy(
        pb.EndorsePolicyRequest(
            policy_id=policy.id,
            etag=policy.etag,
            effective_date=gdate(day),
            description="second child leaves the policy",
            policy=resources_pb2.Policy(
                insured_members=[
                    resources_pb2.InsuredMember(policyholder=True),
                    resources_pb2.InsuredMember(dependent_id=holder.dependents[0].id),
                ],
            ),
            update_mask=mask("insured_members"),
        ),
        metadata=md,
    )
    assert endorsed.version == 2 and pydate(endorsed.version_effective_date) == day
    assert len(endorsed.insured_members) == 2
    # Re-rated: two members instead of three, the same price each.
    assert amount(endorsed.premium) == (amount(policy.premium) * 2 / 3).quantize(Decimal("0.01"))
    assert [line.code for line in endorsed.premium_breakdown.lines].count("MEMBER") == 2
    # The return premium for the remaining days is a transaction of its own.
    history = (
        await policies.ListPremiumTransactions(
            pb.ListPremiumTransactionsRequest(policy_id=policy.id), metadata=md
        )
    ).premium_transactions
    assert [t.kind for t in history] == [
        resources_pb2.PremiumTransaction.NEW,
        resources_pb2.PremiumTransaction.ENDORSE,
    ]
    assert amount(history[1].amount) < 0 and pydate(history[1].effective_date) == day
    assert sum(amount(t.amount) for t in history) == amount(endorsed.written_premium)
    versions = (
        await policies.ListPolicyVersions(
            pb.ListPolicyVersionsRequest(policy_id=policy.id), metadata=md
        )
    ).policy_versions
    assert [v.version for v in versions] == [2, 1]
    assert set(versions[0].changed_fields) == {"insured_members", "premium"}
    assert versions[0].description == "second child leaves the policy"
    assert len(versions[1].insured_members) == 3  # version 1 is unchanged
    # A dependent of someone else cannot be insured.
    other = await tenant.holder(dependents=1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.EndorsePolicy(
            pb.EndorsePolicyRequest(
                policy_id=policy.id,
                effective_date=gdate(TODAY),
                description="x",
                policy=resources_pb2.Policy(
                    insured_members=[
                        resources_pb2.InsuredMember(dependent_id=other.dependents[0].id)
                    ]
                ),
                update_mask=mask("insured_members"),
            ),
            metadata=md,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "policy.insured_members[0].dependent_id" in field_violations(caught.value)


async def test_cancel_reinstate_lapse(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    policy = await tenant.in_force()
    later = TODAY + timedelta(days=10)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.CancelPolicy(
            pb.CancelPolicyRequest(
                policy_id=policy.id, reason=P.MEMBER_REQUEST, effective_date=gdate(later)
            ),
            metadata=md,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "effective_date" in field_violations(caught.value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.CancelPolicy(pb.CancelPolicyRequest(policy_id=policy.id), metadata=md)
    assert field_violations(caught.value) == {"reason": "required"}

    cancelled = await policies.CancelPolicy(
        pb.CancelPolicyRequest(
            policy_id=policy.id,
            reason=P.MEMBER_REQUEST,
            effective_date=gdate(later),
            scheduled=True,
            note="moving abroad",
        ),
        metadata=md,
    )
    # Scheduled: cover runs until the day before; the scheduler completes it then.
    assert cancelled.state == P.CANCEL_PENDING and pydate(cancelled.cancel_effective_date) == later
    assert cancelled.cancel_reason == P.MEMBER_REQUEST
    reinstated = await policies.ReinstatePolicy(
        pb.ReinstatePolicyRequest(policy_id=policy.id, etag=cancelled.etag, note="stays"),
        metadata=md,
    )
    assert reinstated.state == P.IN_FORCE and not reinstated.HasField("cancel_effective_date")
    lapsed = await policies.LapsePolicy(
        pb.LapsePolicyRequest(policy_id=policy.id, note="premium unpaid"), metadata=md
    )
    assert lapsed.state == P.LAPSED and pydate(lapsed.lapse_date) == TODAY
    again = await policies.ReinstatePolicy(
        pb.ReinstatePolicyRequest(policy_id=policy.id), metadata=md
    )
    assert again.state == P.IN_FORCE
    log = await policies.ListPolicyStatusChanges(
        pb.ListPolicyStatusChangesRequest(policy_id=policy.id, page_size=3), metadata=md
    )
    assert [c.transition for c in log.policy_status_changes] == ["reinstate", "lapse", "reinstate"]
    assert log.next_page_token


async def test_the_reinstatement_window_runs_from_the_day_the_cancellation_was_processed(
    tenant: Tenant,
) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    holder, product = await tenant.holder(), await tenant.product()
    backdated = await tenant.in_force(holder, product, effective=TODAY - timedelta(days=25))
    # Cancelled today back to 20 days ago: still reinstatable (the 30-day window
    # runs from today, when the cancellation was processed).
    cancelled = await policies.CancelPolicy(
        pb.CancelPolicyRequest(
            policy_id=backdated.id,
            reason=P.NON_PAYMENT,
            effective_date=gdate(TODAY - timedelta(days=20)),
        ),
        metadata=md,
    )
    assert pydate(cancelled.cancel_processed_date) == TODAY
    reinstated = await policies.ReinstatePolicy(
        pb.ReinstatePolicyRequest(policy_id=cancelled.id), metadata=md
    )
    assert reinstated.state == P.IN_FORCE
    # 31 days after processing, the window is closed.
    other = await tenant.in_force(holder, product, effective=TODAY - timedelta(days=25))
    await policies.CancelPolicy(
        pb.CancelPolicyRequest(policy_id=other.id, reason=P.NON_PAYMENT), metadata=md
    )
    later = datetime.combine(TODAY + timedelta(days=31), time(12), tzinfo=UTC)
    with clock_at(tenant.harness, later), pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.ReinstatePolicy(pb.ReinstatePolicyRequest(policy_id=other.id), metadata=md)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "REINSTATEMENT_WINDOW_CLOSED"


async def test_a_future_policy_is_bound_then_activated_or_cancelled_flat(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    start = TODAY + timedelta(days=20)
    policy = await tenant.in_force(effective=start)
    assert policy.state == P.BOUND and policy.policy_number
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.ActivatePolicy(pb.ActivatePolicyRequest(policy_id=policy.id), metadata=md)
    assert error_info(caught.value).reason == "NOT_YET_EFFECTIVE"
    cancelled = await policies.CancelPolicy(
        pb.CancelPolicyRequest(policy_id=policy.id, reason=P.MEMBER_REQUEST), metadata=md
    )
    assert pydate(cancelled.cancel_effective_date) == start  # flat: no cover at all
    reinstated = await policies.ReinstatePolicy(
        pb.ReinstatePolicyRequest(policy_id=policy.id), metadata=md
    )
    assert reinstated.state == P.BOUND


async def test_renew_links_a_successor_and_only_once(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    policy = await tenant.in_force()
    renewed = await policies.RenewPolicy(
        pb.RenewPolicyRequest(policy_id=policy.id, etag=policy.etag), metadata=md
    )
    successor = renewed.successor
    assert renewed.policy.successor_policy_id == successor.id
    assert successor.previous_policy_id == policy.id and successor.state == P.QUOTED
    assert pydate(successor.effective_date) == pydate(policy.expiry_date) + timedelta(days=1)
    assert successor.policy_number == "" and successor.premium_breakdown.lines
    assert successor.premium == successor.premium_breakdown.total
    # Its dates are fixed: it starts the day after the policy it renews ends.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.UpdatePolicy(
            pb.UpdatePolicyRequest(
                policy=resources_pb2.Policy(
                    id=successor.id,
                    effective_date=gdate(pydate(successor.effective_date) - timedelta(days=30)),
                ),
                update_mask=mask("effective_date"),
            ),
            metadata=md,
        )
    assert error_info(caught.value).reason == "RENEWAL_DATES_FIXED"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.RenewPolicy(pb.RenewPolicyRequest(policy_id=policy.id), metadata=md)
    assert error_info(caught.value).reason == "ALREADY_RENEWED"
    bound = await policies.BindPolicy(pb.BindPolicyRequest(policy_id=successor.id), metadata=md)
    assert bound.state == P.BOUND and bound.policy_number != policy.policy_number
    history = (
        await policies.ListPremiumTransactions(
            pb.ListPremiumTransactionsRequest(policy_id=bound.id), metadata=md
        )
    ).premium_transactions
    assert [t.kind for t in history] == [resources_pb2.PremiumTransaction.RENEW]
    assert history[0].amount == bound.premium == bound.written_premium


async def test_expire_after_the_term(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("underwriter")
    old = await tenant.in_force(
        effective=TODAY - timedelta(days=500), expiry=TODAY - timedelta(days=136)
    )
    assert old.state == P.IN_FORCE
    expired = await policies.ExpirePolicy(pb.ExpirePolicyRequest(policy_id=old.id), metadata=md)
    assert expired.state == P.EXPIRED
    current = await tenant.in_force()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.ExpirePolicy(pb.ExpirePolicyRequest(policy_id=current.id), metadata=md)
    assert error_info(caught.value).reason == "NOT_YET_EXPIRED"


async def test_create_checks_references_and_money(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md()
    holder, product = await tenant.holder(), await tenant.product()
    draft_product = await tenant.product(activate=False)

    async def create(**fields: object) -> grpc.aio.AioRpcError:
        values = {
            "policyholder_id": holder.id,
            "product_id": product.id,
            "effective_date": gdate(TODAY),
            "sum_insured": money("1000"),
        }
        values.update(fields)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await policies.CreatePolicy(
                pb.CreatePolicyRequest(policy=resources_pb2.Policy(**values)), metadata=md
            )
        return caught.value

    error = await create(product_id=draft_product.id)
    assert error_info(error).reason == "PRODUCT_NOT_ACTIVE"
    error = await create(sum_insured=money("1000", "EUR"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "policy.sum_insured.currency_code" in field_violations(error)
    error = await create(sum_insured=money("10.005"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = await create(expiry_date=gdate(TODAY - timedelta(days=1)))
    assert "policy.expiry_date" in field_violations(error)
    error = await create(policyholder_id="not-an-id")
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(error).reason == "POLICYHOLDER_NOT_FOUND"


async def test_list_filters_orders_and_pages(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md("viewer")
    holder, product = await tenant.holder(), await tenant.product()
    for _ in range(3):
        await tenant.in_force(holder, product)
    await tenant.draft(holder, product)
    seen: list[str] = []
    token = ""
    while True:
        page = await policies.ListPolicies(
            pb.ListPoliciesRequest(
                filter='state = IN_FORCE AND policy_number = "POL-*"',
                order_by="policy_number desc",
                page_size=2,
                page_token=token,
            ),
            metadata=md,
        )
        seen += [p.policy_number for p in page.policies]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["POL-00000003", "POL-00000002", "POL-00000001"]
    drafts = await policies.ListPolicies(
        pb.ListPoliciesRequest(filter="state = DRAFT"), metadata=md
    )
    assert len(drafts.policies) == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.ListPolicies(pb.ListPoliciesRequest(filter="premium > 3"), metadata=md)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_every_change_is_audited_in_the_same_transaction(tenant: Tenant) -> None:
    from cardinsa.core.v1 import core_service_pb2 as xb

    policy = await tenant.in_force()
    admin = await tenant.md()
    events = await tenant.harness.core.ListAuditEvents(
        xb.ListAuditEventsRequest(filter=f'entity_id = "{policy.id}"'), metadata=admin
    )
    actions = [e.action for e in reversed(events.audit_events)]
    assert actions == ["policy.create", "policy.quote", "policy.bind"]
    bind = events.audit_events[0]
    assert bind.actor_id == tenant.admin.user_id and bind.request_id
    assert {"state", "policy_number", "current_version"} <= set(bind.changed_fields)
    assert bind.detail["from_state"] == "QUOTED" and bind.detail["to_state"] == "IN_FORCE"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.harness.core.ListAuditEvents(
            xb.ListAuditEventsRequest(), metadata=await tenant.md("underwriter")
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_hostile_etags_dates_and_sizes_are_refused_cleanly(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md()
    policy = await tenant.in_force()
    for etag in ("é" * 10, "x" * 1_000_000, '"\x00"'):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await policies.LapsePolicy(
                pb.LapsePolicyRequest(policy_id=policy.id, etag=etag), metadata=md
            )
        assert caught.value.code() == grpc.StatusCode.ABORTED
    for year in (0, 1, 9999, 2201):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await policies.CreatePolicy(
                pb.CreatePolicyRequest(
                    policy=resources_pb2.Policy(
                        policyholder_id=policy.policyholder_id,
                        product_id=policy.product_id,
                        effective_date={"year": year, "month": 12, "day": 1},
                        sum_insured=money("1"),
                    )
                ),
                metadata=md,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, year
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policies.CancelPolicy(
            pb.CancelPolicyRequest(policy_id=policy.id, reason=P.OTHER, note="n" * 1_000_000),
            metadata=md,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(caught.value.details()) < 200


async def test_the_premium_follows_the_term_and_the_members(tenant: Tenant) -> None:
    """Annual base 365.00 per member, days / 365: a month costs its days, ten
    years cost their days, three members three times one."""
    product = await tenant.product(base_premium="365")
    single, family = await tenant.holder(dependents=0), await tenant.holder(dependents=2)
    start = TODAY + timedelta(days=1)

    async def premium(holder: resources_pb2.Policyholder, expiry: date) -> Decimal:
        quoted = await tenant.quoted(holder, product, effective=start, expiry=expiry)
        assert quoted.premium_breakdown.term_days == (expiry - start).days + 1
        return amount(quoted.premium)

    month_end = start + timedelta(days=29)  # 30 days
    assert await premium(single, month_end) == Decimal("30.00")
    decade_end = start + timedelta(days=3650)  # ten years and their leap days
    assert await premium(single, decade_end) == Decimal((decade_end - start).days + 1)
    assert await premium(family, month_end) == Decimal("90.00")
