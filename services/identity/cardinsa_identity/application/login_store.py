"""Login's database work: one statement in each of its two transactions.

Login is the one call whose cost is meant to be the password hash: its
throughput should be close to what argon2 alone allows on the same cores.
Through the ORM, the two transactions around the hash would take sixteen round
trips (reserve account, reserve address, find the user; then lock the user,
update it, clear the account counter, read the roles, insert the session, the
refresh token and the audit row), and that event-loop CPU competes with the
hash threads for the same cores (docs/performance.md has the figures).

Here each transaction is a ``Database.transaction`` (no ORM session; BEGIN with
the tenant for row-level security as one round trip, one prepared statement with
the work, COMMIT; a connection that fails in any way is discarded). Nothing
about the rules of login changes:

- ``reserve_and_find_user``: the same reservation upsert as
  :func:`throttle.reserve_attempt` (one definition, :func:`throttle.reserve_sql`)
  for the account and for the account from this client address, and the user
  lookup, in one statement; what the counters mean (and locking a key over its
  limit) stays in :func:`throttle.settle`, and a new lock gets its
  ``login.lockout`` audit row in the same transaction. The client address
  alone is counted after a failure (``AuthUseCases.login``), never before.
- ``complete_login``: the user row is updated only if it is still active and
  not deleted (the UPDATE takes the row lock the ORM's ``SELECT ... FOR
  UPDATE`` took, and re-checks the row under it), and only then are the
  account's two counters cleared (kept only for other attempts still being
  checked), the session, its refresh token and the audit row (built by the
  service's :class:`AuditWriter`, same content as ``record``) inserted and the
  roles read. No row comes back when the user can no longer log in.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cardinsa_foundation.audit import AuditWriter
from cardinsa_foundation.db import Database
from cardinsa_identity.application import throttle
from cardinsa_identity.application.context import AMR_PASSWORD, grants_under_policy
from cardinsa_identity.application.revocations import SUBJECT_LOCK_SHARED_SQL
from cardinsa_identity.domain.users import UserState
from cardinsa_identity.repository.models import AuditEventRow

__all__ = [
    "LoginAttempt",
    "LoginUser",
    "NewSession",
    "complete_login",
    "reserve_and_find_user",
]

# Composed from constant text only (placeholders, no values).
_RESERVE_AND_FIND_USER: Final = f"""
WITH reserved AS ({
    throttle.reserve_sql(
        "($1::text, $2::text, 0, $5::timestamptz, NULL, 0, 1), "
        "($3::text, $4::text, 0, $5::timestamptz, NULL, 0, 1)",
        "$5::timestamptz",
        "$6::float8",
    )
})
SELECT r.scope, r.key, r.failures, r.pending, r.locked_until, r.lock_count,
       u.id AS user_id, u.company_id, u.state, u.password_hash, u.must_change_password,
       EXISTS (SELECT FROM identity.user_mfa m
                WHERE m.user_id = u.id AND m.confirm_time IS NOT NULL) AS mfa_enabled
  FROM reserved r
  LEFT JOIN identity.users u
    ON r.scope = $1::text AND u.email = $2::text AND u.delete_time IS NULL
