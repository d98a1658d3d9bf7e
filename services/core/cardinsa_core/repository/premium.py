"""Premium transactions in the database.

A policy's transactions are numbered 1, 2, ... (unique per policy) and carry
the running written premium; the policy row keeps the last one in
``written_premium``. They are only ever added, under the policy's row lock
(every caller holds it through the policy transition), so the numbering and
the running sum cannot race.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.domain.money import Money
from cardinsa_core.domain.premium import PremiumTransaction, TransactionKind
from cardinsa_core.repository.models import PolicyRow, PremiumTransactionRow
from cardinsa_core.repository.rows import children

__all__ = [
    "add_transaction",
    "net_transactions",
    "premium_transactions",
    "transactions_of",
]


def premium_transactions(company: uuid.UUID, policy_id: uuid.UUID) -> Select[PremiumTransactionRow]:
    return children(PremiumTransactionRow, company, PremiumTransactionRow.policy_id, policy_id)


async def transactions_of(session: AsyncSession, row: PolicyRow) -> list[PremiumTransactionRow]:
    """The policy's transactions, oldest first."""
    found = await session.scalars(
        select(PremiumTransactionRow)
        .where(
            PremiumTransactionRow.company_id == row.company_id,
            PremiumTransactionRow.policy_id == row.id,
        )
        .order_by(PremiumTransactionRow.sequence)
    )
    return list(found)


def net_transactions(rows: list[PremiumTransactionRow]) -> list[PremiumTransaction]:
    """The net premium of each transaction, for :mod:`cardinsa_core.domain.premium`."""
    return [
        PremiumTransaction(
            TransactionKind(r.kind),
            r.effective_date,
            r.end_date,
            Money(r.premium, r.currency).rounded(),
        )
        for r in rows
    ]


def add_transaction(
    session: AsyncSession,
    row: PolicyRow,
    existing: list[PremiumTransactionRow],
    transaction: PremiumTransaction,
    *,
    tax: Money,
    fee: Money,
    description: str,
    actor: str | None,
    version: int,
    refund_method: str | None = None,
) -> PremiumTransactionRow:
    """Record ``transaction`` (its net premium) with its tax and fee; the policy's
    written premium moves by the total."""
    amount = transaction.amount + tax + fee
    written = Decimal(row.written_premium or 0) + amount.amount
    added = PremiumTransactionRow(
        id=uuid.uuid4(),
        company_id=row.company_id,
        policy_id=row.id,
        sequence=len(existing) + 1,
        kind=transaction.kind.value,
        effective_date=transaction.effective,
        end_date=transaction.end,
        currency=amount.currency,
        premium=transaction.amount.amount,
        tax=tax.amount,
        fee=fee.amount,
        amount=amount.amount,
        written_premium=written,
        policy_version=version,
        refund_method=refund_method,
        description=description[:1000],
        created_by=actor,
    )
    session.add(added)
    existing.append(added)
    row.written_premium = written
    return added
