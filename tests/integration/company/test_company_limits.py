"""The company settings core's business rules read -- max_backdate_days and
renewal_offer_days -- and the feature flags, over real gRPC: created, read,
updated by mask, validated, and handed to other services by GetCompanyStatus
with the defaults filled in."""

from __future__ import annotations

import grpc
from company_harness import CompanyHarness, failure
from google.protobuf import field_mask_pb2
from support.grpc_errors import field_violations

from cardinsa.company.v1 import company_service_pb2, resources_pb2

pb = company_service_pb2
SETTINGS = "company.settings"


async def status_of(company: CompanyHarness, company_id: str) -> resources_pb2.CompanyStatus:
    reply: resources_pb2.CompanyStatus = await company.companies.GetCompanyStatus(
        pb.GetCompanyStatusRequest(company_id=company_id),
        metadata=await company.as_(company.platform_admin),
    )
    return reply


async def update(
    company: CompanyHarness, current: resources_pb2.Company, paths: list[str], **fields: object
) -> resources_pb2.Company:
    reply: resources_pb2.Company = await company.companies.UpdateCompany(
        pb.UpdateCompanyRequest(
            company=resources_pb2.Company(id=current.id, etag=current.etag, **fields),  # type: ignore[arg-type]
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        ),
        metadata=await company.as_(company.platform_admin),
    )
    return reply


async def test_chosen_limits_are_stored_read_back_and_in_the_status(
    company: CompanyHarness,
) -> None:
    created = await company.create_company(
        time_zone="Asia/Riyadh",
        settings=resources_pb2.CompanySettings(max_backdate_days=0, renewal_offer_days=45),
        feature_flags={"flat_rating": True},
    )
    # 0 is a choice (no backdating at all), not "unset".
    assert created.settings.HasField("max_backdate_days")
    assert (created.settings.max_backdate_days, created.settings.renewal_offer_days) == (0, 45)
    read = await company.companies.GetCompany(
        pb.GetCompanyRequest(company_id=created.id),
        metadata=await company.as_(company.platform_admin),
    )
    assert read.settings == created.settings
    status = await status_of(company, created.id)
    assert (status.time_zone, status.max_backdate_days, status.renewal_offer_days) == (
        "Asia/Riyadh",
        0,
        45,
    )
    assert dict(status.feature_flags) == {"flat_rating": True}


async def test_unset_limits_stay_unset_and_the_status_fills_in_30(
    company: CompanyHarness,
) -> None:
    created = await company.create_company()
    assert not created.settings.HasField("max_backdate_days")
    assert not created.settings.HasField("renewal_offer_days")
    status = await status_of(company, created.id)
    assert (status.max_backdate_days, status.renewal_offer_days) == (30, 30)
    assert dict(status.feature_flags) == {}


