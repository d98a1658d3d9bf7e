"""Who may decide on claim money: the company's approval bands.

Approving a claim amount needs ``claims.approve`` and the permission of the
amount's band (see :class:`~cardinsa_core.domain.claims.ApprovalBands`). A
company sets its bands; until it does, the settings' limits apply in the
company's currency.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from cardinsa_core.application.context import CoreContext, own_company
from cardinsa_core.application.inputs import MoneyInput
from cardinsa_core.domain.claims import ApprovalBands
from cardinsa_core.repository.claims import approval_bands
from cardinsa_core.repository.models import ApprovalBandsRow
from cardinsa_foundation.errors import Aborted, FieldViolation
from cardinsa_foundation.use_cases import actor_uuid, check_etag, invalid, require_principal

__all__ = ["ClaimAuthority"]


class ClaimAuthority:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx

    async def _bands_row(self, company: uuid.UUID) -> ApprovalBandsRow | None:
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await approval_bands(session, company)

    async def segregation_required(self, company: uuid.UUID) -> bool:
        """Whether the company requires approver and payer to differ from the adjuster."""
        return False  # MERGE: replaced by the claim settings of the bands branch

    async def bands(self, company: uuid.UUID, currency: str | None = None) -> ApprovalBands:
        """The company's bands, or the settings' limits in the company's currency."""
        row = await self._bands_row(company)
        if row is not None:
            return ApprovalBands((row.band_1_limit, row.band_2_limit), row.currency)
        currency = await self.ctx.tenants.default_currency(company)
        return ApprovalBands(self.ctx.settings.claim_approval_band_limits, currency)

    async def get_bands(self) -> tuple[ApprovalBands, ApprovalBandsRow | None]:
        company = own_company(require_principal())
        return await self.bands(company), await self._bands_row(company)

    async def update_bands(
        self, band_1: MoneyInput | None, band_2: MoneyInput | None, etag: str
    ) -> tuple[ApprovalBands, ApprovalBandsRow]:
        principal = require_principal()
        company = own_company(principal)
        violations = []
        for name, value in (("band_1_limit", band_1), ("band_2_limit", band_2)):
            if value is None or not value.currency:
                violations.append(
                    FieldViolation(f"approval_bands.{name}", "an amount with its currency_code")
                )
        invalid("the bands are not valid", violations)
        assert band_1 is not None and band_2 is not None
        currency = band_1.currency
        first = band_1.resolve(currency, "approval_bands.band_1_limit")
        second = band_2.resolve(currency, "approval_bands.band_2_limit")
        bands = ApprovalBands((first.amount, second.amount), currency)
        invalid("the bands are not valid", bands.violations())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            row = await approval_bands(session, company, lock=True)
            if row is None:
                if etag:
                    # The defaults have no etag: a client that read other bands is stale.
                    raise Aborted(
                        "the resource changed since it was read; read it again and retry",
                        reason="ETAG_MISMATCH",
                    )
                row = ApprovalBandsRow(company_id=company, currency=currency)
                session.add(row)
            else:
                check_etag(row, etag)
            row.currency = currency
            row.band_1_limit = first.amount
            row.band_2_limit = second.amount
            row.updated_by = actor_uuid(principal)
            row.update_time = datetime.now(UTC)
            await session.flush()
            await self.ctx.audit.record(
                session,
                action="approval_bands.update",
                entity_type="approval_bands",
                entity_id=str(company),
                changed_fields=["band_1_limit", "band_2_limit", "currency"],
                detail={"band_1_limit": str(first), "band_2_limit": str(second)},
            )
            return bands, row
