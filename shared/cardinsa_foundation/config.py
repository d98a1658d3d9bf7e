"""Settings for every Cardinsa process, read from the environment and `.env`.

Every variable is named ``CARDINSA_<FIELD>`` (``DATABASE_URL`` and ``ENVIRONMENT``
are also accepted bare, because hosting platforms inject them that way). The
settings are validated once at start: a production process refuses to start with
a secret that is empty or still has its development default, or with debug on,
so a forgotten variable fails loudly instead of running insecurely.

Services subclass :class:`Settings` to add their own fields (ports, peers) and
get them through ``get_settings(TheirSettings)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, TypeVar, overload

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX: Final = "CARDINSA_"
ASYNC_URL_PREFIX: Final = "postgresql+asyncpg://"

# Development defaults of the secrets. They are public (they are in this file), so
# a production process refuses to start while any secret still equals one of them.
DEV_SIGNING_KEY_ENCRYPTION_KEY: Final = "dev-only-signing-key-encryption-key-not-secret"
DEV_PAGE_TOKEN_SECRET: Final = "dev-only-page-token-secret-not-secret"  # noqa: S105
MIN_PRODUCTION_SECRET_LENGTH: Final = 32


def split_secret_list(value: Any) -> Any:
    """A list of secrets from the environment: a JSON list, or comma-separated."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def find_project_root() -> Path:
    """Locate the repository root so relative paths (``.data/...``) do not depend on cwd.

    Looked up from this package's location first (editable install / source tree),
    then from the working directory; the working directory itself is the fallback.
    """
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / "pyproject.toml").is_file() and (candidate / "shared").is_dir():
                return candidate
    return Path.cwd().resolve()


PROJECT_ROOT: Final = find_project_root()


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"


def _env_names(field: str, *, bare: bool = False) -> AliasChoices:
    """Accept ``CARDINSA_<FIELD>`` and, for a few platform-standard names, ``<FIELD>``.

    The field name itself is accepted too, so code and tests can pass
    ``Settings(database_url=...)``.
    """
    names = [f"{ENV_PREFIX}{field.upper()}"]
    if bare:
        names.append(field.upper())
    names.append(field)
    return AliasChoices(*names)


SettingsT = TypeVar("SettingsT", bound="Settings")


