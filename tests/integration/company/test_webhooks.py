"""Webhook subscriptions and deliveries over real gRPC, on the real database.

Deliveries and attempts are the event dispatcher's to write; here they are
inserted directly, in the states the API must handle.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import pytest_asyncio
from company_harness import CompanyHarness, Metadata, failure
from google.protobuf import field_mask_pb2, json_format
from sqlalchemy import select
from support.grpc_errors import error_info, field_violations
from support.identity_harness import IdentityHarness

from cardinsa.company.v1 import (
    company_service_pb2,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
    webhooks_pb2,
)
from cardinsa_company.application.webhooks import secret_cipher
from cardinsa_company.main import CompanyApp, build
from cardinsa_company.repository.models import (
    WebhookDeliveryRow,
    WebhookSubscriptionRow,
)
from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_foundation.db import app_role_url

pb = webhook_service_pb2
Sub = webhooks_pb2.WebhookSubscription
Delivery = webhooks_pb2.WebhookDelivery
PUBLIC_URL = "https://1.1.1.1/hooks/cardinsa"


def _stub(company: CompanyHarness) -> Any:
    return company.webhooks


async def _create(
    company: CompanyHarness,
    metadata: Metadata,
    company_id: str,
    *,
    url: str = PUBLIC_URL,
    event_types: tuple[str, ...] = ("cardinsa.core.claim.*",),
    request_id: str = "",
    stub: Any = None,
    **extra: Any,
) -> Sub:
    reply: Sub = await (stub or _stub(company)).CreateWebhookSubscription(
        pb.CreateWebhookSubscriptionRequest(
            company_id=company_id,
            webhook_subscription=Sub(url=url, event_types=list(event_types), **extra),
            request_id=request_id,
        ),
        metadata=metadata,
    )
    return reply


async def _row(company: CompanyHarness, company_id: str, sub_id: str) -> WebhookSubscriptionRow:
    async with company.app.ctx.db.unit_of_work(company_id=uuid.UUID(company_id)) as session:
        row = await session.scalar(
            select(WebhookSubscriptionRow).where(WebhookSubscriptionRow.id == uuid.UUID(sub_id))
        )
    assert row is not None
    return row


async def _audit(company: CompanyHarness, metadata: Metadata, entity_id: str) -> list[Any]:
    reply = await company.companies.ListAuditEvents(
        company_service_pb2.ListAuditEventsRequest(filter=f'entity_id = "{entity_id}"'),
        metadata=metadata,
    )
    return list(reply.audit_events)


async def test_subscription_lifecycle_and_the_secret_shown_once(company: CompanyHarness) -> None:
    as_a = await company.as_(company.admin_a)
    a = company.company_a.id
    stub = _stub(company)
    created = await _create(
        company,
        as_a,
        a,
        url=f"{PUBLIC_URL}?token=receivers-own-token",
        event_types=("cardinsa.core.claim.*", "cardinsa.company.company.updated.v1"),
        description="Claims feed",
    )
    assert created.secret.startswith("whsec_") and len(created.secret) > 40
    assert created.secret_hint == created.secret[-4:]
    assert created.state == Sub.ACTIVE and created.company_id == a and created.etag
    assert list(created.event_types) == [
        "cardinsa.core.claim.*",
        "cardinsa.company.company.updated.v1",
    ]

    # Stored encrypted, bound to the subscription: the clear secret is nowhere in the row.
    row = await _row(company, a, created.id)
    assert created.secret.encode() not in row.secret_ciphertext
    assert created.secret[6:].encode() not in row.secret_ciphertext
    cipher = secret_cipher(company.app.ctx.settings)
    assert cipher.decrypt(created.id, row.secret_ciphertext) == created.secret

    got = await stub.GetWebhookSubscription(
        pb.GetWebhookSubscriptionRequest(company_id=a, webhook_subscription_id=created.id),
        metadata=as_a,
    )
    assert got.secret == "" and got.secret_hint == created.secret_hint
    expected = Sub()
    expected.CopyFrom(created)
    expected.secret = ""
    assert got == expected

    # Update: description and state, with the current etag; a stale one is refused.
    paused = await stub.UpdateWebhookSubscription(
        pb.UpdateWebhookSubscriptionRequest(
            webhook_subscription=Sub(
                company_id=a,
                id=created.id,
                description="Paused for maintenance",
                state=Sub.PAUSED,
                etag=got.etag,
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["description", "state"]),
        ),
        metadata=as_a,
    )
    assert (paused.state, paused.description, paused.secret) == (
        Sub.PAUSED,
        "Paused for maintenance",
        "",
    )
    assert paused.etag != got.etag and paused.url == created.url
    stale = await failure(
        stub.UpdateWebhookSubscription(
            pb.UpdateWebhookSubscriptionRequest(
                webhook_subscription=Sub(company_id=a, id=created.id, state=1, etag=got.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["state"]),
            ),
            metadata=as_a,
        )
    )
    assert stale.code() == grpc.StatusCode.ABORTED
    # The URL is checked again when it changes; fields outside the mask are refused.
    for url in ("https://10.1.2.3/", "ftp://1.1.1.1/"):
        error = await failure(
            stub.UpdateWebhookSubscription(
                pb.UpdateWebhookSubscriptionRequest(
                    webhook_subscription=Sub(company_id=a, id=created.id, url=url),
                    update_mask=field_mask_pb2.FieldMask(paths=["url"]),
                ),
                metadata=as_a,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "webhook_subscription.url" in field_violations(error)
    error = await failure(
        stub.UpdateWebhookSubscription(
            pb.UpdateWebhookSubscriptionRequest(
                webhook_subscription=Sub(company_id=a, id=created.id, secret="whsec_mine"),
                update_mask=field_mask_pb2.FieldMask(paths=["secret"]),
            ),
            metadata=as_a,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "update_mask" in field_violations(error)
    moved = await stub.UpdateWebhookSubscription(
        pb.UpdateWebhookSubscriptionRequest(
            webhook_subscription=Sub(
                company_id=a, id=created.id, url="https://1.0.0.1/v2", event_types=["*"]
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["url", "event_types"]),
        ),
        metadata=as_a,
    )
    assert (moved.url, list(moved.event_types)) == ("https://1.0.0.1/v2", ["*"])

    # Delete (soft): gone from the list unless asked for, and no longer changeable.
    deleted = await stub.DeleteWebhookSubscription(
        pb.DeleteWebhookSubscriptionRequest(
            company_id=a, webhook_subscription_id=created.id, etag=moved.etag
        ),
        metadata=as_a,
    )
    assert deleted.HasField("delete_time")
    live = await stub.ListWebhookSubscriptions(
        pb.ListWebhookSubscriptionsRequest(company_id=a, page_size=100), metadata=as_a
    )
    assert created.id not in {s.id for s in live.webhook_subscriptions}
    everything = await stub.ListWebhookSubscriptions(
        pb.ListWebhookSubscriptionsRequest(company_id=a, page_size=100, show_deleted=True),
        metadata=as_a,
    )
    assert created.id in {s.id for s in everything.webhook_subscriptions}
    error = await failure(
        stub.RotateWebhookSecret(
            pb.RotateWebhookSecretRequest(company_id=a, webhook_subscription_id=created.id),
            metadata=as_a,
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "WEBHOOK_SUBSCRIPTION_DELETED"

    # Audited: create, update (twice), delete -- and never the secret.
    events = await _audit(company, as_a, created.id)
    assert sorted(e.action for e in events) == [
        "webhook_subscription.create",
        "webhook_subscription.delete",
        "webhook_subscription.update",
        "webhook_subscription.update",
    ]
    dumped = json.dumps([json_format.MessageToDict(e) for e in events])
    assert created.secret not in dumped and created.secret[6:] not in dumped
    assert "receivers-own-token" not in dumped and PUBLIC_URL in dumped


async def test_list_is_newest_first_and_pages(company: CompanyHarness) -> None:
    metadata = await company.as_(company.admin_b)
    b = company.company_b.id
    made = [await _create(company, metadata, b, description=f"n{i}") for i in range(3)]
    stub = _stub(company)
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListWebhookSubscriptions(
            pb.ListWebhookSubscriptionsRequest(company_id=b, page_size=1, page_token=token),
            metadata=metadata,
        )
        seen.extend(s.id for s in page.webhook_subscriptions)
        assert all(s.secret == "" for s in page.webhook_subscriptions)
        token = page.next_page_token
        if not token:
            break
    mine = [s for s in seen if s in {m.id for m in made}]
    assert mine == [m.id for m in reversed(made)]


async def test_a_retry_with_the_request_id_answers_without_the_secret(
    company: CompanyHarness,
) -> None:
    as_a = await company.as_(company.admin_a)
    a = company.company_a.id
    request_id = str(uuid.uuid4())
    first = await _create(company, as_a, a, request_id=request_id)
    again = await _create(company, as_a, a, request_id=request_id)
    assert first.secret and again.secret == ""
    assert (again.id, again.secret_hint, again.etag) == (first.id, first.secret_hint, first.etag)
    other = await failure(_create(company, as_a, a, request_id=request_id, url="https://1.0.0.1/"))
    assert other.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(other).reason == "REQUEST_ID_REUSED"
    events = await _audit(company, as_a, first.id)
    assert [e.action for e in events] == ["webhook_subscription.create"]


async def test_targets_that_are_not_public_or_not_https_are_refused(
    company: CompanyHarness,
) -> None:
    as_a = await company.as_(company.admin_a)
    for url in (
        "https://127.0.0.1/",
        "https://10.0.0.5/",
        "https://169.254.169.254/latest",
        "https://[::1]/",
        "https://[::ffff:10.0.0.1]/",
        "https://localhost/",  # resolves to loopback
        "https://nonexistent.invalid/",  # does not resolve
        "http://example.com",  # http is not allowed here
        "https://user:secret@1.1.1.1/",
        "not a url",
        "",
    ):
        error = await failure(_create(company, as_a, company.company_a.id, url=url))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, url
        assert "webhook_subscription.url" in field_violations(error), url


async def test_fields_are_checked(company: CompanyHarness) -> None:
    as_a = await company.as_(company.admin_a)
    a = company.company_a.id
    cases: list[tuple[dict[str, Any], str]] = [
        ({"event_types": ()}, "webhook_subscription.event_types"),
        ({"event_types": ("claims",)}, "webhook_subscription.event_types[0]"),
        (
            {"event_types": ("*", "cardinsa.core.claim*")},
            "webhook_subscription.event_types[1]",
        ),
        (
            {"event_types": tuple(f"cardinsa.core.r{i}.*" for i in range(101))},
            "webhook_subscription.event_types",
        ),
        ({"description": "d" * 501}, "webhook_subscription.description"),
        ({"state": 9}, "webhook_subscription.state"),
        ({"request_id": "not-a-uuid"}, "request_id"),
    ]
    for fields, name in cases:
        error = await failure(_create(company, as_a, a, **fields))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert name in field_violations(error), (fields, field_violations(error))
    paused = await _create(company, as_a, a, state=Sub.PAUSED, description="d" * 500)
    assert paused.state == Sub.PAUSED


@pytest_asyncio.fixture(loop_scope="session")
async def permissive_company(
    company: CompanyHarness, company_database: str, company_settings: CompanyServiceSettings
) -> AsyncIterator[CompanyApp]:
    """A second company server that allows private targets and plain http (the
    laptop and test setting), over the same database."""
    settings = company_settings.model_copy(
        update={"webhook_allow_private_targets": True, "webhook_allow_http": True}
    )
    app = build(settings, app_role_url(company_database), port=0, metrics_port=0)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def test_private_http_targets_where_the_settings_allow_them(
    company: CompanyHarness, permissive_company: CompanyApp
) -> None:
    as_a = await company.as_(company.admin_a)
    url = f"http://127.0.0.1:{permissive_company.server.address.rsplit(':', 1)[1]}/hook"
    async with grpc.aio.insecure_channel(permissive_company.server.address) as channel:
        stub = webhook_service_pb2_grpc.WebhookServiceStub(channel)
        created = await _create(company, as_a, company.company_a.id, url=url, stub=stub)
        assert created.url == url
        # The unspecified address is never a target.
        error = await failure(
            _create(company, as_a, company.company_a.id, url="http://0.0.0.0/", stub=stub)
        )
        assert "webhook_subscription.url" in field_violations(error)
    # The production-like server still refuses it.
    error = await failure(_create(company, as_a, company.company_a.id, url=url))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_permissions_and_tenancy(company: CompanyHarness, identity: IdentityHarness) -> None:
    as_a = await company.as_(company.admin_a)
    as_b = await company.as_(company.admin_b)
    a, b = company.company_a.id, company.company_b.id
    stub = _stub(company)
    mine = await _create(company, as_a, a)

    viewer = await identity.create_user(company.admin_a, roles=["viewer"])
    as_viewer = await company.as_(viewer)
    error = await failure(_create(company, as_viewer, a))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await failure(
        stub.GetWebhookSubscription(
            pb.GetWebhookSubscriptionRequest(company_id=a, webhook_subscription_id=mine.id),
            metadata=as_viewer,
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    # Another company's subscription answers like one that does not exist.
    for company_id, subscription_id in ((a, mine.id), (b, mine.id), (b, str(uuid.uuid4()))):
        error = await failure(
            stub.GetWebhookSubscription(
                pb.GetWebhookSubscriptionRequest(
                    company_id=company_id, webhook_subscription_id=subscription_id
                ),
                metadata=as_b,
            )
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND, (company_id, subscription_id)
    for call in (
        stub.DeleteWebhookSubscription(
            pb.DeleteWebhookSubscriptionRequest(company_id=b, webhook_subscription_id=mine.id),
            metadata=as_b,
        ),
        stub.RotateWebhookSecret(
            pb.RotateWebhookSecretRequest(company_id=a, webhook_subscription_id=mine.id),
            metadata=as_b,
        ),
        stub.ListWebhookDeliveries(
            pb.ListWebhookDeliveriesRequest(company_id=b, webhook_subscription_id=mine.id),
            metadata=as_b,
        ),
        _create(company, as_b, a),
    ):
        error = await failure(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
    b_list = await stub.ListWebhookSubscriptions(
        pb.ListWebhookSubscriptionsRequest(company_id=b, page_size=100, show_deleted=True),
        metadata=as_b,
    )
    assert mine.id not in {s.id for s in b_list.webhook_subscriptions}
    # A platform admin works in any company (audited as cross-company).
    as_platform = await company.as_(company.platform_admin)
    got = await stub.GetWebhookSubscription(
        pb.GetWebhookSubscriptionRequest(company_id=a, webhook_subscription_id=mine.id),
        metadata=as_platform,
    )
    assert got.id == mine.id


async def test_rotation_keeps_the_old_secret_for_the_overlap(company: CompanyHarness) -> None:
    as_a = await company.as_(company.admin_a)
    a = company.company_a.id
    stub = _stub(company)
    created = await _create(company, as_a, a)
    cipher = secret_cipher(company.app.ctx.settings)
    for ttl in (-1, 7 * 86400 + 1):
        error = await failure(
            stub.RotateWebhookSecret(
                pb.RotateWebhookSecretRequest(
                    company_id=a,
                    webhook_subscription_id=created.id,
                    previous_secret_ttl_seconds=ttl,
                ),
                metadata=as_a,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "previous_secret_ttl_seconds" in field_violations(error)

    rotated = await stub.RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(
            company_id=a, webhook_subscription_id=created.id, etag=created.etag
        ),
        metadata=as_a,
    )
    assert rotated.secret.startswith("whsec_") and rotated.secret != created.secret
    assert rotated.secret_hint == rotated.secret[-4:] and rotated.etag != created.etag
    row = await _row(company, a, created.id)
    assert row.previous_secret_ciphertext is not None
    assert cipher.decrypt(created.id, row.secret_ciphertext) == rotated.secret
    assert cipher.decrypt(created.id, row.previous_secret_ciphertext) == created.secret
    assert row.previous_secret_expire_time == row.update_time + timedelta(hours=24)
    assert rotated.secret.encode() not in row.secret_ciphertext

    again = await stub.RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(
            company_id=a, webhook_subscription_id=created.id, previous_secret_ttl_seconds=600
        ),
        metadata=as_a,
    )
    row = await _row(company, a, created.id)
    assert cipher.decrypt(created.id, row.previous_secret_ciphertext or b"") == rotated.secret
    assert row.previous_secret_expire_time == row.update_time + timedelta(seconds=600)
    # A stale etag does not rotate.
    error = await failure(
        stub.RotateWebhookSecret(
            pb.RotateWebhookSecretRequest(
                company_id=a, webhook_subscription_id=created.id, etag=rotated.etag
            ),
            metadata=as_a,
        )
    )
    assert error.code() == grpc.StatusCode.ABORTED
    events = await _audit(company, as_a, created.id)
    assert [e.action for e in events].count("webhook_subscription.rotate_secret") == 2
    dumped = json.dumps([json_format.MessageToDict(e) for e in events])
    for secret in (created.secret, rotated.secret, again.secret):
        assert secret not in dumped and secret[6:] not in dumped


async def test_deliveries_attempts_and_redelivery(company: CompanyHarness) -> None:
    as_a = await company.as_(company.admin_a)
    a = company.company_a.id
    stub = _stub(company)
    subscription = await _create(company, as_a, a)
    other = await _create(company, as_a, a)
    dead, delivered, pending = await company.insert_deliveries(
        a, subscription.id, ["DEAD_LETTERED", "DELIVERED", "PENDING"]
    )
    (elsewhere,) = await company.insert_deliveries(a, other.id, ["DEAD_LETTERED"])

    listed = await stub.ListWebhookDeliveries(
        pb.ListWebhookDeliveriesRequest(company_id=a, webhook_subscription_id=subscription.id),
        metadata=as_a,
    )
    assert [d.id for d in listed.webhook_deliveries] == [pending, delivered, dead]
    first = listed.webhook_deliveries[0]
    assert first.state == Delivery.PENDING and first.HasField("next_attempt_time")
    filtered = await stub.ListWebhookDeliveries(
        pb.ListWebhookDeliveriesRequest(
            company_id=a,
            webhook_subscription_id=subscription.id,
            filter='state = DEAD_LETTERED AND event_type = "cardinsa.core.claim.opened.v1"',
        ),
        metadata=as_a,
    )
    assert [d.id for d in filtered.webhook_deliveries] == [dead]
    error = await failure(
        stub.ListWebhookDeliveries(
            pb.ListWebhookDeliveriesRequest(
                company_id=a, webhook_subscription_id=subscription.id, filter="secret = 1"
            ),
            metadata=as_a,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT

    attempts = await stub.ListWebhookDeliveryAttempts(
        pb.ListWebhookDeliveryAttemptsRequest(
            company_id=a, webhook_subscription_id=subscription.id, delivery_id=dead
        ),
        metadata=as_a,
    )
    assert [t.number for t in attempts.webhook_delivery_attempts] == [1, 2]
    assert attempts.webhook_delivery_attempts[0].response_excerpt == "busy"

    # Dead-lettered and delivered go back to pending with a fresh budget.
    for delivery_id in (dead, delivered):
        again = await stub.RedeliverWebhookDelivery(
            pb.RedeliverWebhookDeliveryRequest(
                company_id=a, webhook_subscription_id=subscription.id, delivery_id=delivery_id
            ),
            metadata=as_a,
        )
        assert (again.id, again.state, again.attempt_count) == (delivery_id, Delivery.PENDING, 0)
        assert again.HasField("next_attempt_time")
        assert not again.HasField("dead_letter_time") and not again.HasField("deliver_time")
    async with company.app.ctx.db.unit_of_work(company_id=uuid.UUID(a)) as session:
        row = await session.get(WebhookDeliveryRow, uuid.UUID(dead))
        assert row is not None
        assert (row.lease_owner, row.last_error, row.total_attempt_count) == (None, "HTTP 503", 2)
    # A pending one is still being tried.
    for delivery_id in (pending, dead):
        error = await failure(
            stub.RedeliverWebhookDelivery(
                pb.RedeliverWebhookDeliveryRequest(
                    company_id=a, webhook_subscription_id=subscription.id, delivery_id=delivery_id
                ),
                metadata=as_a,
            )
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(error).reason == "DELIVERY_PENDING"
    # Another subscription's delivery, or another company's caller: not found.
    as_b = await company.as_(company.admin_b)
    for metadata, company_id, delivery_id in (
        (as_a, a, elsewhere),
        (as_a, a, "nope"),
        (as_b, a, delivered),
        (as_b, company.company_b.id, delivered),
    ):
        error = await failure(
            stub.RedeliverWebhookDelivery(
                pb.RedeliverWebhookDeliveryRequest(
                    company_id=company_id,
                    webhook_subscription_id=subscription.id,
                    delivery_id=delivery_id,
                ),
                metadata=metadata,
            )
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
        error = await failure(
            stub.ListWebhookDeliveryAttempts(
                pb.ListWebhookDeliveryAttemptsRequest(
                    company_id=company_id,
                    webhook_subscription_id=subscription.id,
                    delivery_id=delivery_id,
                ),
                metadata=metadata,
            )
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
    events = await _audit(company, as_a, dead)
    assert [e.action for e in events] == ["webhook_delivery.redeliver"]

    # A deleted subscription's history stays readable; it is not redelivered.
    await stub.DeleteWebhookSubscription(
        pb.DeleteWebhookSubscriptionRequest(company_id=a, webhook_subscription_id=other.id),
        metadata=as_a,
    )
    history = await stub.ListWebhookDeliveries(
        pb.ListWebhookDeliveriesRequest(company_id=a, webhook_subscription_id=other.id),
        metadata=as_a,
    )
    assert [d.id for d in history.webhook_deliveries] == [elsewhere]
    error = await failure(
        stub.RedeliverWebhookDelivery(
            pb.RedeliverWebhookDeliveryRequest(
                company_id=a, webhook_subscription_id=other.id, delivery_id=elsewhere
            ),
            metadata=as_a,
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_closed_companys_webhooks_are_read_only(company: CompanyHarness) -> None:
    """As for its departments: a platform admin still reads them, nobody changes them."""
    as_platform = await company.as_(company.platform_admin)
    other = await company.create_company()
    subscription = await _create(company, as_platform, other.id)
    (delivery_id,) = await company.insert_deliveries(other.id, subscription.id, ["DEAD_LETTERED"])
    await company.companies.CloseCompany(
        company_service_pb2.CloseCompanyRequest(company_id=other.id, reason="integration test"),
        metadata=as_platform,
    )
    stub = _stub(company)
    got = await stub.GetWebhookSubscription(
        pb.GetWebhookSubscriptionRequest(
            company_id=other.id, webhook_subscription_id=subscription.id
        ),
        metadata=as_platform,
    )
    assert got.id == subscription.id
    for call in (
        _create(company, as_platform, other.id),
        stub.DeleteWebhookSubscription(
            pb.DeleteWebhookSubscriptionRequest(
                company_id=other.id, webhook_subscription_id=subscription.id
            ),
            metadata=as_platform,
        ),
        stub.RotateWebhookSecret(
            pb.RotateWebhookSecretRequest(
                company_id=other.id, webhook_subscription_id=subscription.id
            ),
            metadata=as_platform,
        ),
        stub.RedeliverWebhookDelivery(
            pb.RedeliverWebhookDeliveryRequest(
                company_id=other.id,
                webhook_subscription_id=subscription.id,
                delivery_id=delivery_id,
            ),
            metadata=as_platform,
        ),
    ):
        error = await failure(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(error).reason == "COMPANY_READ_ONLY"
