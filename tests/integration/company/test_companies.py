"""Companies over real gRPC: create, read, list, update, delete, tenancy, validation."""

from __future__ import annotations

import asyncio
import uuid

import grpc
from company_harness import CompanyHarness, failure
from google.protobuf import field_mask_pb2
from google.type import date_pb2, money_pb2
from support.grpc_errors import error_info, field_violations

from cardinsa.company.v1 import company_service_pb2, resources_pb2

pb = company_service_pb2


def _bands(line: str, *limits: int) -> resources_pb2.ClaimApprovalBands:
    bands = resources_pb2.ClaimApprovalBands(line_of_business=line)
    for index, units in enumerate(limits, start=1):
        getattr(bands, f"band_{index}_limit").CopyFrom(money_pb2.Money(units=units))
    return bands


# ------------------------------------------------------------------ create


async def test_platform_admin_creates_a_company_with_every_field(company: CompanyHarness) -> None:
    created = await company.create_company(
        display_name="  Gamma Mutual  ",
        legal_name="Gamma Mutual Insurance plc",
        registration_number=f"HRB {uuid.uuid4().hex[:6]}",
        tax_id="DE123456789",
        licence_number="BAFIN-42",
        licence_expiry_date=date_pb2.Date(year=2031, month=6, day=30),
        country="de",
        default_currency="eur",
        locale="de_de",
        contact=resources_pb2.Contact(
            email="Office@Gamma.example",
            phone="+49 30 123-456",
            address_line_1="Unter den Linden 1",
            city="Berlin",
            postal_code="10117",
            website="https://gamma.example/",
        ),
        settings=resources_pb2.CompanySettings(
            fiscal_year_start_month=4,
            default_claim_approval_bands=_bands("", 1000, 10000),
            claim_approval_bands=[
                resources_pb2.ClaimApprovalBands(
                    line_of_business="motor",
                    band_1_limit=money_pb2.Money(currency_code="EUR", units=500, nanos=500_000_000),
                    band_2_limit=money_pb2.Money(units=5000),
                    band_3_limit=money_pb2.Money(units=50000),
                )
            ],
        ),
        feature_flags={"flat_rating": False},
    )
    assert created.display_name == "Gamma Mutual"
    assert (created.country, created.default_currency, created.locale) == ("DE", "EUR", "de-DE")
    assert created.state == resources_pb2.Company.ACTIVE
    assert created.contact.email == "office@gamma.example"
    assert created.contact.phone == "+4930123456"
    assert created.licence_expiry_date == date_pb2.Date(year=2031, month=6, day=30)
    assert created.settings.fiscal_year_start_month == 4
    motor = created.settings.claim_approval_bands[0]
    assert motor.band_1_limit == money_pb2.Money(currency_code="EUR", units=500, nanos=500_000_000)
    assert created.settings.default_claim_approval_bands.band_1_limit.currency_code == "EUR"
    assert not created.settings.default_claim_approval_bands.HasField("band_3_limit")
    assert dict(created.feature_flags) == {"flat_rating": False}
    assert created.etag and created.create_time.seconds > 0
    read = await company.companies.GetCompany(
        pb.GetCompanyRequest(company_id=created.id),
        metadata=await company.as_(company.platform_admin),
    )
    assert read == created


async def test_company_admin_cannot_create_suspend_close_or_delete(
    company: CompanyHarness,
) -> None:
    as_a = await company.as_(company.admin_a)
    own = company.company_a.id
    calls = [
        company.companies.CreateCompany(
            pb.CreateCompanyRequest(
                company=resources_pb2.Company(
                    display_name="Sneaky", country="DE", default_currency="EUR", time_zone="UTC"
                )
            ),
            metadata=as_a,
        ),
        company.companies.SuspendCompany(
            pb.SuspendCompanyRequest(company_id=own, reason="x"), metadata=as_a
        ),
        company.companies.CloseCompany(
            pb.CloseCompanyRequest(company_id=own, reason="x"), metadata=as_a
        ),
        company.companies.ReactivateCompany(
            pb.ReactivateCompanyRequest(company_id=own), metadata=as_a
        ),
        company.companies.DeleteCompany(pb.DeleteCompanyRequest(company_id=own), metadata=as_a),
        company.companies.UndeleteCompany(pb.UndeleteCompanyRequest(company_id=own), metadata=as_a),
    ]
    for call in calls:
        error = await failure(call)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(error).reason == "PERMISSION_MISSING"


