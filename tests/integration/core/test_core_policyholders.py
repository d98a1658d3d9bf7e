"""Policyholders over gRPC: people and organisations, dependents, search through
`filter`, and national ids masked unless the caller may read them."""

from __future__ import annotations

import grpc
import pytest
from core_harness import Tenant, mask, new_request_id
from support.grpc_errors import error_info, field_violations

from cardinsa.core.v1 import policyholder_service_pb2 as hb
from cardinsa.core.v1 import resources_pb2

H = resources_pb2.Policyholder
NATIONAL_ID = "784199012345671"


async def test_national_ids_are_masked_without_the_permission(tenant: Tenant) -> None:
    holders = tenant.harness.policyholders
    holder = await tenant.holder(national_id="784-1990-1234567-1")
    # Created by the company admin, who may read them: in full, normalised.
    assert holder.national_id == NATIONAL_ID and not holder.national_id_masked
    for role in ("agent", "viewer"):
        seen = await holders.GetPolicyholder(
            hb.GetPolicyholderRequest(policyholder_id=holder.id), metadata=await tenant.md(role)
        )
        assert seen.national_id == "•••••••••••5671" and seen.national_id_masked
        assert seen.dependents[0].national_id_masked
        assert seen.dependents[0].national_id.startswith("•")
    full = await holders.GetPolicyholder(
        hb.GetPolicyholderRequest(policyholder_id=holder.id),
        metadata=await tenant.md("underwriter"),
    )
    assert full.national_id == NATIONAL_ID and not full.dependents[0].national_id_masked
    listed = await holders.ListPolicyholders(
        hb.ListPolicyholdersRequest(), metadata=await tenant.md("agent")
    )
    assert all(h.national_id_masked for h in listed.policyholders)


async def test_a_masked_id_sent_back_changes_nothing(tenant: Tenant) -> None:
    holders, agent = tenant.harness.policyholders, await tenant.md("agent")
    holder = await tenant.holder(national_id=NATIONAL_ID)
    seen = await holders.GetPolicyholder(
        hb.GetPolicyholderRequest(policyholder_id=holder.id), metadata=agent
    )
    seen.email = "new@example.com"
    updated = await holders.UpdatePolicyholder(
        hb.UpdatePolicyholderRequest(policyholder=seen, update_mask=mask("email", "national_id")),
        metadata=agent,
    )
    assert updated.email == "new@example.com"
    full = await holders.GetPolicyholder(
        hb.GetPolicyholderRequest(policyholder_id=holder.id), metadata=await tenant.md()
    )
    assert full.national_id == NATIONAL_ID


async def test_search_by_name_email_and_national_id(tenant: Tenant) -> None:
    holders = tenant.harness.policyholders
    target = await tenant.holder(national_id="AE99887766")
    await tenant.holder()
    underwriter, agent = await tenant.md("underwriter"), await tenant.md("agent")

    async def ids(filter: str, md: list[tuple[str, str]]) -> set[str]:
        page = await holders.ListPolicyholders(
            hb.ListPolicyholdersRequest(filter=filter), metadata=md
        )
        return {h.id for h in page.policyholders}

    assert await ids(f'display_name:"{target.family_name.lower()}"', agent) == {target.id}
    assert await ids(f'family_name = "{target.family_name[:8]}*"', agent) == {target.id}
    assert await ids(f'email = "{target.email}"', agent) == {target.id}
    assert await ids('national_id = "AE99887766"', underwriter) == {target.id}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ids('national_id = "AE99887766"', agent)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ids("unknown_field = 1", agent)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_persons_organisations_and_dependents(tenant: Tenant) -> None:
    holders, md = tenant.harness.policyholders, await tenant.md()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await holders.CreatePolicyholder(
            hb.CreatePolicyholderRequest(policyholder=H(kind=H.PERSON, given_name="Only")),
            metadata=md,
        )
    assert "policyholder.family_name" in field_violations(caught.value)
    org = await holders.CreatePolicyholder(
        hb.CreatePolicyholderRequest(
            policyholder=H(
                kind=H.ORGANIZATION, legal_name="Acme Trading LLC", registration_number="CN-1"
            )
        ),
        metadata=md,
    )
    assert org.display_name == "Acme Trading LLC"

    holder = await tenant.holder(dependents=2)
    keep, drop = holder.dependents
    spouse = resources_pb2.Dependent(
        relation=resources_pb2.Dependent.SPOUSE, given_name="Omar", family_name="Haddad"
    )
    keep.given_name = "Renamed"
    updated = await holders.UpdatePolicyholder(
        hb.UpdatePolicyholderRequest(
            policyholder=H(id=holder.id, etag=holder.etag, dependents=[keep, spouse]),
            update_mask=mask("dependents"),
        ),
        metadata=md,
    )
    names = {d.given_name for d in updated.dependents}
    assert names == {"Renamed", "Omar"} and drop.id not in {d.id for d in updated.dependents}
    assert updated.etag != holder.etag
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await holders.UpdatePolicyholder(
            hb.UpdatePolicyholderRequest(
                policyholder=H(id=holder.id, etag=holder.etag, email="x@example.com"),
                update_mask=mask("email"),
            ),
            metadata=md,
        )
    assert caught.value.code() == grpc.StatusCode.ABORTED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await holders.UpdatePolicyholder(
            hb.UpdatePolicyholderRequest(
                policyholder=H(id=holder.id, kind=H.ORGANIZATION), update_mask=mask("kind")
            ),
            metadata=md,
        )
    assert "update_mask" in field_violations(caught.value)


async def test_delete_undelete_and_request_ids(tenant: Tenant) -> None:
    holders, md = tenant.harness.policyholders, await tenant.md()
    request_id = new_request_id()
    body = H(kind=H.PERSON, given_name="Once", family_name="Only")
    first = await holders.CreatePolicyholder(
        hb.CreatePolicyholderRequest(policyholder=body, request_id=request_id), metadata=md
    )
    again = await holders.CreatePolicyholder(
        hb.CreatePolicyholderRequest(policyholder=body, request_id=request_id), metadata=md
    )
    assert again.id == first.id
    listed = await holders.ListPolicyholders(
        hb.ListPolicyholdersRequest(filter='given_name = "Once"'), metadata=md
    )
    assert len(listed.policyholders) == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await holders.CreatePolicyholder(
            hb.CreatePolicyholderRequest(policyholder=body, request_id="not-a-uuid"), metadata=md
        )
    assert field_violations(caught.value) == {"request_id": "must be a UUID"}
    gone = await holders.DeletePolicyholder(
        hb.DeletePolicyholderRequest(policyholder_id=first.id, etag=first.etag), metadata=md
    )
    assert gone.delete_time.seconds
    assert (
        await holders.GetPolicyholder(
            hb.GetPolicyholderRequest(policyholder_id=first.id), metadata=md
        )
    ).delete_time.seconds
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await holders.UpdatePolicyholder(
            hb.UpdatePolicyholderRequest(
                policyholder=H(id=first.id, email="a@example.com"), update_mask=mask("email")
            ),
            metadata=md,
        )
    assert error_info(caught.value).reason == "RESOURCE_DELETED"
    back = await holders.UndeletePolicyholder(
        hb.UndeletePolicyholderRequest(policyholder_id=first.id), metadata=md
    )
    assert not back.HasField("delete_time")
