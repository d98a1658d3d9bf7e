"""Who may decide on claim money, and how: approval bands per currency and the
company's claim settings.

Approving a claim amount needs ``claims.approve`` and the permission of the
amount's band (see :class:`~cardinsa_core.domain.claims.ApprovalBands`). A
company keeps one set of bands per currency and a claim is approved against
the bands of its currency: the company's own bands in that currency; failing
those, for the company's default currency only, the settings' limits
(``claim_approval_band_limits``); for any other currency nothing --
FAILED_PRECONDITION ``NO_APPROVAL_BANDS_FOR_CURRENCY`` until someone with
``companies.update`` configures them.

The claim settings hold ``require_segregation_of_duties``: when set, the
claim's assigned adjuster may neither approve nor pay it (the claim use cases
ask :meth:`ClaimAuthority.segregation_required`, or read
:func:`cardinsa_core.repository.claim_authority.claim_settings` inside their
own unit of work).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.application.context import CoreContext, own_company
from cardinsa_core.application.inputs import MoneyInput
from cardinsa_core.domain.claim_authority import CLAIM_SETTINGS_FIELDS, ClaimSettings
from cardinsa_core.domain.claims import ApprovalBands, no_approval_bands
from cardinsa_core.domain.money import Money, check_currency
from cardinsa_core.repository.claim_authority import (
    add_unless_present,
    approval_bands,
    claim_settings,
    configured_approval_bands,
    settings_of,
)
from cardinsa_core.repository.models import ApprovalBandsRow, ClaimSettingsRow
from cardinsa_foundation.errors import Aborted, FieldViolation, InvalidArgument
from cardinsa_foundation.use_cases import (
    actor_uuid,
    check_etag,
    check_mask,
    invalid,
    require_principal,
)

__all__ = ["BandsView", "ClaimAuthority", "SettingsView"]

_BANDS = "approval_bands"


@dataclass(frozen=True, slots=True)
class BandsView:
    """The bands of one currency and their row (None: the settings' defaults)."""

    bands: ApprovalBands
    row: ApprovalBandsRow | None


@dataclass(frozen=True, slots=True)
class SettingsView:
    """The claim settings and their row (None: the defaults)."""

    settings: ClaimSettings
    row: ClaimSettingsRow | None


def _stale() -> Aborted:
    return Aborted(
        "the resource changed since it was read; read it again and retry",
        reason="ETAG_MISMATCH",
    )


class ClaimAuthority:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------ bands

    def _defaults(self, currency: str) -> ApprovalBands:
        return ApprovalBands(self.ctx.settings.claim_approval_band_limits, currency)

    async def _view(self, session: AsyncSession, company: uuid.UUID, currency: str) -> BandsView:
        row = await approval_bands(session, company, currency)
        return await self.view_of(company, currency, row)

    async def view_of(
        self, company: uuid.UUID, currency: str, row: ApprovalBandsRow | None
    ) -> BandsView:
        """The bands of ``currency`` given the company's row of them (None: not configured)."""
        if row is not None:
            return BandsView(ApprovalBands((row.band_1_limit, row.band_2_limit), row.currency), row)
        if currency == await self.ctx.tenants.default_currency(company):
            return BandsView(self._defaults(currency), None)
        raise no_approval_bands(currency)

    async def bands(
        self,
        company: uuid.UUID,
        currency: str | None = None,
        *,
        session: AsyncSession | None = None,
    ) -> ApprovalBands:
        """The company's bands in ``currency`` (None: the company's default currency).

        Its configured bands; else, for the company's default currency, the
        settings' limits; else FAILED_PRECONDITION ``NO_APPROVAL_BANDS_FOR_CURRENCY``
        (metadata ``currency``). Read in ``session`` when given (e.g. inside a
        claim transition's unit of work), else in a unit of work of its own.
        """
        if currency is None:
            currency = await self.ctx.tenants.default_currency(company)
        if session is not None:
            return (await self._view(session, company, currency)).bands
        async with self.ctx.db.unit_of_work(company_id=company) as own:
            return (await self._view(own, company, currency)).bands

    async def get_bands(self, currency_code: str = "") -> BandsView:
        """GetApprovalBands: the caller's company's bands in ``currency_code``
        (empty: the company's currency)."""
        company = own_company(require_principal())
        if currency_code:
            invalid("the request is not valid", check_currency(currency_code, "currency_code"))
        currency = currency_code or await self.ctx.tenants.default_currency(company)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await self._view(session, company, currency)

    async def list_bands(self) -> list[BandsView]:
        """ListApprovalBands: every configured currency, and the default
        currency's defaults unless configured; by currency code."""
        company = own_company(require_principal())
        default = await self.ctx.tenants.default_currency(company)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            views = [
                BandsView(ApprovalBands((r.band_1_limit, r.band_2_limit), r.currency), r)
                for r in await configured_approval_bands(session, company)
            ]
        if all(v.bands.currency != default for v in views):
            views.append(BandsView(self._defaults(default), None))
        return sorted(views, key=lambda v: v.bands.currency or "")

    async def update_bands(
        self, band_1: MoneyInput | None, band_2: MoneyInput | None, etag: str
    ) -> BandsView:
        """UpdateApprovalBands: set the bands of ``band_1``'s currency."""
        principal = require_principal()
        company = own_company(principal)
        first, second = _limits(band_1, band_2)
        currency = first.currency
        bands = ApprovalBands((first.amount, second.amount), currency)
        invalid("the bands are not valid", bands.violations())
        actor = actor_uuid(principal)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            row = await approval_bands(session, company, currency, lock=True)
            if row is None and etag:
                # None configured in this currency: an etag names other bands.
                raise _stale()
            if row is None:
                row = ApprovalBandsRow(
                    company_id=company,
                    currency=currency,
                    band_1_limit=first.amount,
                    band_2_limit=second.amount,
                    updated_by=actor,
                )
                if not await add_unless_present(session, row):
                    # A concurrent first update won: this one applies over it.
                    row = await _bands_after_race(session, company, currency)
            else:
                check_etag(row, etag)
            if row.band_1_limit != first.amount or row.band_2_limit != second.amount:
                row.band_1_limit = first.amount
                row.band_2_limit = second.amount
                row.updated_by = actor
                row.update_time = datetime.now(UTC)
                await session.flush()
            await self.ctx.audit.record(
                session,
                action="approval_bands.update",
                entity_type="approval_bands",
                entity_id=currency,
                changed_fields=["band_1_limit", "band_2_limit"],
                detail={
                    "currency": currency,
                    "band_1_limit": str(first),
                    "band_2_limit": str(second),
                },
            )
            return BandsView(bands, row)

    # ------------------------------------------------------------ settings

    async def segregation_required(
        self, company: uuid.UUID, *, session: AsyncSession | None = None
    ) -> bool:
        """Whether the company requires segregation of duties (the claim's
        assigned adjuster may not approve or pay it). Read in ``session`` when
        given, else in a unit of work of its own."""
        if session is not None:
            row = await claim_settings(session, company)
        else:
            async with self.ctx.db.unit_of_work(company_id=company) as own:
                row = await claim_settings(own, company)
        return settings_of(row).require_segregation_of_duties

    async def get_settings(self) -> SettingsView:
        """GetClaimSettings."""
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            row = await claim_settings(session, company)
            return SettingsView(settings_of(row), row)

    async def update_settings(
        self, settings: ClaimSettings, mask: Sequence[str], etag: str
    ) -> SettingsView:
        """UpdateClaimSettings: the fields of ``mask`` from ``settings``."""
        principal = require_principal()
        company = own_company(principal)
        check_mask(mask, CLAIM_SETTINGS_FIELDS)
        fields = sorted(set(mask))
        actor = actor_uuid(principal)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            row = await claim_settings(session, company, lock=True)
            if row is None and etag:
                # The defaults have no etag: a client that read other settings is stale.
                raise _stale()
            before = settings_of(row)
            after = ClaimSettings(
                require_segregation_of_duties=(
                    settings.require_segregation_of_duties
                    if "require_segregation_of_duties" in fields
                    else before.require_segregation_of_duties
                )
            )
            if row is None:
                row = ClaimSettingsRow(
                    company_id=company,
                    require_segregation_of_duties=after.require_segregation_of_duties,
                    updated_by=actor,
                )
                if not await add_unless_present(session, row):
                    # A concurrent first update won: this one applies over it.
                    row = await _settings_after_race(session, company)
                    before = settings_of(row)
            else:
                check_etag(row, etag)
            if settings_of(row) != after:
                row.require_segregation_of_duties = after.require_segregation_of_duties
                row.updated_by = actor
                row.update_time = datetime.now(UTC)
                await session.flush()
            await self.ctx.audit.record(
                session,
                action="claim_settings.update",
                entity_type="claim_settings",
                entity_id=str(company),
                changed_fields=fields,
                detail={
                    "require_segregation_of_duties": after.require_segregation_of_duties,
                    "previous_require_segregation_of_duties": (
                        before.require_segregation_of_duties
                    ),
                },
            )
            return SettingsView(after, row)


async def _bands_after_race(
    session: AsyncSession, company: uuid.UUID, currency: str
) -> ApprovalBandsRow:
    row = await approval_bands(session, company, currency, lock=True)
    if row is None:  # inserted and gone again: let the client retry
        raise _stale()
    return row


async def _settings_after_race(session: AsyncSession, company: uuid.UUID) -> ClaimSettingsRow:
    row = await claim_settings(session, company, lock=True)
    if row is None:
        raise _stale()
    return row


def _limits(band_1: MoneyInput | None, band_2: MoneyInput | None) -> tuple[Money, Money]:
    """The two limits of an update, in one currency (that of band 1); every
    violation at once."""
    violations: list[FieldViolation] = []
    fields = (("band_1_limit", band_1), ("band_2_limit", band_2))
    for name, value in fields:
        path = f"{_BANDS}.{name}"
        if value is None:
            violations.append(FieldViolation(path, "required: an amount with its currency_code"))
        elif not value.currency:
            violations.append(FieldViolation(f"{path}.currency_code", "required"))
        else:
            violations += check_currency(value.currency, f"{path}.currency_code")
    if (
        not violations
        and band_1 is not None
        and band_2 is not None
        and band_1.currency != band_2.currency
    ):
        violations.append(
            FieldViolation(
                f"{_BANDS}.band_2_limit.currency_code",
                f"must be {band_1.currency}, the currency of band_1_limit",
            )
        )
    invalid("the bands are not valid", violations)
    assert band_1 is not None and band_2 is not None
    amounts: list[Money] = []
    for name, value in (("band_1_limit", band_1), ("band_2_limit", band_2)):
        try:
            amounts.append(value.resolve(value.currency, f"{_BANDS}.{name}"))
        except InvalidArgument as error:
            violations += error.field_violations
    invalid("the bands are not valid", violations)
    return amounts[0], amounts[1]
