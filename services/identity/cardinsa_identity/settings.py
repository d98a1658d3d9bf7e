"""Settings of the identity service (on top of the foundation's)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from cardinsa_foundation.config import PROJECT_ROOT, Settings


class NotifierKind(StrEnum):
    # JSON files under notification_dir (development and tests; refused in production).
    FILE = "file"
    # E-mail through an SMTP server (application/mail.py).
    SMTP = "smtp"


class SmtpTls(StrEnum):
    # Plain connection, then STARTTLS before anything is sent (port 587).
    STARTTLS = "starttls"
    # TLS from the first byte (implicit TLS, port 465).
    TLS = "tls"
    # No TLS at all: only for a local sink such as the one `make up` starts.
    NONE = "none"


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
    # How long an invitation token (InviteUser, ResendInvitation) and an e-mail
    # change token (ChangeMyEmail, UpdateUser of email) stay valid.
    invitation_ttl_s: int = Field(default=72 * 3600, ge=60)
    email_change_ttl_s: int = Field(default=24 * 3600, ge=60)
    # A login's challenge (second factor, new password): how long it is
    # accepted and how many wrong codes it takes before it is void (each also
    # counts as a failed login of the account).
    login_challenge_ttl_s: int = Field(default=300, ge=10)
    login_challenge_max_attempts: int = Field(default=5, ge=1)
    # The issuer name authenticator apps show for a TOTP factor.
    mfa_issuer: str = Field(default="Cardinsa", min_length=1, max_length=64)
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
    # How identity reaches users (password reset, contact-change notice): file
    # writes JSON files under notification_dir (development and tests; a serving
    # production process refuses it), smtp sends e-mail (docs/runbook.md, "Mail").
    notifier: NotifierKind = NotifierKind.FILE
    # Where the file notifier writes its messages.
    notification_dir: Path = PROJECT_ROOT / ".data" / "notifications"
    # The SMTP server (notifier=smtp): host, port, TLS mode, optional login (both
    # or neither), the sender (From), the timeout of connecting and of each SMTP
    # command, and how often a failed message is tried again (waiting
    # smtp_retry_backoff_s, doubling, between attempts) before it is given up.
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_tls: SmtpTls = SmtpTls.STARTTLS
    smtp_user: str = ""
    smtp_password: SecretStr | None = None
    # PEM file of the CA(s) the server's certificate is checked against
    # (unset: the system's trust store); the certificate is always checked.
    smtp_ca_file: Path | None = None
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    smtp_retries: int = Field(default=3, ge=0, le=10)
    smtp_retry_backoff_s: float = Field(default=1.0, ge=0)
    mail_from: str = "Cardinsa <no-reply@cardinsa.local>"
    # Messages wait in a bounded queue for the sender task; when it is full a
    # message is dropped (logged and counted). On shutdown the sender gets this
    # long to send what is queued.
    mail_queue_size: int = Field(default=1000, ge=1)
    mail_shutdown_timeout_s: float = Field(default=10.0, ge=0)
    # The language of a message when neither the user's nor the company's locale
    # is one the templates have (en, de).
    mail_default_locale: str = "en"
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

    @model_validator(mode="after")
    def _usable_mail(self) -> IdentitySettings:
        """SMTP settings that cannot work are refused at start (no value in the
        message: the password is a secret)."""
        problems = []
        if self.notifier is NotifierKind.SMTP and not self.smtp_host.strip():
            problems.append("CARDINSA_SMTP_HOST must be set when CARDINSA_NOTIFIER=smtp")
        has_password = bool(self.smtp_password and self.smtp_password.get_secret_value())
        if bool(self.smtp_user) != has_password:
            problems.append(
                "CARDINSA_SMTP_USER and CARDINSA_SMTP_PASSWORD are set together or not at all"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def serving_problems(self) -> list[tuple[str, str]]:
        problems = super().serving_problems()
        if self.is_production and self.notifier is not NotifierKind.SMTP:
            problems.append(
                (
                    "notifier",
                    "CARDINSA_NOTIFIER=file writes password-reset tokens to local files that "
                    "nobody reads: production needs CARDINSA_NOTIFIER=smtp and "
                    'CARDINSA_SMTP_HOST (docs/runbook.md, "Mail")',
                )
            )
        return problems
