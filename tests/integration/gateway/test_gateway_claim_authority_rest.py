"""Claim authority over REST through the real gateway: the bands of a second
currency (PATCH, GET with ``currency_code``, the ``:list`` custom GET), their
refusals as JSON, and the claim settings' PATCH with its ``update_mask`` query.
The servers, Envoy and the company are the schemathesis module's ``suite``."""

from __future__ import annotations

from typing import Any

import pytest
from test_gateway_schemathesis import Suite, suite

pytestmark = pytest.mark.asyncio(loop_scope="session")

__all__ = ["suite"]  # the fixture, shared with the schemathesis module


def money(units: int, currency: str) -> dict[str, Any]:
    return {"currency_code": currency, "units": str(units)}


def reason(body: dict[str, Any]) -> str:
    infos = [d for d in body.get("details", []) if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert len(infos) == 1, body
    return str(infos[0]["reason"])


def violations(body: dict[str, Any]) -> set[str]:
    return {
        v["field"]
        for d in body.get("details", [])
        if d["@type"].endswith("google.rpc.BadRequest")
        for v in d["field_violations"]
    }


async def test_bands_per_currency_over_rest(suite: Suite) -> None:
    gateway, token = suite.gateway, suite.token
    default = await gateway.request("GET", "/v1/claimApprovalBands", token=token)
    assert default.status == 200, default.body
    home = default.json()["currency_code"]
    assert home and home != "NZD"

    missing = await gateway.request("GET", "/v1/claimApprovalBands?currency_code=NZD", token=token)
    assert missing.status == 400, missing.body
    assert reason(missing.json()) == "NO_APPROVAL_BANDS_FOR_CURRENCY"

    body = {"band_1_limit": money(700, "NZD"), "band_2_limit": money(900, "NZD")}
    made = await gateway.request("PATCH", "/v1/claimApprovalBands", body, token=token)
    assert made.status == 200, made.body
    bands = made.json()
    assert bands["currency_code"] == "NZD" and bands["configured"] and bands["etag"]
    read = await gateway.request("GET", "/v1/claimApprovalBands?currency_code=NZD", token=token)
    assert read.status == 200 and read.json() == bands

    listed = await gateway.request("GET", "/v1/claimApprovalBands:list", token=token)
    assert listed.status == 200, listed.body
    currencies = [b["currency_code"] for b in listed.json()["approval_bands"]]
    assert "NZD" in currencies and home in currencies and currencies == sorted(currencies)

    mixed = {"band_1_limit": money(1, "NZD"), "band_2_limit": money(2, "AUD")}
    refused = await gateway.request("PATCH", "/v1/claimApprovalBands", mixed, token=token)
    assert refused.status == 400, refused.body
    assert violations(refused.json()) == {"approval_bands.band_2_limit.currency_code"}
    stale = await gateway.request(
        "PATCH", "/v1/claimApprovalBands", {**body, "etag": '"stale"'}, token=token
    )
    assert stale.status == 409, stale.body
    assert reason(stale.json()) == "ETAG_MISMATCH"


async def test_claim_settings_over_rest(suite: Suite) -> None:
    gateway, token = suite.gateway, suite.token
    path = "/v1/claimSettings?update_mask=require_segregation_of_duties"
    on = await gateway.request("PATCH", path, {"require_segregation_of_duties": True}, token=token)
    assert on.status == 200, on.body
    assert on.json()["require_segregation_of_duties"] is True and on.json()["etag"]
    read = await gateway.request("GET", "/v1/claimSettings", token=token)
    assert read.status == 200 and read.json() == on.json()
    no_mask = await gateway.request(
        "PATCH", "/v1/claimSettings", {"require_segregation_of_duties": False}, token=token
    )
    assert no_mask.status == 400, no_mask.body
    assert violations(no_mask.json()) == {"update_mask"}
