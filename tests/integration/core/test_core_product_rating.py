"""Rating rules and coverage entry ages of products over gRPC: stored and read
back (Get, List, versions), a new version when an active product's rules
change, and INVALID_ARGUMENT with field paths for bad rules."""

from __future__ import annotations

import grpc
import pytest
from core_harness import Tenant, amount, mask, money
from support.grpc_errors import field_violations

from cardinsa.core.v1 import product_service_pb2 as rb
from cardinsa.core.v1 import resources_pb2

R = resources_pb2.Product
RR = resources_pb2.RatingRules
D = resources_pb2.Dependent
P = "product.rating_rules"


def family_rules(currency: str = "USD") -> resources_pb2.RatingRules:
    return RR(
        term_basis=RR.PRODUCT_TERM,
        age_bands=[
            resources_pb2.AgeBand(min_age=0, max_age=17, factor_basis_points=6000),
            resources_pb2.AgeBand(min_age=18, max_age=64, factor_basis_points=10000),
        ],
        relation_factors=[
            resources_pb2.RelationFactor(relation=D.SPOUSE, factor_basis_points=9000),
            resources_pb2.RelationFactor(relation=D.CHILD, factor_basis_points=5000),
        ],
        sum_insured_rate_basis_points=25,
        tax_basis_points=1900,
        policy_fee=money("12.50", currency),
        short_rate_penalty_basis_points=1000,
        manual_underwriting=True,
        referral_sum_insured=money("250000", currency),
    )


def assert_family_rules(rules: resources_pb2.RatingRules) -> None:
    assert rules.term_basis == RR.PRODUCT_TERM
    assert [(b.min_age, b.max_age, b.factor_basis_points) for b in rules.age_bands] == [
        (0, 17, 6000),
        (18, 64, 10000),
    ]
    # In the order of the Relation enum (stored by name).
    assert [(f.relation, f.factor_basis_points) for f in rules.relation_factors] == [
        (D.SPOUSE, 9000),
        (D.CHILD, 5000),
    ]
    assert (
        rules.sum_insured_rate_basis_points,
        rules.tax_basis_points,
        rules.short_rate_penalty_basis_points,
        rules.manual_underwriting,
    ) == (25, 1900, 1000, True)
    assert (rules.policy_fee.currency_code, amount(rules.policy_fee)) == ("USD", 12.5)
    assert amount(rules.referral_sum_insured) == 250000


async def test_rules_and_entry_ages_are_stored_and_read_back(tenant: Tenant) -> None:
    products, md = tenant.harness.products, await tenant.md()
    created = await tenant.product(
        rating_rules=family_rules(), min_entry_age=18, max_entry_age=64, activate=False
    )
    assert_family_rules(created.rating_rules)
    assert (created.coverages[0].min_entry_age, created.coverages[0].max_entry_age) == (18, 64)
    got = await products.GetProduct(rb.GetProductRequest(product_id=created.id), metadata=md)
    assert_family_rules(got.rating_rules)
    assert (got.coverages[0].min_entry_age, got.coverages[0].max_entry_age) == (18, 64)
    listed = await products.ListProducts(
        rb.ListProductsRequest(filter=f'code = "{created.code}"'), metadata=md
    )
    assert_family_rules(listed.products[0].rating_rules)
    versions = await products.ListProductVersions(
        rb.ListProductVersionsRequest(product_id=created.id), metadata=md
    )
    assert_family_rules(versions.product_versions[0].rating_rules)
    assert versions.product_versions[0].coverages[0].max_entry_age == 64


async def test_a_product_without_rules_reads_the_defaults(tenant: Tenant) -> None:
    created = await tenant.product(activate=False)
    rules = created.rating_rules
    assert rules.term_basis == RR.DAYS_OVER_365  # unset is DAYS_OVER_365, shown explicitly
    assert not rules.age_bands and not rules.relation_factors
    assert not rules.HasField("policy_fee") and not rules.HasField("referral_sum_insured")
    assert (created.coverages[0].min_entry_age, created.coverages[0].max_entry_age) == (0, 0)


async def test_changing_the_rules_of_an_active_product_makes_a_new_version(
    tenant: Tenant,
) -> None:
    products, md = tenant.harness.products, await tenant.md()
    active = await tenant.product(rating_rules=family_rules())
    assert (active.state, active.version) == (R.ACTIVE, 1)
    # The same rules again: nothing changes.
    same = await products.UpdateProduct(
        rb.UpdateProductRequest(
            product=R(id=active.id, rating_rules=family_rules()),
            update_mask=mask("rating_rules"),
        ),
        metadata=md,
    )
    assert same.version == 1
    # The mask replaces the rules as a whole: what is not sent is cleared.
    changed = await products.UpdateProduct(
        rb.UpdateProductRequest(
            product=R(id=active.id, rating_rules=RR(tax_basis_points=500)),
            update_mask=mask("rating_rules"),
        ),
        metadata=md,
    )
    assert changed.version == 2
    assert changed.rating_rules == RR(term_basis=RR.DAYS_OVER_365, tax_basis_points=500)
    # The coverages (and their entry ages) travel with the `coverages` mask.
    coverage = resources_pb2.Coverage()
    coverage.CopyFrom(changed.coverages[0])
    coverage.min_entry_age, coverage.max_entry_age = 1, 99
    aged = await products.UpdateProduct(
        rb.UpdateProductRequest(
            product=R(id=active.id, coverages=[coverage]), update_mask=mask("coverages")
        ),
        metadata=md,
    )
    assert aged.version == 3 and aged.rating_rules.tax_basis_points == 500
    assert (aged.coverages[0].min_entry_age, aged.coverages[0].max_entry_age) == (1, 99)
    versions = await products.ListProductVersions(
        rb.ListProductVersionsRequest(product_id=active.id), metadata=md
    )
    assert [
        (v.version, v.rating_rules.tax_basis_points, v.coverages[0].max_entry_age)
        for v in versions.product_versions
    ] == [(3, 500, 99), (2, 500, 0), (1, 1900, 0)]
    v1 = await products.GetProductVersion(
        rb.GetProductVersionRequest(product_id=active.id, version=1), metadata=md
    )
    assert_family_rules(v1.rating_rules)  # what was sold stays as it was


