"""Products in the database: a product row, its versions and their coverages.

The product row carries the lifecycle and a copy of the current version's name
and currency (for lists and filters); the terms live in ``product_versions`` +
``coverages``. :class:`ProductView` and :class:`VersionView` are the rows read
together, with their domain values.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Select, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.domain.money import Money
from cardinsa_core.domain.products import (
    Coverage,
    LimitPeriod,
    LineOfBusiness,
    Product,
    ProductState,
    ProductTerms,
)
from cardinsa_core.domain.rating import RatingRules
from cardinsa_core.repository.models import CoverageRow, ProductRow, ProductVersionRow
from cardinsa_core.repository.rows import Resources, children
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec

__all__ = [
    "PRODUCTS",
    "ProductView",
    "VersionView",
    "code_taken",
    "coverage_of",
    "current_versions",
    "load_product",
    "load_version",
    "product_versions",
    "rewrite_version",
    "with_coverages",
    "with_version",
    "write_version",
]

PRODUCTS = Resources(
    ProductRow,
    "product",
    FilterSpec(
        {
            "code": FilterField(ProductRow.code, FieldType.STRING),
            "name": FilterField(ProductRow.name, FieldType.STRING),
            "state": FilterField(
                ProductRow.state, FieldType.ENUM, values=[s.value for s in ProductState]
            ),
            "line_of_business": FilterField(
                ProductRow.line_of_business,
                FieldType.ENUM,
                values=[v.value for v in LineOfBusiness],
            ),
            "currency_code": FilterField(ProductRow.currency, FieldType.STRING),
            "create_time": FilterField(ProductRow.create_time, FieldType.TIMESTAMP),
        }
    ),
    {"create_time": ProductRow.create_time, "code": ProductRow.code, "name": ProductRow.name},
)


# ------------------------------------------------------------------ mapping


def coverage_of(row: CoverageRow, currency: str) -> Coverage:
    return Coverage(
        code=row.code,
        name=row.name,
        limit=Money.of(row.limit_amount, currency),
        limit_period=LimitPeriod(row.limit_period),
        deductible=Money.of(row.deductible, currency),
        copay=Money.of(row.copay, currency) if row.copay is not None else None,
        coinsurance_percent=row.coinsurance_percent,
        waiting_period_days=row.waiting_period_days,
        min_entry_age=row.min_entry_age,
        max_entry_age=row.max_entry_age,
    )


@dataclass(frozen=True, slots=True)
class VersionView:
    row: ProductVersionRow
    coverages: tuple[CoverageRow, ...]

    def terms(self) -> ProductTerms:
        currency = self.row.currency
        return ProductTerms(
            name=self.row.name,
            description=self.row.description,
            currency=currency,
            base_premium=Money.of(self.row.base_premium, currency),
            term_months=self.row.term_months,
            coverages=tuple(coverage_of(c, currency) for c in self.coverages),
            rating=self.rating_rules(),
            grace_period_days=self.row.grace_period_days,
        )

    def rating_rules(self) -> RatingRules:
        return RatingRules.from_json(self.row.rating_rules)


@dataclass(frozen=True, slots=True)
class ProductView:
    row: ProductRow
    version: VersionView

    def domain(self) -> Product:
        return Product(ProductState(self.row.state), self.row.current_version, self.version.terms())


def _coverage_rows(
    company: uuid.UUID, version_id: uuid.UUID, terms: ProductTerms
) -> list[CoverageRow]:
    return [
        CoverageRow(
            id=uuid.uuid4(),
            company_id=company,
            product_version_id=version_id,
            position=index,
            code=cov.code,
            name=cov.name,
            limit_amount=cov.limit.amount,
            limit_period=cov.limit_period.value,
            deductible=cov.deductible.amount,
            copay=cov.copay.amount if cov.copay else None,
            coinsurance_percent=cov.coinsurance_percent,
            waiting_period_days=cov.waiting_period_days,
            min_entry_age=cov.min_entry_age,
            max_entry_age=cov.max_entry_age,
        )
        for index, cov in enumerate(terms.coverages)
    ]


def _put_terms(row: ProductVersionRow, terms: ProductTerms) -> None:
    row.name = terms.name
    row.description = terms.description
    row.currency = terms.currency
    row.base_premium = terms.base_premium.amount
    row.term_months = terms.term_months
    row.rating_rules = terms.rating.to_json()
    row.grace_period_days = terms.grace_period_days


# ------------------------------------------------------------------ reading


def product_versions(company: uuid.UUID, product_id: uuid.UUID) -> Select[ProductVersionRow]:
    return children(ProductVersionRow, company, ProductVersionRow.product_id, product_id)


async def with_coverages(
    session: AsyncSession, company: uuid.UUID, rows: Sequence[ProductVersionRow]
) -> list[VersionView]:
    """The versions with their coverages, in one query for all of them."""
    ids = [r.id for r in rows]
    found: dict[uuid.UUID, list[CoverageRow]] = {i: [] for i in ids}
    if ids:
        for cov in await session.scalars(
            select(CoverageRow)
            .where(CoverageRow.company_id == company, CoverageRow.product_version_id.in_(ids))
            .order_by(CoverageRow.position)
        ):
            found[cov.product_version_id].append(cov)
    return [VersionView(r, tuple(found[r.id])) for r in rows]


async def load_version(
    session: AsyncSession, company: uuid.UUID, product_id: uuid.UUID, version: int
) -> VersionView | None:
    row = (
        await session.scalars(
            product_versions(company, product_id).where(ProductVersionRow.version == version)
        )
    ).first()
    if row is None:
        return None
    return (await with_coverages(session, company, [row]))[0]


async def with_version(session: AsyncSession, row: ProductRow) -> ProductView:
    """The product with its current version."""
    version = await load_version(session, row.company_id, row.id, row.current_version)
    assert version is not None, "every product has its current version"
    return ProductView(row, version)


async def load_product(
    session: AsyncSession, company: uuid.UUID, product_id: str, *, lock: bool = False
) -> ProductView:
    row = await PRODUCTS.find(session, company, product_id, lock=lock)
    return await with_version(session, row)


async def current_versions(
    session: AsyncSession, company: uuid.UUID, rows: Sequence[ProductRow]
) -> list[ProductView]:
    """The products with their current versions, in two queries for a whole page."""
    if not rows:
        return []
    versions = await session.scalars(
        select(ProductVersionRow).where(
            ProductVersionRow.company_id == company,
            tuple_(ProductVersionRow.product_id, ProductVersionRow.version).in_(
                [(r.id, r.current_version) for r in rows]
            ),
        )
    )
    by_product = {
        v.row.product_id: v for v in await with_coverages(session, company, list(versions))
    }
    return [ProductView(row, by_product[row.id]) for row in rows]


async def code_taken(
    session: AsyncSession, company: uuid.UUID, code: str, *, other_than: uuid.UUID | None = None
) -> bool:
    """Whether a live product of the company (other than ``other_than``) uses ``code``."""
    stmt = select(ProductRow.id).where(
        ProductRow.company_id == company,
        ProductRow.code == code,
        ProductRow.delete_time.is_(None),
    )
    if other_than is not None:
        stmt = stmt.where(ProductRow.id != other_than)
    return await session.scalar(stmt) is not None


# ------------------------------------------------------------------ writing


async def write_version(
    session: AsyncSession,
    *,
    company: uuid.UUID,
    product_id: uuid.UUID,
    version: int,
    terms: ProductTerms,
    actor: uuid.UUID | None,
) -> None:
    """A new version row with its coverages."""
    row = ProductVersionRow(
        id=uuid.uuid4(),
        company_id=company,
        product_id=product_id,
        version=version,
        created_by=actor,
    )
    _put_terms(row, terms)
    session.add(row)
    await session.flush()
    session.add_all(_coverage_rows(company, row.id, terms))
    await session.flush()


async def rewrite_version(session: AsyncSession, version: VersionView, terms: ProductTerms) -> None:
    """Edit a version in place (a draft's): its terms and all its coverages."""
    row = version.row
    _put_terms(row, terms)
    await session.execute(
        delete(CoverageRow).where(
            CoverageRow.company_id == row.company_id, CoverageRow.product_version_id == row.id
        )
    )
    session.add_all(_coverage_rows(row.company_id, row.id, terms))
