"""Tracing without servers: the settings, the switch, statement span names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cardinsa_foundation import tracing
from cardinsa_foundation.config import Settings


def settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[arg-type]


def test_tracing_is_off_by_default_and_configure_creates_nothing() -> None:
    defaults = settings()
    assert defaults.tracing_enabled is False
    assert defaults.tracing_otlp_endpoint == "http://127.0.0.1:4317"
    assert tracing.configure(defaults, "unit") is False
    assert tracing.TRACER is None and tracing._provider is None
    assert (
        tracing.start_server_span(
            "/a.B/C", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
        )
        is None
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:4317", ("127.0.0.1", 4317, False)),
        ("http://collector", ("collector", 4317, False)),
        ("https://collector.example.test:443/", ("collector.example.test", 443, True)),
        ("https://collector.example.test", ("collector.example.test", 443, True)),
    ],
)
def test_otlp_endpoints(url: str, expected: tuple[str, int, bool]) -> None:
    assert tracing.otlp_endpoint(url) == expected
    assert settings(tracing_otlp_endpoint=url).tracing_otlp_endpoint == url


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:4317",
        "grpc://collector:4317",
        "http://collector:4317/v1/traces",
        "http://user:pw@collector:4317",
        "http://collector:99999",
        "",
    ],
)
def test_a_malformed_endpoint_is_refused_at_start(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(tracing_enabled=True, tracing_otlp_endpoint=url)
    assert "tracing_otlp_endpoint" in str(caught.value)
    assert "pw" not in str(caught.value)  # inputs are hidden in settings errors


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_the_sample_ratio_is_a_share(ratio: float) -> None:
    with pytest.raises(ValidationError):
        settings(tracing_sample_ratio=ratio)


@pytest.mark.parametrize(
    ("statement", "name", "text"),
    [
        ('SELECT * FROM "core"."read_policy"($1, $2)', "SELECT core.read_policy", None),
        ("INSERT INTO core.policies (id) VALUES ($1)", "INSERT core.policies", None),
        ("UPDATE company.companies SET state = $1", "UPDATE company.companies", None),
        ("DELETE FROM identity.sessions WHERE id = $1", "DELETE identity.sessions", None),
        ("SELECT set_config('cardinsa.company_id', $1, true)", "SELECT set_config", None),
        (
            "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT set_config("
            "'cardinsa.company_id', '6c0f1d5e-0000-4000-8000-000000000001', true)",
            "BEGIN",
            "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT set_config('?', '?', true)",
        ),
        ("COMMIT", "COMMIT", "COMMIT"),
        ("ALTER ROLE x PASSWORD 'hunter2hunter2'", "ALTER", "ALTER ROLE x PASSWORD '?'"),
    ],
)
def test_statement_spans_are_named_by_operation_and_target(
    statement: str, name: str, text: str | None
) -> None:
    described_name, _, described_text = tracing._describe(statement)
    assert described_name == name
    if text is not None:
        assert described_text == text
    assert "hunter2" not in described_text


def test_statements_outside_a_traced_call_get_no_span() -> None:
    with tracing.database_span("SELECT 1") as span:
        assert span is None
