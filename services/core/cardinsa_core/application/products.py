"""Products: the catalogue, its lifecycle and its versions.

The product row carries the lifecycle and a copy of the current version's
name and currency (for lists and filters); the terms live in
``product_versions`` + ``coverages``. A DRAFT's version 1 is edited in place;
any change of an ACTIVE product writes version n+1 and leaves the versions
policies were sold on untouched.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Unpack

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.application.context import (
    ChangeOptions,
    CoreContext,
    ListQuery,
    first_call,
    own_company,
)
from cardinsa_core.application.inputs import MoneyInput
from cardinsa_core.domain.money import Money, check_currency
from cardinsa_core.domain.policyholders import Relation
from cardinsa_core.domain.products import (
    DEFAULT_GRACE_PERIOD_DAYS,
    TERMS_FIELDS,
    Coverage,
    LimitPeriod,
    LineOfBusiness,
    Product,
    ProductAction,
    ProductState,
    ProductTerms,
    check_code,
    check_relations,
    check_terms,
)
from cardinsa_core.domain.rating import AgeBand, RatingRules, TermBasis
from cardinsa_core.repository.models import ProductRow, ProductVersionRow
from cardinsa_core.repository.products import (
    PRODUCTS,
    ProductView,
    VersionView,
    code_taken,
    current_versions,
    load_product,
    load_version,
    product_versions,
    rewrite_version,
    with_coverages,
    with_version,
    write_version,
)
from cardinsa_foundation.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
)
from cardinsa_foundation.paging import OrderTerm, Page
from cardinsa_foundation.use_cases import (
    actor_uuid,
    check_mask,
    check_request_id,
    invalid,
    not_found,
    require_principal,
)

CREATE = "CreateProduct"


@dataclass(frozen=True, slots=True)
class CoverageInput:
    code: str
    name: str
    limit: MoneyInput | None
    limit_period: LimitPeriod | None
    deductible: MoneyInput | None
    copay: MoneyInput | None
    coinsurance_basis_points: int | None
    waiting_period_days: int
    min_entry_age: int = 0
    max_entry_age: int = 0


@dataclass(frozen=True, slots=True)
class RatingRulesInput:
    """Rating rules as a request describes them (amounts not yet resolved,
    relation factors as a list: ``None`` for an unspecified relation)."""

    term_basis: TermBasis = TermBasis.DAYS_OVER_365
    age_bands: tuple[AgeBand, ...] = ()
    relation_factors: tuple[tuple[Relation | None, int], ...] = ()
    sum_insured_rate_basis_points: int = 0
    tax_basis_points: int = 0
    policy_fee: MoneyInput | None = None
    short_rate_penalty_basis_points: int = 0
    manual_underwriting: bool = False
    referral_sum_insured: MoneyInput | None = None


@dataclass(frozen=True, slots=True)
class ProductInput:
    """A product as a request describes it (amounts not yet resolved)."""

    code: str = ""
    line_of_business: LineOfBusiness | None = None
    name: str = ""
    description: str = ""
    currency: str = ""
    base_premium: MoneyInput | None = None
    term_months: int = 0
    coverages: tuple[CoverageInput, ...] = ()
    #: None: not sent (30 on create, unchanged on update).
    grace_period_days: int | None = None
    rating_rules: RatingRulesInput = RatingRulesInput()


def _money(value: MoneyInput | None, currency: str, field: str, *, required: bool) -> Money:
    if value is None:
        if required:
            raise InvalidArgument(
                f"{field} is required", field_violations=[FieldViolation(field, "required")]
            )
        return Money.zero(currency)
    return value.resolve(currency, field)


def _coverage(value: CoverageInput, currency: str, path: str) -> Coverage:
    if value.limit_period is None:
        raise InvalidArgument(
            "limit_period is required",
            field_violations=[FieldViolation(f"{path}.limit_period", "required")],
        )
    bp = value.coinsurance_basis_points
    if bp is not None and not 0 <= bp <= 10_000:
        raise InvalidArgument(
            "co-insurance out of range",
            field_violations=[
                FieldViolation(f"{path}.coinsurance_basis_points", "between 0 and 10000")
            ],
        )
    return Coverage(
        code=value.code.strip(),
        name=" ".join(value.name.split()),
        limit=_money(value.limit, currency, f"{path}.limit", required=True),
        limit_period=value.limit_period,
        deductible=_money(value.deductible, currency, f"{path}.deductible", required=False),
        copay=value.copay.resolve(currency, f"{path}.copay") if value.copay else None,
        coinsurance_percent=Decimal(bp) / 100 if bp is not None else None,
        waiting_period_days=value.waiting_period_days,
        min_entry_age=value.min_entry_age,
        max_entry_age=value.max_entry_age,
    )


def _rating_rules(value: RatingRulesInput, currency: str, path: str) -> RatingRules:
    invalid(
        "the rating rules are not valid",
        check_relations([relation for relation, _ in value.relation_factors], path),
    )
    return RatingRules(
        term_basis=value.term_basis,
        age_bands=value.age_bands,
        relation_factors={
            relation.value: factor
            for relation, factor in value.relation_factors
            if relation is not None
        },
        sum_insured_rate_basis_points=value.sum_insured_rate_basis_points,
        tax_basis_points=value.tax_basis_points,
        policy_fee=value.policy_fee.resolve(currency, f"{path}.policy_fee")
        if value.policy_fee
        else None,
        short_rate_penalty_basis_points=value.short_rate_penalty_basis_points,
        manual_underwriting=value.manual_underwriting,
        referral_sum_insured=value.referral_sum_insured.resolve(
            currency, f"{path}.referral_sum_insured"
        )
        if value.referral_sum_insured
        else None,
    )


def resolve_terms(
    data: ProductInput, fields: frozenset[str], base: ProductTerms | None, default_currency: str
) -> ProductTerms:
    """The terms a request describes: ``fields`` from ``data``, the rest from ``base``.

    The currency is the one named, else that of the base terms, else the
    company's; amounts without a currency take it.
    """
    currency = (
        data.currency
        if "currency" in fields and data.currency
        else (base.currency if base else default_currency)
    )
    invalid("the currency is not valid", check_currency(currency, "product.currency_code"))
    if base is not None and currency != base.currency:
        # A new currency re-denominates every amount: all of them must be sent.
        needed = {"base_premium", "coverages"}
        if base.rating.policy_fee or base.rating.referral_sum_insured:
            needed.add("rating_rules")
        missing = needed - fields
        if missing:
            raise InvalidArgument(
                "changing the currency needs the amounts in the new currency",
                field_violations=[
                    FieldViolation("update_mask", f"also name {name}") for name in sorted(missing)
                ],
            )
    return ProductTerms(
        name=" ".join(data.name.split()) if "name" in fields or base is None else base.name,
        description=data.description.strip()
        if "description" in fields or base is None
        else base.description,
        currency=currency,
        base_premium=_money(data.base_premium, currency, "product.base_premium", required=True)
        if "base_premium" in fields or base is None
        else base.base_premium,
        term_months=data.term_months
        if "term_months" in fields or base is None
        else base.term_months,
        coverages=tuple(
            _coverage(c, currency, f"product.coverages[{i}]") for i, c in enumerate(data.coverages)
        )
        if "coverages" in fields or base is None
        else base.coverages,
        rating=_rating_rules(data.rating_rules, currency, "product.rating_rules")
        if "rating_rules" in fields or base is None
        else base.rating,
        grace_period_days=_grace(data, fields, base),
    )


def _grace(data: ProductInput, fields: frozenset[str], base: ProductTerms | None) -> int:
    if ("grace_period_days" in fields or base is None) and data.grace_period_days is not None:
        return data.grace_period_days
    return base.grace_period_days if base is not None else DEFAULT_GRACE_PERIOD_DAYS


class ProductUseCases:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------- reading

    async def get(self, product_id: str) -> ProductView:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await load_product(session, company, product_id)

    async def list_products(self, **query: Unpack[ListQuery]) -> Page[ProductView]:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            page = await self.ctx.list_page(session, PRODUCTS, company, **query)
            views = await current_versions(session, company, page.items)
        return Page(views, page.next_page_token)

    async def list_versions(
        self, product_id: str, *, page_size: int, page_token: str
    ) -> Page[VersionView]:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            product = await load_product(session, company, product_id)
            page = await self.ctx.page(
                session,
                product_versions(company, product.row.id),
                order=[OrderTerm(ProductVersionRow.version, True)],
                page_size=page_size,
                page_token=page_token,
                parent=str(product.row.id),
            )
            views = await with_coverages(session, company, page.items)
        return Page(views, page.next_page_token)

    async def get_version(self, product_id: str, version: int) -> VersionView:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            product = await load_product(session, company, product_id)
            found = await load_version(session, company, product.row.id, version)
            if found is None:
                raise not_found("product version", f"{product_id}/{version}")
            return found

    # ------------------------------------------------------------- writing

    async def create(self, data: ProductInput, *, request_id: str) -> ProductView:
        principal = require_principal()
        company = own_company(principal)
        code = data.code.strip()
        violations = check_code(code, "product.code") + check_request_id(request_id)
        if data.line_of_business is None:
            violations.append(FieldViolation("product.line_of_business", "required"))
        if data.term_months == 0:
            violations.append(FieldViolation("product.term_months", "required"))
        invalid("the product is not valid", violations)
        currency = data.currency or await self.ctx.tenants.default_currency(company)
        terms = resolve_terms(replace(data, currency=currency), TERMS_FIELDS, None, currency)
        invalid("the product is not valid", check_terms(terms))
        assert data.line_of_business is not None
        new_id = uuid.uuid4()
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            seen = await first_call(session, company, CREATE, request_id, str(new_id), data)
            if seen is not None:
                return await load_product(session, company, seen)
            if await code_taken(session, company, code):
                raise AlreadyExists(
                    "a product with this code already exists",
                    reason="PRODUCT_CODE_TAKEN",
                    metadata={"code": code},
                    field_violations=[FieldViolation("product.code", "already in use")],
                )
            row = ProductRow(
                id=new_id,
                company_id=company,
                code=code,
                line_of_business=data.line_of_business.value,
                state=ProductState.DRAFT.value,
                current_version=1,
                name=terms.name,
                currency=terms.currency,
            )
            session.add(row)
            await session.flush()
            await write_version(
                session,
                company=company,
                product_id=row.id,
                version=1,
                terms=terms,
                actor=actor_uuid(principal),
            )
            await self.ctx.audit.record(
                session,
                action="product.create",
                entity_type="product",
                entity_id=row.id,
                changed_fields=sorted(TERMS_FIELDS | {"code", "line_of_business"}),
                detail={"code": code, "version": 1},
            )
            return await load_product(session, company, str(row.id))

    async def update(
        self, product_id: str, data: ProductInput, mask: Sequence[str], etag: str
    ) -> ProductView:
        principal = require_principal()
        company = own_company(principal)
        masked = {"currency_code": "currency"}
        check_mask(mask, frozenset(TERMS_FIELDS - {"currency"}) | {"currency_code"})
        fields = frozenset(masked.get(p, p) for p in mask)
        async with self.ctx.change(
            PRODUCTS, company, product_id, method="update", etag=etag
        ) as change:
            session, row = change.session, change.row
            view = await with_version(session, row)
            product = view.domain()
            terms = resolve_terms(data, fields, product.terms, product.terms.currency)
            invalid("the product is not valid", check_terms(terms))
            if terms == product.terms:
                return view
            updated, new_version = product.update(terms)
            if new_version:
                await write_version(
                    session,
                    company=company,
                    product_id=row.id,
                    version=updated.version,
                    terms=terms,
                    actor=actor_uuid(principal),
                )
            else:
                await rewrite_version(session, view.version, terms)
            row.current_version = updated.version
            row.name = terms.name
            row.currency = terms.currency
            row.update_time = datetime.now(UTC)
            await session.flush()
            await self.ctx.audit.record(
                session,
                action="product.update",
                entity_type="product",
                entity_id=row.id,
                changed_fields=sorted(fields),
                detail={"version": updated.version, "new_version": new_version},
            )
            session.expunge_all()
            return await load_product(session, company, str(row.id))

    async def _transition(
        self,
        product_id: str,
        apply: Callable[[AsyncSession, ProductView], Awaitable[list[str]]],
        **options: Unpack[ChangeOptions],
    ) -> ProductView:
        company = own_company(require_principal())
        async with self.ctx.change(PRODUCTS, company, product_id, **options) as change:
            session, row, replay = change.session, change.row, change.replay
            view = await with_version(session, row)
            if replay:
                return view
            before = row.state
            changed = await apply(session, view)
            await session.flush()
            await self.ctx.audit.record(
                session,
                action=f"product.{options['method']}",
                entity_type="product",
                entity_id=row.id,
                changed_fields=changed,
                detail={"from_state": before, "to_state": row.state},
            )
            return view

    async def activate(self, product_id: str, etag: str, request_id: str) -> ProductView:
        return await self._move(product_id, etag, request_id, "activate", Product.activate)

    async def retire(self, product_id: str, etag: str, request_id: str) -> ProductView:
        return await self._move(product_id, etag, request_id, "retire", Product.retire)

    async def _move(
        self,
        product_id: str,
        etag: str,
        request_id: str,
        method: str,
        act: Callable[[Product], Product],
    ) -> ProductView:
        """A lifecycle transition: the product's state is all it changes."""

        async def apply(session: AsyncSession, view: ProductView) -> list[str]:
            view.row.state = act(view.domain()).state.value
            return ["state"]

        return await self._transition(
            product_id, apply, method=method, etag=etag, request_id=request_id
        )

    async def delete(self, product_id: str, etag: str) -> ProductView:
        async def apply(session: AsyncSession, view: ProductView) -> list[str]:
            view.domain().check_delete()
            view.row.soft_delete()
            return ["delete_time"]

        return await self._transition(
            product_id, apply, method="delete", etag=etag, allow_deleted=True
        )

    async def undelete(self, product_id: str, etag: str) -> ProductView:
        async def apply(session: AsyncSession, view: ProductView) -> list[str]:
            row = view.row
            if row.delete_time is None:
                raise FailedPrecondition("the product is not deleted", reason="NOT_DELETED")
            if await code_taken(session, row.company_id, row.code, other_than=row.id):
                raise AlreadyExists(
                    "another live product uses this code",
                    reason="PRODUCT_CODE_TAKEN",
                    metadata={"code": row.code},
                )
            row.undelete()
            return ["delete_time"]

        return await self._transition(
            product_id, apply, method="undelete", etag=etag, allow_deleted=True
        )


__all__ = [
    "CoverageInput",
    "ProductAction",
    "ProductInput",
    "ProductUseCases",
    "ProductView",
    "RatingRulesInput",
    "VersionView",
]
