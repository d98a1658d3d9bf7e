"""Everything core holds about one policyholder, for data-subject requests.

:func:`holder_records` reads, within one tenant, every row that belongs to a
policyholder: the holder, all its dependents (removed ones too), its policies
and what hangs off them, their claims and what hangs off those, and the audit
events about any of these. :func:`record_dict` turns a row into a JSON-ready
dict of all its stored columns, except the tenant id, lookup hashes and
document bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import inspect, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.repository.models import (
    AuditEventRow,
    ClaimLogEntryRow,
    ClaimPaymentRow,
    ClaimRow,
    DependentRow,
    DocumentRow,
    InvoiceRow,
    PaymentRow,
    PolicyholderRow,
    PolicyRow,
    PolicyStatusChangeRow,
    PolicyVersionRow,
    PremiumTransactionRow,
)

__all__ = ["all_dependents", "holder_records", "record_dict", "running_states"]

_LEFT_OUT = frozenset({"company_id", "national_id_hash", "content"})


def _json(value: Any) -> Any:
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return None
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    return value


def record_dict(row: object) -> dict[str, Any]:
    """All stored columns of ``row`` (by attribute name), JSON-ready."""
    mapper = inspect(type(row))
    return {
        attr.key: _json(getattr(row, attr.key))
        for attr in mapper.column_attrs
        if attr.key not in _LEFT_OUT
    }


async def running_states(
    session: AsyncSession, company: uuid.UUID, holder: uuid.UUID
) -> tuple[list[str], list[str]]:
    """The states of the holder's policies and of their claims, the rows locked
    until the transaction ends: a bind or a claim racing an erasure either
    commits first (and is seen here) or waits for the erasure."""
    policy_states = list(
        await session.scalars(
            select(PolicyRow.state)
            .where(PolicyRow.company_id == company, PolicyRow.policyholder_id == holder)
            .with_for_update()
        )
    )
    claim_states = list(
        await session.scalars(
            select(ClaimRow.state)
            .join(
                PolicyRow,
                (PolicyRow.company_id == ClaimRow.company_id)
                & (PolicyRow.id == ClaimRow.policy_id),
            )
            .where(ClaimRow.company_id == company, PolicyRow.policyholder_id == holder)
            .with_for_update(of=ClaimRow)
        )
    )
    return policy_states, claim_states


async def all_dependents(
    session: AsyncSession, company: uuid.UUID, holder: uuid.UUID
) -> list[DependentRow]:
    """Every dependent of ``holder``, removed ones too, oldest first."""
    return list(
        await session.scalars(
            select(DependentRow)
            .where(DependentRow.company_id == company, DependentRow.policyholder_id == holder)
            .order_by(DependentRow.create_time, DependentRow.id)
        )
    )


async def _all(session: AsyncSession, stmt: Any) -> list[Any]:
    return list(await session.scalars(stmt))


async def holder_records(
    session: AsyncSession, company: uuid.UUID, holder: PolicyholderRow
) -> dict[str, Sequence[object]]:
    """The rows about ``holder``, by section name (see ExportPersonalDataResponse)."""
    dependents = await all_dependents(session, company, holder.id)
    policies = await _all(
        session,
        select(PolicyRow)
        .where(PolicyRow.company_id == company, PolicyRow.policyholder_id == holder.id)
        .order_by(PolicyRow.create_time, PolicyRow.id),
    )
    policy_ids = [p.id for p in policies]

    async def by_policy(model: Any) -> list[Any]:
        return await _all(
            session,
            select(model)
            .where(model.company_id == company, model.policy_id.in_(policy_ids))
            .order_by(model.policy_id, model.id),
        )

    claims = await by_policy(ClaimRow)
    claim_ids = [c.id for c in claims]

    async def by_claim(model: Any) -> list[Any]:
        return await _all(
            session,
            select(model)
            .where(model.company_id == company, model.claim_id.in_(claim_ids))
            .order_by(model.claim_id, model.id),
        )

    subjects = [f"policies/{i}" for i in policy_ids] + [f"claims/{i}" for i in claim_ids]
    documents = await _all(
        session,
        select(DocumentRow)
        .where(
            DocumentRow.company_id == company,
            or_(
                DocumentRow.subject.in_(subjects),
                *(DocumentRow.subject.startswith(f"policies/{i}/") for i in policy_ids),
            ),
        )
        .order_by(DocumentRow.create_time, DocumentRow.id),
    )
    entity_ids = [str(holder.id)] + [str(i) for i in (*policy_ids, *claim_ids)]
    entity_ids += [str(d.id) for d in dependents]
    audit = await _all(
        session,
        select(AuditEventRow)
        .where(AuditEventRow.company_id == company, AuditEventRow.entity_id.in_(entity_ids))
        .order_by(AuditEventRow.create_time, AuditEventRow.id),
    )
    return {
        "dependents": dependents,
        "policies": policies,
        "policy_versions": await by_policy(PolicyVersionRow),
        "policy_status_changes": await by_policy(PolicyStatusChangeRow),
        "premium_transactions": await by_policy(PremiumTransactionRow),
        "claims": claims,
        "claim_payments": await by_claim(ClaimPaymentRow),
        "claim_log_entries": await by_claim(ClaimLogEntryRow),
        "invoices": await by_policy(InvoiceRow),
        "payments": await by_policy(PaymentRow),
        "documents": documents,
        "audit_events": audit,
    }
