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

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.application.context import (
    CoreContext,
    actor_uuid,
    check_etag,
    check_mask,
    check_request_id,
    deleted,
    invalid,
    lookup_uuid,
    not_found,
    own_company,
    require_principal,
)
from cardinsa_core.application.inputs import MoneyInput
from cardinsa_core.application.requests import claim_request_id, request_id_reused
from cardinsa_core.domain.money import Money, check_currency
from cardinsa_core.domain.products import (
    TERMS_FIELDS,
    Coverage,
    LimitPeriod,
    LineOfBusiness,
    Product,
    ProductAction,
    ProductState,
    ProductTerms,
    check_code,
    check_terms,
)
from cardinsa_core.repository.models import CoverageRow, ProductRow, ProductVersionRow
from cardinsa_foundation.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
)
from cardinsa_foundation.filtering import (
    FieldType,
    FilterField,
    FilterSpec,
    parse_order_by,
    tenant_list_query,
)
from cardinsa_foundation.paging import OrderTerm, Page, paginate, query_fingerprint

PRODUCT_FILTER = FilterSpec(
    {
        "code": FilterField(ProductRow.code, FieldType.STRING),
        "name": FilterField(ProductRow.name, FieldType.STRING),
        "state": FilterField(
            ProductRow.state, FieldType.ENUM, values=[s.value for s in ProductState]
        ),
        "line_of_business": FilterField(
            ProductRow.line_of_business, FieldType.ENUM, values=[v.value for v in LineOfBusiness]
        ),
        "currency_code": FilterField(ProductRow.currency, FieldType.STRING),
        "create_time": FilterField(ProductRow.create_time, FieldType.TIMESTAMP),
    }
)
PRODUCT_ORDER = {
    "create_time": ProductRow.create_time,
    "code": ProductRow.code,
    "name": ProductRow.name,
}
DEFAULT_ORDER = [OrderTerm(ProductRow.create_time, True)]
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
        )


@dataclass(frozen=True, slots=True)
class ProductView:
    row: ProductRow
    version: VersionView

    def domain(self) -> Product:
        return Product(ProductState(self.row.state), self.row.current_version, self.version.terms())


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
    )


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
        missing = {"base_premium", "coverages"} - fields
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
    )


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
        )
        for index, cov in enumerate(terms.coverages)
    ]


