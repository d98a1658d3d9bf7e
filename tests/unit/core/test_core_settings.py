"""Core settings, the settings fallback of the tenant directory, numbering."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from cardinsa_core.application.tenants import SettingsTenantDirectory
from cardinsa_core.domain.numbering import format_number, valid_prefix
from cardinsa_core.domain.policies import PolicyAction, PolicyState
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.context import Principal, PrincipalKind
from cardinsa_foundation.errors import PermissionDenied
from cardinsa_foundation.lifecycle import Lifecycle


def settings(**values: object) -> CoreSettings:
    return CoreSettings(_env_file=None, environment="test", **values)  # type: ignore[arg-type, call-arg]


def test_defaults() -> None:
    s = settings()
    assert (s.core_port, s.core_metrics_port) == (50053, 9053)
    assert s.claim_approval_band_limits == (Decimal(1000), Decimal(5000))
    assert s.company_address is None and s.default_currency == "USD"


@pytest.mark.parametrize(
    "values",
    [
        {"default_currency": "usd"},
        {"policy_number_prefix": "pol"},
        {"claim_number_prefix": "TOO-LONG-PREFIX"},
        {"claim_approval_band_limits": ("5000", "1000")},
        {"reinstatement_window_days": -1},
    ],
)
def test_invalid_settings(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        settings(**values)


async def test_the_settings_directory() -> None:
    company = uuid.uuid4()
    directory = SettingsTenantDirectory(
        settings(default_currency="EUR", tenant_currencies={str(company).upper(): "AED"})
    )
    assert await directory.default_currency(company) == "AED"
    assert await directory.default_currency(uuid.uuid4()) == "EUR"
    await directory.check_principal(
        Principal("u", PrincipalKind.USER, str(company), frozenset(), frozenset())
    )
    with pytest.raises(PermissionDenied):
        await directory.check_principal(Principal("u", PrincipalKind.USER, None))


def test_numbers() -> None:
    assert format_number("POL", 42) == "POL-00000042"
    assert format_number("CLM", 123_456_789) == "CLM-123456789"
    with pytest.raises(ValueError):
        format_number("POL", 0)
    assert valid_prefix("P2") and not valid_prefix("2P") and not valid_prefix("")


def test_a_lifecycle_table_is_typed() -> None:
    table: Any = {(PolicyAction.BIND, PolicyAction.BIND): PolicyState.BOUND}
    with pytest.raises(TypeError):
        Lifecycle("x", PolicyState, PolicyAction, table)


async def test_which_tenant_directory_is_wired() -> None:
    import grpc

    from cardinsa_core.application.tenants import CompanyServiceDirectory
    from cardinsa_core.main import tenant_directory
    from cardinsa_foundation.config import Environment

    async with grpc.aio.insecure_channel("127.0.0.1:1") as identity:
        chosen, channel = tenant_directory(settings(), identity)
        assert chosen.source == "settings" and channel is None
        without_key = settings(company_address="127.0.0.1:2")
        chosen, channel = tenant_directory(without_key, identity)
        assert chosen.source == "settings" and channel is None
        with pytest.raises(RuntimeError):
            tenant_directory(
                without_key.model_copy(update={"environment": Environment.PRODUCTION}), identity
            )
        chosen, channel = tenant_directory(
            settings(company_address="127.0.0.1:2", service_api_key="cdk_x_y"), identity
        )
        assert isinstance(chosen, CompanyServiceDirectory) and channel is not None
        await channel.close()
