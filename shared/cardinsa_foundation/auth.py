"""Access-token verification: JWTs signed by identity, checked against its JWKS.

Every service verifies tokens locally. Only asymmetric algorithms are accepted
(EdDSA, ES256), only tokens whose type is ``access``, only from our issuer and
for our audience, with a small clock-skew leeway. Keys come from identity's
JWKS, cached and refetched when a token names an unknown ``kid``. Verified
tokens are cached until they expire so a token is not re-verified on each call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import jwt

from cardinsa_foundation.context import Principal, PrincipalKind
from cardinsa_foundation.errors import CardinsaError, Unauthenticated, Unavailable

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = frozenset({"EdDSA", "ES256"})
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - a token type name, not a secret
# Claims every access token carries (docs/architecture.md, "Security model").
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "jti", "typ", "kind")

JwksFetcher = Callable[[], Awaitable[Mapping[str, Any]]]


class RevocationCheck(Protocol):
    """Raises UNAUTHENTICATED for a revoked token (``revocation.RevocationSet``)."""

    def check(self, principal: Principal, issued_at: float) -> None: ...


def _unauthenticated(
    reason: str, message: str = "the access token is not valid"
) -> Unauthenticated:
    return Unauthenticated(message, reason=reason)


@dataclass(slots=True)
class _Key:
    kid: str
    algorithm: str
    key: Any


class JwksCache:
    """Public signing keys by ``kid``, fetched from identity.

    Refetches after ``ttl_s``, or at once when a token names a kid it does not
    know (at most once per ``min_refetch_interval_s``, so a flood of tokens with
    made-up kids cannot turn into a flood of JWKS fetches).

    While identity cannot be reached the keys it last published stay in use, but
    not forever: a key identity has retired (perhaps because it leaked) must not
    be trusted through a long outage. Once no fetch has succeeded for
    ``max_stale_s``, the first failed refresh drops the keys, and every token is
    refused UNAVAILABLE (reason ``JWKS_STALE``) until identity answers again. So
    the keys are trusted at most ``max_stale_s`` plus ``min_refetch_interval_s``
    after the last successful fetch. ``clock`` is for tests.
    """

    def __init__(
        self,
        fetch: JwksFetcher,
        *,
        ttl_s: float = 300.0,
        min_refetch_interval_s: float = 5.0,
        max_stale_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._min_refetch_interval_s = min_refetch_interval_s
        self._max_stale_s = max_stale_s
        self._clock = clock
        self._keys: dict[str, _Key] = {}
        self._fetched_at = float("-inf")
        self._succeeded_at = float("-inf")
        self._lock = asyncio.Lock()
        self._last_fetch_failed = False
        self._dropped_stale = False
        self.on_refresh: Callable[[frozenset[str]], None] | None = None

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    async def get(self, kid: str) -> _Key:
        now = self._clock()
        key = self._keys.get(kid)
        if key is not None and now - self._fetched_at < self._ttl_s:
            return key
        if key is None and now - self._fetched_at < self._min_refetch_interval_s:
            raise self._unknown_key()
        await self.refresh(force=key is None)
        key = self._keys.get(kid)
        if key is None:
            raise self._unknown_key()
        return key

    def _unknown_key(self) -> CardinsaError:
        if not self._keys and self._dropped_stale:
            return Unavailable(
                "token verification is unavailable: the signing keys could not be "
                f"refreshed for over {self._max_stale_s:g} s, retry later",
                reason="JWKS_STALE",
            )
        if not self._keys and self._last_fetch_failed:
            # Not the caller's fault: we cannot verify anything until identity answers.
            return Unavailable(
                "token verification is unavailable, retry later", reason="JWKS_UNAVAILABLE"
            )
        return _unauthenticated("UNKNOWN_SIGNING_KEY")

    async def refresh(self, *, force: bool = False) -> None:
        async with self._lock:
            now = self._clock()
            # Another caller may have refreshed while we waited for the lock.
            if not force and now - self._fetched_at < self._ttl_s:
                return
            if force and now - self._fetched_at < self._min_refetch_interval_s:
                return
            try:
                document = await self._fetch()
            except Exception as exc:
                # Keep serving with the keys we have; a token with an unknown
                # kid is refused until identity answers again. Identity being
                # unreachable (stopping, restarting) is an expected state: one
                # line with its status; anything else keeps its traceback.
                if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
                    log.warning(
                        "fetching the JWKS failed: %s",
                        getattr(exc.code(), "name", exc.code()),
                    )
                else:
                    log.warning("fetching the JWKS failed", exc_info=True)
                self._fetched_at = now - self._ttl_s + self._min_refetch_interval_s
                self._last_fetch_failed = True
                if self._keys and now - self._succeeded_at >= self._max_stale_s:
                    log.error(
                        "no longer trusting the cached signing keys: the JWKS could not "
                        "be refreshed for over %g s",
                        self._max_stale_s,
                    )
                    self._keys = {}
                    self._dropped_stale = True
                return
            self._keys = _parse_jwks(document)
            self._fetched_at = now
            self._succeeded_at = now
            self._last_fetch_failed = False
            self._dropped_stale = False
        if self.on_refresh is not None:
            self.on_refresh(self.kids)


def _parse_jwks(document: Mapping[str, Any]) -> dict[str, _Key]:
    keys: dict[str, _Key] = {}
    for entry in document.get("keys", []):
        jwk = {k: v for k, v in dict(entry).items() if v not in ("", None)}
        kid = jwk.get("kid")
        alg = jwk.get("alg")
        if not kid or alg not in ALLOWED_ALGORITHMS:
            continue
        try:
            keys[kid] = _Key(kid=kid, algorithm=alg, key=jwt.PyJWK(jwk, algorithm=alg).key)
        except (jwt.PyJWKError, ValueError, TypeError):
            log.warning("ignoring an unusable key in the JWKS", extra={"kid": kid})
    return keys


class TokenVerifier:
    """Turns a bearer token into a :class:`Principal`, or raises UNAUTHENTICATED."""

    def __init__(
        self,
        jwks: JwksCache,
        *,
        issuer: str,
        audience: str,
        leeway_s: float = 30.0,
        cache_size: int = 10_000,
    ) -> None:
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s
        self._cache_size = cache_size
        self._verified: OrderedDict[str, tuple[Principal, float, str, float]] = OrderedDict()
        jwks.on_refresh = self._forget_retired_keys
        #: Revoked tokens (cardinsa_foundation.revocation.RevocationSet), asked
        #: on every call, cached tokens included; None: not checked.
        self.revocations: RevocationCheck | None = None

    def _forget_retired_keys(self, kids: frozenset[str]) -> None:
        stale = [token for token, (_, _, kid, _) in self._verified.items() if kid not in kids]
        for token in stale:
            del self._verified[token]

    async def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires_at, kid, issued_at = cached
            if time.time() < expires_at + self._leeway_s:
                # The signature is not checked again, but its key must still be
                # published: a retired (e.g. compromised) key ends its tokens
                # within the JWKS cache's TTL. A dict lookup while fresh.
                await self._jwks.get(kid)
                if self.revocations is not None:
                    self.revocations.check(principal, issued_at)
                return principal
            del self._verified[token]
        principal, expires_at, kid, issued_at = await self._verify_uncached(token)
        self._verified[token] = (principal, expires_at, kid, issued_at)
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        if self.revocations is not None:
            self.revocations.check(principal, issued_at)
        return principal

    async def _verify_uncached(self, token: str) -> tuple[Principal, float, str, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _unauthenticated("MALFORMED_TOKEN") from None
        alg = header.get("alg")
        kid = header.get("kid")
        if alg not in ALLOWED_ALGORITHMS:
            raise _unauthenticated("UNSUPPORTED_TOKEN_ALGORITHM")
        if not isinstance(kid, str) or not kid:
            raise _unauthenticated("UNKNOWN_SIGNING_KEY")
        key = await self._jwks.get(kid)
        if key.algorithm != alg:
            raise _unauthenticated("UNSUPPORTED_TOKEN_ALGORITHM")
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[key.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthenticated("TOKEN_EXPIRED", "the access token has expired") from None
        except jwt.ImmatureSignatureError:
            raise _unauthenticated("TOKEN_NOT_YET_VALID") from None
        except jwt.InvalidAudienceError:
            raise _unauthenticated("WRONG_AUDIENCE") from None
        except jwt.InvalidIssuerError:
            raise _unauthenticated("WRONG_ISSUER") from None
        except jwt.PyJWTError:
            raise _unauthenticated("INVALID_TOKEN") from None
        if claims.get("typ") != ACCESS_TOKEN_TYPE:
            raise _unauthenticated("NOT_AN_ACCESS_TOKEN", "an access token is required")
        return principal_from_claims(claims), float(claims["exp"]), kid, float(claims["iat"])


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    try:
        kind = PrincipalKind(claims["kind"])
    except ValueError:
        raise _unauthenticated("INVALID_TOKEN") from None
    permissions = claims.get("perms") or []
    roles = claims.get("roles") or []
    amr = claims.get("amr") or []
    held = claims.get("mfa_perms") or []
    if not all(isinstance(v, list) for v in (permissions, roles, amr, held)):
        raise _unauthenticated("INVALID_TOKEN")
    company_id = claims.get("cid") or None
    return Principal(
        subject=str(claims["sub"]),
        kind=kind,
        company_id=str(company_id) if company_id else None,
        permissions=frozenset(str(p) for p in permissions),
        roles=frozenset(str(r) for r in roles),
        session_id=claims.get("sid"),
        token_id=str(claims["jti"]),
        on_behalf_of=claims.get("act"),
        amr=frozenset(str(m) for m in amr),
        mfa_permissions=frozenset(str(p) for p in held),
    )


def bearer_token(metadata: Mapping[str, str]) -> str | None:
    """The token of an ``authorization: Bearer <token>`` header, if any."""
    value = metadata.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthenticated(
            "MALFORMED_AUTHORIZATION_HEADER", "use 'authorization: Bearer <token>'"
        )
    return token.strip()


def identity_jwks_fetcher(channel: Any, *, timeout_s: float = 2.0) -> JwksFetcher:
    """A JWKS source that asks identity over gRPC (``IdentityService/GetJwks``).

    ``channel`` is a ``grpc.aio.Channel`` to identity; the call is public, has a
    deadline, and is retried by :class:`JwksCache` only as its TTL and the
    unknown-``kid`` rule allow. Used by every service except identity itself.
    """
    from google.protobuf.json_format import MessageToDict

    from cardinsa.identity.v1 import identity_service_pb2, identity_service_pb2_grpc

    stub = identity_service_pb2_grpc.IdentityServiceStub(channel)  # type: ignore[no-untyped-call]

    async def fetch() -> Mapping[str, Any]:
        reply = await stub.GetJwks(identity_service_pb2.GetJwksRequest(), timeout=timeout_s)
        return MessageToDict(reply, preserving_proto_field_name=True)

    return fetch
