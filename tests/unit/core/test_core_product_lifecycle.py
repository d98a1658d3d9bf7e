"""Product lifecycle (every pair) and the rules of product terms."""

from __future__ import annotations

import dataclasses
import itertools
from decimal import Decimal

import pytest

from cardinsa_core.domain.money import Money
from cardinsa_core.domain.products import (
    PRODUCT_LIFECYCLE,
    Coverage,
    LimitPeriod,
    Product,
    ProductAction,
    ProductState,
    ProductTerms,
    check_code,
    check_terms,
)
from cardinsa_foundation.errors import FailedPrecondition

S, A = ProductState, ProductAction


def usd(amount: int | str) -> Money:
    return Money.of(Decimal(amount), "USD")


COVERAGE = Coverage(
    code="OUTPATIENT",
    name="Outpatient care",
    limit=usd(5000),
    limit_period=LimitPeriod.PER_YEAR,
    deductible=usd(100),
    coinsurance_percent=Decimal(20),
    waiting_period_days=30,
)
TERMS = ProductTerms(
    name="Health Basic",
    description="",
    currency="USD",
    base_premium=usd(1200),
    term_months=12,
    coverages=(COVERAGE,),
)
IN_STATE = {s: Product(state=s, version=1, terms=TERMS) for s in ProductState}
NEW_TERMS = dataclasses.replace(TERMS, base_premium=usd(1300))


def perform(product: Product, action: ProductAction) -> Product:
    if action is A.UPDATE:
        return product.update(NEW_TERMS)[0]
    if action is A.ACTIVATE:
        return product.activate()
    if action is A.RETIRE:
        return product.retire()
    product.check_delete()
    return product


EXPECTED: dict[tuple[ProductState, ProductAction], tuple[ProductState, set[str]]] = {
    (S.DRAFT, A.UPDATE): (S.DRAFT, {"terms"}),
    (S.ACTIVE, A.UPDATE): (S.ACTIVE, {"terms", "version"}),
    (S.DRAFT, A.ACTIVATE): (S.ACTIVE, {"state"}),
    (S.ACTIVE, A.RETIRE): (S.RETIRED, {"state"}),
    (S.DRAFT, A.DELETE): (S.DRAFT, set()),
    (S.RETIRED, A.DELETE): (S.RETIRED, set()),
}
ALL_PAIRS = list(itertools.product(ProductState, ProductAction))


@pytest.mark.parametrize(("state", "action"), ALL_PAIRS, ids=[f"{s}-{a}" for s, a in ALL_PAIRS])
def test_every_state_and_action(state: ProductState, action: ProductAction) -> None:
    before = IN_STATE[state]
    expected = EXPECTED.get((state, action))
    if expected is not None:
        after = perform(before, action)
        assert after.state is expected[0]
        changed = {
            f.name
            for f in dataclasses.fields(before)
            if getattr(before, f.name) != getattr(after, f.name)
        }
        assert changed == expected[1]
        return
    with pytest.raises(FailedPrecondition) as caught:
        perform(before, action)
    assert caught.value.reason == "INVALID_STATE_TRANSITION"
    assert caught.value.metadata == {"current_state": state.value, "transition": action.value}


def test_the_table_is_exactly_the_expected_one() -> None:
    assert dict(PRODUCT_LIFECYCLE.transitions) == {k: v[0] for k, v in EXPECTED.items()}


def test_updating_an_active_product_makes_a_new_version_a_draft_does_not() -> None:
    draft, new = IN_STATE[S.DRAFT].update(NEW_TERMS)
    assert (draft.version, new) == (1, False)
    active, new = IN_STATE[S.ACTIVE].update(NEW_TERMS)
    assert (active.version, new) == (2, True)
    assert active.update(TERMS)[0].version == 3


def test_a_product_without_coverages_cannot_be_activated() -> None:
    empty = Product(S.DRAFT, 1, dataclasses.replace(TERMS, coverages=()))
    with pytest.raises(FailedPrecondition) as caught:
        empty.activate()
    assert caught.value.reason == "PRODUCT_INCOMPLETE"


def test_a_product_on_sale_keeps_a_coverage() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        IN_STATE[S.ACTIVE].update(dataclasses.replace(TERMS, coverages=()))
    assert caught.value.reason == "PRODUCT_INCOMPLETE"
    assert (
        IN_STATE[S.DRAFT].update(dataclasses.replace(TERMS, coverages=()))[0].terms.coverages == ()
    )


def test_only_active_products_are_on_sale() -> None:
    IN_STATE[S.ACTIVE].check_on_sale()
    for state in (S.DRAFT, S.RETIRED):
        with pytest.raises(FailedPrecondition) as caught:
            IN_STATE[state].check_on_sale()
        assert caught.value.reason == "PRODUCT_NOT_ACTIVE"


def test_check_terms() -> None:
    assert check_terms(TERMS) == []
    bad_cov = dataclasses.replace(
        COVERAGE,
        code="bad code",
        name="",
        limit=usd(0),
        deductible=usd(10),
        copay=usd(5),
        coinsurance_percent=Decimal(101),
        waiting_period_days=-1,
    )
    bad = dataclasses.replace(
        TERMS,
        name="",
        term_months=0,
        base_premium=Money.of(Decimal(1), "EUR"),
        coverages=(bad_cov, bad_cov),
    )
    fields = {v.field for v in check_terms(bad)}
    assert {
        "product.name",
        "product.term_months",
        "product.base_premium",
        "product.coverages[0].code",
        "product.coverages[0].name",
        "product.coverages[0].limit",
        "product.coverages[0].deductible",
        "product.coverages[0].copay",
        "product.coverages[0].coinsurance_percent",
        "product.coverages[0].waiting_period_days",
        "product.coverages[1].code",
    } <= fields


@pytest.mark.parametrize(
    ("code", "ok"), [("HEALTH-1", True), ("A", True), ("a", False), ("", False)]
)
def test_codes(code: str, ok: bool) -> None:
    assert (check_code(code, "code") == []) is ok
