"""What creating or approving a claim reads, in few statements (the hot paths).

``CreateClaim`` used to read through the ORM: the request id, the policy, the
version in effect on the incident date and the product version's coverage,
one round trip each. Here one prepared statement returns all of them, in the
create's own transaction (:meth:`Database.transaction`), with the same rows the
ORM queries return (as composite values, made into the mapped classes by
:func:`from_record`) and the transaction's ``now()``, which is what the
claim's ``create_time`` and ``update_time`` default to. The request id is
claimed first, in the same statement, exactly as
:func:`cardinsa_foundation.idempotency.claim_request_id` claims it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from cardinsa_core.domain.adjudication import Period
from cardinsa_core.repository.models import (
    ApprovalBandsRow,
    ClaimAccumulatorRow,
    ClaimRow,
    ClaimSettingsRow,
    CoverageRow,
    PolicyRow,
    PolicyVersionRow,
)
from cardinsa_foundation.row_batch import from_record

__all__ = [
    "ApprovalFacts",
    "CoverFacts",
    "CreateFacts",
    "lock_accumulator_rows",
    "read_approval_facts",
    "read_cover_facts",
    "read_create_facts",
]

_FACTS: Final = """
SELECT now() AS now,
       p AS policy,
       (SELECT v FROM core.policy_versions v
         WHERE v.company_id = p.company_id AND v.policy_id = p.id AND v.effective_date <= $3
         ORDER BY v.version DESC LIMIT 1) AS version,
       (SELECT c FROM core.coverages c
          JOIN core.product_versions pv
            ON pv.company_id = c.company_id AND pv.id = c.product_version_id
         WHERE c.company_id = p.company_id AND pv.product_id = p.product_id
           AND pv.version = p.product_version AND c.code = $4
         ORDER BY c.position LIMIT 1) AS coverage
  FROM core.policies p
 WHERE p.company_id = $1 AND p.id = $2
