"""Server reflection that can answer for the whole contract, not only this server.

Every server knows the descriptors of every Cardinsa package (the generated
``cardinsa.*`` modules are imported at start), so ``describe`` of any contract
symbol works on any server. ``list`` answers with this server's own services,
unless the call names packages in :data:`ROUTED_PACKAGES_HEADER`: the gateway
puts the packages it routes there, so ``grpcurl -plaintext <gateway> list``
shows every service behind the one port and grpcurl can call any of them by
name (the call itself is then routed by its path, as always). Unknown package
names in the header are ignored; the contract is public (so is
``/openapi.json``), the header only widens the list.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

#: Request header naming the gRPC packages to list (comma-separated); set by the
#: gateway on its reflection route, overwriting whatever a client sent.
ROUTED_PACKAGES_HEADER = "x-cardinsa-routed-packages"
CONTRACT_ROOT = "cardinsa"
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


@functools.cache
def contract_services() -> dict[str, tuple[str, ...]]:
    """gRPC package → its service names, for every generated ``cardinsa`` module
    (importing them puts their descriptors in the default pool)."""
    root = importlib.import_module(CONTRACT_ROOT)
    found: dict[str, set[str]] = {}
    for module in pkgutil.walk_packages(root.__path__, f"{CONTRACT_ROOT}."):
        if not module.name.endswith("_pb2"):
            continue
        descriptor = importlib.import_module(module.name).DESCRIPTOR
        services = found.setdefault(descriptor.package, set())
        services.update(s.full_name for s in descriptor.services_by_name.values())
    return {package: tuple(sorted(names)) for package, names in sorted(found.items())}


class ContractReflection(ReflectionServicer):  # type: ignore[misc]
    """grpc.reflection.v1alpha: own services listed, the whole contract described."""

    def __init__(self, own_services: Iterable[str]) -> None:
        self._infrastructure = (HEALTH_SERVICE, reflection.SERVICE_NAME)
        self._own = tuple(sorted({*own_services, *self._infrastructure}))
        self._contract = contract_services()
        super().__init__(self._own)

    def services_for(self, packages: Sequence[str]) -> tuple[str, ...]:
        named = {s for p in packages for s in self._contract.get(p.strip(), ())}
        return tuple(sorted({*named, *self._infrastructure})) if named else self._own

    async def ServerReflectionInfo(
        self,
        request_iterator: AsyncIterable[reflection_pb2.ServerReflectionRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        packages = [
            part
            for key, value in (context.invocation_metadata() or ())
            if key == ROUTED_PACKAGES_HEADER and isinstance(value, str)
            for part in value.split(",")
        ]
        listed = self.services_for(packages)
        async for response in super().ServerReflectionInfo(request_iterator, context):
            if response.HasField("list_services_response"):
                del response.list_services_response.service[:]
                response.list_services_response.service.extend(
                    reflection_pb2.ServiceResponse(name=name) for name in listed
                )
            yield response


def enable_contract_reflection(own_services: Iterable[str], server: Any) -> None:
    """Serve :class:`ContractReflection` (``own_services``: what ``server`` serves)."""
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        ContractReflection(own_services), server
    )