async def test_invalid_codes_are_field_violations(company: CompanyHarness) -> None:
    error = await failure(
        company.create_company(
            display_name="",
            country="XX",
            default_currency="EURO",
            time_zone="Mars/Olympus_Mons",
            locale="not a locale",
            contact=resources_pb2.Contact(email="nope", website="ftp://x.example"),
            licence_expiry_date=date_pb2.Date(year=2030, month=2, day=30),
            feature_flags={"Bad-Flag": True},
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(error)
    for path in (
        "company.display_name",
        "company.country",
        "company.default_currency",
        "company.time_zone",
        "company.locale",
        "company.contact.email",
        "company.contact.website",
        "company.licence_expiry_date",
        'company.feature_flags["Bad-Flag"]',
    ):
        assert path in violations, (path, violations)
    assert "ISO 3166-1" in violations["company.country"]
    assert "ISO 4217" in violations["company.default_currency"]
    assert "IANA" in violations["company.time_zone"]


async def test_claim_bands_must_be_in_the_default_currency_and_increase(
    company: CompanyHarness,
) -> None:
    error = await failure(
        company.create_company(
            default_currency="JPY",
            settings=resources_pb2.CompanySettings(
                fiscal_year_start_month=13,
                claim_approval_bands=[
                    resources_pb2.ClaimApprovalBands(
                        line_of_business="motor",
                        band_1_limit=money_pb2.Money(units=1000, nanos=500_000_000),
                        band_2_limit=money_pb2.Money(currency_code="USD", units=5000),
                    ),
                    _bands("motor", 100, 50),
                    _bands("Bad Line", 1, 2),
                ],
            ),
        )
    )
    violations = field_violations(error)
    prefix = "company.settings.claim_approval_bands"
    assert "company.settings.fiscal_year_start_month" in violations
    assert "decimals" in violations[f"{prefix}[0].band_1_limit"]
    assert "default currency" in violations[f"{prefix}[0].band_2_limit.currency_code"]
    assert "more than once" in violations[f"{prefix}[1].line_of_business"]
    assert "greater" in violations[f"{prefix}[1].band_2_limit"]
    assert f"{prefix}[2].line_of_business" in violations


async def test_create_is_idempotent_by_request_id(company: CompanyHarness) -> None:
    request_id = str(uuid.uuid4())
    name = f"Idempotent {uuid.uuid4().hex[:6]}"
    first = await company.create_company(display_name=name, request_id=request_id)
    again = await company.create_company(display_name=name, request_id=request_id)
    assert again.id == first.id
    listed = await company.companies.ListCompanies(
        pb.ListCompaniesRequest(filter=f'display_name = "{name}"'),
        metadata=await company.as_(company.platform_admin),
    )
    assert [c.id for c in listed.companies] == [first.id]
    audit = await company.companies.ListAuditEvents(
        pb.ListAuditEventsRequest(company_id=first.id, filter='action = "company.create"'),
        metadata=await company.as_(company.platform_admin),
    )
    assert len(audit.audit_events) == 1


async def test_a_request_id_reused_for_another_company_is_refused(
    company: CompanyHarness,
) -> None:
    request_id = str(uuid.uuid4())
    name = f"Reused {uuid.uuid4().hex[:6]}"
    first = await company.create_company(display_name=name, request_id=request_id)
    error = await failure(
        company.create_company(display_name=f"{name} other", request_id=request_id)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "REQUEST_ID_REUSED"
    assert "request_id" in field_violations(error)
    # Nothing was created for the refused call; the first company is unchanged.
    listed = await company.companies.ListCompanies(
        pb.ListCompaniesRequest(filter=f'display_name = "{name} other"'),
        metadata=await company.as_(company.platform_admin),
    )
    assert list(listed.companies) == []
    again = await company.create_company(display_name=name, request_id=request_id)
    assert again.id == first.id and again.display_name == name


async def test_taken_ids_and_registration_numbers_are_already_exists(
    company: CompanyHarness,
) -> None:
    error = await failure(company.create_company(company_id=company.company_a.id))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).reason == "COMPANY_ID_TAKEN"
    number = f"REG-{uuid.uuid4().hex[:8]}"
    await company.create_company(registration_number=number, country="FR")
    error = await failure(company.create_company(registration_number=number, country="FR"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).reason == "REGISTRATION_NUMBER_TAKEN"
    # The same number in another country is another company.
    await company.create_company(registration_number=number, country="BE")


# ------------------------------------------------------------------ tenancy


async def test_company_admin_reads_own_company_and_nothing_else(company: CompanyHarness) -> None:
    as_a = await company.as_(company.admin_a)
    own = await company.companies.GetCompany(
        pb.GetCompanyRequest(company_id=company.company_a.id), metadata=as_a
    )
    assert own.display_name == "Alpha Assurance"
    answers = []
    for other in (company.company_b.id, str(uuid.uuid4()), "not-a-uuid"):
        error = await failure(
            company.companies.GetCompany(pb.GetCompanyRequest(company_id=other), metadata=as_a)
        )
        info = error_info(error)
        assert info.metadata["id"] == other
        answers.append((error.code(), error.details(), info.reason))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == grpc.StatusCode.NOT_FOUND
    error = await failure(
        company.companies.UpdateCompany(
            pb.UpdateCompanyRequest(
                company=resources_pb2.Company(id=company.company_b.id, display_name="Hijacked"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            ),
            metadata=as_a,
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_lists_are_scoped(company: CompanyHarness) -> None:
    everything = await company.companies.ListCompanies(
        pb.ListCompaniesRequest(
            page_size=100, filter='display_name = "Alpha*" OR display_name = "Beta*"'
        ),
        metadata=await company.as_(company.platform_admin),
    )
    ids = {c.id for c in everything.companies}
    assert {company.company_a.id, company.company_b.id} <= ids
    for admin, own in ((company.admin_a, company.company_a), (company.admin_b, company.company_b)):
        mine = await company.companies.ListCompanies(
            pb.ListCompaniesRequest(page_size=100), metadata=await company.as_(admin)
        )
        assert [c.id for c in mine.companies] == [own.id]
    filtered = await company.companies.ListCompanies(
        pb.ListCompaniesRequest(filter='display_name = "Beta Insurance"'),
        metadata=await company.as_(company.admin_a),
    )
    assert list(filtered.companies) == []


async def test_list_pages_filters_and_orders(company: CompanyHarness) -> None:
    tag = uuid.uuid4().hex[:6]
    made = [await company.create_company(display_name=f"Paged {tag} {i}") for i in range(5)]
    admin = await company.as_(company.platform_admin)
    seen: list[str] = []
    token = ""
    while True:
        page = await company.companies.ListCompanies(
            pb.ListCompaniesRequest(
                page_size=2,
                page_token=token,
                filter=f'display_name = "Paged {tag}*"',
                order_by="display_name desc",
            ),
            metadata=admin,
        )
        seen += [c.display_name for c in page.companies]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted((c.display_name for c in made), reverse=True)
    error = await failure(
        company.companies.ListCompanies(
            pb.ListCompaniesRequest(filter="licence = 1"), metadata=admin
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------------------ update


async def test_update_changes_only_the_masked_fields_and_checks_the_etag(
    company: CompanyHarness,
) -> None:
    created = await company.create_company(legal_name="Delta Legal")
    as_admin = await company.as_(company.platform_admin)
    updated = await company.companies.UpdateCompany(
        pb.UpdateCompanyRequest(
            company=resources_pb2.Company(
                id=created.id,
                display_name="Delta Renamed",
                legal_name="ignored: not in the mask",
                contact=resources_pb2.Contact(city="Hamburg", email="ignored@example.com"),
                settings=resources_pb2.CompanySettings(fiscal_year_start_month=7),
                feature_flags={"flat_rating": True},
                etag=created.etag,
            ),
            update_mask=field_mask_pb2.FieldMask(
                paths=[
                    "display_name",
                    "contact.city",
                    "settings.fiscal_year_start_month",
                    "feature_flags",
                ]
            ),
        ),
        metadata=as_admin,
    )
    assert updated.display_name == "Delta Renamed"
    assert updated.legal_name == "Delta Legal"
    assert updated.contact.city == "Hamburg" and updated.contact.email == ""
    assert updated.settings.fiscal_year_start_month == 7
    assert dict(updated.feature_flags) == {"flat_rating": True}
    assert updated.etag != created.etag
    stale = await failure(
        company.companies.UpdateCompany(
            pb.UpdateCompanyRequest(
                company=resources_pb2.Company(
                    id=created.id, display_name="Late", etag=created.etag
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            ),
            metadata=as_admin,
        )
    )
    assert stale.code() == grpc.StatusCode.ABORTED
    assert error_info(stale).reason == "ETAG_MISMATCH"
    audit = await company.companies.ListAuditEvents(
        pb.ListAuditEventsRequest(company_id=created.id, filter='action = "company.update"'),
        metadata=as_admin,
    )
    assert sorted(audit.audit_events[0].changed_fields) == [
        "contact.city",
        "display_name",
        "feature_flags",
        "settings.fiscal_year_start_month",
    ]


async def test_update_mask_refuses_output_only_and_unknown_paths(company: CompanyHarness) -> None:
    for paths in (["state"], ["id"], ["nickname"], ["contact.fax"], []):
        error = await failure(
            company.companies.UpdateCompany(
                pb.UpdateCompanyRequest(
                    company=resources_pb2.Company(id=company.company_a.id),
                    update_mask=field_mask_pb2.FieldMask(paths=paths),
                ),
                metadata=await company.as_(company.admin_a),
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, paths
        assert "update_mask" in field_violations(error)


async def test_update_validates_the_result_as_a_whole(company: CompanyHarness) -> None:
    created = await company.create_company(
        settings=resources_pb2.CompanySettings(default_claim_approval_bands=_bands("", 100, 200))
    )
    error = await failure(
        company.companies.UpdateCompany(
            pb.UpdateCompanyRequest(
                company=resources_pb2.Company(
                    id=created.id, default_currency="USD", time_zone="Nowhere"
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["default_currency", "time_zone"]),
            ),
            metadata=await company.as_(company.platform_admin),
        )
    )
    violations = field_violations(error)
    assert "company.time_zone" in violations
    assert "company.settings.default_claim_approval_bands.band_1_limit.currency_code" in violations


async def test_company_admin_updates_own_company(company: CompanyHarness) -> None:
    as_a = await company.as_(company.admin_a)
    current = await company.companies.GetCompany(
        pb.GetCompanyRequest(company_id=company.company_a.id), metadata=as_a
    )
    updated = await company.companies.UpdateCompany(
        pb.UpdateCompanyRequest(
            company=resources_pb2.Company(
                id=current.id,
                contact=resources_pb2.Contact(phone="0049 89 1234567"),
                etag=current.etag,
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["contact.phone"]),
        ),
        metadata=as_a,
    )
    assert updated.contact.phone == "+49891234567"
    assert updated.display_name == current.display_name


# ------------------------------------------------------------------ delete


async def test_delete_hides_from_lists_and_undelete_restores(company: CompanyHarness) -> None:
    created = await company.create_company()
    admin = await company.as_(company.platform_admin)
    deleted = await company.companies.DeleteCompany(
        pb.DeleteCompanyRequest(company_id=created.id, etag=created.etag), metadata=admin
    )
    assert deleted.HasField("delete_time")
    read = await company.companies.GetCompany(
        pb.GetCompanyRequest(company_id=created.id), metadata=admin
    )
    assert read.HasField("delete_time")
    name_filter = f'display_name = "{created.display_name}"'
    hidden = await company.companies.ListCompanies(
        pb.ListCompaniesRequest(filter=name_filter), metadata=admin
    )
    assert list(hidden.companies) == []
    shown = await company.companies.ListCompanies(
        pb.ListCompaniesRequest(filter=name_filter, show_deleted=True), metadata=admin
    )
    assert [c.id for c in shown.companies] == [created.id]
    status = await company.companies.GetCompanyStatus(
        pb.GetCompanyStatusRequest(company_id=created.id), metadata=admin
    )
    assert status.state == resources_pb2.Company.ACTIVE and not status.active
    restored = await company.companies.UndeleteCompany(
        pb.UndeleteCompanyRequest(company_id=created.id), metadata=admin
    )
    assert not restored.HasField("delete_time")
    again = await failure(
        company.companies.UndeleteCompany(
            pb.UndeleteCompanyRequest(company_id=created.id), metadata=admin
        )
    )
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_concurrent_retries_of_one_create_make_one_company(company: CompanyHarness) -> None:
    request_id = str(uuid.uuid4())
    name = f"Raced {uuid.uuid4().hex[:6]}"
    results = await asyncio.gather(
        *(company.create_company(display_name=name, request_id=request_id) for _ in range(5))
    )
    assert len({c.id for c in results}) == 1
    listed = await company.companies.ListCompanies(
        pb.ListCompaniesRequest(filter=f'display_name = "{name}"'),
        metadata=await company.as_(company.platform_admin),
    )
    assert len(listed.companies) == 1


async def test_concurrent_updates_with_one_etag_let_exactly_one_win(
    company: CompanyHarness,
) -> None:
    created = await company.create_company()
    admin = await company.as_(company.platform_admin)
    results = await asyncio.gather(
        *(
            company.companies.UpdateCompany(
                pb.UpdateCompanyRequest(
                    company=resources_pb2.Company(
                        id=created.id, display_name=f"Writer {i}", etag=created.etag
                    ),
                    update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
                ),
                metadata=admin,
            )
            for i in range(4)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, resources_pb2.Company)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert {e.code() for e in losers} == {grpc.StatusCode.ABORTED}
