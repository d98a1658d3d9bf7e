"""Login, token refresh, logout, passwords and API-key exchange.

Rules that matter here (docs/architecture.md, "Security model"):
- an unknown email and a wrong password get the same answer and cost the same
  hashing work;
- only failed logins count: per account and per account from one client
  address before the password is checked (a correct password is refused only
  by a lock on its own account), per client address after a failure (failing
  guesses from a busy address are refused, correct passwords are not); see
  ``throttle``;
- refresh tokens are opaque, stored as hashes, single-use; presenting a used
  one revokes the whole session (family) and is audited;
- password change, reset, lock and deactivation revoke every session;
- reset tokens are stored as hashes, single-use, expire, and go to the user
  through the notifier, never to the log or the response; reset requests are
  limited per client address and per account and wait in a bounded queue, with
  the same answer whatever happens to them;
- the other public calls write only for a caller holding a valid token or key
  (RefreshToken, ConfirmPasswordReset, ExchangeApiKey): an invalid one costs a
  stranger one indexed read and a SHA-256 at most, within the gateway's rate
  limit, and writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation import metrics
from cardinsa_foundation.context import Principal, PrincipalKind, client_address_var, principal_var
from cardinsa_foundation.errors import (
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from cardinsa_foundation.use_cases import require_principal
from cardinsa_identity.application import login_store, throttle
from cardinsa_identity.application.context import (
    AMR_PASSWORD,
    AMR_PASSWORD_AND_OTP,
    IdentityContext,
    token_grants,
)
from cardinsa_identity.application.login_store import LoginUser, NewSession
from cardinsa_identity.application.revocations import issue_instant, revoke_sessions
from cardinsa_identity.application.second_factor import accept_recovery_code, accept_totp_code
from cardinsa_identity.domain.api_keys import parse_api_key, verify_api_key_secret
from cardinsa_identity.domain.password_policy import check_password
from cardinsa_identity.domain.permissions import ALL_PERMISSIONS
from cardinsa_identity.domain.tokens import (
    OpaqueTokenKind,
    build_access_claims,
    hash_opaque_token,
    is_well_formed_opaque_token,
    new_opaque_token,
    sign_access_token,
)
from cardinsa_identity.domain.users import UserState, check_email, normalize_email
from cardinsa_identity.repository import users as users_repo
from cardinsa_identity.repository.models import (
    LoginChallengeRow,
    PasswordResetRow,
    RefreshTokenRow,
    ServiceAccountRow,
    SessionRow,
    UserMfaRow,
    UserRow,
)
from cardinsa_identity.repository.service_accounts import find_api_key_by_prefix

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
# An attempt finding as many attempts on its account being checked as may still
# fail waits this long between tries, this many times, before it is refused.
BUSY_WAIT_S = 0.1
BUSY_RETRIES = 30


def _invalid_credentials() -> Unauthenticated:
    return Unauthenticated("the email or password is not correct", reason=INVALID_CREDENTIALS)


def _invalid_refresh_token() -> Unauthenticated:
    return Unauthenticated(
        "the refresh token is not valid; log in again", reason="INVALID_REFRESH_TOKEN"
    )


def _dropped_reset(limit: str) -> None:
    """A password-reset request a limit dropped: counted and logged (without the
    email), the caller's answer unchanged."""
    metrics.IDENTITY_THROTTLED.labels(action="password_reset", reason=limit).inc()
    log.warning("password-reset request dropped", extra={"limit": limit})


def _required(**fields: str) -> None:
    missing = [FieldViolation(name, "required") for name, value in fields.items() if not value]
    if missing:
        raise InvalidArgument("required fields are missing", field_violations=missing)


@dataclass
class _Outcome:
    """Whether a reserved login attempt was counted (failure) or cleared (success)."""

    decided: bool = False


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    access_expire_time: datetime
    expires_in: timedelta
    refresh_token: str = ""
    refresh_expire_time: datetime | None = None
    session_id: str = ""
    amr: tuple[str, ...] = ()


class ChallengeKind(StrEnum):
    """Values match `cardinsa.identity.v1.AuthChallenge.Kind` names."""

    MFA_TOTP = "MFA_TOTP"
    NEW_PASSWORD_REQUIRED = "NEW_PASSWORD_REQUIRED"  # noqa: S105 - a kind, not a secret


@dataclass(frozen=True)
class IssuedChallenge:
    """A login's next step instead of tokens: answer it with `respond_to_challenge`."""

    kind: ChallengeKind
    session: str
    expire_time: datetime


def _invalid_challenge() -> Unauthenticated:
    return Unauthenticated(
        "the login challenge is not valid, was used or has expired; log in again",
        reason="INVALID_CHALLENGE",
    )


def password_fingerprint(password_hash: str) -> str:
    """What a challenge keeps of the password hash it was issued for (a change
    of password since voids it): SHA-256, so the hash itself is not copied."""
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()


def _as_user_principal(user: UserRow | LoginUser, session_id: uuid.UUID | None = None) -> Principal:
    return Principal(
        subject=str(user.id),
        kind=PrincipalKind.USER,
        company_id=str(user.company_id),
        session_id=str(session_id) if session_id else None,
    )