class ProductUseCases:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------- reading

    @staticmethod
    async def load_version(
        session: AsyncSession, company: uuid.UUID, product_id: uuid.UUID, version: int
    ) -> VersionView | None:
        row = (
            await session.scalars(
                select(ProductVersionRow).where(
                    ProductVersionRow.company_id == company,
                    ProductVersionRow.product_id == product_id,
                    ProductVersionRow.version == version,
                )
            )
        ).first()
        if row is None:
            return None
        return (await ProductUseCases._with_coverages(session, company, [row]))[0]

    @staticmethod
    async def _with_coverages(
        session: AsyncSession, company: uuid.UUID, rows: Sequence[ProductVersionRow]
    ) -> list[VersionView]:
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

    async def load(
        self, session: AsyncSession, company: uuid.UUID, product_id: str, *, lock: bool = False
    ) -> ProductView:
        key = lookup_uuid(product_id)
        row = None
        if key is not None:
            stmt = select(ProductRow).where(ProductRow.company_id == company, ProductRow.id == key)
            if lock:
                stmt = stmt.with_for_update()
            row = (await session.scalars(stmt)).first()
        if row is None:
            raise not_found("product", product_id)
        version = await self.load_version(session, company, row.id, row.current_version)
        assert version is not None, "every product has its current version"
        return ProductView(row, version)

    async def get(self, product_id: str) -> ProductView:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await self.load(session, company, product_id)

    async def list_products(
        self, *, page_size: int, page_token: str, filter: str, order_by: str, show_deleted: bool
    ) -> Page[ProductView]:
        company = own_company(require_principal())
        stmt = tenant_list_query(
            ProductRow, company, spec=PRODUCT_FILTER, filter=filter, show_deleted=show_deleted
        )
        order = parse_order_by(order_by, PRODUCT_ORDER, default=DEFAULT_ORDER)
        fingerprint = query_fingerprint(filter=filter, order_by=order_by, show_deleted=show_deleted)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            page = await paginate(
                session,
                stmt,
                order=order,
                page_size=page_size,
                page_token=page_token,
                fingerprint=fingerprint,
                secret=self.ctx.settings.page_token_secret,
            )
            views = await self._current_versions(session, company, page.items)
        return Page(views, page.next_page_token)

    async def _current_versions(
        self, session: AsyncSession, company: uuid.UUID, rows: Sequence[ProductRow]
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
            v.row.product_id: v
            for v in await self._with_coverages(session, company, list(versions))
        }
        return [ProductView(row, by_product[row.id]) for row in rows]

    async def list_versions(
        self, product_id: str, *, page_size: int, page_token: str
    ) -> Page[VersionView]:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            product = await self.load(session, company, product_id)
            page = await paginate(
                session,
                select(ProductVersionRow).where(
                    ProductVersionRow.company_id == company,
                    ProductVersionRow.product_id == product.row.id,
                ),
                order=[OrderTerm(ProductVersionRow.version, True)],
                page_size=page_size,
                page_token=page_token,
                fingerprint=query_fingerprint(parent=str(product.row.id)),
                secret=self.ctx.settings.page_token_secret,
            )
            views = await self._with_coverages(session, company, page.items)
        return Page(views, page.next_page_token)

    async def get_version(self, product_id: str, version: int) -> VersionView:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            product = await self.load(session, company, product_id)
            found = await self.load_version(session, company, product.row.id, version)
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
            if request_id:
                seen = await claim_request_id(session, company, CREATE, request_id, str(new_id))
                if seen is not None:
                    return await self.load(session, company, seen)
            taken = await session.scalar(
                select(ProductRow.id).where(
                    ProductRow.company_id == company,
                    ProductRow.code == code,
                    ProductRow.delete_time.is_(None),
                )
            )
            if taken is not None:
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
            await self._write_version(
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
            return await self.load(session, company, str(row.id))

    async def _write_version(
        self,
        session: AsyncSession,
        *,
        company: uuid.UUID,
        product_id: uuid.UUID,
        version: int,
        terms: ProductTerms,
        actor: uuid.UUID | None,
    ) -> None:
        row = ProductVersionRow(
            id=uuid.uuid4(),
            company_id=company,
            product_id=product_id,
            version=version,
            name=terms.name,
            description=terms.description,
            currency=terms.currency,
            base_premium=terms.base_premium.amount,
            term_months=terms.term_months,
            created_by=actor,
        )
        session.add(row)
        await session.flush()
        session.add_all(_coverage_rows(company, row.id, terms))
        await session.flush()

    async def update(
        self, product_id: str, data: ProductInput, mask: Sequence[str], etag: str
    ) -> ProductView:
        principal = require_principal()
        company = own_company(principal)
        masked = {"currency_code": "currency"}
        check_mask(mask, frozenset(TERMS_FIELDS - {"currency"}) | {"currency_code"})
        fields = frozenset(masked.get(p, p) for p in mask)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            view = await self.load(session, company, product_id, lock=True)
            row = view.row
            check_etag(row, etag)
            if row.delete_time is not None:
                raise deleted("product")
            product = view.domain()
            terms = resolve_terms(data, fields, product.terms, product.terms.currency)
            invalid("the product is not valid", check_terms(terms))
            if terms == product.terms:
                return view
            updated, new_version = product.update(terms)
            if new_version:
                await self._write_version(
                    session,
                    company=company,
                    product_id=row.id,
                    version=updated.version,
                    terms=terms,
                    actor=actor_uuid(principal),
                )
            else:
                version_row = view.version.row
                version_row.name = terms.name
                version_row.description = terms.description
                version_row.currency = terms.currency
                version_row.base_premium = terms.base_premium.amount
                version_row.term_months = terms.term_months
                await session.execute(
                    delete(CoverageRow).where(
                        CoverageRow.company_id == company,
                        CoverageRow.product_version_id == version_row.id,
                    )
                )
                session.add_all(_coverage_rows(company, version_row.id, terms))
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
            return await self.load(session, company, str(row.id))

    async def _transition(
        self,
        product_id: str,
        etag: str,
        request_id: str,
        method: str,
        apply: Callable[[AsyncSession, ProductView], Awaitable[list[str]]],
        *,
        allow_deleted: bool = False,
    ) -> ProductView:
        company = own_company(require_principal())
        invalid("the request is not valid", check_request_id(request_id))
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            key = lookup_uuid(product_id)
            if key is None:
                raise not_found("product", product_id)
            if request_id:
                seen = await claim_request_id(session, company, method, request_id, str(key))
                if seen is not None:
                    if seen != str(key):
                        raise request_id_reused()
                    return await self.load(session, company, product_id)
            view = await self.load(session, company, product_id, lock=True)
            check_etag(view.row, etag)
            if view.row.delete_time is not None and not allow_deleted:
                raise deleted("product")
            before = view.row.state
            changed = await apply(session, view)
            await session.flush()
            await self.ctx.audit.record(
                session,
                action=f"product.{method}",
                entity_type="product",
                entity_id=view.row.id,
                changed_fields=changed,
                detail={"from_state": before, "to_state": view.row.state},
            )
            return view

    async def activate(self, product_id: str, etag: str, request_id: str) -> ProductView:
        async def apply(session: AsyncSession, view: ProductView) -> list[str]:
            view.row.state = view.domain().activate().state.value
            return ["state"]

        return await self._transition(product_id, etag, request_id, "activate", apply)

    async def retire(self, product_id: str, etag: str, request_id: str) -> ProductView:
        async def apply(session: AsyncSession, view: ProductView) -> list[str]:
            view.row.state = view.domain().retire().state.value
            return ["state"]

        return await self._transition(product_id, etag, request_id, "retire", apply)

    async def delete(self, product_id: str, etag: str) -> ProductView:
        async def apply(session: AsyncSession, view: ProductView) -> list[str]:
            view.domain().check_delete()
            view.row.soft_delete()
            return ["delete_time"]

        return await self._transition(product_id, etag, "", "delete", apply, allow_deleted=True)

    async def undelete(self, product_id: str, etag: str) -> ProductView:
        async def apply(session: AsyncSession, view: ProductView) -> list[str]:
            if view.row.delete_time is None:
                raise FailedPrecondition("the product is not deleted", reason="NOT_DELETED")
            if await self._code_taken(session, view.row):
                raise AlreadyExists(
                    "another live product uses this code",
                    reason="PRODUCT_CODE_TAKEN",
                    metadata={"code": view.row.code},
                )
            view.row.undelete()
            return ["delete_time"]

        return await self._transition(product_id, etag, "", "undelete", apply, allow_deleted=True)

    @staticmethod
    async def _code_taken(session: AsyncSession, row: ProductRow) -> bool:
        found = await session.scalar(
            select(ProductRow.id).where(
                ProductRow.company_id == row.company_id,
                ProductRow.code == row.code,
                ProductRow.delete_time.is_(None),
                ProductRow.id != row.id,
            )
        )
        return found is not None


__all__ = [
    "CoverageInput",
    "ProductAction",
    "ProductInput",
    "ProductUseCases",
    "ProductView",
    "VersionView",
    "coverage_of",
]