async def test_out_of_range_limits_are_precise_field_violations(company: CompanyHarness) -> None:
    for backdate, renewal in ((-1, 0), (3651, 366)):
        error = await failure(
            company.create_company(
                settings=resources_pb2.CompanySettings(
                    max_backdate_days=backdate, renewal_offer_days=renewal
                )
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        violations = field_violations(error)
        assert set(violations) == {
            f"{SETTINGS}.max_backdate_days",
            f"{SETTINGS}.renewal_offer_days",
        }, violations
        assert "0 to 3650" in violations[f"{SETTINGS}.max_backdate_days"]
        assert "1 to 365" in violations[f"{SETTINGS}.renewal_offer_days"]
    # The edges are valid.
    edges = await company.create_company(
        settings=resources_pb2.CompanySettings(max_backdate_days=3650, renewal_offer_days=1)
    )
    assert (edges.settings.max_backdate_days, edges.settings.renewal_offer_days) == (3650, 1)


async def test_update_by_mask_one_limit_all_settings_or_back_to_the_default(
    company: CompanyHarness,
) -> None:
    created = await company.create_company(
        settings=resources_pb2.CompanySettings(fiscal_year_start_month=4, renewal_offer_days=60)
    )
    # One limit: the others stay.
    one = await update(
        company,
        created,
        ["settings.max_backdate_days"],
        settings=resources_pb2.CompanySettings(max_backdate_days=7, renewal_offer_days=90),
    )
    assert (one.settings.max_backdate_days, one.settings.renewal_offer_days) == (7, 60)
    assert one.settings.fiscal_year_start_month == 4
    assert (await status_of(company, created.id)).max_backdate_days == 7
    # A masked limit the request leaves unset goes back to unset: the default.
    cleared = await update(
        company, one, ["settings.renewal_offer_days"], settings=resources_pb2.CompanySettings()
    )
    assert not cleared.settings.HasField("renewal_offer_days")
    assert cleared.settings.max_backdate_days == 7
    status = await status_of(company, created.id)
    assert (status.max_backdate_days, status.renewal_offer_days) == (7, 30)
    # "settings" replaces every setting (fiscal month 0 means January).
    whole = await update(
        company,
        cleared,
        ["settings"],
        settings=resources_pb2.CompanySettings(renewal_offer_days=14),
    )
    assert whole.settings == resources_pb2.CompanySettings(
        fiscal_year_start_month=1, renewal_offer_days=14
    )
    status = await status_of(company, created.id)
    assert (status.max_backdate_days, status.renewal_offer_days) == (30, 14)
    # Feature flags reach the status as they are updated.
    flagged = await update(company, whole, ["feature_flags"], feature_flags={"flat_rating": True})
    assert dict((await status_of(company, flagged.id)).feature_flags) == {"flat_rating": True}
    audit = await company.companies.ListAuditEvents(
        pb.ListAuditEventsRequest(company_id=created.id, filter='action = "company.update"'),
        metadata=await company.as_(company.platform_admin),
    )
    changes = {tuple(sorted(event.changed_fields)) for event in audit.audit_events}
    assert ("settings.max_backdate_days",) in changes
    assert ("settings.renewal_offer_days",) in changes
    assert (
        "settings.fiscal_year_start_month",
        "settings.max_backdate_days",
        "settings.renewal_offer_days",
    ) in changes


async def test_an_update_out_of_range_is_refused_and_changes_nothing(
    company: CompanyHarness,
) -> None:
    created = await company.create_company(
        settings=resources_pb2.CompanySettings(renewal_offer_days=60)
    )
    error = await failure(
        update(
            company,
            created,
            ["settings.renewal_offer_days", "settings.max_backdate_days"],
            settings=resources_pb2.CompanySettings(max_backdate_days=5000, renewal_offer_days=0),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(error)) == {
        f"{SETTINGS}.max_backdate_days",
        f"{SETTINGS}.renewal_offer_days",
    }
    status = await status_of(company, created.id)
    assert (status.max_backdate_days, status.renewal_offer_days) == (30, 60)


async def test_a_flag_nothing_reads_is_refused_on_create_and_update(
    company: CompanyHarness,
) -> None:
    """Only the flags a service reads are stored (cardinsa_company.domain.companies
    FEATURE_FLAGS): an unknown one is INVALID_ARGUMENT with a field violation
    naming it, and the company keeps its flags."""
    error = await failure(company.create_company(feature_flags={"beta_ui": True}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(error)
    assert set(violations) == {'company.feature_flags["beta_ui"]'}
    assert (
        "unknown feature flag; known: flat_rating" in violations['company.feature_flags["beta_ui"]']
    )

    created = await company.create_company(feature_flags={"flat_rating": True})
    error = await failure(
        update(
            company,
            created,
            ["feature_flags"],
            feature_flags={"flat_rating": True, "flat_ratting": True},
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(error)) == {'company.feature_flags["flat_ratting"]'}
    assert dict((await status_of(company, created.id)).feature_flags) == {"flat_rating": True}
