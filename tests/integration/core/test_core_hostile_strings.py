"""Oversized and odd strings in every string field of every core RPC: refused
or answered, never INTERNAL (nothing reaches a client as an unexpected error)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
import pytest_asyncio
from core_harness import CoreHarness, Tenant
from google.protobuf.descriptor import FieldDescriptor

from cardinsa.core.v1 import (
    claim_service_pb2,
    core_service_pb2,
    document_service_pb2,
    policy_service_pb2,
    policyholder_service_pb2,
    product_service_pb2,
)

SERVICES = {
    "policyholders": (policyholder_service_pb2, "PolicyholderService"),
    "products": (product_service_pb2, "ProductService"),
    "policies": (policy_service_pb2, "PolicyService"),
    "claims": (claim_service_pb2, "ClaimService"),
    "core": (core_service_pb2, "CoreService"),
    "documents": (document_service_pb2, "DocumentService"),
}
METHODS = [
    (attribute, method)
    for attribute, (module, name) in SERVICES.items()
    for method in module.DESCRIPTOR.services_by_name[name].methods
]
VALUES = {"huge": "x" * 300_000, "nul": "a\x00b", "unicode": "\u202e\ud7ff\U0001f600" * 50}
BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def victim(core: CoreHarness) -> Tenant:
    """One company for the whole module (its admin holds every permission)."""
    return await core.tenant()


def fill(message: Any, value: str, depth: int = 0) -> None:
    """Every string field (nested messages too, and one element of repeated ones)."""
    for field in message.DESCRIPTOR.fields:
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_STRING:
            if repeated:
                getattr(message, field.name).append(value)
            else:
                setattr(message, field.name, value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and depth < 2:
            if field.message_type.GetOptions().map_entry:
                continue
            target = (
                getattr(message, field.name).add() if repeated else getattr(message, field.name)
            )
            fill(target, value, depth + 1)
            if not repeated and not target.ListFields():
                message.ClearField(field.name)


@pytest.mark.parametrize("kind", list(VALUES))
@pytest.mark.parametrize(("attribute", "method"), METHODS, ids=[m.name for _, m in METHODS])
async def test_no_string_makes_an_internal_error(
    core: CoreHarness, victim: Tenant, attribute: str, method: Any, kind: str
) -> None:
    module, _ = SERVICES[attribute]
    request = getattr(module, method.input_type.name)()
    fill(request, VALUES[kind])
    try:
        await getattr(getattr(core, attribute), method.name)(request, metadata=await victim.md())
    except grpc.aio.AioRpcError as error:
        assert error.code() not in BAD, f"{method.name}: {error.code()} {error.details()}"
        assert len(error.details() or "") < 1000