"""

# The same, after claiming the request id ($5 method, $6 request id, $7 the new
# claim's id, $8 the request's fingerprint): ``claimed`` is false when a first
# call holds it (then nothing else was read).
_FACTS_WITH_KEY: Final = f"""
WITH k AS (
  INSERT INTO core.idempotency_keys (company_id, method, request_id, resource_id, request_hash)
  VALUES ($1, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING 1
), facts AS ({_FACTS})
SELECT EXISTS (SELECT FROM k) AS claimed, facts.* FROM facts RIGHT JOIN (SELECT) one ON true
"""  # noqa: S608 (composed from constant text only)


@dataclass(frozen=True, slots=True)
class CreateFacts:
    #: False: the request id was used before (answer as the first call did).
    claimed: bool
    #: The transaction's time (what ``now()`` gives every default in it).
    now: datetime | None
    policy: PolicyRow | None
    version: PolicyVersionRow | None
    coverage: CoverageRow | None


def _row(model: type[Any], value: Any) -> Any:
    return None if value is None else from_record(model, value)


async def read_create_facts(
    connection: Any,
    *,
    company: uuid.UUID,
    policy_id: uuid.UUID,
    incident: date,
    coverage_code: str,
    key: tuple[str, str, str, str | None] | None,
) -> CreateFacts:
    """The policy, its version on ``incident`` and the product's coverage
    ``coverage_code`` (None where missing), after claiming ``key`` (method,
    request id, resource id, fingerprint) when given."""
    arguments: list[Any] = [company, policy_id, incident, coverage_code]
    if key is None:
        record = await connection.fetchrow(_FACTS, *arguments)
        claimed = True
    else:
        record = await connection.fetchrow(_FACTS_WITH_KEY, *arguments, *key)
        claimed = bool(record["claimed"])
        if not claimed:
            return CreateFacts(False, None, None, None, None)
    if record is None or record["policy"] is None:
        return CreateFacts(claimed, None, None, None, None)
    return CreateFacts(
        claimed,
        record["now"],
        from_record(PolicyRow, record["policy"]),
        _row(PolicyVersionRow, record["version"]),
        _row(CoverageRow, record["coverage"]),
    )


# The same rows, the policy held FOR SHARE (a money step of an existing claim).
_COVER: Final = _FACTS + "   FOR SHARE OF p\n"


@dataclass(frozen=True, slots=True)
class CoverFacts:
    policy: PolicyRow | None
    version: PolicyVersionRow | None
    coverage: CoverageRow | None


async def read_cover_facts(
    connection: Any,
    *,
    company: uuid.UUID,
    policy_id: uuid.UUID,
    incident: date,
    coverage_code: str,
) -> CoverFacts:
    """A claim's cover at a money step, in one statement: the policy held ``FOR
    SHARE`` (until the transaction ends), its version on ``incident`` and the
    product's coverage ``coverage_code`` (None where missing)."""
    record = await connection.fetchrow(_COVER, company, policy_id, incident, coverage_code)
    if record is None:
        return CoverFacts(None, None, None)
    return CoverFacts(
        from_record(PolicyRow, record["policy"]),
        _row(PolicyVersionRow, record["version"]),
        _row(CoverageRow, record["coverage"]),
    )


# What a claim's hot transition reads first, in one statement: the request id
# claimed ($4 method, $5 request id, $6 fingerprint; the resource id is the
# claim's), the company's bands in currency $3 (empty: the claim's currency),
# its claim settings, and the claim itself, locked FOR UPDATE; and the
# transaction's now().
_APPROVAL: Final = """
SELECT {claimed} AS claimed, now() AS now,
       (SELECT b FROM core.approval_bands b
         WHERE b.company_id = $1
           AND b.currency = coalesce(nullif($3, ''), (SELECT c.currency FROM core.claims c
                                                       WHERE c.company_id = $1 AND c.id = $2))
       ) AS bands,
       (SELECT s FROM core.claim_settings s WHERE s.company_id = $1) AS settings,
       (SELECT c FROM core.claims c WHERE c.company_id = $1 AND c.id = $2 FOR UPDATE) AS claim
"""
_APPROVAL_WITHOUT_KEY: Final = _APPROVAL.format(claimed="true")
_APPROVAL_WITH_KEY: Final = """
WITH k AS (
  INSERT INTO core.idempotency_keys (company_id, method, request_id, resource_id, request_hash)
  VALUES ($1, $4, $5, $2::uuid::text, $6) ON CONFLICT DO NOTHING RETURNING 1
)""" + _APPROVAL.format(claimed="EXISTS (SELECT FROM k)")  # noqa: S608 (constant text)


@dataclass(frozen=True, slots=True)
class ApprovalFacts:
    #: False: the request id was used before (nothing else may be trusted: replay).
    claimed: bool
    now: datetime
    bands: ApprovalBandsRow | None
    settings: ClaimSettingsRow | None
    #: The claim, locked until the transaction ends (None: no such claim).
    claim: ClaimRow | None


async def read_approval_facts(
    connection: Any,
    *,
    company: uuid.UUID,
    claim_id: uuid.UUID,
    currency: str,
    key: tuple[str, str, str] | None,
) -> ApprovalFacts:
    """What a transition of ``claim_id`` reads first, in one statement (the
    bands of ``currency``, or of the claim's currency when empty), after
    claiming ``key`` (method, request id, fingerprint) when given -- exactly as
    :func:`cardinsa_foundation.idempotency.claim_request_id` claims it, with
    the claim's id as the resource."""
    if key is None:
        record = await connection.fetchrow(_APPROVAL_WITHOUT_KEY, company, claim_id, currency)
    else:
        record = await connection.fetchrow(_APPROVAL_WITH_KEY, company, claim_id, currency, *key)
    return ApprovalFacts(
        bool(record["claimed"]),
        record["now"],
        _row(ApprovalBandsRow, record["bands"]),
        _row(ClaimSettingsRow, record["settings"]),
        _row(ClaimRow, record["claim"]),
    )


# The accumulators of the periods ($2.. in sets of four: scope, member,
# coverage, start; $1 the company), created when missing and locked, in one
# statement: a conflicting row is "updated" to itself, which locks it as FOR
# UPDATE would and returns it as it is now. The VALUES come sorted, so two
# approvals lock shared rows in one order and queue instead of deadlocking.
_LOCK_ACCUMULATORS: Final = """
INSERT INTO core.claim_accumulators AS a
       (id, company_id, scope_id, member_id, coverage_code, period_start, period_end,
        currency, deductible_used, limit_used)
VALUES {rows}
ON CONFLICT (company_id, scope_id, member_id, coverage_code, period_start)
DO UPDATE SET currency = a.currency
RETURNING a.*
"""


def _period_key(period: Period) -> tuple[uuid.UUID, uuid.UUID, str, date]:
    return (period.scope_id, period.member_id, period.coverage_code, period.start)


async def lock_accumulator_rows(
    connection: Any, company: uuid.UUID, periods: list[Period], currency: str
) -> dict[Period, ClaimAccumulatorRow]:
    """The accumulators of ``periods`` (new ones at zero in ``currency``),
    locked until the transaction ends, as mapped rows in no session."""
    unique = sorted(set(periods), key=_period_key)
    if not unique:
        return {}
    arguments: list[Any] = [company]
    rows: list[str] = []
    for period in unique:
        base = len(arguments)
        arguments += [
            uuid.uuid4(),
            period.scope_id,
            period.member_id,
            period.coverage_code,
            period.start,
            period.end,
            currency,
        ]
        rows.append(
            f"(${base + 1}, $1, ${base + 2}, ${base + 3}, ${base + 4}, ${base + 5}, "
            f"${base + 6}, ${base + 7}, 0, 0)"
        )
    records = await connection.fetch(_LOCK_ACCUMULATORS.format(rows=", ".join(rows)), *arguments)
    found = {
        (r.scope_id, r.member_id, r.coverage_code, r.period_start): r
        for r in (from_record(ClaimAccumulatorRow, record) for record in records)
    }
    return {p: found[_period_key(p)] for p in periods}
