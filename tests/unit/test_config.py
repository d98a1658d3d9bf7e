"""Settings: environment names, .env, validation, and refusal of unsafe production set-ups."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr, ValidationError

from cardinsa_foundation import config
from cardinsa_foundation.config import (
    DEV_PAGE_TOKEN_SECRET,
    DEV_SIGNING_KEY_ENCRYPTION_KEY,
    PROJECT_ROOT,
    Environment,
    Settings,
    clear_settings_cache,
    get_settings,
)

STRONG_A = "a-strong-production-secret-0123456789abcdef"
STRONG_B = "another-production-secret-0123456789abcdef"
DB_PASSWORD = "pw-that-must-not-leak-42"
PROD_DB_URL = f"postgresql://cardinsa_app:{DB_PASSWORD}@db.internal:5432/cardinsa"
PROD_PLATFORM_URL = f"postgresql://cardinsa_platform:{DB_PASSWORD}x@db.internal:5432/cardinsa"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No CARDINSA_* / DATABASE_URL / ENVIRONMENT from the machine, no .env in cwd."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("CARDINSA_") or name.upper() in ("DATABASE_URL", "ENVIRONMENT"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    clear_settings_cache()
    yield
    clear_settings_cache()


def make(**values: Any) -> Settings:
    """Settings from arguments and the environment only (never a developer's .env)."""
    return Settings(_env_file=None, **values)


def production(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "environment": "production",
        "database_url": PROD_DB_URL,
        "database_platform_url": PROD_PLATFORM_URL,
        "signing_key_encryption_key": STRONG_A,
        "page_token_secret": STRONG_B,
    }
    values.update(overrides)
    return values


def everything_said(error: ValidationError) -> str:
    """All the ways an error may end up in a log or a crash report."""
    return "\n".join(
        [str(error), repr(error), json.dumps(error.errors(), default=str), error.json()]
    )


# --- defaults and sources -----------------------------------------------------------


def test_development_defaults_need_no_configuration() -> None:
    settings = make()
    assert settings.environment is Environment.DEVELOPMENT
    assert not settings.is_production
    assert settings.debug is False
    assert settings.database_url is None
    assert settings.embedded_postgres_dir == PROJECT_ROOT / ".data" / "postgres"
    assert settings.embedded_postgres_port == 55432
    assert settings.grpc_host == "127.0.0.1"
    assert settings.workers == 1
    assert settings.access_token_ttl_s == 900
    assert settings.clock_skew_s == 30
    assert settings.page_token_secret.get_secret_value() == DEV_PAGE_TOKEN_SECRET


def test_project_root_is_the_repository() -> None:
    assert (PROJECT_ROOT / "pyproject.toml").is_file()
    assert (PROJECT_ROOT / "shared" / "cardinsa_foundation" / "config.py").is_file()


def test_prefixed_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDINSA_DB_POOL_SIZE", "7")
    monkeypatch.setenv("CARDINSA_LOG_JSON", "false")
    monkeypatch.setenv("CARDINSA_PAGE_TOKEN_SECRET", "from-env")
    monkeypatch.setenv("DB_POOL_SIZE", "99")  # unprefixed names are not ours
    settings = make()
    assert settings.db_pool_size == 7
    assert settings.log_json is False
    assert settings.page_token_secret.get_secret_value() == "from-env"


def test_database_url_and_environment_are_also_read_without_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://app@db:5432/cardinsa")
    monkeypatch.setenv("ENVIRONMENT", "Staging")
    settings = make()
    assert settings.environment is Environment.STAGING
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgresql+asyncpg://app@db:5432/cardinsa"

    monkeypatch.setenv("CARDINSA_DATABASE_URL", "postgresql+asyncpg://ours@db/cardinsa")
    monkeypatch.setenv("CARDINSA_ENVIRONMENT", "test")
    settings = make()
    assert settings.environment is Environment.TEST  # the prefixed name wins
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgresql+asyncpg://ours@db/cardinsa"


def test_dotenv_file_is_read_and_the_environment_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = tmp_path / "custom.env"
    dotenv.write_text(
        "# comment\n"
        "CARDINSA_LOG_LEVEL=DEBUG\n"
        "CARDINSA_WORKERS=3\n"
        "DATABASE_URL=postgresql://fromfile@db/x\n"
        "SOMETHING_ELSE=ignored\n"
    )
    monkeypatch.setenv("CARDINSA_WORKERS", "5")
    settings = Settings(_env_file=dotenv)  # type: ignore[call-arg]
    assert settings.log_level == "DEBUG"
    assert settings.workers == 5
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgresql+asyncpg://fromfile@db/x"


def test_dotenv_in_the_working_directory_is_read_by_default(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CARDINSA_JWT_AUDIENCE=from-cwd-dotenv\n")
    assert Settings().jwt_audience == "from-cwd-dotenv"


def test_env_example_loads() -> None:
    """(That it documents every setting of every service: tests/unit/test_env_example.py.)"""
    example = PROJECT_ROOT / ".env.example"
    settings = Settings(_env_file=example)  # type: ignore[call-arg]
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.database_url is None  # empty means "use the embedded server"


def test_cors_origins_comma_separated_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDINSA_CORS_ORIGINS", "https://a.example, https://b.example")
    assert make().cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("CARDINSA_CORS_ORIGINS", '["https://c.example"]')
    assert make().cors_origins == ["https://c.example"]


def test_embedded_postgres_dir_relative_to_project_root(tmp_path: Path) -> None:
    assert make(embedded_postgres_dir="var/pg").embedded_postgres_dir == PROJECT_ROOT / "var/pg"
    assert make(embedded_postgres_dir=tmp_path).embedded_postgres_dir == tmp_path


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(ValidationError, match="db_pool_size"):
        make(db_pool_size=0)
    with pytest.raises(ValidationError, match="embedded_postgres_port"):
        make(embedded_postgres_port=70000)
    with pytest.raises(ValidationError, match="environment"):
        make(environment="prod")


def test_bad_database_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as caught:
        make(database_url=f"mysql://root:{DB_PASSWORD}@db/x")
    said = everything_said(caught.value)
    assert "CARDINSA_DATABASE_URL must be a PostgreSQL URL" in said
    assert DB_PASSWORD not in said


def test_secrets_are_masked_in_repr() -> None:
    settings = make(**production())
    assert DB_PASSWORD not in repr(settings)
    assert STRONG_A not in repr(settings)
    assert STRONG_A not in settings.model_dump_json()


# --- production refusal -------------------------------------------------------------


def test_a_complete_production_configuration_starts() -> None:
    settings = make(**production())
    assert settings.is_production
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value().startswith("postgresql+asyncpg://")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (
            "signing_key_encryption_key",
            DEV_SIGNING_KEY_ENCRYPTION_KEY,
            "CARDINSA_SIGNING_KEY_ENCRYPTION_KEY still has its development default",
        ),
        (
            "page_token_secret",
            DEV_PAGE_TOKEN_SECRET,
            "CARDINSA_PAGE_TOKEN_SECRET still has its development default",
        ),
        ("page_token_secret", "", "CARDINSA_PAGE_TOKEN_SECRET must be set in production"),
        ("signing_key_encryption_key", "short-but-secret-value", "is too short for production"),
        ("debug", True, "CARDINSA_DEBUG must be false in production"),
        ("database_url", None, "CARDINSA_DATABASE_URL must be set in production"),
        (
            "database_platform_url",
            None,
            "CARDINSA_DATABASE_PLATFORM_URL must be set in production",
        ),
    ],
)
def test_production_refuses_unsafe_settings(field: str, value: Any, expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        make(**production(**{field: value}))
    said = everything_said(caught.value)
    assert expected in said
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]
    for secret in (STRONG_A, STRONG_B, DB_PASSWORD, "short-but-secret-value"):
        assert secret not in said
    if isinstance(value, str) and value:
        assert value not in said  # not even the (public) default is echoed


