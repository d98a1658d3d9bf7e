"""Claim authority over gRPC: approval bands per currency (Get, List, Update,
and what ClaimAuthority.bands answers the approval), the claim settings
(segregation of duties), who may change them, their audit rows, tenants kept
apart, and the 0006 migration's downgrade of several currencies.

The harness's companies use the settings' default currency, USD; EUR is the
"second currency" here.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import grpc
import pytest
from core_harness import C, CoreHarness, Tenant, amount, mask, money
from google.protobuf import json_format
from support.grpc_errors import error_info, field_violations

from cardinsa.core.v1 import claim_service_pb2 as cb
from cardinsa.core.v1 import core_service_pb2 as xb
from cardinsa.core.v1 import resources_pb2
from cardinsa_core.application.claim_authority import ClaimAuthority
from cardinsa_core.domain.claims import ApprovalBands
from cardinsa_core.domain.money import Money
from cardinsa_foundation.errors import FailedPrecondition

AB = resources_pb2.ApprovalBands
ADJUSTER_PERMISSIONS = frozenset({"claims.approve", "claims.approve_band_1"})


def bands_request(first: object, second: object, etag: str = "") -> cb.UpdateApprovalBandsRequest:
    message = AB(etag=etag)
    if first is not None:
        message.band_1_limit.CopyFrom(first)
    if second is not None:
        message.band_2_limit.CopyFrom(second)
    return cb.UpdateApprovalBandsRequest(approval_bands=message)


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def authority(tenant: Tenant) -> ClaimAuthority:
    return ClaimAuthority(tenant.harness.app.ctx)


# ------------------------------------------------------------------ bands


async def test_a_second_currency_gets_its_own_bands(tenant: Tenant) -> None:
    claims, admin = tenant.harness.claims, await tenant.md()
    viewer = await tenant.md("claims-adjuster")
    company = uuid.UUID(tenant.company_id)

    default = await claims.GetApprovalBands(cb.GetApprovalBandsRequest(), metadata=viewer)
    assert default.currency_code == "USD" and not default.configured and default.etag == ""
    assert (amount(default.band_1_limit), amount(default.band_2_limit)) == (1000, 5000)
    assert default.band_1_limit.currency_code == default.band_2_limit.currency_code == "USD"
    same = await claims.GetApprovalBands(
        cb.GetApprovalBandsRequest(currency_code="USD"), metadata=viewer
    )
    assert same == default

    # No bands in EUR yet: the precise refusal, naming the currency and what to do.
    error = await refused(
        claims.GetApprovalBands(cb.GetApprovalBandsRequest(currency_code="EUR"), metadata=viewer)
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(error)
    assert info.reason == "NO_APPROVAL_BANDS_FOR_CURRENCY"
    assert dict(info.metadata) == {"currency": "EUR"}
    assert "EUR" in (error.details() or "") and "UpdateApprovalBands" in (error.details() or "")
    listed = await claims.ListApprovalBands(cb.ListApprovalBandsRequest(), metadata=viewer)
    assert [(b.currency_code, b.configured) for b in listed.approval_bands] == [("USD", False)]
    with pytest.raises(FailedPrecondition) as caught:
        await authority(tenant).bands(company, "EUR")
    assert caught.value.reason == "NO_APPROVAL_BANDS_FOR_CURRENCY"
    assert dict(caught.value.metadata) == {"currency": "EUR"}

    eur = await claims.UpdateApprovalBands(
        bands_request(money("2000", "EUR"), money("8000", "EUR")), metadata=admin
    )
    assert eur.configured and eur.etag and eur.currency_code == "EUR"
    assert (amount(eur.band_1_limit), amount(eur.band_2_limit)) == (2000, 8000)
    assert eur.band_2_limit.currency_code == "EUR" and eur.update_time.seconds > 0
    read = await claims.GetApprovalBands(
        cb.GetApprovalBandsRequest(currency_code="EUR"), metadata=viewer
    )
    assert read == eur
    # The default currency is untouched.
    usd = await claims.GetApprovalBands(cb.GetApprovalBandsRequest(), metadata=viewer)
    assert usd == default
    listed = await claims.ListApprovalBands(cb.ListApprovalBandsRequest(), metadata=viewer)
    assert [(b.currency_code, b.configured) for b in listed.approval_bands] == [
        ("EUR", True),
        ("USD", False),
    ]
    assert listed.approval_bands[0] == eur

    # What the approval asks: the bands of the claim's currency.
    found = await authority(tenant).bands(company, "EUR")
    assert found == ApprovalBands((Decimal(2000), Decimal(8000)), "EUR")
    assert await authority(tenant).bands(company, "USD") == ApprovalBands(
        (Decimal(1000), Decimal(5000)), "USD"
    )
    assert await authority(tenant).bands(company) == await authority(tenant).bands(company, "USD")
    # 1 500 EUR is band 1 in EUR (an adjuster may approve it), band 2 in USD.
    found.check_authority(Money.of("1500", "EUR"), ADJUSTER_PERMISSIONS)
    assert found.required_permission(Money.of("8000.01", "EUR")) == "claims.approve_band_3"
    with pytest.raises(FailedPrecondition):
        await authority(tenant).bands(company, "GBP")

    # Configuring the default currency replaces its defaults; both coexist.
    usd = await claims.UpdateApprovalBands(
        bands_request(money("300"), money("600")), metadata=admin
    )
    assert usd.configured and usd.currency_code == "USD"
    listed = await claims.ListApprovalBands(cb.ListApprovalBandsRequest(), metadata=viewer)
    assert [(b.currency_code, b.configured) for b in listed.approval_bands] == [
        ("EUR", True),
        ("USD", True),
    ]
    assert await authority(tenant).bands(company) == ApprovalBands(
        (Decimal(300), Decimal(600)), "USD"
    )


async def test_a_claim_in_a_currency_without_bands_cannot_be_approved(tenant: Tenant) -> None:
    claims, admin = tenant.harness.claims, await tenant.md()
    policy = await tenant.in_force(product=await tenant.product(currency="EUR"))
    claim = await tenant.claim_under_review(policy, claimed="500")
    assert claim.claimed_amount.currency_code == "EUR"
    error = await refused(
        claims.ApproveClaim(
            cb.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("500", "EUR")),
            metadata=admin,
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "NO_APPROVAL_BANDS_FOR_CURRENCY"
    assert error_info(error).metadata["currency"] == "EUR"
    still = await claims.GetClaim(cb.GetClaimRequest(claim_id=claim.id), metadata=admin)
    assert still.state == C.UNDER_REVIEW


async def test_a_claim_in_the_second_currency_is_approved_within_its_bands(
    tenant: Tenant,
) -> None:
    claims, admin = tenant.harness.claims, await tenant.md()
    adjuster = await tenant.md("claims-adjuster")
    await claims.UpdateApprovalBands(
        bands_request(money("2000", "EUR"), money("8000", "EUR")), metadata=admin
    )
    policy = await tenant.in_force(product=await tenant.product(currency="EUR"))
    claim = await tenant.claim_under_review(policy, claimed="1500")
    # 1 200 EUR (the payable part after the 20 % co-insurance) is band 1 in EUR
    # (up to 2 000), band 2 under the USD defaults: the adjuster's band is enough.
    approved = await claims.ApproveClaim(
        cb.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("1200", "EUR")),
        metadata=adjuster,
    )
    assert approved.state == C.APPROVED and approved.approved_amount.currency_code == "EUR"
    assert amount(approved.approved_amount) == 1200
    # Above band 1 in EUR: the adjuster's authority ends there.
    other = await tenant.claim_under_review(policy, claimed="3000")
    error = await refused(
        claims.ApproveClaim(
            cb.ApproveClaimRequest(claim_id=other.id, approved_amount=money("2400", "EUR")),
            metadata=adjuster,
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(error).metadata["required_permission"] == "claims.approve_band_2"


async def test_segregation_of_duties_keeps_the_adjuster_from_approving(tenant: Tenant) -> None:
    claims, admin = tenant.harness.claims, await tenant.md()
    adjuster = await tenant.md("claims-adjuster")
    await claims.UpdateClaimSettings(
        cb.UpdateClaimSettingsRequest(
            claim_settings=resources_pb2.ClaimSettings(require_segregation_of_duties=True),
            update_mask=mask("require_segregation_of_duties"),
        ),
        metadata=admin,
    )
    claim = await tenant.claim(await tenant.in_force(), claimed="500")
    await claims.SubmitClaim(cb.SubmitClaimRequest(claim_id=claim.id), metadata=admin)
    reviewed = await claims.ReviewClaim(cb.ReviewClaimRequest(claim_id=claim.id), metadata=adjuster)
    assert reviewed.assigned_adjuster_id
    error = await refused(
        claims.ApproveClaim(
            cb.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("100")),
            metadata=adjuster,
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(error).reason == "SEGREGATION_OF_DUTIES"
    # Another user with the authority may.
    approved = await claims.ApproveClaim(
        cb.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("100")), metadata=admin
    )
    assert approved.state == C.APPROVED
    # Nor pay it, in one go or as a payment; the action log names who did what.
    error = await refused(
        claims.PayClaim(
            cb.PayClaimRequest(claim_id=claim.id, payment_reference="T"), metadata=adjuster
        )
    )
    assert error_info(error).reason == "SEGREGATION_OF_DUTIES"
    error = await refused(
        claims.CreateClaimPayment(
            cb.CreateClaimPaymentRequest(
                claim_id=claim.id,
                payment=resources_pb2.ClaimPayment(
                    cost_type=resources_pb2.INDEMNITY,
                    payee="x",
                    method=resources_pb2.ClaimPayment.CASH,
                    amount=money("10"),
                ),
            ),
            metadata=adjuster,
        )
    )
    assert error_info(error).reason == "SEGREGATION_OF_DUTIES"
    paid = await claims.PayClaim(
        cb.PayClaimRequest(claim_id=claim.id, payment_reference="T"), metadata=admin
    )
    assert paid.state == C.PAID and paid.approved_by != paid.assigned_adjuster_id
    log = await claims.ListClaimLogEntries(
        cb.ListClaimLogEntriesRequest(claim_id=claim.id), metadata=admin
    )
    actors = {e.action: e.actor_id for e in log.claim_log_entries}
    assert actors["review"] != actors["approve"] and actors["review"] != actors["pay"]


async def test_bad_bands_are_refused_field_by_field(tenant: Tenant) -> None:
    claims, admin = tenant.harness.claims, await tenant.md()

    async def violations(first: object, second: object) -> dict[str, str]:
        error = await refused(
            claims.UpdateApprovalBands(bands_request(first, second), metadata=admin)
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        return field_violations(error)

    found = await violations(money("100", "EUR"), money("200", "USD"))
    assert found == {
        "approval_bands.band_2_limit.currency_code": "must be EUR, the currency of band_1_limit"
    }
    found = await violations(money("500", "EUR"), money("500", "EUR"))
    assert found == {"approval_bands.band_2_limit": "must be greater than band_1_limit"}
    found = await violations(money("500", "EUR"), money("100", "EUR"))
    assert set(found) == {"approval_bands.band_2_limit"}
    found = await violations(money("-5", "EUR"), money("-1", "EUR"))
    assert found == {
        "approval_bands.band_1_limit": "must be positive",
        "approval_bands.band_2_limit": "must be positive",
    }
    found = await violations(money("0", "EUR"), money("10", "EUR"))
    assert found == {"approval_bands.band_1_limit": "must be positive"}
    found = await violations(money("100", ""), None)
    assert set(found) == {
        "approval_bands.band_1_limit.currency_code",
        "approval_bands.band_2_limit",
    }
    found = await violations(money("100", "EURO"), money("200", "EURO"))
    assert set(found) == {
        "approval_bands.band_1_limit.currency_code",
        "approval_bands.band_2_limit.currency_code",
    }
    found = await violations(money("100.5", "JPY"), money("200", "JPY"))
    assert set(found) == {"approval_bands.band_1_limit"}
    error = await refused(
        claims.GetApprovalBands(cb.GetApprovalBandsRequest(currency_code="eur"), metadata=admin)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(error)) == {"currency_code"}
    # Nothing was written.
    listed = await claims.ListApprovalBands(cb.ListApprovalBandsRequest(), metadata=admin)
    assert [(b.currency_code, b.configured) for b in listed.approval_bands] == [("USD", False)]


async def test_bands_etags_are_per_currency(tenant: Tenant) -> None:
    claims, admin = tenant.harness.claims, await tenant.md()
    # A first update of a currency names no etag: any etag is stale.
    error = await refused(
        claims.UpdateApprovalBands(
            bands_request(money("1", "EUR"), money("2", "EUR"), etag='"x"'), metadata=admin
        )
    )
    assert error.code() == grpc.StatusCode.ABORTED
    assert error_info(error).reason == "ETAG_MISMATCH"
    eur = await claims.UpdateApprovalBands(
        bands_request(money("100", "EUR"), money("200", "EUR")), metadata=admin
    )
    usd = await claims.UpdateApprovalBands(
        bands_request(money("100"), money("200")), metadata=admin
    )
    # Same version, different currency: different etags, and one is no good for the other.
    assert eur.etag != usd.etag
    error = await refused(
        claims.UpdateApprovalBands(
            bands_request(money("1"), money("2"), etag=eur.etag), metadata=admin
        )
    )
    assert error.code() == grpc.StatusCode.ABORTED
    changed = await claims.UpdateApprovalBands(
        bands_request(money("150", "EUR"), money("250", "EUR"), etag=eur.etag), metadata=admin
    )
    assert changed.etag != eur.etag and amount(changed.band_1_limit) == 150
    error = await refused(
        claims.UpdateApprovalBands(
            bands_request(money("160", "EUR"), money("260", "EUR"), etag=eur.etag),
            metadata=admin,
        )
    )
    assert error.code() == grpc.StatusCode.ABORTED
    read = await claims.GetApprovalBands(
        cb.GetApprovalBandsRequest(currency_code="EUR"), metadata=admin
    )
    assert amount(read.band_1_limit) == 150 and read.etag == changed.etag


async def test_concurrent_first_updates_of_a_currency_all_succeed(tenant: Tenant) -> None:
    claims, admin = tenant.harness.claims, await tenant.md()
    limits = [(str(10 * i), str(10 * i + 5)) for i in range(1, 7)]
    results = await asyncio.gather(
        *(
            claims.UpdateApprovalBands(
                bands_request(money(a, "CHF"), money(b, "CHF")), metadata=admin
            )
            for a, b in limits
        )
    )
    assert all(r.configured and r.currency_code == "CHF" for r in results)
    final = await claims.GetApprovalBands(
        cb.GetApprovalBandsRequest(currency_code="CHF"), metadata=admin
    )
    assert (str(int(amount(final.band_1_limit))), str(int(amount(final.band_2_limit)))) in limits


async def test_only_companies_update_sets_bands_and_it_is_audited(tenant: Tenant) -> None:
    claims, admin = tenant.harness.claims, await tenant.md()
    adjuster = await tenant.md("claims-adjuster")
    error = await refused(
        claims.UpdateApprovalBands(
            bands_request(money("100", "EUR"), money("200", "EUR")), metadata=adjuster
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    await claims.UpdateApprovalBands(
        bands_request(money("100", "EUR"), money("200.5", "EUR")), metadata=admin
    )
    events = await tenant.harness.core.ListAuditEvents(
        xb.ListAuditEventsRequest(filter='entity_type = "approval_bands"'), metadata=admin
    )
    assert [(e.action, e.entity_id) for e in events.audit_events] == [
        ("approval_bands.update", "EUR")
    ]
    detail = json_format.MessageToDict(events.audit_events[0].detail)
    assert detail["currency"] == "EUR" and detail["band_2_limit"].startswith("200.5")


# ------------------------------------------------------------------ settings


async def test_claim_settings_get_update_etag_mask_and_audit(tenant: Tenant) -> None:
    claims, admin = tenant.harness.claims, await tenant.md()
    viewer = await tenant.md("claims-adjuster")
    company = uuid.UUID(tenant.company_id)
    initial = await claims.GetClaimSettings(cb.GetClaimSettingsRequest(), metadata=viewer)
    assert not initial.require_segregation_of_duties and initial.etag == ""
    assert not initial.HasField("update_time")
    assert not await authority(tenant).segregation_required(company)

    def update(value: bool, *paths: str, etag: str = "") -> cb.UpdateClaimSettingsRequest:
        return cb.UpdateClaimSettingsRequest(
            claim_settings=resources_pb2.ClaimSettings(
                require_segregation_of_duties=value, etag=etag
            ),
            update_mask=mask(*paths),
        )

    field = "require_segregation_of_duties"
    error = await refused(claims.UpdateClaimSettings(update(True), metadata=admin))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(error)) == {"update_mask"}
    error = await refused(
        claims.UpdateClaimSettings(update(True, field, "claim_settings.x"), metadata=admin)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = await refused(claims.UpdateClaimSettings(update(True, field), metadata=viewer))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await refused(
        claims.UpdateClaimSettings(update(True, field, etag='"x"'), metadata=admin)
    )
    assert error.code() == grpc.StatusCode.ABORTED
    # None of the refusals changed anything.
    assert not await authority(tenant).segregation_required(company)

    on = await claims.UpdateClaimSettings(update(True, field), metadata=admin)
    assert on.require_segregation_of_duties and on.etag and on.update_time.seconds > 0
    assert await claims.GetClaimSettings(cb.GetClaimSettingsRequest(), metadata=viewer) == on
    assert await authority(tenant).segregation_required(company)
    async with tenant.harness.app.ctx.db.unit_of_work(company_id=company) as session:
        assert await authority(tenant).segregation_required(company, session=session)

    error = await refused(
        claims.UpdateClaimSettings(update(False, field, etag='"stale"'), metadata=admin)
    )
    assert error.code() == grpc.StatusCode.ABORTED
    assert error_info(error).reason == "ETAG_MISMATCH"
    off = await claims.UpdateClaimSettings(update(False, field, etag=on.etag), metadata=admin)
    assert not off.require_segregation_of_duties and off.etag != on.etag
    error = await refused(
        claims.UpdateClaimSettings(update(True, field, etag=on.etag), metadata=admin)
    )
    assert error.code() == grpc.StatusCode.ABORTED
    assert not await authority(tenant).segregation_required(company)

    events = await tenant.harness.core.ListAuditEvents(
        xb.ListAuditEventsRequest(filter='entity_type = "claim_settings"'), metadata=admin
    )
    assert [(e.action, e.entity_id) for e in events.audit_events] == [
        ("claim_settings.update", tenant.company_id),
        ("claim_settings.update", tenant.company_id),
    ]
    newest = events.audit_events[0]
    assert list(newest.changed_fields) == [field]
    assert json_format.MessageToDict(newest.detail) == {
        "require_segregation_of_duties": False,
        "previous_require_segregation_of_duties": True,
    }
    assert newest.actor_id == tenant.admin.user_id


async def test_concurrent_first_settings_updates_all_succeed(tenant: Tenant) -> None:
    claims, admin = tenant.harness.claims, await tenant.md()
    results = await asyncio.gather(
        *(
            claims.UpdateClaimSettings(
                cb.UpdateClaimSettingsRequest(
                    claim_settings=resources_pb2.ClaimSettings(require_segregation_of_duties=True),
                    update_mask=mask("require_segregation_of_duties"),
                ),
                metadata=admin,
            )
            for _ in range(5)
        )
    )
    assert all(r.require_segregation_of_duties for r in results)


async def test_settings_and_bands_stay_in_their_company(core: CoreHarness) -> None:
    a, b = await core.tenant(), await core.tenant()
    await core.claims.UpdateClaimSettings(
        cb.UpdateClaimSettingsRequest(
            claim_settings=resources_pb2.ClaimSettings(require_segregation_of_duties=True),
            update_mask=mask("require_segregation_of_duties"),
        ),
        metadata=await a.md(),
    )
    await core.claims.UpdateApprovalBands(
        bands_request(money("100", "EUR"), money("200", "EUR")), metadata=await a.md()
    )
    theirs = await core.claims.GetClaimSettings(cb.GetClaimSettingsRequest(), metadata=await b.md())
    assert not theirs.require_segregation_of_duties and theirs.etag == ""
    listed = await core.claims.ListApprovalBands(
        cb.ListApprovalBandsRequest(), metadata=await b.md()
    )
    assert [x.currency_code for x in listed.approval_bands] == ["USD"]
    assert not await ClaimAuthority(core.app.ctx).segregation_required(uuid.UUID(b.company_id))