"""  # noqa: S608

_LOCK: Final = throttle.lock_sql("$1::text", "$2::text", "$3::timestamptz", "$4::timestamptz")
_GIVE_BACK: Final = throttle.give_back_sql("$1::text", "$2::text")

_AUDIT_COLUMNS: Final = (
    "id, company_id, actor_id, on_behalf_of_id, action, entity_type, entity_id, "
    "changed_fields, request_id, detail"
)
_AUDIT_VALUES: Final = (
    "$1::uuid, $2::uuid, $3::text, $4::text, $5::text, $6::text, $7::text, "
    "$8::text[], $9::text, $10::jsonb"
)
_INSERT_AUDIT: Final = (
    f"INSERT INTO identity.audit_events ({_AUDIT_COLUMNS}) VALUES ({_AUDIT_VALUES})"  # noqa: S608
)

_COMPLETE_LOGIN: Final = f"""
WITH account AS (
    UPDATE identity.users
       SET last_login_time = $13::timestamptz,
           password_hash = COALESCE($15::text, password_hash),
           update_time = now(),
           updated_by = $11::uuid,
           version = version + 1
     -- The password checked is still the account's: a change (or reset) since
     -- revoked every session, and this login must not open one after it.
     WHERE id = $11::uuid AND delete_time IS NULL AND state = $22::text
       AND password_hash = $14::text
    RETURNING id, company_id
), held AS (
    -- The account's two counters, locked in the order the reservation takes
    -- them (account, then the account from this address): a login completing
    -- and one reserving for the same account and address cannot deadlock.
    SELECT scope, key, pending FROM identity.login_throttles
     WHERE ((scope = $23::text AND key = $12::text) OR (scope = $24::text AND key = $25::text))
       AND EXISTS (SELECT FROM account)
     ORDER BY scope
       FOR UPDATE
), cleared AS (
    DELETE FROM identity.login_throttles t USING held h
     WHERE t.scope = h.scope AND t.key = h.key AND h.pending <= 1
), released AS (
    -- Other attempts are being checked: keep them counted, clear the rest.
    UPDATE identity.login_throttles t
       SET failures = 0, pending = h.pending - 1, locked_until = NULL, lock_count = 0
      FROM held h
     WHERE t.scope = h.scope AND t.key = h.key AND h.pending > 1
), opened AS (
    INSERT INTO identity.sessions
        (id, company_id, user_id, last_use_time, idle_expire_time, expire_time,
         client_address, user_agent, amr)
    SELECT $16::uuid, company_id, id, $13::timestamptz, $17::timestamptz, $18::timestamptz,
           $19::text, $20::text, $26::text[]
      FROM account
    RETURNING id, company_id
), refresh AS (
    INSERT INTO identity.refresh_tokens (token_hash, session_id, company_id)
    SELECT $21::text, id, company_id FROM opened
), audited AS (
    INSERT INTO identity.audit_events ({_AUDIT_COLUMNS})
    SELECT {_AUDIT_VALUES} FROM opened
)
SELECT r.name, r.permissions, r.built_in,
       (SELECT p.required_roles FROM identity.mfa_policies p
         WHERE p.company_id = a.company_id) AS mfa_roles
  FROM account a
  LEFT JOIN identity.role_bindings b ON b.user_id = a.id
  LEFT JOIN identity.roles r ON r.id = b.role_id AND r.delete_time IS NULL
