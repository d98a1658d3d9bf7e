"""Underwriting issues over gRPC: listing, approving and declining them, who may,
request ids, tenants kept apart; what raise_issues and check_bindable do in
the database; and (once QuotePolicy and BindPolicy call them) the whole way
from a quote's findings to the bind.

The first part raises issues the way the quote does, with
``application.underwriting.raise_issues`` in a unit of work on the policy row
of a quoted policy, so it needs nothing but this module's own code.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta

import grpc
import pytest
from core_harness import TODAY, CoreHarness, Tenant, mask, money, new_request_id
from google.protobuf import json_format
from sqlalchemy import select
from support.grpc_errors import error_info, field_violations, precondition_violations
from support.identity_harness import Account

from cardinsa.core.v1 import core_service_pb2 as xb
from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import product_service_pb2, resources_pb2
from cardinsa_core.application.underwriting import check_bindable, raise_issues
from cardinsa_core.domain.underwriting import Finding
from cardinsa_core.repository.models import UnderwritingIssueRow
from cardinsa_core.repository.policies import POLICIES
from cardinsa_foundation.errors import FailedPrecondition

UI = resources_pb2.UnderwritingIssue
P_QUOTED = resources_pb2.Policy.QUOTED
FINDINGS = (
    Finding("MANUAL_UNDERWRITING", "terms:1", "the product requires an underwriter"),
    Finding("SUM_INSURED_REFERRAL", "600000.00 USD", "the sum insured is above 500000.00 USD"),
    Finding("AGE_LIMIT", "holder/OUTPATIENT", "policyholder: age 70 is above 65 for OUTPATIENT"),
)


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def underwriter(tenant: Tenant) -> tuple[Account, list[tuple[str, str]]]:
    """A new user with the built-in underwriter role, and their call metadata."""
    identity = tenant.harness.identity
    account = await identity.create_user(tenant.admin, roles=["underwriter"])
    return account, identity.bearer(await identity.token(account))


async def quoted_policy(tenant: Tenant) -> resources_pb2.Policy:
    return await tenant.quoted(
        await tenant.holder(dependents=0), await tenant.product(), effective=TODAY
    )


async def raise_now(tenant: Tenant, policy_id: str, findings: Sequence[Finding]) -> int:
    """What the quote does with its findings: in a unit of work, the policy locked."""
    company = uuid.UUID(tenant.company_id)
    async with tenant.harness.app.ctx.db.unit_of_work(company_id=company) as session:
        row = await POLICIES.find(session, company, policy_id, lock=True)
        return await raise_issues(session, row, findings)


async def stored_open_count(tenant: Tenant, policy_id: str) -> int:
    company = uuid.UUID(tenant.company_id)
    async with tenant.harness.app.ctx.db.unit_of_work(company_id=company) as session:
        return (await POLICIES.find(session, company, policy_id)).open_underwriting_issues


async def bindable(tenant: Tenant, policy_id: str, **backdating: object) -> None:
    company = uuid.UUID(tenant.company_id)
    async with tenant.harness.app.ctx.db.unit_of_work(company_id=company) as session:
        row = await POLICIES.find(session, company, policy_id, lock=True)
        await check_bindable(session, row, **backdating)  # type: ignore[arg-type]


async def issues(
    tenant: Tenant, policy_id: str, md: list[tuple[str, str]] | None = None
) -> list[UI]:
    found: list[UI] = []
    token = ""
    while True:
        page = await tenant.harness.policies.ListUnderwritingIssues(
            pb.ListUnderwritingIssuesRequest(policy_id=policy_id, page_size=2, page_token=token),
            metadata=md or await tenant.md(),
        )
        found += page.underwriting_issues
        token = page.next_page_token
        if not token:
            return found


def approve(
    policy_id: str, issue_id: str, note: str = "acceptable risk", request_id: str = ""
) -> pb.ApproveUnderwritingIssueRequest:
    return pb.ApproveUnderwritingIssueRequest(
        policy_id=policy_id, issue_id=issue_id, note=note, request_id=request_id
    )


def decline(
    policy_id: str, issue_id: str, note: str = "too risky", request_id: str = ""
) -> pb.DeclineUnderwritingIssueRequest:
    return pb.DeclineUnderwritingIssueRequest(
        policy_id=policy_id, issue_id=issue_id, note=note, request_id=request_id
    )


async def decision_events(tenant: Tenant, decision: str) -> list[dict[str, object]]:
    events = await tenant.harness.core.ListAuditEvents(
        xb.ListAuditEventsRequest(filter=f'action = "policy.underwriting_issue.{decision}"'),
        metadata=await tenant.md(),
    )
    return [
        {"entity_id": e.entity_id, **json_format.MessageToDict(e.detail)}
        for e in events.audit_events
    ]


# ------------------------------------------------------------------ list, approve, decline


async def test_issues_are_listed_oldest_first_and_decided_with_a_note(tenant: Tenant) -> None:
    policies = tenant.harness.policies
    policy = await quoted_policy(tenant)
    assert await raise_now(tenant, policy.id, FINDINGS) == 3
    assert await stored_open_count(tenant, policy.id) == 3

    # Anyone who may read the policy sees its issues (an agent here), in the order raised.
    listed = await issues(tenant, policy.id, await tenant.md("agent"))
    assert [(i.code, i.description, i.state) for i in listed] == [
        (f.code, f.description, UI.OPEN) for f in FINDINGS
    ]
    assert all(i.policy_id == policy.id and not i.decided_by for i in listed)
    assert all(not i.HasField("decide_time") and i.HasField("create_time") for i in listed)
    assert [i.create_time.ToDatetime() for i in listed] == sorted(
        i.create_time.ToDatetime() for i in listed
    )

    account, md = await underwriter(tenant)
    before = await policies.GetPolicy(pb.GetPolicyRequest(policy_id=policy.id), metadata=md)
    approved = await policies.ApproveUnderwritingIssue(
        approve(policy.id, listed[0].id, "  known customer  "), metadata=md
    )
    assert approved.state == UI.APPROVED
    assert approved.decided_by == account.user_id
    assert approved.decision_note == "known customer"
    assert approved.HasField("decide_time")
    assert (approved.id, approved.code, approved.create_time) == (
        listed[0].id,
        listed[0].code,
        listed[0].create_time,
    )
    declined = await policies.DeclineUnderwritingIssue(
        decline(policy.id, listed[1].id), metadata=md
    )
    assert declined.state == UI.DECLINED and declined.decision_note == "too risky"

    assert [i.state for i in await issues(tenant, policy.id)] == [
        UI.APPROVED,
        UI.DECLINED,
        UI.OPEN,
    ]
    assert await stored_open_count(tenant, policy.id) == 1
    # A decision changes the policy: its etag moves on.
    after = await policies.GetPolicy(pb.GetPolicyRequest(policy_id=policy.id), metadata=md)
    assert after.etag != before.etag and after.state == P_QUOTED

    approvals = await decision_events(tenant, "approve")
    assert approvals == [
        {
            "entity_id": policy.id,
            "issue_id": listed[0].id,
            "code": "MANUAL_UNDERWRITING",
            "key": "terms:1",
            "from_state": "OPEN",
            "to_state": "APPROVED",
            "note": "known customer",
            "open_underwriting_issues": 2.0,
        }
    ]
    declines = await decision_events(tenant, "decline")
    assert [(d["issue_id"], d["to_state"], d["note"]) for d in declines] == [
        (listed[1].id, "DECLINED", "too risky")
    ]


async def test_a_policy_without_issues_lists_none(tenant: Tenant) -> None:
    policy = await quoted_policy(tenant)
    assert await issues(tenant, policy.id) == []


async def test_only_an_underwriter_decides(tenant: Tenant) -> None:
    policies = tenant.harness.policies
    policy = await quoted_policy(tenant)
    await raise_now(tenant, policy.id, FINDINGS[:1])
    (issue,) = await issues(tenant, policy.id)
    for role in ("agent", "claims-adjuster", "viewer"):
        md = await tenant.md(role)
        for call in (
            policies.ApproveUnderwritingIssue(approve(policy.id, issue.id), metadata=md),
            policies.DeclineUnderwritingIssue(decline(policy.id, issue.id), metadata=md),
        ):
            error = await refused(call)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, role
    assert [i.state for i in await issues(tenant, policy.id)] == [UI.OPEN]
    assert await decision_events(tenant, "approve") == []
    # The company admin holds every permission of the company, policies.underwrite too.
    done = await policies.ApproveUnderwritingIssue(
        approve(policy.id, issue.id), metadata=await tenant.md()
    )
    assert done.state == UI.APPROVED and done.decided_by == tenant.admin.user_id


async def test_a_replay_decides_nothing_twice(tenant: Tenant) -> None:
    policies = tenant.harness.policies
    policy = await quoted_policy(tenant)
    await raise_now(tenant, policy.id, FINDINGS[:2])
    first, second = await issues(tenant, policy.id)
    _, md = await underwriter(tenant)
    request_id = new_request_id()

    done = await policies.ApproveUnderwritingIssue(
        approve(policy.id, first.id, request_id=request_id), metadata=md
    )
    again = await policies.ApproveUnderwritingIssue(
        approve(policy.id, first.id, request_id=request_id), metadata=md
    )
    assert again == done
    assert len(await decision_events(tenant, "approve")) == 1

    # The same request id for another note or another issue: refused, nothing decided.
    for other in (
        approve(policy.id, first.id, "another reason", request_id),
        approve(policy.id, second.id, request_id=request_id),
    ):
        error = await refused(policies.ApproveUnderwritingIssue(other, metadata=md))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(error).reason == "REQUEST_ID_REUSED"
    assert [i.state for i in await issues(tenant, policy.id)] == [UI.APPROVED, UI.OPEN]

    # A malformed request id is a field violation.
    error = await refused(
        policies.DeclineUnderwritingIssue(
            decline(policy.id, second.id, request_id="not-a-uuid"), metadata=md
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error) == {"request_id": "must be a UUID"}


async def test_an_issue_is_decided_once(tenant: Tenant) -> None:
    policies = tenant.harness.policies
    policy = await quoted_policy(tenant)
    await raise_now(tenant, policy.id, FINDINGS[:2])
    first, second = await issues(tenant, policy.id)
    _, md = await underwriter(tenant)
    await policies.ApproveUnderwritingIssue(approve(policy.id, first.id), metadata=md)
    await policies.DeclineUnderwritingIssue(decline(policy.id, second.id), metadata=md)

    for call, state in (
        (policies.DeclineUnderwritingIssue(decline(policy.id, first.id), metadata=md), "APPROVED"),
        (policies.ApproveUnderwritingIssue(approve(policy.id, first.id), metadata=md), "APPROVED"),
        (policies.ApproveUnderwritingIssue(approve(policy.id, second.id), metadata=md), "DECLINED"),
    ):
        error = await refused(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        info = error_info(error)
        assert info.reason == "ISSUE_DECIDED"
        assert info.metadata["state"] == state
    assert [(i.state, i.decision_note) for i in await issues(tenant, policy.id)] == [
        (UI.APPROVED, "acceptable risk"),
        (UI.DECLINED, "too risky"),
    ]


async def test_two_decisions_at_once_one_wins(tenant: Tenant) -> None:
    policies = tenant.harness.policies
    policy = await quoted_policy(tenant)
    await raise_now(tenant, policy.id, FINDINGS[:1])
    (issue,) = await issues(tenant, policy.id)
    _, md = await underwriter(tenant)
    results = await asyncio.gather(
        policies.ApproveUnderwritingIssue(approve(policy.id, issue.id), metadata=md),
        policies.DeclineUnderwritingIssue(decline(policy.id, issue.id), metadata=md),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, UI)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 1
    assert error_info(lost[0]).reason == "ISSUE_DECIDED"
    (now,) = await issues(tenant, policy.id)
    assert now.state == won[0].state
    assert await stored_open_count(tenant, policy.id) == 0


@pytest.mark.parametrize(
    ("note", "problem"),
    [("", "required"), ("   ", "required"), ("x" * 1001, "at most 1000 characters")],
)
async def test_a_decision_needs_a_note(tenant: Tenant, note: str, problem: str) -> None:
    policies = tenant.harness.policies
    policy = await quoted_policy(tenant)
    await raise_now(tenant, policy.id, FINDINGS[:1])
    (issue,) = await issues(tenant, policy.id)
    _, md = await underwriter(tenant)
    for call in (
        policies.ApproveUnderwritingIssue(approve(policy.id, issue.id, note), metadata=md),
        policies.DeclineUnderwritingIssue(decline(policy.id, issue.id, note), metadata=md),
    ):
        error = await refused(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(error) == {"note": problem}
    # 1000 characters are fine.
    done = await policies.ApproveUnderwritingIssue(
        approve(policy.id, issue.id, "y" * 1000), metadata=md
    )
    assert done.decision_note == "y" * 1000


async def test_decisions_only_while_the_policy_is_quoted(tenant: Tenant) -> None:
    policies, admin = tenant.harness.policies, await tenant.md()
    policy = await quoted_policy(tenant)
    await raise_now(tenant, policy.id, FINDINGS[:1])
    (issue,) = await issues(tenant, policy.id)
    # Any change returns the quote to DRAFT: what the issue was about may have changed.
    changed = resources_pb2.Policy(id=policy.id, sum_insured=money("120000"))
    current = await policies.GetPolicy(pb.GetPolicyRequest(policy_id=policy.id), metadata=admin)
    changed.etag = current.etag
    draft = await policies.UpdatePolicy(
        pb.UpdatePolicyRequest(policy=changed, update_mask=mask("sum_insured")), metadata=admin
    )
    assert draft.state == resources_pb2.Policy.DRAFT
    _, md = await underwriter(tenant)
    error = await refused(
        policies.ApproveUnderwritingIssue(approve(policy.id, issue.id), metadata=md)
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(error)
    assert info.reason == "POLICY_NOT_QUOTED"
    assert dict(info.metadata) == {"policy_state": "DRAFT"}
    # The issue is still there, undecided, for the next quote to keep or drop.
    assert [i.state for i in await issues(tenant, policy.id)] == [UI.OPEN]


async def test_a_deleted_policys_issues_are_not_decided(tenant: Tenant) -> None:
    policies, admin = tenant.harness.policies, await tenant.md()
    policy = await quoted_policy(tenant)
    await raise_now(tenant, policy.id, FINDINGS[:1])
    (issue,) = await issues(tenant, policy.id)
    current = await policies.GetPolicy(pb.GetPolicyRequest(policy_id=policy.id), metadata=admin)
    await policies.DeletePolicy(
        pb.DeletePolicyRequest(policy_id=policy.id, etag=current.etag), metadata=admin
    )
    _, md = await underwriter(tenant)
    error = await refused(
        policies.DeclineUnderwritingIssue(decline(policy.id, issue.id), metadata=md)
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "RESOURCE_DELETED"
    # Still listed (a deleted quote can be read and undeleted).
    assert [i.state for i in await issues(tenant, policy.id)] == [UI.OPEN]


async def test_other_tenants_policies_and_unknown_ids_are_not_found(
    core: CoreHarness, tenant: Tenant
) -> None:
    policies = tenant.harness.policies
    policy = await quoted_policy(tenant)
    await raise_now(tenant, policy.id, FINDINGS[:1])
    (issue,) = await issues(tenant, policy.id)
    other = await core.tenant()
    other_md = await other.md()

    for call in (
        policies.ListUnderwritingIssues(
            pb.ListUnderwritingIssuesRequest(policy_id=policy.id), metadata=other_md
        ),
        policies.ApproveUnderwritingIssue(approve(policy.id, issue.id), metadata=other_md),
        policies.DeclineUnderwritingIssue(decline(policy.id, issue.id), metadata=other_md),
    ):
        error = await refused(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(error).reason == "POLICY_NOT_FOUND"

    # The other tenant's own policy with this tenant's issue id: the issue is not found.
    theirs = await quoted_policy(other)
    error = await refused(
        policies.ApproveUnderwritingIssue(approve(theirs.id, issue.id), metadata=other_md)
    )
    assert error_info(error).reason == "UNDERWRITING_ISSUE_NOT_FOUND"

    _, md = await underwriter(tenant)
    sibling = await quoted_policy(tenant)
    for policy_id, issue_id, reason in (
        ("not-a-uuid", issue.id, "POLICY_NOT_FOUND"),
        (str(uuid.uuid4()), issue.id, "POLICY_NOT_FOUND"),
        (policy.id, "not-a-uuid", "UNDERWRITING_ISSUE_NOT_FOUND"),
        (policy.id, str(uuid.uuid4()), "UNDERWRITING_ISSUE_NOT_FOUND"),
        # An issue of another policy of the same company.
        (sibling.id, issue.id, "UNDERWRITING_ISSUE_NOT_FOUND"),
    ):
        error = await refused(
            policies.ApproveUnderwritingIssue(approve(policy_id, issue_id), metadata=md)
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND, (policy_id, issue_id)
        assert error_info(error).reason == reason
    error = await refused(
        policies.ListUnderwritingIssues(
            pb.ListUnderwritingIssuesRequest(policy_id="nope"), metadata=md
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert [i.state for i in await issues(tenant, policy.id)] == [UI.OPEN]


async def test_a_page_token_is_for_its_own_policy(tenant: Tenant) -> None:
    policies, md = tenant.harness.policies, await tenant.md()
    policy, other = await quoted_policy(tenant), await quoted_policy(tenant)
    await raise_now(tenant, policy.id, FINDINGS)
    await raise_now(tenant, other.id, FINDINGS)
    page = await policies.ListUnderwritingIssues(
        pb.ListUnderwritingIssuesRequest(policy_id=policy.id, page_size=1), metadata=md
    )
    assert page.next_page_token
    error = await refused(
        policies.ListUnderwritingIssues(
            pb.ListUnderwritingIssuesRequest(
                policy_id=other.id, page_size=1, page_token=page.next_page_token
            ),
            metadata=md,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------------------ raise_issues, check_bindable


async def test_a_new_quote_keeps_decisions_of_what_it_finds_again(tenant: Tenant) -> None:
    policies = tenant.harness.policies
    policy = await quoted_policy(tenant)
    await raise_now(tenant, policy.id, FINDINGS)
    manual, referral, age = await issues(tenant, policy.id)
    _, md = await underwriter(tenant)
    await policies.ApproveUnderwritingIssue(approve(policy.id, manual.id), metadata=md)
    await policies.DeclineUnderwritingIssue(decline(policy.id, referral.id), metadata=md)

    # Found again: MANUAL (approved: it keeps the wording it was decided on) and
    # AGE (open: new wording); the referral is gone; BACKDATED is new. A duplicate
    # finding is one issue.
    backdated = Finding("BACKDATED", "2026-01-01", "the policy starts long ago")
    reworded = Finding(age.code, "holder/OUTPATIENT", "policyholder: age 71 is above 65")
    manual_again = Finding(manual.code, "terms:1", "reworded, but the same terms")
    again = [manual_again, reworded, backdated, backdated]
    assert await raise_now(tenant, policy.id, again) == 2
    assert await stored_open_count(tenant, policy.id) == 2
    now = await issues(tenant, policy.id)
    assert [(i.id, i.state, i.description) for i in now[:2]] == [
        (manual.id, UI.APPROVED, manual.description),
        (age.id, UI.OPEN, reworded.description),
    ]
    assert [(i.code, i.state) for i in now[2:]] == [("BACKDATED", UI.OPEN)]
    assert referral.id not in {i.id for i in now}

    # Nothing found: no issues at all.
    assert await raise_now(tenant, policy.id, []) == 0
    assert await issues(tenant, policy.id) == []
    assert await stored_open_count(tenant, policy.id) == 0


async def test_check_bindable_names_every_open_or_declined_issue(tenant: Tenant) -> None:
    policies = tenant.harness.policies
    policy = await quoted_policy(tenant)
    await bindable(tenant, policy.id)  # no issues: nothing in the way
    await raise_now(tenant, policy.id, FINDINGS)
    manual, referral, age = await issues(tenant, policy.id)
    _, md = await underwriter(tenant)
    await policies.ApproveUnderwritingIssue(approve(policy.id, manual.id), metadata=md)
    await policies.DeclineUnderwritingIssue(decline(policy.id, referral.id), metadata=md)

    with pytest.raises(FailedPrecondition) as caught:
        await bindable(tenant, policy.id)
    error = caught.value
    assert error.reason == "UNDERWRITING_ISSUES_OPEN"
    assert error.metadata == {
        "open": "1",
        "declined": "1",
        "issue_ids": f"{referral.id},{age.id}",
    }
    assert [(v.type, v.subject) for v in error.precondition_violations] == [
        ("UNDERWRITING", f"policies/{policy.id}/underwritingIssues/{referral.id}"),
        ("UNDERWRITING", f"policies/{policy.id}/underwritingIssues/{age.id}"),
    ]
    assert error.precondition_violations[0].description == (
        f"SUM_INSURED_REFERRAL (declined): {referral.description}"
    )

    # Approving the open one leaves the declined one in the way.
    await policies.ApproveUnderwritingIssue(approve(policy.id, age.id), metadata=md)
    with pytest.raises(FailedPrecondition) as caught:
        await bindable(tenant, policy.id)
    assert [v.subject.rsplit("/", 1)[1] for v in caught.value.precondition_violations] == [
        referral.id
    ]
    # A new quote that no longer finds it clears the way.
    await raise_now(tenant, policy.id, [FINDINGS[0], FINDINGS[2]])
    await bindable(tenant, policy.id)


async def test_check_bindable_refuses_a_start_that_has_become_too_old(tenant: Tenant) -> None:
    policies = tenant.harness.policies
    policy = await quoted_policy(tenant)  # effective today
    await bindable(tenant, policy.id, today=TODAY + timedelta(days=30), max_backdate_days=30)
    with pytest.raises(FailedPrecondition) as caught:
        await bindable(tenant, policy.id, today=TODAY + timedelta(days=31), max_backdate_days=30)
    error = caught.value
    assert error.reason == "BACKDATED"
    assert error.metadata == {"effective_date": TODAY.isoformat(), "max_backdate_days": "30"}
    assert [(v.type, v.subject) for v in error.precondition_violations] == [
        ("UNDERWRITING", f"policies/{policy.id}")
    ]
    # A re-quote then raises BACKDATED for this effective date; once approved, it binds.
    await raise_now(
        tenant, policy.id, [Finding("BACKDATED", TODAY.isoformat(), "starts 31 days ago")]
    )
    (issue,) = await issues(tenant, policy.id)
    _, md = await underwriter(tenant)
    await policies.ApproveUnderwritingIssue(approve(policy.id, issue.id), metadata=md)
    await bindable(tenant, policy.id, today=TODAY + timedelta(days=31), max_backdate_days=30)


# ------------------------------------------------------------------ quote and bind


async def underwritten_product(
    tenant: Tenant,
    *,
    rules: resources_pb2.RatingRules | None = None,
    min_entry_age: int = 0,
    max_entry_age: int = 0,
) -> resources_pb2.Product:
    md = await tenant.md()
    product = await tenant.harness.products.CreateProduct(
        product_service_pb2.CreateProductRequest(
            product=resources_pb2.Product(
                code=f"UW-{uuid.uuid4().hex[:8].upper()}",
                line_of_business=resources_pb2.Product.MEDICAL,
                name="Health Underwritten",
                currency_code="USD",
                base_premium=money("500"),
                term_months=12,
                coverages=[
                    resources_pb2.Coverage(
                        code="INPATIENT",
                        name="Inpatient care",
                        limit=money("50000"),
                        limit_period=resources_pb2.Coverage.PER_YEAR,
                        deductible=money("0"),
                        min_entry_age=min_entry_age,
                        max_entry_age=max_entry_age,
                    )
                ],
                rating_rules=rules,
            )
        ),
        metadata=md,
    )
    return await tenant.harness.products.ActivateProduct(
        product_service_pb2.ActivateProductRequest(product_id=product.id), metadata=md
    )


async def quote(tenant: Tenant, policy: resources_pb2.Policy) -> resources_pb2.Policy:
    return await tenant.harness.policies.QuotePolicy(
        pb.QuotePolicyRequest(policy_id=policy.id, etag=policy.etag), metadata=await tenant.md()
    )


async def bind(tenant: Tenant, policy_id: str) -> resources_pb2.Policy:
    policies, md = tenant.harness.policies, await tenant.md()
    current = await policies.GetPolicy(pb.GetPolicyRequest(policy_id=policy_id), metadata=md)
    return await policies.BindPolicy(
        pb.BindPolicyRequest(policy_id=policy_id, etag=current.etag), metadata=md
    )


async def test_manual_underwriting_blocks_the_bind_until_approved(tenant: Tenant) -> None:
    product = await underwritten_product(
        tenant, rules=resources_pb2.RatingRules(manual_underwriting=True)
    )
    draft = await tenant.draft(await tenant.holder(dependents=0), product, effective=TODAY)
    quoted = await quote(tenant, draft)
    assert quoted.open_underwriting_issues == 1
    (issue,) = await issues(tenant, quoted.id)
    assert (issue.code, issue.state) == ("MANUAL_UNDERWRITING", UI.OPEN)

    error = await refused(bind(tenant, quoted.id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "UNDERWRITING_ISSUES_OPEN"
    assert [(t, s) for t, s, _ in precondition_violations(error)] == [
        ("UNDERWRITING", f"policies/{quoted.id}/underwritingIssues/{issue.id}")
    ]

    _, md = await underwriter(tenant)
    await tenant.harness.policies.ApproveUnderwritingIssue(
        approve(quoted.id, issue.id), metadata=md
    )
    current = await tenant.harness.policies.GetPolicy(
        pb.GetPolicyRequest(policy_id=quoted.id), metadata=md
    )
    assert current.open_underwriting_issues == 0
    bound = await bind(tenant, quoted.id)
    assert bound.state in (resources_pb2.Policy.BOUND, resources_pb2.Policy.IN_FORCE)


async def test_a_declined_referral_goes_away_with_a_lower_sum_insured(tenant: Tenant) -> None:
    policies, admin = tenant.harness.policies, await tenant.md()
    product = await underwritten_product(
        tenant, rules=resources_pb2.RatingRules(referral_sum_insured=money("50000"))
    )
    # The harness's drafts insure 100 000: above the referral limit.
    draft = await tenant.draft(await tenant.holder(dependents=0), product, effective=TODAY)
    quoted = await quote(tenant, draft)
    (issue,) = await issues(tenant, quoted.id)
    assert issue.code == "SUM_INSURED_REFERRAL" and "100000.00 USD" in issue.description
    _, md = await underwriter(tenant)
    await policies.DeclineUnderwritingIssue(decline(quoted.id, issue.id), metadata=md)
    error = await refused(bind(tenant, quoted.id))
    assert error_info(error).reason == "UNDERWRITING_ISSUES_OPEN"

    # Re-quoted unchanged: the decline stands.
    current = await policies.GetPolicy(pb.GetPolicyRequest(policy_id=quoted.id), metadata=admin)
    requoted = await quote(tenant, current)
    assert [(i.id, i.state) for i in await issues(tenant, quoted.id)] == [(issue.id, UI.DECLINED)]
    assert requoted.open_underwriting_issues == 0

    # Exactly the limit is no referral: the issue goes, the policy binds.
    lower = resources_pb2.Policy(id=quoted.id, sum_insured=money("50000"), etag=requoted.etag)
    draft = await policies.UpdatePolicy(
        pb.UpdatePolicyRequest(policy=lower, update_mask=mask("sum_insured")), metadata=admin
    )
    await quote(tenant, draft)
    assert await issues(tenant, quoted.id) == []
    await bind(tenant, quoted.id)


async def test_entry_ages_and_backdating_are_found_at_quote(tenant: Tenant) -> None:
    # The harness's holders were born on 1990-02-03.
    product = await underwritten_product(tenant, min_entry_age=0, max_entry_age=30)
    effective = TODAY - timedelta(days=45)
    draft = await tenant.draft(await tenant.holder(dependents=0), product, effective=effective)
    quoted = await quote(tenant, draft)
    found = await issues(tenant, quoted.id)
    assert sorted(i.code for i in found) == ["AGE_LIMIT", "BACKDATED"]
    assert quoted.open_underwriting_issues == 2
    _, md = await underwriter(tenant)
    for issue in found:
        await tenant.harness.policies.ApproveUnderwritingIssue(
            approve(quoted.id, issue.id), metadata=md
        )
    bound = await bind(tenant, quoted.id)
    assert bound.policy_number


async def test_a_plain_product_binds_as_before(tenant: Tenant) -> None:
    policy = await tenant.in_force(await tenant.holder(dependents=0), await tenant.product())
    assert policy.open_underwriting_issues == 0
    assert await issues(tenant, policy.id) == []


async def test_issue_rows_belong_to_their_company(tenant: Tenant) -> None:
    """Row-level security: another company's session sees none of the issues."""
    policy = await quoted_policy(tenant)
    await raise_now(tenant, policy.id, FINDINGS)
    stmt = select(UnderwritingIssueRow).where(
        UnderwritingIssueRow.policy_id == uuid.UUID(policy.id)
    )
    db = tenant.harness.app.ctx.db
    async with db.unit_of_work(company_id=uuid.UUID(tenant.company_id)) as session:
        assert len((await session.scalars(stmt)).all()) == 3
    async with db.unit_of_work(company_id=uuid.uuid4()) as session:
        assert (await session.scalars(stmt)).all() == []
