"""Dated policy transitions, made by the system on time: the lifecycle scheduler's
use case (the process around it is :mod:`cardinsa_core.scheduler`).

One pass moves everything due up to the clock's "today" -- each company's own
date in its time zone (:meth:`CoreContext.company_today`):

- BOUND -> IN_FORCE on the effective date (``activate``);
- CANCEL_PENDING -> CANCELLED on the cancellation's effective date
  (``complete_cancellation``);
- the renewal offer (a QUOTED successor) ``renewal_offer_days`` before expiry
  for an IN_FORCE policy without a successor and not marked ``do_not_renew``
  (``renew``);
- IN_FORCE -> EXPIRED the day after the expiry date (``expire``);
- billing: invoices unpaid after their due date become OVERDUE
  (``mark_overdue``, :meth:`Billing.mark_overdue`), and an IN_FORCE policy
  with an invoice unpaid past its product's grace period lapses
  (``lapse_non_payment``, through :meth:`PolicyUseCases.lapse` from the
  scheduler's today, note ``non-payment``; docs/billing.md).

In that order per company, so one pass catches up a chain (a policy bound long
ago and past its term is activated, offered its renewal, then expired).

Finding the companies is the only cross-tenant read (the platform role: company
ids only, :func:`companies_with_live_policies`). Everything else runs in the
company's own tenant context, as the system principal
``system:lifecycle-scheduler`` of that company, through the same
:class:`PolicyUseCases` methods a user's call runs: the status log, the policy
versions and the audit event record it like a user's change (actor
``system:lifecycle-scheduler``).

Every transition carries a deterministic request id, UUIDv5 of (kind, policy
id, due date), claimed in the transition's own transaction: a transition cut
off by a crash rolled back with its request id and is made by the next pass; a
second call of one that committed (a second scheduler that read the same etag)
returns the policy as it is instead of acting twice. A policy that moved in
between (someone else acted) no longer matches the due query, or fails its etag
check (ABORTED) and is looked at again in the next pass.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cardinsa_core.application.billing import NON_PAYMENT_NOTE, Billing
from cardinsa_core.application.context import CoreContext, local_date
from cardinsa_core.application.policies import PolicyUseCases
from cardinsa_core.repository.lifecycle import (
    BILLING_KINDS,
    DueKind,
    DuePolicy,
    companies_with_live_policies,
    due_for_billing,
    due_policies,
)
from cardinsa_core.repository.models import PolicyRow
from cardinsa_foundation.context import (
    Principal,
    PrincipalKind,
    principal_var,
    request_id_var,
)
from cardinsa_foundation.errors import CardinsaError

log = logging.getLogger(__name__)

__all__ = [
    "KIND_ORDER",
    "REQUEST_ID_NAMESPACE",
    "SYSTEM_SUBJECT",
    "LifecycleRunner",
    "PassReport",
    "request_id_for",
    "system_principal",
]

SYSTEM_SUBJECT = "system:lifecycle-scheduler"
#: The namespace of the scheduler's request ids (UUIDv5); never change it, or a
#: replay after an upgrade would act again instead of answering as before.
REQUEST_ID_NAMESPACE = uuid.UUID("6c1f0a52-8f0e-5b7e-9d0c-3a4e1f2b7c10")
#: Per company, in this order (see the module docstring).
KIND_ORDER = (
    DueKind.ACTIVATE,
    DueKind.COMPLETE_CANCELLATION,
    DueKind.RENEW,
    DueKind.EXPIRE,
    # After expiry: a policy past its term ends as EXPIRED, not LAPSED.
    DueKind.MARK_OVERDUE,
    DueKind.LAPSE_NON_PAYMENT,
)
_TARGET_STATE = {
    DueKind.ACTIVATE: "IN_FORCE",
    DueKind.COMPLETE_CANCELLATION: "CANCELLED",
    DueKind.EXPIRE: "EXPIRED",
    DueKind.LAPSE_NON_PAYMENT: "LAPSED",
}


def request_id_for(kind: DueKind, policy_id: uuid.UUID, due_date: date, etag: str) -> str:
    """The transition's request id: the same for every attempt of it on the
    policy as it was read (its etag), so a crash or a second replica replays
    the transition, while a policy that changed since (a cancellation completed,
    reinstated and scheduled again for the same day) gets a fresh one."""
    key = f"{kind.value}:{policy_id}:{due_date}:{etag}"
    return str(uuid.uuid5(REQUEST_ID_NAMESPACE, key))


def system_principal(company_id: uuid.UUID) -> Principal:
    """The scheduler acting in ``company_id`` (no permissions: the dated
    transitions need none; an override of claim cover is never made)."""
    return Principal(
        subject=SYSTEM_SUBJECT,
        kind=PrincipalKind.SERVICE_ACCOUNT,
        company_id=str(company_id),
    )


@contextmanager
def acting_as(principal: Principal, request_id: str) -> Iterator[None]:
    """The request context of one transition, as an interceptor sets it for a call."""
    principal_token = principal_var.set(principal)
    request_token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(request_token)
        principal_var.reset(principal_token)


@dataclass
class PassReport:
    """What one pass did."""

    #: Transitions made, by kind.
    transitions: Counter[str] = field(default_factory=Counter)
    #: Transitions that failed, by (kind, reason); they are tried again next pass.
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Due items whose call changed nothing (an earlier call with the same request
    #: id answered with the policy as it is, and it is not in the target state).
    skipped: Counter[str] = field(default_factory=Counter)
    #: Companies whose facts could not be read (their policies wait).
    companies_failed: int = 0
    companies: int = 0
    #: The oldest due item seen at the start of the pass, as the clock's instant of
    #: the start of its due date in its company's time zone (None: nothing due).
    oldest_due: datetime | None = None
    #: The oldest due item still due after the pass (failed or left for lack of time).
    oldest_left: datetime | None = None
    #: The pass stopped early (leadership lost, or asked to stop).
    interrupted: bool = False

    @property
    def total(self) -> int:
        return sum(self.transitions.values())


def _start_of(day: date, time_zone: str) -> datetime:
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def _older(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


#: Called before each transition: False stops the pass (leadership lost, SIGTERM).
KeepGoing = Callable[[], Awaitable[bool]]
#: Called after each transition, failure or skip: (kind, outcome, reason).
Observer = Callable[[DueKind, str, str], None]


class LifecycleRunner:
    """One pass at a time over every company's due transitions."""

    def __init__(
        self,
        ctx: CoreContext,
        policies: PolicyUseCases,
        *,
        batch_size: int = 100,
        observe: Observer | None = None,
        only_companies: Sequence[uuid.UUID] = (),
    ) -> None:
        self.ctx = ctx
        self.policies = policies
        self.billing = Billing(ctx)
        self.batch_size = batch_size
        self._observe = observe
        #: Restrict the passes to these companies (no cross-tenant read at all).
        self.only_companies = sorted(set(only_companies))

    async def run_pass(self, keep_going: KeepGoing | None = None) -> PassReport:
        """Everything due up to the clock's now, company by company, in batches."""
        report = PassReport()
        if self.only_companies:
            companies = list(self.only_companies)
        else:
            async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
                companies = await companies_with_live_policies(session)
        report.companies = len(companies)
        for company in companies:
            if not await self._company(company, report, keep_going):
                report.interrupted = True
                break
        return report

    async def _company(
        self, company: uuid.UUID, report: PassReport, keep_going: KeepGoing | None
    ) -> bool:
        try:
            facts = await self.ctx.facts(company)
        except CardinsaError as error:
            # A suspended or closed tenant (or the company service unreachable):
            # its policies wait for the next pass; the lag metric shows it.
            log.warning(
                "skipping a company: its facts could not be read",
                extra={"company_id": str(company), "reason": error.reason},
            )
            report.companies_failed += 1
            return True
        today = local_date(self.ctx.clock(), facts.time_zone)
        for kind in KIND_ORDER:
            after: tuple[date, uuid.UUID] | None = None
            while True:
                async with self.ctx.db.unit_of_work(company_id=company) as session:
                    if kind in BILLING_KINDS:
                        batch = await due_for_billing(
                            session, company, kind, today=today, after=after, limit=self.batch_size
                        )
                    else:
                        batch = await due_policies(
                            session,
                            company,
                            kind,
                            today=today,
                            renewal_offer_days=facts.renewal_offer_days,
                            after=after,
                            limit=self.batch_size,
                        )
                if after is None and batch:
                    report.oldest_due = _older(
                        report.oldest_due, _start_of(batch[0].due_date, facts.time_zone)
                    )
                for item in batch:
                    if keep_going is not None and not await keep_going():
                        report.oldest_left = _older(
                            report.oldest_left, _start_of(item.due_date, facts.time_zone)
                        )
                        return False
                    if not await self._act(item, report):
                        report.oldest_left = _older(
                            report.oldest_left, _start_of(item.due_date, facts.time_zone)
                        )
                if len(batch) < self.batch_size:
                    break
                after = (batch[-1].due_date, batch[-1].policy_id)
        return True

    async def _act(self, item: DuePolicy, report: PassReport) -> bool:
        """Make one transition; False when it failed (it stays due)."""
        request_id = request_id_for(item.kind, item.policy_id, item.due_date, item.etag)
        fields = {
            "kind": item.kind.value,
            "policy_id": str(item.policy_id),
            "company_id": str(item.company_id),
            "due_date": item.due_date.isoformat(),
        }
        try:
            with acting_as(system_principal(item.company_id), request_id):
                moved = await self._call(item, request_id)
        except CardinsaError as error:
            report.failures[(item.kind.value, error.reason)] += 1
            self._note(item.kind, "failure", error.reason)
            log.warning(
                "a due transition failed; it is tried again next pass",
                extra={**fields, "reason": error.reason, "error": error.message},
            )
            return False
        except Exception:
            report.failures[(item.kind.value, "INTERNAL")] += 1
            self._note(item.kind, "failure", "INTERNAL")
            log.exception("a due transition failed; it is tried again next pass", extra=fields)
            return False
        if moved:
            report.transitions[item.kind.value] += 1
            self._note(item.kind, "transition", "")
            log.info("policy moved on its date", extra=fields)
        else:
            report.skipped[item.kind.value] += 1
            self._note(item.kind, "skipped", "")
            log.warning(
                "a due transition changed nothing: its request id was used before",
                extra=fields,
            )
        return True

    async def _call(self, item: DuePolicy, request_id: str) -> bool:
        """The use case of ``item``; whether this call moved the policy."""
        policy_id, etag = str(item.policy_id), item.etag
        if item.kind is DueKind.RENEW:
            row, _successor = await self.policies.renew(policy_id, etag, request_id)
            return _renewed_now(row)
        if item.kind is DueKind.MARK_OVERDUE:
            return await self.billing.mark_overdue(policy_id, etag, request_id) > 0
        if item.kind is DueKind.LAPSE_NON_PAYMENT:
            row = await self.policies.lapse(policy_id, etag, request_id, None, NON_PAYMENT_NOTE)
        elif item.kind is DueKind.ACTIVATE:
            row = await self.policies.activate(policy_id, etag, request_id)
        elif item.kind is DueKind.EXPIRE:
            row = await self.policies.expire(policy_id, etag, request_id)
        else:
            row = await self.policies.complete_cancellation(policy_id, etag, request_id)
        return row.state == _TARGET_STATE[item.kind] and row.etag != etag

    def _note(self, kind: DueKind, outcome: str, reason: str) -> None:
        if self._observe is not None:
            self._observe(kind, outcome, reason)


def _renewed_now(row: PolicyRow) -> bool:
    return row.successor_policy_id is not None