async def revoke_user_sessions(session: AsyncSession, user_id: uuid.UUID, reason: str) -> int:
    """Revoke every open session of a user: their refresh tokens stop working,
    and so do their access tokens (a revocation per session, streamed to every
    service)."""
    revoked = await users_repo.revoke_open_sessions(session, user_id, datetime.now(UTC), reason)
    await revoke_sessions(session, revoked, reason)
    return len(revoked)


async def void_password_resets(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Mark every outstanding reset token of a user used: after a password or
    email change, a token mailed before it (perhaps to an address the user no
    longer controls) must not undo the change."""
    await users_repo.use_open_resets(session, user_id, datetime.now(UTC))


class AuthUseCases:
    def __init__(self, ctx: IdentityContext) -> None:
        self.ctx = ctx
        settings = ctx.settings
        self.policy = throttle.ThrottlePolicy(
            max_failures_per_account=settings.login_max_failures_per_account,
            max_failures_per_address=settings.login_max_failures_per_address,
            window=timedelta(seconds=settings.login_failure_window_s),
            lock_base=timedelta(seconds=settings.login_lock_base_s),
            lock_max=timedelta(seconds=settings.login_lock_max_s),
            account_wait_max=timedelta(seconds=settings.login_account_wait_max_s),
        )
        self.access_ttl = timedelta(seconds=settings.access_token_ttl_s)
        # Password-reset requests waiting for their message, and the one worker
        # that issues them (started by the first request).
        self._resets: asyncio.Queue[tuple[str, str]] = asyncio.Queue(
            maxsize=settings.password_reset_queue_size
        )
        self._reset_worker: asyncio.Task[None] | None = None
        # Stale throttle counters are purged at most this often (per process),
        # after a failed login or a password-reset request.
        self.purge_interval = timedelta(hours=1)
        self.purge_idle = max(
            timedelta(days=1),
            2 * timedelta(seconds=settings.login_lock_max_s + settings.login_failure_window_s),
            2 * timedelta(seconds=settings.password_reset_window_s),
        )
        self._next_purge = datetime.now(UTC)

    # ------------------------------------------------------------------ tokens

    def _sign(
        self,
        *,
        subject: str,
        kind: PrincipalKind,
        company_id: str | None,
        roles: list[str],
        permissions: frozenset[str],
        session_id: str | None = None,
        issued: datetime | None = None,
        amr: Iterable[str] = (),
        held: Iterable[str] = (),
    ) -> tuple[str, datetime]:
        # ``issued``: taken before the roles were read, under the subject's lock
        # (revocations.issue_instant), so a role removal that commits after the
        # read refuses this token.
        now = issued or datetime.now(UTC)
        claims = build_access_claims(
            issuer=self.ctx.settings.jwt_issuer,
            audience=self.ctx.settings.jwt_audience,
            subject=subject,
            kind=kind,
            company_id=company_id,
            roles=roles,
            permissions=permissions,
            ttl=self.access_ttl,
            session_id=session_id,
            now=now,
            amr=amr,
            mfa_permissions=held,
        )
        return sign_access_token(claims, self.ctx.keys.signer), datetime.fromtimestamp(
            claims["exp"], UTC
        )

    def _new_session(self, user_agent: str | None, refresh_token_hash: str) -> NewSession:
        now = datetime.now(UTC)
        settings = self.ctx.settings
        return NewSession(
            id=uuid.uuid4(),
            last_use_time=now,
            idle_expire_time=now + timedelta(seconds=settings.session_idle_ttl_s),
            expire_time=now + timedelta(seconds=settings.session_absolute_ttl_s),
            client_address=client_address_var.get(),
            user_agent=(user_agent or "")[:256] or None,
            refresh_token_hash=refresh_token_hash,
        )

    # ------------------------------------------------------------------- login

    async def login(
        self, email: str, password: str, user_agent: str | None = None
    ) -> IssuedTokens | IssuedChallenge:
        _required(email=email, password=password)
        try:
            email_key = normalize_email(email)
        except ValueError:
            email_key = email.strip().lower()
        address = client_address_var.get() or "unknown"
        keys = [
            (throttle.ACCOUNT, email_key),
            (throttle.ACCOUNT_ADDRESS, throttle.pair_key(email_key, address)),
        ]

        # Each transaction sends its work as one statement (login_store: what the
        # ORM did in sixteen round trips cost the hash threads' cores).
        for _ in range(BUSY_RETRIES):
            attempt = await login_store.reserve_and_find_user(
                self.ctx.db,
                self.ctx.audit,
                self.policy,
                email_key=email_key,
                address=address,
                now=datetime.now(UTC),
            )
            verdict = attempt.verdict
            for _ in verdict.newly_locked:
                metrics.IDENTITY_LOCKOUTS.inc()
            if verdict.locked_until is not None:
                raise throttle.locked_error(verdict.locked_until)
            if not verdict.busy:
                break
            # As many attempts as the account may still fail are being checked
            # (they may succeed): wait for them instead of refusing.
            await asyncio.sleep(BUSY_WAIT_S)
        else:
            raise throttle.busy_error()

        outcome = _Outcome()
        try:
            return await self._checked_login(
                attempt.user,
                outcome=outcome,
                email_key=email_key,
                address=address,
                keys=keys,
                password=password,
                user_agent=user_agent,
            )
        finally:
            if not outcome.decided:
                # An error before the attempt was counted one way or the other.
                with contextlib.suppress(Exception):
                    async with self.ctx.db.unit_of_work(
                        company_id=None, cross_tenant=True
                    ) as session:
                        await throttle.give_back(session, keys)

    async def _checked_login(
        self,
        user: LoginUser | None,
        *,
        outcome: _Outcome,
        email_key: str,
        address: str,
        keys: list[tuple[str, str]],
        password: str,
        user_agent: str | None,
    ) -> IssuedTokens | IssuedChallenge:
        """The rest of `login`, once the attempt is reserved: ``outcome.decided``
        once it is counted as a failure or cleared by the success; otherwise
        `login` gives the reservation back."""
        db = self.ctx.db
        # The hash runs outside any transaction: no connection is held for it.
        if user is None:
            await self.ctx.hasher.dummy_verify_async(password)
            ok, new_hash = False, None
        else:
            ok, new_hash = await self.ctx.hasher.verify_password_async(password, user.password_hash)

        if not ok:
            metrics.IDENTITY_LOGIN_FAILURES.inc()
            async with db.unit_of_work(company_id=None, cross_tenant=True) as session:
                await self.ctx.audit.record(
                    session,
                    action="login.failed",
                    entity_type="user",
                    entity_id=user.id if user else None,
                    company_id=user.company_id if user else None,
                    detail={"client_address": address},
                )
                await throttle.record_failure(session, keys)
                outcome.decided = True
                # The address is counted only now, after a failure: what other
                # accounts' failures filled never refuses a correct password.
                busy = await throttle.count_failure(session, self.policy, throttle.ADDRESS, address)
                for _ in busy.newly_locked:
                    metrics.IDENTITY_LOCKOUTS.inc()
                    await self.ctx.audit.record(
                        session,
                        action="login.lockout",
                        entity_type="client_address",
                        entity_id=None,
                        company_id=None,
                        detail={"scope": throttle.ADDRESS, "client_address": address},
                    )
            await self._purge_if_due()
            if busy.locked_until is not None:
                raise throttle.locked_error(busy.locked_until)
            raise _invalid_credentials()

        assert user is not None
        principal = _as_user_principal(user)
        principal_var.set(principal)
        if user.state != UserState.ACTIVE:
            async with db.unit_of_work(company_id=user.company_id) as session:
                await self.ctx.audit.record(
                    session,
                    action="login.refused",
                    entity_type="user",
                    entity_id=user.id,
                    detail={"state": user.state, "client_address": address},
                )
            async with db.unit_of_work(company_id=None, cross_tenant=True) as session:
                await throttle.record_failure(session, keys)
            outcome.decided = True
            raise Unauthenticated(
                "this account cannot log in",
                reason=f"ACCOUNT_{user.state}",
                metadata={"state": user.state},
            )

        await self.ctx.require_active_tenant(user.company_id)
        if user.must_change_password or user.mfa_enabled:
            # The password was right, but it is not enough: a challenge instead
            # of tokens. The reservation is given back (by `login`); the
            # account's counters are cleared when the challenge is answered.
            return await self._issue_challenge(
                user,
                ChallengeKind.NEW_PASSWORD_REQUIRED
                if user.must_change_password
                else ChallengeKind.MFA_TOTP,
                email_key=email_key,
                user_agent=user_agent,
            )
        tokens = await self._open_session(
            user,
            email_key=email_key,
            address=address,
            user_agent=user_agent,
            new_password_hash=new_hash,
            amr=AMR_PASSWORD,
        )
        if tokens is None:  # deactivated, locked, deleted or re-passworded since the check
            principal_var.set(principal)
            raise _invalid_credentials()
        outcome.decided = True
        return tokens

    async def _open_session(
        self,
        user: LoginUser,
        *,
        email_key: str,
        address: str,
        user_agent: str | None,
        new_password_hash: str | None,
        amr: tuple[str, ...],
    ) -> IssuedTokens | None:
        """Open a session for a user whose login is complete (password, and the
        challenges it needed): the account's counters cleared, the session and
        its refresh token stored, the access token signed. None when the account
        can no longer log in (nothing written)."""
        refresh = new_opaque_token(OpaqueTokenKind.REFRESH)
        opened = self._new_session(user_agent, refresh.token_hash)
        session_id = str(opened.id)
        principal_var.set(_as_user_principal(user, opened.id))
        audit = self.ctx.audit.build(
            action="login.succeeded",
            entity_type="user",
            entity_id=user.id,
            detail={"session_id": session_id, "client_address": address, "amr": list(amr)},
        )
        grants = await login_store.complete_login(
            self.ctx.db,
            user=user,
            email_key=email_key,
            address=address,
            new_password_hash=new_password_hash,
            opened=opened,
            audit=audit,
            amr=amr,
        )
        if grants is None:
            return None
        roles, permissions, held, issued = grants
        access, access_exp = self._sign(
            subject=str(user.id),
            kind=PrincipalKind.USER,
            company_id=str(user.company_id),
            roles=roles,
            permissions=permissions,
            session_id=session_id,
            issued=issued,
            amr=amr,
            held=held,
        )
        return IssuedTokens(
            access_token=access,
            access_expire_time=access_exp,
            expires_in=self.access_ttl,
            refresh_token=refresh.token,
            refresh_expire_time=opened.expire_time,
            session_id=session_id,
            amr=amr,
        )

    # -------------------------------------------------------------- challenges

    async def _issue_challenge(
        self,
        user: LoginUser,
        kind: ChallengeKind,
        *,
        email_key: str,
        user_agent: str | None,
    ) -> IssuedChallenge:
        """Store a new single-use challenge (its hash) for ``user``, bound to
        the password hash it was issued for."""
        token = new_opaque_token(OpaqueTokenKind.LOGIN_CHALLENGE)
        expire = datetime.now(UTC) + timedelta(seconds=self.ctx.settings.login_challenge_ttl_s)
        async with self.ctx.db.unit_of_work(company_id=user.company_id) as session:
            session.add(
                LoginChallengeRow(
                    token_hash=token.token_hash,
                    company_id=user.company_id,
                    user_id=user.id,
                    kind=kind.value,
                    password_fingerprint=password_fingerprint(user.password_hash),
                    email_key=email_key,
                    user_agent=(user_agent or "")[:256] or None,
                    expire_time=expire,
                )
            )
            await self.ctx.audit.record(
                session,
                action="login.challenge",
                entity_type="user",
                entity_id=user.id,
                detail={"kind": kind.value, "client_address": client_address_var.get()},
            )
        return IssuedChallenge(kind=kind, session=token.token, expire_time=expire)

    async def respond_to_challenge(
        self,
        session_token: str,
        *,
        totp_code: str = "",
        recovery_code: str = "",
        new_password: str = "",
    ) -> IssuedTokens | IssuedChallenge:
        """Answer a login's challenge: tokens, or the next challenge (after a
        new password, the second factor if one is confirmed)."""
        _required(session=session_token)
        if not is_well_formed_opaque_token(session_token, OpaqueTokenKind.LOGIN_CHALLENGE):
            raise _invalid_challenge()
        token_hash = hash_opaque_token(session_token)
        max_attempts = self.ctx.settings.login_challenge_max_attempts
        async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            row = await session.get(LoginChallengeRow, token_hash)
            now = datetime.now(UTC)
            if (
                row is None
                or row.use_time is not None
                or row.expire_time <= now
                or row.attempts >= max_attempts
            ):
                raise _invalid_challenge()
            account = await session.get(UserRow, row.user_id)
            if (
                account is None
                or account.delete_time is not None
                or account.state != UserState.ACTIVE
                or password_fingerprint(account.password_hash) != row.password_fingerprint
            ):
                raise _invalid_challenge()
            principal_var.set(_as_user_principal(account))
            user = LoginUser(
                id=account.id,
                company_id=account.company_id,
                state=account.state,
                password_hash=account.password_hash,
                must_change_password=account.must_change_password,
            )
            kind, email, email_key, user_agent = (
                row.kind,
                account.email,
                row.email_key,
                row.user_agent,
            )
        await self.ctx.require_active_tenant(user.company_id)
        if kind == ChallengeKind.NEW_PASSWORD_REQUIRED:
            return await self._answer_new_password(
                token_hash,
                user=user,
                email=email,
                email_key=email_key,
                user_agent=user_agent,
                new_password=new_password,
            )
        if bool(totp_code) == bool(recovery_code):
            raise InvalidArgument(
                "give either a code of the authenticator app or a recovery code",
                field_violations=[
                    FieldViolation("totp_code", "exactly one of totp_code and recovery_code")
                ],
            )
        return await self._answer_mfa(
            token_hash,
            user=user,
            email_key=email_key,
            user_agent=user_agent,
            totp_code=totp_code,
            recovery_code=recovery_code,
        )

    async def _answer_new_password(
        self,
        token_hash: str,
        *,
        user: LoginUser,
        email: str,
        email_key: str,
        user_agent: str | None,
        new_password: str,
    ) -> IssuedTokens | IssuedChallenge:
        if not new_password:
            raise InvalidArgument(
                "a new password is required",
                field_violations=[FieldViolation("new_password", "required")],
            )
        self._check_new_password(new_password, email, "new_password")
        same, _ = await self.ctx.hasher.verify_password_async(new_password, user.password_hash)
        if same:
            raise InvalidArgument(
                "the new password must differ from the one an administrator set",
                reason="PASSWORD_NOT_CHANGED",
                field_violations=[FieldViolation("new_password", "must differ from the current")],
            )
        new_hash = await self.ctx.hasher.hash_password_async(new_password)
        now = datetime.now(UTC)
        async with self.ctx.db.unit_of_work(company_id=user.company_id) as session:
            used = await session.execute(
                update(LoginChallengeRow)
                .where(
                    LoginChallengeRow.token_hash == token_hash,
                    LoginChallengeRow.use_time.is_(None),
                    LoginChallengeRow.expire_time > now,
                )
                .values(use_time=now)
                .returning(LoginChallengeRow.token_hash)
            )
            account = await session.get(
                UserRow, user.id, with_for_update=True, populate_existing=True
            )
            if (
                used.first() is None
                or account is None
                or account.password_hash != user.password_hash
                or account.state != UserState.ACTIVE
                or account.delete_time is not None
            ):
                raise _invalid_challenge()
            account.password_hash = new_hash
            account.password_change_time = now
            account.must_change_password = False
            await void_password_resets(session, user.id)
            revoked = await revoke_user_sessions(session, user.id, "password_change")
            await self.ctx.audit.record(
                session,
                action="user.change_password",
                entity_type="user",
                entity_id=user.id,
                changed_fields=["password"],
                detail={"sessions_revoked": revoked, "first_login": True},
            )
            factor = await session.get(UserMfaRow, user.id)
            mfa_enabled = factor is not None and factor.confirm_time is not None
        changed = LoginUser(
            id=user.id,
            company_id=user.company_id,
            state=UserState.ACTIVE.value,
            password_hash=new_hash,
            mfa_enabled=mfa_enabled,
        )
        if mfa_enabled:
            return await self._issue_challenge(
                changed, ChallengeKind.MFA_TOTP, email_key=email_key, user_agent=user_agent
            )
        tokens = await self._open_session(
            changed,
            email_key=email_key,
            address=client_address_var.get() or "unknown",
            user_agent=user_agent,
            new_password_hash=None,
            amr=AMR_PASSWORD,
        )
        if tokens is None:
            raise _invalid_challenge()
        return tokens

    async def _answer_mfa(
        self,
        token_hash: str,
        *,
        user: LoginUser,
        email_key: str,
        user_agent: str | None,
        totp_code: str,
        recovery_code: str,
    ) -> IssuedTokens:
        """A code counts like a password: under the login throttle of the
        account (and the account from this address), a wrong one is a failed
        login; a challenge takes at most ``login_challenge_max_attempts``."""
        db = self.ctx.db
        address = client_address_var.get() or "unknown"
        keys = [
            (throttle.ACCOUNT, email_key),
            (throttle.ACCOUNT_ADDRESS, throttle.pair_key(email_key, address)),
        ]
        async with db.unit_of_work(company_id=None, cross_tenant=True) as session:
            verdict = await throttle.reserve_attempt(session, self.policy, keys)
        if verdict.locked_until is not None:
            raise throttle.locked_error(verdict.locked_until)
        if verdict.busy:
            raise throttle.busy_error()
        decided = False
        try:
            method = "totp" if totp_code else "recovery_code"
            async with db.unit_of_work(company_id=user.company_id) as session:
                row = await session.get(
                    LoginChallengeRow, token_hash, with_for_update=True, populate_existing=True
                )
                now = datetime.now(UTC)
                if (
                    row is None
                    or row.use_time is not None
                    or row.expire_time <= now
                    or row.attempts >= self.ctx.settings.login_challenge_max_attempts
                ):
                    raise _invalid_challenge()
                row.attempts += 1
                if totp_code:
                    ok = await accept_totp_code(
                        session, self.ctx.secrets_cipher, user.id, totp_code, now
                    )
                else:
                    ok = await accept_recovery_code(session, user.id, recovery_code, now)
                if ok:
                    row.use_time = now
                else:
                    await throttle.record_failure(session, keys)
                    await throttle.count_failure(session, self.policy, throttle.ADDRESS, address)
                    decided = True
                await self.ctx.audit.record(
                    session,
                    action="login.mfa_succeeded" if ok else "login.mfa_failed",
                    entity_type="user",
                    entity_id=user.id,
                    detail={"method": method, "client_address": address},
                )
            if not ok:
                metrics.IDENTITY_LOGIN_FAILURES.inc()
                raise Unauthenticated("the code is not correct", reason="INVALID_MFA_CODE")
            tokens = await self._open_session(
                user,
                email_key=email_key,
                address=address,
                user_agent=user_agent,
                new_password_hash=None,
                amr=AMR_PASSWORD_AND_OTP,
            )
            if tokens is None:
                raise _invalid_challenge()
            decided = True
            return tokens
        finally:
            if not decided:
                with contextlib.suppress(Exception):
                    async with db.unit_of_work(company_id=None, cross_tenant=True) as session:
                        await throttle.give_back(session, keys)

    async def _purge_if_due(self) -> None:
        now = datetime.now(UTC)
        if now < self._next_purge:
            return
        self._next_purge = now + self.purge_interval
        async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            purged = await throttle.purge_stale(session, self.purge_idle)
            # Login challenges live minutes; a day after they expired they go.
            await session.execute(
                delete(LoginChallengeRow).where(
                    LoginChallengeRow.expire_time < now - timedelta(days=1)
                )
            )
        if purged:
            log.info("stale login and password-reset counters purged", extra={"rows": purged})

    # ----------------------------------------------------------------- refresh

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        _required(refresh_token=refresh_token)
        if not is_well_formed_opaque_token(refresh_token, OpaqueTokenKind.REFRESH):
            raise _invalid_refresh_token()
        token_hash = hash_opaque_token(refresh_token)
        now = datetime.now(UTC)
        reused = False
        async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            token = await session.get(RefreshTokenRow, token_hash, with_for_update=True)
            if token is None:
                raise _invalid_refresh_token()
            family = await session.get(SessionRow, token.session_id, with_for_update=True)
            if family is None:
                raise _invalid_refresh_token()
            user = await session.get(UserRow, family.user_id)
            if user is not None:
                principal_var.set(_as_user_principal(user, family.id))
            if token.use_time is not None:
                # A rotated token came back: it was stolen or replayed. End the
                # whole family so neither the thief nor the victim keeps it.
                reused = True
                metrics.IDENTITY_REFRESH_TOKEN_REUSE.inc()
                if family.revoke_time is None:
                    family.revoke_time = now
                    family.revoke_reason = "refresh_token_reuse"
                    await revoke_sessions(session, [family.id], "refresh_token_reuse")
                await self.ctx.audit.record(
                    session,
                    action="refresh_token.reuse",
                    entity_type="session",
                    entity_id=family.id,
                    company_id=family.company_id,
                    detail={
                        "user_id": str(family.user_id),
                        "client_address": client_address_var.get(),
                    },
                )
            else:
                if (
                    family.revoke_time is not None
                    or family.expire_time <= now
                    or family.idle_expire_time <= now
                ):
                    raise _invalid_refresh_token()
                if user is None or user.delete_time is not None or user.state != UserState.ACTIVE:
                    raise _invalid_refresh_token()
                token.use_time = now
                replacement = new_opaque_token(OpaqueTokenKind.REFRESH)
                session.add(
                    RefreshTokenRow(
                        token_hash=replacement.token_hash,
                        session_id=family.id,
                        company_id=family.company_id,
                    )
                )
                family.last_use_time = now
                family.idle_expire_time = min(
                    now + timedelta(seconds=self.ctx.settings.session_idle_ttl_s),
                    family.expire_time,
                )
                issued = await issue_instant(session, user.id)
                # The session's own amr: a refresh never adds a factor.
                amr = tuple(family.amr or AMR_PASSWORD)
                roles, permissions, held = await token_grants(
                    session, user.id, user.company_id, amr
                )
        if not reused:
            await self.ctx.require_active_tenant(family.company_id)
        if reused:
            raise Unauthenticated(
                "the refresh token was already used; the session is revoked, log in again",
                reason="REFRESH_TOKEN_REUSED",
            )
        assert user is not None
        access, access_exp = self._sign(
            subject=str(user.id),
            kind=PrincipalKind.USER,
            company_id=str(user.company_id),
            roles=roles,
            permissions=permissions,
            session_id=str(family.id),
            issued=issued,
            amr=amr,
            held=held,
        )
        return IssuedTokens(
            access_token=access,
            access_expire_time=access_exp,
            expires_in=self.access_ttl,
            refresh_token=replacement.token,
            refresh_expire_time=family.expire_time,
            session_id=str(family.id),
            amr=amr,
        )

    # ------------------------------------------------------------------ logout

    async def logout(self, refresh_token: str) -> None:
        principal = require_principal()
        async with self.ctx.db.unit_of_work() as session:
            session_id: uuid.UUID | None = None
            if refresh_token:
                token = (
                    await session.get(RefreshTokenRow, hash_opaque_token(refresh_token))
                    if is_well_formed_opaque_token(refresh_token, OpaqueTokenKind.REFRESH)
                    else None
                )
                if token is None:
                    raise _invalid_refresh_token()
                session_id = token.session_id
            elif principal.session_id and principal.kind is PrincipalKind.USER:
                session_id = uuid.UUID(principal.session_id)
            if session_id is None:
                raise InvalidArgument(
                    "this token belongs to no session; pass the refresh token",
                    field_violations=[FieldViolation("refresh_token", "required for this caller")],
                )
            family = await session.get(SessionRow, session_id, with_for_update=True)
            if family is None or str(family.user_id) != principal.subject:
                raise _invalid_refresh_token()
            if family.revoke_time is None:
                family.revoke_time = datetime.now(UTC)
                family.revoke_reason = "logout"
                await revoke_sessions(session, [family.id], "logout")
                await self.ctx.audit.record(
                    session,
                    action="session.revoke",
                    entity_type="session",
                    entity_id=family.id,
                    detail={"reason": "logout"},
                )

    # --------------------------------------------------------------- passwords

    def _check_new_password(self, password: str, email: str, field: str) -> None:
        violations = check_password(
            password, email=email, field=field, min_length=self.ctx.settings.password_min_length
        )
        if violations:
            raise InvalidArgument(
                "the new password does not meet the password policy", field_violations=violations
            )

    async def change_password(self, current_password: str, new_password: str) -> None:
        principal = require_principal()
        _required(current_password=current_password, new_password=new_password)
        if principal.kind is not PrincipalKind.USER:
            raise PermissionDenied("only users have passwords", reason="NOT_A_USER")
        user_id = uuid.UUID(principal.subject)
        async with self.ctx.db.unit_of_work() as session:
            user = await session.get(UserRow, user_id)
            if user is None or user.delete_time is not None:
                raise Unauthenticated("the account no longer exists", reason="ACCOUNT_NOT_FOUND")
            # As login: a lock on this address (long), a bounded wait for the account.
            address = client_address_var.get() or "unknown"
            keys = [
                (throttle.ACCOUNT, user.email),
                (throttle.ACCOUNT_ADDRESS, throttle.pair_key(user.email, address)),
            ]
            verdict = await throttle.reserve_attempt(session, self.policy, keys)
            stored_hash, email = user.password_hash, user.email
        if verdict.locked_until is not None:
            raise throttle.locked_error(verdict.locked_until)
        if verdict.busy:
            raise throttle.busy_error()
        decided = False
        try:
            wrong = InvalidArgument(
                "the current password is not correct",
                reason="WRONG_CURRENT_PASSWORD",
                field_violations=[FieldViolation("current_password", "is not correct")],
            )
            ok, _ = await self.ctx.hasher.verify_password_async(current_password, stored_hash)
            if not ok:
                metrics.IDENTITY_LOGIN_FAILURES.inc()
                async with self.ctx.db.unit_of_work() as session:
                    await throttle.record_failure(session, keys)
                decided = True
                raise wrong
            self._check_new_password(new_password, email, "new_password")
            new_hash = await self.ctx.hasher.hash_password_async(new_password)
            async with self.ctx.db.unit_of_work() as session:
                user = await session.get(
                    UserRow, user_id, with_for_update=True, populate_existing=True
                )
                assert user is not None
                if user.password_hash != stored_hash:
                    # Changed or reset since it was checked: the password given
                    # is no longer the current one (nothing is counted).
                    raise wrong
                user.password_hash = new_hash
                user.password_change_time = datetime.now(UTC)
                user.must_change_password = False  # the user chose it
                await throttle.clear(session, throttle.ACCOUNT, email)
                await void_password_resets(session, user_id)
                revoked = await revoke_user_sessions(session, user_id, "password_change")
                await self.ctx.audit.record(
                    session,
                    action="user.change_password",
                    entity_type="user",
                    entity_id=user_id,
                    changed_fields=["password"],
                    detail={"sessions_revoked": revoked},
                )
            decided = True
        finally:
            if not decided:  # the right password, but no change (policy, error)
                with contextlib.suppress(Exception):
                    async with self.ctx.db.unit_of_work() as session:
                        await throttle.give_back(session, keys)

    async def guess_under_throttle(self, email: str, check: Callable[[], Awaitable[bool]]) -> bool:
        """Run ``check`` (a guess at a secret of the account ``email``: its
        password, a code) under the login throttle, as ChangePassword checks
        the current password: a lock answers RESOURCE_EXHAUSTED before it
        runs; False counts as a failed login; True (or an error) counts
        nothing."""
        address = client_address_var.get() or "unknown"
        keys = [
            (throttle.ACCOUNT, email),
            (throttle.ACCOUNT_ADDRESS, throttle.pair_key(email, address)),
        ]
        async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            verdict = await throttle.reserve_attempt(session, self.policy, keys)
        if verdict.locked_until is not None:
            raise throttle.locked_error(verdict.locked_until)
        if verdict.busy:
            raise throttle.busy_error()
        ok = False
        failed = False
        try:
            ok = await check()
            if not ok:
                metrics.IDENTITY_LOGIN_FAILURES.inc()
                async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
                    await throttle.record_failure(session, keys)
                failed = True
            return ok
        finally:
            if not failed:
                with contextlib.suppress(Exception):
                    async with self.ctx.db.unit_of_work(
                        company_id=None, cross_tenant=True
                    ) as session:
                        await throttle.give_back(session, keys)

    async def request_password_reset(self, email: str) -> None:
        """Answers the same for every email, and also when a limit drops the
        request: at most ``password_reset_max_per_address`` per client address
        (counted here) and ``password_reset_max_per_account`` per account
        (counted by the worker, which alone knows the account) per window. The
        message is issued by one worker from a bounded queue; a full queue
        drops the request."""
        _required(email=email)
        settings = self.ctx.settings
        window = timedelta(seconds=settings.password_reset_window_s)
        address = client_address_var.get() or "unknown"
        async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            count = await throttle.count_request(session, throttle.RESET_ADDRESS, address, window)
        await self._purge_if_due()
        if count > settings.password_reset_max_per_address:
            _dropped_reset("address")
            return
        email_key = normalize_email(email)
        if check_email(email_key):
            return  # not an email: no account can have it
        try:
            self._resets.put_nowait((email_key, address))
        except asyncio.QueueFull:
            _dropped_reset("queue_full")
            return
        if self._reset_worker is None or self._reset_worker.done():
            self._reset_worker = asyncio.create_task(self._issue_resets())

    async def _issue_resets(self) -> None:
        while True:
            email, client_address = await self._resets.get()
            try:
                await self._issue_reset(email, client_address)
            finally:
                self._resets.task_done()

    async def _issue_reset(self, email: str, client_address: str) -> None:
        settings = self.ctx.settings
        try:
            async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
                # Shared lock: an email change in flight (which voids the user's
                # reset tokens) either waits for this token or is seen first.
                user = (
                    await session.scalars(
                        select(UserRow)
                        .where(UserRow.email == email, UserRow.delete_time.is_(None))
                        .with_for_update(read=True)
                    )
                ).first()
                if user is None or user.state != UserState.ACTIVE:
                    return
                count = await throttle.count_request(
                    session,
                    throttle.RESET_ACCOUNT,
                    str(user.id),
                    timedelta(seconds=settings.password_reset_window_s),
                )
                if count > settings.password_reset_max_per_account:
                    _dropped_reset("account")
                    return
                reset = new_opaque_token(OpaqueTokenKind.PASSWORD_RESET)
                expire = datetime.now(UTC) + timedelta(seconds=settings.password_reset_ttl_s)
                session.add(
                    PasswordResetRow(
                        token_hash=reset.token_hash,
                        company_id=user.company_id,
                        user_id=user.id,
                        expire_time=expire,
                    )
                )
                await self.ctx.audit.record(
                    session,
                    action="password_reset.request",
                    entity_type="user",
                    entity_id=user.id,
                    company_id=user.company_id,
                    detail={"client_address": client_address},
                )
                user_locale, company_id = user.locale, user.company_id
            # After the commit; the SMTP notifier only queues it (application/mail.py).
            await self.ctx.notifier.send_password_reset(
                email=email,
                token=reset.token,
                expire_time=expire,
                locale=await self.ctx.message_locale(user_locale, company_id),
            )
        except Exception:
            log.exception("issuing a password reset failed")

    async def wait_for_background(self) -> None:
        """For tests and shutdown: let queued reset notifications finish, then
        stop the worker (the next request starts it again)."""
        await self._resets.join()
        worker, self._reset_worker = self._reset_worker, None
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    async def confirm_password_reset(self, reset_token: str, new_password: str) -> None:
        _required(reset_token=reset_token, new_password=new_password)
        invalid = Unauthenticated(
            "the reset token is not valid or has expired; request a new one",
            reason="INVALID_RESET_TOKEN",
        )
        if not is_well_formed_opaque_token(reset_token, OpaqueTokenKind.PASSWORD_RESET):
            raise invalid
        token_hash = hash_opaque_token(reset_token)
        async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            row = await session.get(PasswordResetRow, token_hash)
            now = datetime.now(UTC)
            if row is None or row.use_time is not None or row.expire_time <= now:
                raise invalid
            user = await session.get(UserRow, row.user_id)
            if user is None or user.delete_time is not None or user.state != UserState.ACTIVE:
                raise invalid
            email, user_id, company_id = user.email, user.id, user.company_id
        self._check_new_password(new_password, email, "new_password")
        new_hash = await self.ctx.hasher.hash_password_async(new_password)
        async with self.ctx.db.unit_of_work(company_id=company_id) as session:
            # Single use, also under concurrency: only one UPDATE finds it unused.
            if not await users_repo.use_reset(session, token_hash, datetime.now(UTC)):
                raise invalid
            # Every other outstanding reset token of the user dies with this one.
            await void_password_resets(session, user_id)
            user = await session.get(UserRow, user_id, with_for_update=True)
            assert user is not None
            principal_var.set(_as_user_principal(user))
            user.password_hash = new_hash
            user.password_change_time = datetime.now(UTC)
            user.must_change_password = False  # the user chose it
            await throttle.clear(session, throttle.ACCOUNT, email)
            revoked = await revoke_user_sessions(session, user_id, "password_reset")
            await self.ctx.audit.record(
                session,
                action="password_reset.confirm",
                entity_type="user",
                entity_id=user_id,
                changed_fields=["password"],
                detail={"sessions_revoked": revoked},
            )

    # ---------------------------------------------------------------- API keys

    async def exchange_api_key(self, api_key: str) -> IssuedTokens:
        _required(api_key=api_key)
        invalid = Unauthenticated("the API key is not valid", reason="INVALID_API_KEY")
        parsed = parse_api_key(api_key)
        if parsed is None:
            raise invalid
        now = datetime.now(UTC)
        async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            key = await find_api_key_by_prefix(session, parsed.prefix)
            if key is None or not verify_api_key_secret(parsed.secret, key.secret_hash):
                raise invalid
            if key.revoke_time is not None or (
                key.expire_time is not None and key.expire_time <= now
            ):
                raise invalid
            account = await session.get(ServiceAccountRow, key.service_account_id)
            if account is None or account.delete_time is not None:
                raise invalid
            key.last_use_time = now
            permissions = frozenset(key.permissions) & ALL_PERMISSIONS
            subject, company, key_id = str(account.id), str(account.company_id), str(key.id)
        await self.ctx.require_active_tenant(company)
        access, access_exp = self._sign(
            subject=subject,
            kind=PrincipalKind.SERVICE_ACCOUNT,
            company_id=company,
            roles=[],
            permissions=permissions,
            # The key's id as the token's session: revoking the key revokes
            # the tokens exchanged from it.
            session_id=key_id,
        )
        return IssuedTokens(
            access_token=access, access_expire_time=access_exp, expires_in=self.access_ttl
        )
