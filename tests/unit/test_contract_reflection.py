"""Server reflection for the whole contract (cardinsa_foundation.reflection):
describe knows every generated service; list shows a server's own services, or
those of the packages the gateway names (unknown names ignored)."""

from __future__ import annotations

from google.protobuf import descriptor_pool

from cardinsa_foundation.reflection import ContractReflection, contract_services

INFRASTRUCTURE = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


def test_every_generated_package_and_service_is_known() -> None:
    services = contract_services()
    assert {"cardinsa.identity.v1", "cardinsa.company.v1", "cardinsa.core.v1"} <= set(services)
    assert "cardinsa.core.v1.PolicyService" in services["cardinsa.core.v1"]
    assert "cardinsa.company.v1.CompanyService" in services["cardinsa.company.v1"]
    # ...and their descriptors are in the pool reflection answers from.
    pool = descriptor_pool.Default()
    for names in services.values():
        for name in names:
            assert pool.FindServiceByName(name).full_name == name


def test_listing_follows_the_named_packages() -> None:
    own = ["cardinsa.identity.v1.AuthService"]
    servicer = ContractReflection(own)
    assert set(servicer.services_for([])) == {*own, *INFRASTRUCTURE}
    assert set(servicer.services_for(["no.such.v1", "os", ""])) == {*own, *INFRASTRUCTURE}
    routed = set(servicer.services_for(["cardinsa.company.v1", " cardinsa.core.v1"]))
    assert {"cardinsa.company.v1.CompanyService", "cardinsa.core.v1.PolicyService"} <= routed
    assert routed >= INFRASTRUCTURE
    assert "cardinsa.identity.v1.AuthService" not in routed  # only what is named
