"""Webhook subscriptions over REST: the real gateway (Envoy, stopped by its PID)
in front of this session's identity and company servers."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from company_harness import CompanyHarness
from support.gateway_harness import Endpoint, Gateway, running_gateway
from support.identity_harness import IdentityHarness

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def company_gateway(
    identity: IdentityHarness, company: CompanyHarness, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    async with running_gateway(
        identity,
        tmp_path_factory.mktemp("webhooks-gateway"),
        {
            "identity": [Endpoint.parse(identity.app.server.address)],
            "company": [Endpoint.parse(company.app.server.address)],
        },
        all_healthy=False,
    ) as gateway:
        yield gateway


async def test_manage_a_subscription_over_rest(
    company_gateway: Gateway, company: CompanyHarness, identity: IdentityHarness
) -> None:
    token = await identity.token(company.admin_a)
    base = f"/v1/companies/{company.company_a.id}/webhookSubscriptions"
    created = (
        await company_gateway.request(
            "POST",
            base,
            {"url": "https://1.1.1.1/rest-hook", "event_types": ["cardinsa.core.policy.*"]},
            token=token,
        )
    ).ok()
    assert created["secret"].startswith("whsec_") and created["state"] == "ACTIVE"
    one = f"{base}/{created['id']}"
    got = (await company_gateway.request("GET", one, token=token)).ok()
    assert "secret" not in got and got["secret_hint"] == created["secret"][-4:]

    mask = urllib.parse.quote("state,description")
    paused = (
        await company_gateway.request(
            "PATCH",
            f"{one}?update_mask={mask}",
            {"state": "PAUSED", "description": "over REST", "etag": got["etag"]},
            token=token,
        )
    ).ok()
    assert (paused["state"], paused["description"]) == ("PAUSED", "over REST")

    rotated = (
        await company_gateway.request(
            "POST", f"{one}:rotateSecret", {"previous_secret_ttl_seconds": 60}, token=token
        )
    ).ok()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]

    listed = (await company_gateway.request("GET", f"{base}?page_size=100", token=token)).ok()
    assert created["id"] in {s["id"] for s in listed["webhook_subscriptions"]}
    deliveries = (await company_gateway.request("GET", f"{one}/deliveries", token=token)).ok()
    assert deliveries.get("webhook_deliveries", []) == []

    # A private target: 400 naming the field.
    refused = await company_gateway.request(
        "POST", base, {"url": "https://169.254.169.254/latest", "event_types": ["*"]}, token=token
    )
    assert refused.status == 400, refused.body
    violations = [
        v["field"]
        for d in refused.json()["details"]
        if d["@type"].endswith("google.rpc.BadRequest")
        for v in d["field_violations"]
    ]
    assert violations == ["webhook_subscription.url"]

    # Another company's caller: 404, as for an id that does not exist.
    other = await identity.token(company.admin_b)
    assert (await company_gateway.request("GET", one, token=other)).status == 404

    deleted = (await company_gateway.request("DELETE", one, token=token)).ok()
    assert deleted["delete_time"]
