"""Webhook subscription rules: event type patterns, fields, targets, rotation, redelivery."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cardinsa_company.application.webhooks import url_target_problem
from cardinsa_company.domain.subscriptions import (
    MAX_EVENT_TYPES,
    SubscriptionSpec,
    audited_url,
    check_event_type,
    check_redelivery,
    check_spec,
    normalize_spec,
    previous_secret_ttl,
    secret_hint,
    target_problem,
)
from cardinsa_foundation.errors import FailedPrecondition, InvalidArgument

GOOD = SubscriptionSpec(url="https://1.1.1.1/hooks", event_types=("*",))


@pytest.mark.parametrize(
    "pattern",
    [
        "*",
        "cardinsa.core.policy.bound.v1",
        "cardinsa.company.company.updated.v12",
        "cardinsa.*",
        "cardinsa.core.*",
        "cardinsa.core.claim.*",
        "cardinsa.core.claim.opened.*",
    ],
)
def test_event_type_patterns_that_name_types(pattern: str) -> None:
    assert check_event_type(pattern) == ""


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "policy.bound",
        "cardinsa.core.policy.bound",  # no version
        "cardinsa.core.policy.bound.v0",
        "Cardinsa.core.policy.bound.v1",
        "cardinsa.core.Policy.bound.v1",
        "cardinsa.core.claim*",  # not whole segments
        "cardinsa.*.claim.*",
        "core.*",
        "cardinsa.core.claim.opened.v1.*",  # longer than any type
        "cardinsa.9core.*",
        "**",
        "cardinsa." + "a" * 300 + ".x.y.v1",
    ],
)
def test_event_type_patterns_that_do_not(pattern: str) -> None:
    assert check_event_type(pattern) != ""


def test_a_valid_spec_has_no_violations_and_normalising_drops_repeats() -> None:
    spec = normalize_spec(
        SubscriptionSpec(
            url="  https://1.1.1.1/hooks ",
            event_types=(" cardinsa.core.* ", "cardinsa.core.*", "*"),
            description=" Claims feed ",
        )
    )
    assert spec.url == "https://1.1.1.1/hooks"
    assert spec.event_types == ("cardinsa.core.*", "*")
    assert spec.description == "Claims feed"
    assert check_spec(spec, prefix="w", allow_http=False) == []


def test_each_field_is_named_in_its_violation() -> None:
    spec = SubscriptionSpec(
        url="http://1.1.1.1/",
        event_types=("cardinsa.core.claim.*", "nope"),
        description="x" * 501,
        state="7",
    )
    fields = {v.field for v in check_spec(spec, prefix="w", allow_http=False)}
    assert fields == {"w.url", "w.event_types[1]", "w.description", "w.state"}
    # http is fine where allowed.
    fields = {v.field for v in check_spec(spec, prefix="w", allow_http=True)}
    assert "w.url" not in fields


def test_event_types_count_between_one_and_the_maximum() -> None:
    empty = SubscriptionSpec(url=GOOD.url, event_types=())
    assert [v.field for v in check_spec(empty, prefix="w", allow_http=False)] == ["w.event_types"]
    many = tuple(f"cardinsa.core.claim{i}.*" for i in range(MAX_EVENT_TYPES + 1))
    too_many = SubscriptionSpec(url=GOOD.url, event_types=many)
    assert [v.field for v in check_spec(too_many, prefix="w", allow_http=False)] == [
        "w.event_types"
    ]
    enough = SubscriptionSpec(url=GOOD.url, event_types=many[:MAX_EVENT_TYPES])
    assert check_spec(enough, prefix="w", allow_http=False) == []


def test_an_unset_state_is_fine_on_create_but_not_in_an_update_mask() -> None:
    assert check_spec(GOOD, prefix="w", allow_http=False) == []
    violations = check_spec(GOOD, prefix="w", allow_http=False, fields=["state"])
    assert [v.field for v in violations] == ["w.state"]
    paused = SubscriptionSpec(state="PAUSED")
    assert check_spec(paused, prefix="w", allow_http=False, fields=["state"]) == []


def test_a_mask_limits_the_check() -> None:
    spec = SubscriptionSpec(description="fine")
    assert check_spec(spec, prefix="w", allow_http=False, fields=["description"]) == []
    assert {v.field for v in check_spec(spec, prefix="w", allow_http=False)} == {
        "w.url",
        "w.event_types",
    }


def test_every_resolved_address_must_be_public() -> None:
    assert target_problem(["1.1.1.1", "2606:4700:4700::1111"], allow_private=False) == ""
    assert target_problem(["1.1.1.1", "10.0.0.5"], allow_private=False) != ""
    assert target_problem([], allow_private=True) != ""
    assert target_problem(["127.0.0.1"], allow_private=True) == ""


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://10.0.0.5/",
        "https://169.254.169.254/latest",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://localhost/",
        "https://nonexistent.invalid/",
        "http://1.1.1.1/",
        "https://user:pw@1.1.1.1/",
    ],
)
async def test_targets_that_are_refused(url: str) -> None:
    assert await url_target_problem(url, allow_http=False, allow_private=False) != ""


async def test_targets_that_are_accepted() -> None:
    assert (
        await url_target_problem("https://1.1.1.1:8443/x", allow_http=False, allow_private=False)
        == ""
    )
    assert (
        await url_target_problem("http://127.0.0.1:9/", allow_http=True, allow_private=True) == ""
    )
    assert (
        await url_target_problem("http://localhost:9/", allow_http=True, allow_private=True) == ""
    )


def test_previous_secret_ttl() -> None:
    assert previous_secret_ttl(0) == timedelta(hours=24)
    assert previous_secret_ttl(60) == timedelta(seconds=60)
    assert previous_secret_ttl(7 * 86400) == timedelta(days=7)
    for bad in (-1, 7 * 86400 + 1):
        with pytest.raises(InvalidArgument) as caught:
            previous_secret_ttl(bad)
        assert [v.field for v in caught.value.field_violations] == ["previous_secret_ttl_seconds"]


def test_secret_hint_is_the_last_four_characters() -> None:
    assert secret_hint("whsec_abcdefXYZ1") == "XYZ1"


def test_only_finished_deliveries_are_redelivered() -> None:
    check_redelivery("DELIVERED", "d")
    check_redelivery("DEAD_LETTERED", "d")
    with pytest.raises(FailedPrecondition) as caught:
        check_redelivery("PENDING", "d")
    assert caught.value.reason == "DELIVERY_PENDING"


def test_the_audited_url_has_no_query() -> None:
    assert audited_url("https://h.example/p/q?token=abc#x") == "https://h.example/p/q"
