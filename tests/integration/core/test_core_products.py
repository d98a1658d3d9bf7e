"""Products over gRPC: lifecycle, versions, and the currency default."""

from __future__ import annotations

import grpc
import pytest
from core_harness import Tenant, amount, mask, money
from google.type import money_pb2
from support.grpc_errors import error_info, field_violations

from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import product_service_pb2 as rb
from cardinsa.core.v1 import resources_pb2

R = resources_pb2.Product


async def test_versions_of_an_active_product(tenant: Tenant) -> None:
    products, md = tenant.harness.products, await tenant.md()
    draft = await tenant.product(activate=False, base_premium="100")
    assert (draft.state, draft.version) == (R.DRAFT, 1)
    edited = await products.UpdateProduct(
        rb.UpdateProductRequest(
            product=R(id=draft.id, etag=draft.etag, base_premium=money("120")),
            update_mask=mask("base_premium"),
        ),
        metadata=md,
    )
    assert edited.version == 1 and amount(edited.base_premium) == 120  # a draft changes in place
    active = await products.ActivateProduct(
        rb.ActivateProductRequest(product_id=draft.id, etag=edited.etag), metadata=md
    )
    assert active.state == R.ACTIVE
    # A policy quoted on version 1 keeps it.
    quoted = await tenant.quoted(await tenant.holder(dependents=0), active)
    assert quoted.product_version == 1 and amount(quoted.premium) == 120
    changed = await products.UpdateProduct(
        rb.UpdateProductRequest(
            product=R(id=draft.id, base_premium=money("150"), name="Health Plus"),
            update_mask=mask("base_premium", "name"),
        ),
        metadata=md,
    )
    assert changed.version == 2 and changed.name == "Health Plus"
    versions = await products.ListProductVersions(
        rb.ListProductVersionsRequest(product_id=draft.id), metadata=md
    )
    assert [(v.version, amount(v.base_premium)) for v in versions.product_versions] == [
        (2, 150),
        (1, 120),
    ]
    v1 = await products.GetProductVersion(
        rb.GetProductVersionRequest(product_id=draft.id, version=1), metadata=md
    )
    assert v1.name == "Health Basic" and v1.coverages[0].coinsurance_basis_points == 2000
    policy = await tenant.harness.policies.GetPolicy(
        pb.GetPolicyRequest(policy_id=quoted.id), metadata=md
    )
    assert policy.product_version == 1 and amount(policy.premium) == 120
    requoted = await tenant.harness.policies.QuotePolicy(
        pb.QuotePolicyRequest(policy_id=quoted.id), metadata=md
    )
    assert requoted.product_version == 2 and amount(requoted.premium) == 150
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await products.GetProductVersion(
            rb.GetProductVersionRequest(product_id=draft.id, version=3), metadata=md
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_retired_products_sell_nothing_and_change_no_more(tenant: Tenant) -> None:
    products, md = tenant.harness.products, await tenant.md()
    product = await tenant.product()
    retired = await products.RetireProduct(
        rb.RetireProductRequest(product_id=product.id), metadata=md
    )
    assert retired.state == R.RETIRED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await products.UpdateProduct(
            rb.UpdateProductRequest(product=R(id=product.id, name="x"), update_mask=mask("name")),
            metadata=md,
        )
    assert dict(error_info(caught.value).metadata) == {
        "current_state": "RETIRED",
        "transition": "update",
    }
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.draft(await tenant.holder(), retired)
    assert error_info(caught.value).reason == "PRODUCT_NOT_ACTIVE"
    deleted = await products.DeleteProduct(
        rb.DeleteProductRequest(product_id=product.id), metadata=md
    )
    assert deleted.delete_time.seconds
    # The code is free again for a new product.
    again = await tenant.product(code=product.code, activate=False)
    assert again.code == product.code
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await products.UndeleteProduct(
            rb.UndeleteProductRequest(product_id=product.id), metadata=md
        )
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_create_rules(tenant: Tenant) -> None:
    products, md = tenant.harness.products, await tenant.md()
    product = await tenant.product(activate=False)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.product(code=product.code)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    # No currency: the company's (the settings fallback: USD); amounts take it.
    plain = await products.CreateProduct(
        rb.CreateProductRequest(
            product=R(
                code="PLAIN",
                line_of_business=R.TRAVEL,
                name="Travel",
                base_premium=money_pb2.Money(units=40),
                term_months=1,
            )
        ),
        metadata=md,
    )
    assert plain.currency_code == "USD" and plain.base_premium.currency_code == "USD"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await products.ActivateProduct(rb.ActivateProductRequest(product_id=plain.id), metadata=md)
    assert error_info(caught.value).reason == "PRODUCT_INCOMPLETE"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await products.CreateProduct(
            rb.CreateProductRequest(
                product=R(
                    code="bad code",
                    name="",
                    base_premium=money("1", "EUR"),
                    currency_code="USD",
                    term_months=0,
                )
            ),
            metadata=md,
        )
    violations = field_violations(caught.value)
    assert {"product.code", "product.line_of_business", "product.term_months"} <= set(violations)