"""  # noqa: S608


def _audit_arguments(row: AuditEventRow) -> tuple[Any, ...]:
    """`_AUDIT_VALUES` of a row from `AuditWriter.build`."""
    return (
        row.id,
        row.company_id,
        row.actor_id,
        row.on_behalf_of_id,
        row.action,
        row.entity_type,
        row.entity_id,
        row.changed_fields,
        row.request_id,
        json.dumps(row.detail),
    )


def _uuid(value: Any) -> uuid.UUID:
    return value if type(value) is uuid.UUID else uuid.UUID(str(value))


@dataclass(frozen=True, slots=True)
class LoginUser:
    """What login needs of the account an email names."""

    id: uuid.UUID
    company_id: uuid.UUID
    state: str
    password_hash: str
    # A step before tokens: the password was set by an administrator, or a
    # second factor is confirmed.
    must_change_password: bool = False
    mfa_enabled: bool = False


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """A reserved attempt: the user (None for an unknown email) and what the
    reservation means (``verdict.go``: check the password)."""

    user: LoginUser | None
    verdict: throttle.Verdict


async def reserve_and_find_user(
    db: Database,
    audit: AuditWriter[AuditEventRow],
    policy: throttle.ThrottlePolicy,
    *,
    email_key: str,
    address: str,
    now: datetime,
) -> LoginAttempt:
    """Reserve an attempt on the account and on the account from the client
    address and find the account, in one cross-tenant transaction that commits
    at once (see :func:`throttle.reserve_attempt`); a key this attempt locks
    gets its ``login.lockout`` audit row in the same transaction."""
    pair = throttle.pair_key(email_key, address)
    async with db.transaction(company_id=None, cross_tenant=True) as connection:
        records = await connection.fetch(
            _RESERVE_AND_FIND_USER,
            throttle.ACCOUNT,
            email_key,
            throttle.ACCOUNT_ADDRESS,
            pair,
            now,
            policy.window.total_seconds(),
        )
        by_scope = {record["scope"]: record for record in records}
        user: LoginUser | None = None
        reservations = []
        for scope, key in ((throttle.ACCOUNT, email_key), (throttle.ACCOUNT_ADDRESS, pair)):
            record = by_scope[scope]
            reservations.append(
                throttle.Reservation(
                    scope,
                    key,
                    record["failures"],
                    record["pending"],
                    record["locked_until"],
                    record["lock_count"],
                )
            )
            if scope == throttle.ACCOUNT and record["user_id"] is not None:
                user = LoginUser(
                    id=_uuid(record["user_id"]),
                    company_id=_uuid(record["company_id"]),
                    state=record["state"],
                    password_hash=record["password_hash"],
                    must_change_password=bool(record["must_change_password"]),
                    mfa_enabled=bool(record["mfa_enabled"]),
                )

        async def place_lock(scope: str, key: str, until: datetime, at: datetime) -> bool:
            return await connection.fetchrow(_LOCK, scope, key, until, at) is not None

        async def give_back(scope: str, key: str) -> None:
            await connection.execute(_GIVE_BACK, scope, key)

        verdict = await throttle.settle(policy, reservations, now, place_lock, give_back)
        for scope, _key in verdict.newly_locked:
            row = audit.build(
                action="login.lockout",
                entity_type="user",
                entity_id=user.id if user else None,
                company_id=user.company_id if user else None,
                detail={"scope": scope, "client_address": address},
            )
            await connection.execute(_INSERT_AUDIT, *_audit_arguments(row))
    return LoginAttempt(user, verdict)


@dataclass(frozen=True, slots=True)
class NewSession:
    """The session row login opens (its refresh token is stored as a hash)."""

    id: uuid.UUID
    last_use_time: datetime
    idle_expire_time: datetime
    expire_time: datetime
    client_address: str | None
    user_agent: str | None
    refresh_token_hash: str


async def complete_login(
    db: Database,
    *,
    user: LoginUser,
    email_key: str,
    address: str,
    new_password_hash: str | None,
    opened: NewSession,
    audit: AuditEventRow,
    amr: tuple[str, ...] = AMR_PASSWORD,
) -> tuple[list[str], frozenset[str], frozenset[str], datetime] | None:
    """Record a successful login of a still-active ``user``, in its company's
    transaction: last login time (and the upgraded hash), the account's
    counters cleared (from every address and from this one), the session with
    its refresh token, the audit row. Returns the user's roles and permissions
    and the access token's issue instant (taken under the user's subject lock
    before the roles are read: see revocations.issue_instant), or None
    (nothing written) when the account is no longer active, was deleted
    or had its password changed since the password was checked. The session
    records ``amr``; the grants follow the company's MFA policy
    (`grants_under_policy`): the third item is what the token holds back."""
    async with db.transaction(company_id=user.company_id) as connection:
        await connection.execute(SUBJECT_LOCK_SHARED_SQL, str(user.id))
        issued = datetime.now(UTC)
        records = await connection.fetch(
            _COMPLETE_LOGIN,
            *_audit_arguments(audit),
            user.id,
            email_key,
            opened.last_use_time,
            user.password_hash,
            new_password_hash,
            opened.id,
            opened.idle_expire_time,
            opened.expire_time,
            opened.client_address,
            opened.user_agent,
            opened.refresh_token_hash,
            UserState.ACTIVE.value,
            throttle.ACCOUNT,
            throttle.ACCOUNT_ADDRESS,
            throttle.pair_key(email_key, address),
            list(amr),
        )
    if not records:
        return None
    roles, permissions, held = grants_under_policy(
        (
            (record["name"], record["permissions"], record["built_in"])
            for record in records
            if record["name"] is not None
        ),
        frozenset(records[0]["mfa_roles"] or ()),
        amr,
    )
    return roles, permissions, held, issued
