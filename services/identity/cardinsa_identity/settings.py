"""Settings of the identity service (on top of the foundation's)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from cardinsa_foundation.config import PROJECT_ROOT, Settings


class IdentitySettings(Settings):
    identity_port: int = Field(default=50051, ge=0, le=65535)
    identity_metrics_port: int = Field(default=9051, ge=0, le=65535)
    # Sessions (refresh-token families).
    session_idle_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    session_absolute_ttl_s: int = Field(default=30 * 24 * 3600, ge=60)
    # Brute-force protection (only failures count): failures per window of one
    # account from one address before that pair is locked (base length, doubling
    # with each lock in a row up to the maximum); the same number from all
    # addresses together makes the account wait (same growth, capped at
    # login_account_wait_max_s: strangers delay the owner, never lock them out);
    # failures per address (any account) before failing guesses from it are
    # refused (a correct password still gets in).
    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_failure_window_s: int = Field(default=900, ge=1)
    login_lock_base_s: int = Field(default=60, ge=1)
    login_lock_max_s: int = Field(default=3600, ge=1)
    login_account_wait_max_s: int = Field(default=900, ge=1)
    password_min_length: int = Field(default=12, ge=8)
    password_reset_ttl_s: int = Field(default=1800, ge=60)
    # The longest an API key may live: a key created without an expiry gets this
    # one, asking for a later expiry is refused. Default one year.
    api_key_max_lifetime_s: int = Field(default=365 * 24 * 3600, ge=3600)
    # Password-reset requests answered with a message per window: per client
    # address and per account; more are dropped silently (same answer). The
    # notification work waits in a bounded queue; when it is full, requests are
    # dropped (logged and counted), never queued without bound.
    password_reset_window_s: int = Field(default=3600, ge=1)
    password_reset_max_per_address: int = Field(default=10, ge=1)
    password_reset_max_per_account: int = Field(default=3, ge=1)
    password_reset_queue_size: int = Field(default=100, ge=1)
    # Signing keys: how long a new key is published before it signs (longer than
    # every verifier's JWKS cache), how often workers re-read the key table.
    signing_key_publish_delay_s: int = Field(default=600, ge=0)
    signing_key_refresh_s: float = Field(default=30.0, gt=0)
    # Where the development notifier writes password-reset messages.
    notification_dir: Path = PROJECT_ROOT / ".data" / "notifications"
    # Proof that a call came through our gateway (then its client-address
    # header is trusted for brute-force counting). Unset: only the gRPC peer.
    gateway_secret: SecretStr | None = None
    # The company service, asked whether a tenant may act (login, refresh, API-key
    # exchange and every authenticated call). Unset: tenant status is not checked
    # (identity alone, as in its own tests). Answers are cached this long: a
    # suspension takes effect within that many seconds.
    company_address: str | None = None
    company_timeout_s: float = Field(default=2.0, gt=0)
    tenant_status_ttl_s: float = Field(default=10.0, ge=0)
    # Revocations: how often the table is read when no notification arrives,
    # the heartbeat of every WatchRevocations stream, and how long one stream
    # lasts before the subscriber reconnects (with its cursor).
    revocation_poll_s: float = Field(default=1.0, gt=0)
    revocation_heartbeat_s: float = Field(default=3.0, gt=0)
    revocation_stream_max_s: float = Field(default=300.0, gt=0)
    demo_admin_email: str | None = None
    demo_admin_password: SecretStr | None = None
