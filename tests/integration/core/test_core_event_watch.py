"""Core's EventService.WatchEvents over gRPC and real PostgreSQL: committed
events in order, resumable from a cursor (nothing repeated, nothing skipped),
never an event of a rolled-back change, never skipping one whose transaction
commits after a later one's, and each company's events only to that company
(platform callers see every company's)."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from core_harness import CoreHarness, Tenant
from support.event_watch import (
    HANG_GUARD_S,
    connect,
    first_response,
    insert_event,
    service_token,
    watch_until,
)
from support.grpc_errors import error_info, field_violations

from cardinsa.core.v1 import claim_service_pb2 as cb
from cardinsa.core.v1 import event_service_pb2_grpc, events_pb2
from cardinsa.events.v1 import events_pb2 as events_pb2_watch
from cardinsa_core.main import build
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.context import Principal, PrincipalKind, principal_var
from cardinsa_foundation.db import app_role_url
from cardinsa_foundation.event_watch import EventWatch, WatchCursor, WatchScope

TABLE = "core.outbox_events"


def stub(core: CoreHarness) -> event_service_pb2_grpc.EventServiceStub:
    return event_service_pb2_grpc.EventServiceStub(core.channel)


async def platform_md(core: CoreHarness) -> list[tuple[str, str]]:
    identity = core.identity
    return identity.bearer(await identity.token(identity.platform_admin))


def marker(company_id: str) -> events_pb2.PolicyEvent:
    return events_pb2.PolicyEvent(transition="update")


async def test_the_watch_delivers_committed_events_in_order_and_resumes(
    core: CoreHarness, tenant: Tenant
) -> None:
    policy = await tenant.in_force()
    md = await tenant.md()
    events, cursor = await watch_until(stub(core), md, 16)
    # The bind issued the policy's 12 monthly instalments, right after its own events.
    assert [e.type for e in events] == [
        "cardinsa.core.policy.create.v1",
        "cardinsa.core.policy.quote.v1",
        "cardinsa.core.policy.bind.v1",
        "cardinsa.core.policy.activate.v1",
        *["cardinsa.core.billing.invoice_issued.v1"] * 12,
    ]
    invoices = events[4:]
    events = events[:4]
    assert {e.data_schema for e in invoices} == {"cardinsa.core.v1.BillingEvent"}
    assert {(e.subject, e.ordering_key, e.company_id, e.source) for e in events} == {
        (f"policies/{policy.id}", f"policies/{policy.id}", tenant.company_id, "core")
    }
    assert [e.sequence for e in events] == sorted(e.sequence for e in events)
    last = events[-1]
    assert last.data_schema == "cardinsa.core.v1.PolicyEvent"
    assert last.data.type_url == "type.googleapis.com/cardinsa.core.v1.PolicyEvent"
    payload = events_pb2.PolicyEvent()
    assert last.data.Unpack(payload)
    assert payload.transition == "activate" and payload.policy.id == policy.id
    assert last.time.seconds > 0

    claim = await tenant.claim(policy)
    await core.claims.SubmitClaim(cb.SubmitClaimRequest(claim_id=claim.id), metadata=md)
    resumed, cursor = await watch_until(stub(core), md, 2, cursor=cursor)
    assert [e.type for e in resumed] == [
        "cardinsa.core.claim.create.v1",
        "cardinsa.core.claim.submit.v1",
    ]
    assert {e.id for e in resumed}.isdisjoint({e.id for e in events + invoices})
    # Resuming again from the last cursor: nothing new, nothing repeated.
    again = await first_response(stub(core), md, cursor=cursor)
    assert list(again.events) == []


async def test_a_late_commit_is_not_skipped_and_waits_for_its_turn(
    core: CoreHarness, core_database: str, tenant: Tenant
) -> None:
    """Transaction A writes an event and stays open; B writes a later one and
    commits. A reader by sequence alone would see B and pass A for good; the
    watch delivers neither while A is open, then A before B."""
    md = await platform_md(core)
    company = tenant.company_id
    admin = await connect(core_database)
    late = await connect(core_database)
    try:
        transaction = late.transaction()
        await transaction.start()
        try:
            a_id, a_seq = await insert_event(
                late,
                TABLE,
                company_id=company,
                source="core",
                type="cardinsa.core.policy.update.v1",
                subject="policies/a",
                payload=marker(company),
            )
            b_id, b_seq = await insert_event(
                admin,
                TABLE,
                company_id=company,
                source="core",
                type="cardinsa.core.policy.update.v1",
                subject="policies/b",
                payload=marker(company),
            )
            assert b_seq > a_seq
            # What a reader by sequence would see now: B, not A.
            visible = await admin.fetch(
                "SELECT id FROM core.outbox_events WHERE company_id = $1", uuid.UUID(company)
            )
            assert [r["id"] for r in visible] == [b_id]
            held = await first_response(stub(core), md, company_id=company)
            assert list(held.events) == []
            cursor = held.cursor
        except BaseException:
            await transaction.rollback()
            raise
        await transaction.commit()
        events, _ = await watch_until(stub(core), md, 2, cursor=cursor, company_id=company)
        assert [e.id for e in events] == [str(a_id), str(b_id)]
        # From the start, the same two, in sequence order.
        events, _ = await watch_until(stub(core), md, 2, company_id=company)
        assert [e.id for e in events] == [str(a_id), str(b_id)]
    finally:
        await late.close()
        await admin.close()


async def test_a_rolled_back_change_yields_no_event(
    core: CoreHarness, core_database: str, tenant: Tenant
) -> None:
    company = tenant.company_id
    connection = await connect(core_database)
    try:
        transaction = connection.transaction()
        await transaction.start()
        await insert_event(
            connection,
            TABLE,
            company_id=company,
            source="core",
            type="cardinsa.core.policy.update.v1",
            subject="policies/gone",
            payload=marker(company),
        )
        await transaction.rollback()
        kept, _ = await insert_event(
            connection,
            TABLE,
            company_id=company,
            source="core",
            type="cardinsa.core.policy.update.v1",
            subject="policies/kept",
            payload=marker(company),
        )
    finally:
        await connection.close()
    events, _ = await watch_until(stub(core), await tenant.md(), 1)
    assert [e.id for e in events] == [str(kept)]


async def test_each_company_sees_its_own_events_and_the_platform_every_company(
    core: CoreHarness, tenant: Tenant
) -> None:
    other = await core.tenant()
    await tenant.holder()
    policy_a = await tenant.draft(await tenant.holder(), await tenant.product())
    policy_b = await other.draft(await other.holder(), await other.product())
    mine, _ = await watch_until(stub(core), await tenant.md(), 1)
    assert {e.subject for e in mine} == {f"policies/{policy_a.id}"}
    theirs, _ = await watch_until(stub(core), await other.md(), 1)
    assert {e.subject for e in theirs} == {f"policies/{policy_b.id}"}

    # Naming its own company is fine; another's is refused.
    own, _ = await watch_until(stub(core), await tenant.md(), 1, company_id=tenant.company_id)
    assert {e.subject for e in own} == {f"policies/{policy_a.id}"}
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await first_response(stub(core), await tenant.md(), company_id=other.company_id)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_info(refused.value).reason == "OTHER_COMPANY"

    # A service account a company keeps for itself is one of its callers.
    key_md = core.identity.bearer(
        await service_token(core.identity, tenant.company_id, "reader", "events.watch")
    )
    keyed, _ = await watch_until(stub(core), key_md, 1)
    assert {e.subject for e in keyed} == {f"policies/{policy_a.id}"}
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await first_response(stub(core), key_md, company_id=other.company_id)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED

    # Without events.watch: refused.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await first_response(stub(core), await tenant.md("agent"))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED

    # The platform: a platform admin and the platform's own service account
    # (events.watch_all, as the event dispatcher's key) see both companies (one
    # company when they name it); the same account without it is a caller of
    # the platform's company only.
    platform = core.identity.platform_admin.company_id
    dispatcher_md = core.identity.bearer(
        await service_token(
            core.identity, platform, "event-reader", "events.watch", "events.watch_all"
        )
    )
    own_md = core.identity.bearer(
        await service_token(core.identity, platform, "event-reader-own", "events.watch")
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await first_response(stub(core), own_md, company_id=other.company_id)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    for md in (await platform_md(core), dispatcher_md):
        one, _ = await watch_until(stub(core), md, 1, company_id=other.company_id)
        assert {e.subject for e in one} == {f"policies/{policy_b.id}"}
        everything, _ = await watch_until(stub(core), md, 2)
        subjects = {e.subject for e in everything}
        assert {f"policies/{policy_a.id}", f"policies/{policy_b.id}"} <= subjects
        assert {e.company_id for e in everything} >= {tenant.company_id, other.company_id}


async def test_types_filter(core: CoreHarness, tenant: Tenant) -> None:
    policy = await tenant.in_force()
    events, _ = await watch_until(
        stub(core), await tenant.md(), 1, types=["cardinsa.core.policy.bind.v1"]
    )
    assert [(e.type, e.subject) for e in events] == [
        ("cardinsa.core.policy.bind.v1", f"policies/{policy.id}")
    ]


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        "djE6MToy",  # "v1:1:2"
        WatchCursor(5, 3, 0).encode(),  # lo above hi
        WatchCursor(0, 2**62, 0).encode(),  # beyond the horizon: never issued
        "x" * 500,
    ],
)
async def test_a_bad_cursor_is_invalid_argument(
    core: CoreHarness, tenant: Tenant, cursor: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await first_response(stub(core), await tenant.md(), cursor=cursor)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "cursor" in field_violations(refused.value)


async def test_bad_filters_are_invalid_argument(core: CoreHarness, tenant: Tenant) -> None:
    md = await platform_md(core)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await first_response(stub(core), md, company_id="nope", types=["Policy"])
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(refused.value)) == {"company_id", "types[0]"}


async def test_the_stream_ends_when_the_server_drains(core: CoreHarness, tenant: Tenant) -> None:
    """A drain (SIGTERM) ends open streams at once, however long they had left;
    the consumer reconnects with its cursor. Run on a watch of its own (the
    step the server's drain calls) so the shared server keeps serving."""
    watch = EventWatch(core.app.ctx.db, TABLE, poll_s=0.05, heartbeat_s=3600, stream_max_s=3600)
    token = principal_var.set(_tenant_principal(tenant))
    try:
        stream = watch.watch(events_pb2_watch.WatchEventsRequest())
        async with asyncio.timeout(HANG_GUARD_S):
            first = await anext(stream)
            assert first.caught_up and first.cursor
            watch.end_streams()
            rest = [response async for response in stream]
        assert all(not r.events for r in rest)
    finally:
        principal_var.reset(token)


def _tenant_principal(tenant: Tenant) -> Principal:
    return Principal(
        subject=str(uuid.uuid4()),
        kind=PrincipalKind.USER,
        company_id=tenant.company_id,
        permissions=frozenset({"events.watch"}),
    )


async def test_heartbeats_while_nothing_happens_and_the_stream_ends_by_itself(
    core: CoreHarness, tenant: Tenant
) -> None:
    """Nothing new: heartbeats (no events, the cursor, caught up); after the
    stream's length it ends without a drain."""
    watch = EventWatch(core.app.ctx.db, TABLE, poll_s=0.01, heartbeat_s=0.02, stream_max_s=0.5)
    token = principal_var.set(_tenant_principal(tenant))
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            responses = [r async for r in watch.watch(events_pb2_watch.WatchEventsRequest())]
    finally:
        principal_var.reset(token)
    assert len(responses) >= 2
    assert all(not r.events and r.caught_up and r.cursor for r in responses)


async def test_pages_of_a_range_resume_in_the_middle_and_a_late_commit_is_kept(
    core: CoreHarness, core_database: str, tenant: Tenant
) -> None:
    """Read a page at a time (the cursor then points inside a range): A is
    open while B1 and B2 commit; nothing is read until A commits, then A, B1,
    B2, one per page, each once."""
    watch = EventWatch(core.app.ctx.db, TABLE)
    scope = WatchScope(company=uuid.UUID(tenant.company_id), types=(), platform=False)
    company = tenant.company_id
    admin, late = await connect(core_database), await connect(core_database)
    written: list[uuid.UUID] = []
    try:
        transaction = late.transaction()
        await transaction.start()
        try:
            kwargs = {
                "company_id": company,
                "source": "core",
                "type": "cardinsa.core.policy.update.v1",
                "payload": marker(company),
            }
            written.append((await insert_event(late, TABLE, subject="policies/a", **kwargs))[0])
            for name in ("b1", "b2"):
                event_id, _ = await insert_event(admin, TABLE, subject=f"policies/{name}", **kwargs)
                written.append(event_id)
            events, cursor, caught_up = await watch.read(scope, None, limit=1)
            assert events == [] and caught_up
        except BaseException:
            await transaction.rollback()
            raise
        await transaction.commit()
        seen: list[str] = []
        cursors = []
        async with asyncio.timeout(HANG_GUARD_S):
            while len(seen) < 3 or not caught_up:
                events, cursor, caught_up = await watch.read(scope, cursor, limit=1)
                seen += [e.id for e in events]
                cursors.append(cursor)
        assert seen == [str(i) for i in written]
        assert any(c.after > 0 for c in cursors)
        # Resuming from any cursor of the way gives exactly what followed it.
        again, _, _ = await watch.read(scope, cursors[0], limit=10)
        assert [e.id for e in again] == seen[1:]
    finally:
        await late.close()
        await admin.close()


async def test_a_draining_server_ends_its_streams_cleanly(
    core: CoreHarness, core_database: str, core_settings: CoreSettings, tenant: Tenant
) -> None:
    """A second core server is stopped (SIGTERM's path) while a stream is open
    with an hour left and no heartbeat due: the stream ends with OK inside the
    grace period, rather than being cut off when the grace period runs out."""
    settings = core_settings.model_copy(
        update={
            "drain_delay_s": 0.0,
            "grace_period_s": 120.0,
            "event_watch_heartbeat_s": 3600.0,
            "event_watch_stream_max_s": 3600.0,
        }
    )
    app = build(settings, app_role_url(core_database), port=0, metrics_port=0)
    await app.start()
    stopped = False
    try:
        async with grpc.aio.insecure_channel(app.server.address) as channel:
            call = event_service_pb2_grpc.EventServiceStub(channel).WatchEvents(
                events_pb2_watch.WatchEventsRequest(), metadata=await tenant.md()
            )
            async with asyncio.timeout(HANG_GUARD_S):
                first = await call.read()
                assert first.caught_up
                stopping = asyncio.create_task(app.stop())
                rest = []
                while (response := await call.read()) is not grpc.aio.EOF:
                    rest.append(response)
                await stopping
                stopped = True
            assert await call.code() is grpc.StatusCode.OK
            assert all(not r.events for r in rest)
    finally:
        if not stopped:
            await app.stop()