class Settings(BaseSettings):
    """Configuration shared by every Cardinsa service (subclass it to add fields)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=(PROJECT_ROOT / ".env", Path(".env")),
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        # A validation error must never print a value: it may be a secret or a
        # database URL carrying a password.
        hide_input_in_errors=True,
        validate_default=True,
    )

    # --- process -----------------------------------------------------------------
    environment: Environment = Field(
        default=Environment.DEVELOPMENT, validation_alias=_env_names("environment", bare=True)
    )
    debug: bool = False
    # The build this process runs (image build arguments; `make up` sets the commit
    # from git): GetServerInfo and cardinsa_build_info report it. Empty: unknown.
    build_commit: str = Field(default="", max_length=64, pattern=r"^[0-9A-Za-z._+-]*$")
    build_time: datetime | None = None
    log_level: str = "INFO"
    log_json: bool = True

    # --- database ----------------------------------------------------------------
    database_url: SecretStr | None = Field(
        default=None, validation_alias=_env_names("database_url", bare=True)
    )
    database_admin_url: SecretStr | None = None
    # The platform role's URL (cross-tenant code paths only); default: the
    # database URL with the user cardinsa_platform and no password.
    database_platform_url: SecretStr | None = None
    # The units of work's pool: connections are opened on demand and kept. An
    # overflow connection is closed when it comes back, so under steady load a
    # pool with overflow opens and closes connections all the time; the default
    # keeps all 20.
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    # The hot reads' pool (Database.read), besides the units of work's.
    db_read_pool_size: int = Field(default=10, ge=1)
    db_pool_timeout_s: float = Field(default=10.0, gt=0)
    db_pool_recycle_s: int = Field(default=1800, ge=-1)
    db_pool_pre_ping: bool = True
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)
    db_connect_timeout_s: float = Field(default=5.0, gt=0)
    embedded_postgres_dir: Path = Path(".data/postgres")
    embedded_postgres_port: int = Field(default=55432, ge=1, le=65535)

    # --- serving -----------------------------------------------------------------
    grpc_host: str = "127.0.0.1"
    workers: int = Field(default=1, ge=1)
    # Worker i of a service listens on its port + i x this (and its metrics port
    # likewise): 50051, 50151, … for identity, 50052, 50152, … for company, so
    # the workers of services whose ports differ by less than this never collide.
    worker_port_step: int = Field(default=100, ge=1)
    # A worker that exits is restarted (backoff 0.5 s doubling to 30 s); after this
    # many restarts within worker_restart_window_s the supervisor gives up and the
    # service reports NOT_SERVING.
    worker_restart_limit: int = Field(default=5, ge=0)
    worker_restart_window_s: float = Field(default=60.0, gt=0)
    metrics_host: str = "127.0.0.1"
    grace_period_s: float = Field(default=10.0, ge=0)
    # On SIGTERM: NOT_SERVING, then this long still serving (longer than the
    # gateway needs to see it: health interval x 2), then stop accepting.
    drain_delay_s: float = Field(default=5.0, ge=0)

    # --- tracing (OpenTelemetry; cardinsa_foundation.tracing) ----------------------
    tracing_enabled: bool = False
    tracing_otlp_endpoint: str = "http://127.0.0.1:4317"
    tracing_sample_ratio: float = Field(default=1.0, ge=0, le=1)
    tracing_export_interval_s: float = Field(default=2.0, gt=0)
    tracing_export_timeout_s: float = Field(default=5.0, gt=0)

    # --- tokens ------------------------------------------------------------------
    jwt_issuer: str = "cardinsa-identity"
    jwt_audience: str = "cardinsa"
    access_token_ttl_s: int = Field(default=900, ge=1)
    clock_skew_s: int = Field(default=30, ge=0)
    jwks_cache_ttl_s: int = Field(default=300, ge=0)
    # How long the last JWKS fetched stays trusted while identity cannot be reached;
    # after that every token is refused (UNAVAILABLE, JWKS_STALE) until it answers.
    jwks_max_stale_s: int = Field(default=3600, ge=1)
    # Revoked tokens (lock, logout, role removal ...) are refused by every
    # service, from identity's WatchRevocations stream kept in memory. False
    # turns the check off (measurements only; refused in production).
    revocation_check: bool = True
    # Longest wait between reconnection attempts while identity's watch is down
    # (the last known revocations stay in force meanwhile).
    revocation_backoff_max_s: float = Field(default=5.0, gt=0)
    # A watch silent for this long (identity sends a heartbeat every few
    # seconds) is reopened.
    revocation_idle_timeout_s: float = Field(default=15.0, gt=0)

    # --- event watch (EventService.WatchEvents, cardinsa_foundation.event_watch) --
    # How often an open stream reads the outbox for newly final events.
    event_watch_poll_s: float = Field(default=0.25, gt=0)
    # A stream that sent nothing for this long sends a heartbeat (no events).
    event_watch_heartbeat_s: float = Field(default=5.0, gt=0)
    # A stream ends after this long; the consumer reconnects with its cursor.
    event_watch_stream_max_s: float = Field(default=300.0, gt=0)

    # --- secrets -----------------------------------------------------------------
    signing_key_encryption_key: SecretStr = SecretStr(DEV_SIGNING_KEY_ENCRYPTION_KEY)
    # Earlier signing-key encryption secrets still accepted for decrypting while
    # a rotation runs (JSON list or comma-separated); new writes use the one above.
    signing_key_encryption_previous_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list
    )
    page_token_secret: SecretStr = SecretStr(DEV_PAGE_TOKEN_SECRET)

    # --- HTTP edge ---------------------------------------------------------------
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://localhost:3000"]
    )

    #: Whether the service has cross-tenant code paths (the platform role's URL
    #: is then required in production). A service without them sets False.
    USES_PLATFORM_ROLE: ClassVar[bool] = True

    # Secrets checked in production, with their development default ("" = none).
    # Subclasses add theirs: ``SECRET_DEFAULTS = {**Settings.SECRET_DEFAULTS, ...}``.
    SECRET_DEFAULTS: ClassVar[Mapping[str, str]] = {
        "signing_key_encryption_key": DEV_SIGNING_KEY_ENCRYPTION_KEY,
        "page_token_secret": DEV_PAGE_TOKEN_SECRET,
    }

    def worker_port(self, base: int, index: int) -> int:
        """The port of worker ``index`` of a service whose first worker uses ``base``."""
        return base + index * self.worker_port_step if base else 0

    @field_validator("build_time", mode="before")
    @classmethod
    def _empty_build_time(cls, value: Any) -> Any:
        # An image built without the argument has it set, empty.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("build_time", mode="after")
    @classmethod
    def _build_time_in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)

    @field_validator("environment", mode="before")
    @classmethod
    def _lower_environment(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        """Accept a JSON list or the friendlier comma-separated form."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("signing_key_encryption_previous_keys", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> Any:
        return split_secret_list(value)

    @field_validator("tracing_otlp_endpoint", mode="after")
    @classmethod
    def _otlp_url(cls, value: str) -> str:
        from cardinsa_foundation.tracing import otlp_endpoint

        otlp_endpoint(value)  # ValueError names the expected form
        return value.strip()

    @field_validator("database_url", "database_admin_url", "database_platform_url", mode="after")
    @classmethod
    def _async_driver(cls, value: SecretStr | None) -> SecretStr | None:
        """Normalise ``postgresql://`` / ``postgres://`` to the asyncpg driver we use.

        A URL of another kind is left as is and reported by the model check, which
        controls the error's content (the URL may carry a password).
        """
        if value is None:
            return None
        url = value.get_secret_value().strip()
        if not url:
            return None
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                url = ASYNC_URL_PREFIX + url[len(plain) :]
        return SecretStr(url)

    @field_validator("embedded_postgres_dir", mode="after")
    @classmethod
    def _anchor_to_project(cls, value: Path) -> Path:
        return value if value.is_absolute() else PROJECT_ROOT / value

    @model_validator(mode="after")
    def _refuse_unsafe_settings(self) -> Settings:
        """Refuse unusable URLs always; in production also default/empty secrets and debug.

        Each error names the setting and carries no value (``input`` is a
        placeholder), so logging the exception cannot leak a secret.
        """
        problems: list[tuple[str, str]] = []
        for name in ("database_url", "database_admin_url", "database_platform_url"):
            url = getattr(self, name)
            if url is not None and not url.get_secret_value().startswith(ASYNC_URL_PREFIX):
                problems.append(
                    (
                        name,
                        f"{ENV_PREFIX}{name.upper()} must be a PostgreSQL URL "
                        "(postgresql:// or postgresql+asyncpg://)",
                    )
                )
        if self.environment is Environment.PRODUCTION:
            problems.extend(self._production_problems())
        if problems:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("unsafe_setting", message),
                        loc=(name,),
                        input="<hidden>",
                    )
                    for name, message in problems
                ],
            )
        return self

    def _production_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        for name, dev_default in self.SECRET_DEFAULTS.items():
            secret = getattr(self, name)
            value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
            env_name = f"{ENV_PREFIX}{name.upper()}"
            if not value:
                problems.append((name, f"{env_name} must be set in production"))
            elif dev_default and value == dev_default:
                problems.append(
                    (name, f"{env_name} still has its development default; set a real secret")
                )
            elif len(value) < MIN_PRODUCTION_SECRET_LENGTH:
                problems.append(
                    (
                        name,
                        f"{env_name} is too short for production "
                        f"(at least {MIN_PRODUCTION_SECRET_LENGTH} characters)",
                    )
                )
        if self.database_url is None:
            problems.append(
                (
                    "database_url",
                    f"{ENV_PREFIX}DATABASE_URL must be set in production "
                    "(the embedded PostgreSQL is for development only)",
                )
            )
        if (
            self.USES_PLATFORM_ROLE
            and self.database_url is not None
            and self.database_platform_url is None
        ):
            problems.append(
                (
                    "database_platform_url",
                    f"{ENV_PREFIX}DATABASE_PLATFORM_URL must be set in production "
                    "(the platform role's URL, with its own password)",
                )
            )
        if self.debug:
            problems.append(("debug", f"{ENV_PREFIX}DEBUG must be false in production"))
        if not self.revocation_check:
            problems.append(
                ("revocation_check", f"{ENV_PREFIX}REVOCATION_CHECK must be true in production")
            )
        return problems

    def serving_problems(self) -> list[tuple[str, str]]:
        """(setting, message) for what a *serving* process of this service cannot
        start without in production, beyond the checks every process makes (a
        migration Job reads the same settings and need not have it). Services
        override it; their ``main`` refuses to serve in production while any, and
        tests/unit/deploy checks that the manifests supply each setting."""
        return []

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION


_settings_cache: dict[type[Settings], Settings] = {}


@overload
def get_settings() -> Settings: ...
@overload
def get_settings(settings_cls: type[SettingsT]) -> SettingsT: ...
def get_settings(settings_cls: type[Settings] = Settings) -> Settings:
    """The process-wide settings of ``settings_cls``, read and validated once."""
    cached = _settings_cache.get(settings_cls)
    if cached is None:
        cached = settings_cls()
        _settings_cache[settings_cls] = cached
    return cached


def clear_settings_cache() -> None:
    """Forget cached settings (tests that change the environment call this)."""
    _settings_cache.clear()