def test_production_refusal_from_the_environment_names_every_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "PRODUCTION")
    monkeypatch.setenv("DATABASE_URL", PROD_DB_URL)
    monkeypatch.setenv("CARDINSA_DATABASE_PLATFORM_URL", PROD_PLATFORM_URL)
    monkeypatch.setenv("CARDINSA_DEBUG", "1")
    monkeypatch.setenv("CARDINSA_PAGE_TOKEN_SECRET", "x")
    with pytest.raises(ValidationError) as caught:
        make()
    assert {error["loc"][0] for error in caught.value.errors()} == {
        "signing_key_encryption_key",
        "page_token_secret",
        "debug",
    }
    assert DB_PASSWORD not in everything_said(caught.value)


def test_a_service_without_cross_tenant_paths_needs_no_platform_url() -> None:
    class NoPlatform(Settings):
        USES_PLATFORM_ROLE: ClassVar[bool] = False

    settings = NoPlatform(_env_file=None, **production(database_platform_url=None))  # type: ignore[call-arg]
    assert settings.is_production and settings.database_platform_url is None
    platform = make(database_platform_url="postgres://cardinsa_platform@db/x")
    assert platform.database_platform_url is not None
    assert platform.database_platform_url.get_secret_value().startswith("postgresql+asyncpg://")


def test_staging_accepts_development_secrets() -> None:
    assert make(environment="staging").environment is Environment.STAGING


# --- subclasses and the cache -------------------------------------------------------


class ServiceSettings(Settings):
    """What a service does: add its own fields and secrets."""

    grpc_port: int = 50051
    webhook_secret: SecretStr = SecretStr("dev-webhook-secret")

    SECRET_DEFAULTS: ClassVar = {**Settings.SECRET_DEFAULTS, "webhook_secret": "dev-webhook-secret"}


def test_services_subclass_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDINSA_GRPC_PORT", "6001")
    monkeypatch.setenv("DATABASE_URL", "postgresql://svc@db/x")
    settings = ServiceSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.grpc_port == 6001
    assert settings.database_url is not None  # inherited alias still works
    with pytest.raises(ValidationError) as caught:
        ServiceSettings(_env_file=None, **production())  # type: ignore[call-arg]
    assert "CARDINSA_WEBHOOK_SECRET still has its development default" in str(caught.value)
    ok = ServiceSettings(_env_file=None, **production(webhook_secret=STRONG_A))  # type: ignore[call-arg]
    assert ok.is_production


def test_get_settings_is_cached_per_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDINSA_WORKERS", "2")
    first = get_settings()
    monkeypatch.setenv("CARDINSA_WORKERS", "4")
    assert get_settings() is first
    assert first.workers == 2
    service = get_settings(ServiceSettings)
    assert isinstance(service, ServiceSettings)
    assert service is get_settings(ServiceSettings)
    assert service.workers == 4
    clear_settings_cache()
    assert get_settings().workers == 4


def test_get_settings_fails_at_start_in_unsafe_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARDINSA_ENVIRONMENT", "production")
    monkeypatch.setenv("CARDINSA_DATABASE_URL", PROD_DB_URL)
    with pytest.raises(ValidationError, match="CARDINSA_PAGE_TOKEN_SECRET"):
        config.get_settings()
