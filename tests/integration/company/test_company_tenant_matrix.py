"""Every company RPC: company B's ids answer exactly like nonexistent ones for company A."""

from __future__ import annotations

from company_harness import CompanyHarness
from support.tenant_matrix import report, run_matrix, tenant_methods

from cardinsa.company.v1 import (
    company_service_pb2,
    organization_service_pb2,
    resources_pb2,
    webhook_service_pb2,
    webhooks_pb2,
)

SERVICES = [
    company_service_pb2.DESCRIPTOR.services_by_name["CompanyService"],
    organization_service_pb2.DESCRIPTOR.services_by_name["OrganizationService"],
    webhook_service_pb2.DESCRIPTOR.services_by_name["WebhookService"],
]


async def test_company_b_ids_answer_like_nonexistent_ids_in_every_company_rpc(
    company: CompanyHarness,
) -> None:
    admin_b = await company.as_(company.admin_b)
    b = company.company_b.id
    department = await company.org.CreateDepartment(
        organization_service_pb2.CreateDepartmentRequest(
            company_id=b, department=resources_pb2.Department(display_name="B Claims")
        ),
        metadata=admin_b,
    )
    unit = await company.org.CreateUnit(
        organization_service_pb2.CreateUnitRequest(
            company_id=b,
            department_id=department.id,
            unit=resources_pb2.Unit(display_name="B Motor Claims"),
        ),
        metadata=admin_b,
    )
    subscription = await company.webhooks.CreateWebhookSubscription(
        webhook_service_pb2.CreateWebhookSubscriptionRequest(
            company_id=b,
            webhook_subscription=webhooks_pb2.WebhookSubscription(
                url="https://1.1.1.1/b", event_types=["*"]
            ),
        ),
        metadata=admin_b,
    )
    (delivery_id,) = await company.insert_deliveries(b, subscription.id, ["DEAD_LETTERED"])
    before = await company.companies.GetCompany(
        company_service_pb2.GetCompanyRequest(company_id=b), metadata=admin_b
    )
    foreign = {
        "company_id": b,
        "department_id": department.id,
        "parent_department_id": department.id,
        "unit_id": unit.id,
        "webhook_subscription_id": subscription.id,
        "delivery_id": delivery_id,
    }
    outcomes = await run_matrix(
        company.channel,
        SERVICES,
        caller=await company.as_(company.admin_a),
        foreign_ids=foreign,
        foreign_company=b,
    )
    assert len(outcomes) == len(tenant_methods(SERVICES)) > 15
    assert all(o.ok for o in outcomes), report(outcomes)
    after = await company.companies.GetCompany(
        company_service_pb2.GetCompanyRequest(company_id=b), metadata=admin_b
    )
    assert (after.etag, after.state) == (before.etag, before.state)
    still = await company.org.GetUnit(
        organization_service_pb2.GetUnitRequest(
            company_id=b, department_id=department.id, unit_id=unit.id
        ),
        metadata=admin_b,
    )
    assert still.etag == unit.etag and not still.HasField("delete_time")
    untouched = await company.webhooks.GetWebhookSubscription(
        webhook_service_pb2.GetWebhookSubscriptionRequest(
            company_id=b, webhook_subscription_id=subscription.id
        ),
        metadata=admin_b,
    )
    assert untouched.etag == subscription.etag and not untouched.HasField("delete_time")
    deliveries = await company.webhooks.ListWebhookDeliveries(
        webhook_service_pb2.ListWebhookDeliveriesRequest(
            company_id=b, webhook_subscription_id=subscription.id
        ),
        metadata=admin_b,
    )
    assert [d.state for d in deliveries.webhook_deliveries] == [
        webhooks_pb2.WebhookDelivery.DEAD_LETTERED
    ]