async def test_a_new_currency_needs_the_rules_money_in_it(tenant: Tenant) -> None:
    products, md = tenant.harness.products, await tenant.md()
    draft = await tenant.product(rating_rules=family_rules(), activate=False)
    coverage = resources_pb2.Coverage()
    coverage.CopyFrom(draft.coverages[0])
    coverage.limit.CopyFrom(money("1000", "EUR"))
    coverage.deductible.CopyFrom(money("0", "EUR"))
    update = R(
        id=draft.id, currency_code="EUR", base_premium=money("90", "EUR"), coverages=[coverage]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await products.UpdateProduct(
            rb.UpdateProductRequest(
                product=update, update_mask=mask("currency_code", "base_premium", "coverages")
            ),
            metadata=md,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == {"update_mask": "also name rating_rules"}
    update.rating_rules.CopyFrom(family_rules("EUR"))
    moved = await products.UpdateProduct(
        rb.UpdateProductRequest(
            product=update,
            update_mask=mask("currency_code", "base_premium", "coverages", "rating_rules"),
        ),
        metadata=md,
    )
    assert moved.rating_rules.policy_fee.currency_code == "EUR"


BAD = RR(
    age_bands=[
        resources_pb2.AgeBand(min_age=0, max_age=30, factor_basis_points=10000),
        resources_pb2.AgeBand(min_age=40, max_age=35, factor_basis_points=10000),
        resources_pb2.AgeBand(min_age=20, max_age=50, factor_basis_points=0),
    ],
    relation_factors=[
        resources_pb2.RelationFactor(relation=D.SPOUSE, factor_basis_points=100_001),
    ],
    sum_insured_rate_basis_points=10_001,
    tax_basis_points=-1,
    short_rate_penalty_basis_points=20_000,
    policy_fee=money("-5"),
    referral_sum_insured=money("0"),
)


async def test_bad_rules_are_invalid_argument_with_field_paths(tenant: Tenant) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.product(rating_rules=BAD, min_entry_age=70, max_entry_age=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {
        f"{P}.age_bands[1].max_age",
        f"{P}.age_bands[2].min_age",
        f"{P}.age_bands[2].factor_basis_points",
        f"{P}.relation_factors[0].factor_basis_points",
        f"{P}.sum_insured_rate_basis_points",
        f"{P}.tax_basis_points",
        f"{P}.short_rate_penalty_basis_points",
        f"{P}.policy_fee",
        f"{P}.referral_sum_insured",
        "product.coverages[0].max_entry_age",
    }


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            RR(
                relation_factors=[
                    resources_pb2.RelationFactor(relation=D.CHILD, factor_basis_points=1),
                    resources_pb2.RelationFactor(factor_basis_points=1),
                    resources_pb2.RelationFactor(relation=D.CHILD, factor_basis_points=2),
                ]
            ),
            {f"{P}.relation_factors[1].relation", f"{P}.relation_factors[2].relation"},
        ),
        (RR(term_basis=99), {f"{P}.term_basis"}),
        (RR(policy_fee=money("1.001")), {f"{P}.policy_fee"}),
        (RR(policy_fee=money("1", "EUR")), {f"{P}.policy_fee.currency_code"}),
        (
            RR(age_bands=[resources_pb2.AgeBand(min_age=i, max_age=i) for i in range(21)]),
            {f"{P}.age_bands"},
        ),
    ],
)
async def test_more_bad_rules(
    tenant: Tenant, rules: resources_pb2.RatingRules, expected: set[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.product(rating_rules=rules, activate=False)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == expected


async def test_bad_rules_on_update_leave_the_product_unchanged(tenant: Tenant) -> None:
    products, md = tenant.harness.products, await tenant.md()
    active = await tenant.product(rating_rules=family_rules())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await products.UpdateProduct(
            rb.UpdateProductRequest(
                product=R(id=active.id, rating_rules=RR(tax_basis_points=10_001)),
                update_mask=mask("rating_rules"),
            ),
            metadata=md,
        )
    assert field_violations(caught.value) == {
        f"{P}.tax_basis_points": "between 0 and 10000 basis points"
    }
    got = await products.GetProduct(rb.GetProductRequest(product_id=active.id), metadata=md)
    assert got.version == 1 and got.etag == active.etag
    assert_family_rules(got.rating_rules)


async def test_a_quote_is_priced_by_the_versions_rules(tenant: Tenant) -> None:
    rules = RR(
        term_basis=RR.PRODUCT_TERM,
        sum_insured_rate_basis_points=10,
        tax_basis_points=1000,
        policy_fee=money("10"),
    )
    product = await tenant.product(rating_rules=rules)
    quoted = await tenant.quoted(await tenant.holder(dependents=0), product)
    breakdown = quoted.premium_breakdown
    # A whole product term: 500 + 100000 x 0.1 % = 600 net, 10 % tax, the fee.
    assert [(line.code, amount(line.amount)) for line in breakdown.lines] == [
        ("MEMBER", 500),
        ("SUM_INSURED", 100),
        ("TAX", 60),
        ("FEE", 10),
    ]
    assert (amount(breakdown.net_premium), amount(breakdown.total)) == (600, 670)
    assert breakdown.strategy == "standard"
