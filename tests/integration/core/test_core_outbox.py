"""Core's transactional outbox over gRPC and real PostgreSQL: every logged change
of a policy or a claim writes one event in its own transaction, in order per
resource; a change that fails writes none."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import grpc
import pytest
from core_harness import TODAY, CoreHarness, Tenant
from support.grpc_errors import error_info

from cardinsa.core.v1 import claim_service_pb2 as cb
from cardinsa.core.v1 import events_pb2, resources_pb2
from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa_core.repository.models import PolicyRow
from cardinsa_foundation.db import platform_role_url, to_libpq_url

P = resources_pb2.Policy


async def events_of(url: str, subject: str) -> list[asyncpg.Record]:
    """The outbox rows of ``subject`` in order, read as the platform role."""
    connection = await asyncpg.connect(to_libpq_url(platform_role_url(url)))
    try:
        return list(
            await connection.fetch(
                "SELECT id, sequence, company_id, source, type, subject, ordering_key, "
                "data_schema, data FROM core.outbox_events WHERE subject = $1 "
                "ORDER BY sequence",
                subject,
            )
        )
    finally:
        await connection.close()


async def test_a_policy_and_a_claim_tell_every_change_once_in_order(
    core: CoreHarness, core_database: str, tenant: Tenant
) -> None:
    policy = await tenant.in_force()
    everything = await events_of(core_database, f"policies/{policy.id}")
    # The bind's invoices (12 monthly instalments) follow the policy's own events.
    assert [r["type"] for r in everything[4:]] == ["cardinsa.core.billing.invoice_issued.v1"] * 12
    rows = everything[:4]
    assert [r["type"] for r in rows] == [
        "cardinsa.core.policy.create.v1",
        "cardinsa.core.policy.quote.v1",
        "cardinsa.core.policy.bind.v1",
        "cardinsa.core.policy.activate.v1",
    ]
    assert {(r["source"], r["ordering_key"], str(r["company_id"])) for r in rows} == {
        ("core", f"policies/{policy.id}", tenant.company_id)
    }
    assert len({r["id"] for r in rows}) == 4
    last = events_pb2.PolicyEvent.FromString(rows[-1]["data"])
    assert rows[-1]["data_schema"] == "cardinsa.core.v1.PolicyEvent"
    assert last.transition == "activate" and last.from_state == P.BOUND
    assert last.policy.state == P.IN_FORCE and last.policy.policy_number == policy.policy_number
    assert last.policy.written_premium == policy.written_premium

    claim = await tenant.claim(policy)
    await tenant.harness.claims.SubmitClaim(
        cb.SubmitClaimRequest(claim_id=claim.id), metadata=await tenant.md()
    )
    claim_rows = await events_of(core_database, f"claims/{claim.id}")
    assert [r["type"] for r in claim_rows] == [
        "cardinsa.core.claim.create.v1",
        "cardinsa.core.claim.submit.v1",
    ]
    submitted = events_pb2.ClaimEvent.FromString(claim_rows[-1]["data"])
    assert submitted.claim.state == resources_pb2.Claim.SUBMITTED
    assert submitted.claim.claim_number and submitted.from_state == resources_pb2.Claim.DRAFT


async def test_a_change_that_fails_writes_no_event(
    core: CoreHarness, core_database: str, tenant: Tenant
) -> None:
    """A bind refused after the use case has started writing (an open
    underwriting issue) rolls back everything, its event included."""
    policies, md = tenant.harness.policies, await tenant.md()
    quoted = await tenant.quoted(
        await tenant.holder(), await tenant.product(), effective=TODAY - timedelta(days=90)
    )
    assert quoted.open_underwriting_issues == 1  # BACKDATED
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await policies.BindPolicy(pb.BindPolicyRequest(policy_id=quoted.id), metadata=md)
    assert error_info(refused.value).reason == "UNDERWRITING_ISSUES_OPEN"
    rows = await events_of(core_database, f"policies/{quoted.id}")
    assert [r["type"].split(".")[3] for r in rows] == ["create", "quote"]
    assert uuid.UUID(str(rows[0]["company_id"])) == uuid.UUID(tenant.company_id)


async def test_an_event_commits_and_rolls_back_with_its_transaction(
    core: CoreHarness, core_database: str, tenant: Tenant
) -> None:
    """The event is an insert of the change's own unit of work: flushed to
    PostgreSQL and then rolled back, it is gone; committed, it is there."""
    policy = await tenant.in_force()
    ctx, company = core.app.ctx, uuid.UUID(tenant.company_id)
    subject = f"policies/{policy.id}"
    before = len(await events_of(core_database, subject))
    with pytest.raises(RuntimeError):
        async with ctx.db.unit_of_work(company_id=company) as session:
            row = await session.get(PolicyRow, uuid.UUID(policy.id))
            assert row is not None
            ctx.events.policy_changed(session, row, transition="update", from_state="IN_FORCE")
            await session.flush()  # the insert has reached PostgreSQL
            raise RuntimeError("the change fails after writing its event")
    assert len(await events_of(core_database, subject)) == before
    async with ctx.db.unit_of_work(company_id=company) as session:
        row = await session.get(PolicyRow, uuid.UUID(policy.id))
        assert row is not None
        ctx.events.policy_changed(session, row, transition="update", from_state="IN_FORCE")
    rows = await events_of(core_database, subject)
    assert len(rows) == before + 1 and rows[-1]["type"] == "cardinsa.core.policy.update.v1"
