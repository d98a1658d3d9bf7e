"""The NetworkPolicies of both overlays allow exactly the intended flows.

Each case is a connection from one endpoint to another on one port, evaluated against
the rendered policies (deploy_netpol implements the Kubernetes semantics): the pods
come from the rendered workloads themselves, with their real labels and ports.
"""

from __future__ import annotations

import pytest
from deploy_netpol import Endpoint, PolicySet, Port, pods, selector_matches
from deploy_support import OVERLAYS, SERVICE_PORTS, SERVICES, Obj

DNS = Port(53, "UDP")
DNS_TCP = Port(53, "TCP")
POSTGRES = Port(5432)
HTTP = Port(8080)


def grpc(service: str) -> Port:
    return Port(SERVICE_PORTS[service][0], "TCP", "grpc")


def metrics(service: str) -> Port:
    return Port(SERVICE_PORTS[service][1], "TCP", "metrics")


def outsider(name: str, namespace: str, labels: dict[str, str] | None = None) -> Endpoint:
    return Endpoint(
        name=name,
        namespace=namespace,
        namespace_labels={"kubernetes.io/metadata.name": namespace},
        labels=labels or {"app": name},
    )


KUBE_DNS = Endpoint(
    "kube-dns",
    namespace="kube-system",
    namespace_labels={"kubernetes.io/metadata.name": "kube-system"},
    labels={"k8s-app": "kube-dns"},
    ports=[Port(53, "UDP", "dns"), Port(53, "TCP", "dns-tcp")],
)
PROMETHEUS = outsider("prometheus", "monitoring")
STRANGER = outsider("stranger", "other-team")
INTERNET_CLIENT = Endpoint("client", ip="203.0.113.7")
INTERNET_HOST = Endpoint("somewhere", ip="198.51.100.20", ports=[Port(443)])
MANAGED_DB = Endpoint("managed-postgres", ip="192.0.2.10", ports=[Port(5432, name="postgres")])


@pytest.fixture(scope="module", params=OVERLAYS)
def world(
    request: pytest.FixtureRequest, rendered: dict[str, list[Obj]]
) -> tuple[str, PolicySet, dict[str, Endpoint]]:
    overlay: str = request.param
    objects = rendered[overlay]
    endpoints = pods(objects)
    if overlay == "prod":
        endpoints["postgres"] = MANAGED_DB
    namespace = next(o["metadata"]["name"] for o in objects if o["kind"] == "Namespace")
    endpoints["neighbour"] = outsider("neighbour", namespace, {"app": "something-else"})
    return overlay, PolicySet(objects), endpoints


def test_default_deny_covers_every_pod(world: tuple[str, PolicySet, dict[str, Endpoint]]) -> None:
    _, policies, endpoints = world
    deny = [p for p in policies.policies if p["metadata"]["name"] == "default-deny"]
    assert len(deny) == 1
    assert deny[0]["spec"]["podSelector"] == {}
    assert set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    for endpoint in endpoints.values():
        if endpoint.namespace is not None:
            assert selector_matches(deny[0]["spec"]["podSelector"], endpoint.labels)


def test_only_the_gateway_reaches_the_services(
    world: tuple[str, PolicySet, dict[str, Endpoint]],
) -> None:
    _, policies, e = world
    for service in SERVICES:
        assert policies.allowed(e["envoy"], e[service], grpc(service)), service
        assert not policies.allowed(INTERNET_CLIENT, e[service], grpc(service)), service
        assert not policies.allowed(STRANGER, e[service], grpc(service)), service
        assert not policies.allowed(e["neighbour"], e[service], grpc(service)), service
        assert not policies.allowed(PROMETHEUS, e[service], grpc(service)), service
        assert not policies.allowed(e[f"{service}-migrate"], e[service], grpc(service))


def test_services_call_identity_and_company_only_where_they_need_to(
    world: tuple[str, PolicySet, dict[str, Endpoint]],
) -> None:
    _, policies, e = world
    allowed = {("company", "identity"), ("core", "identity"), ("identity", "company"),
               ("core", "company")}  # fmt: skip
    for source in SERVICES:
        for target in SERVICES:
            if source == target:
                continue
            expected = (source, target) in allowed
            assert policies.allowed(e[source], e[target], grpc(target)) is expected, (
                source,
                target,
            )


def test_the_gateway_is_reachable_from_clients(
    world: tuple[str, PolicySet, dict[str, Endpoint]],
) -> None:
    _, policies, e = world
    assert policies.allowed(INTERNET_CLIENT, e["envoy"], HTTP)
    assert policies.allowed(STRANGER, e["envoy"], HTTP)
    assert not policies.allowed(INTERNET_CLIENT, e["envoy"], Port(9901))
    assert not policies.allowed(e["envoy"], INTERNET_HOST, Port(443))


def test_only_services_and_migrations_reach_postgres(
    world: tuple[str, PolicySet, dict[str, Endpoint]],
) -> None:
    _, policies, e = world
    database = e["postgres"]
    for service in SERVICES:
        assert policies.allowed(e[service], database, POSTGRES), service
        assert policies.allowed(e[f"{service}-migrate"], database, POSTGRES), service
    assert not policies.allowed(e["envoy"], database, POSTGRES)
    assert not policies.allowed(e["neighbour"], database, POSTGRES)
    if database.in_cluster:  # dev: the in-cluster server admits our pods only
        assert not policies.allowed(STRANGER, database, POSTGRES)
        assert not policies.allowed(INTERNET_CLIENT, database, POSTGRES)


def test_prod_database_egress_is_narrowed_to_the_database_network(
    world: tuple[str, PolicySet, dict[str, Endpoint]],
) -> None:
    overlay, policies, e = world
    elsewhere = Endpoint("other-postgres", ip="198.51.100.99", ports=[Port(5432)])
    assert policies.allowed(e["identity"], elsewhere, POSTGRES) is (overlay == "dev")


def test_nothing_else_leaves(world: tuple[str, PolicySet, dict[str, Endpoint]]) -> None:
    _, policies, e = world
    for name in (*SERVICES, "envoy", *(f"{s}-migrate" for s in SERVICES)):
        assert not policies.allowed(e[name], INTERNET_HOST, Port(443)), name
        assert not policies.allowed(e[name], STRANGER, Port(8080)), name
        assert policies.allowed(e[name], KUBE_DNS, DNS), name
        assert policies.allowed(e[name], KUBE_DNS, DNS_TCP), name
    assert not policies.allowed(e["identity"], INTERNET_HOST, DNS)  # no outside resolvers


def test_metrics_are_scraped_from_the_monitoring_namespace_only(
    world: tuple[str, PolicySet, dict[str, Endpoint]],
) -> None:
    _, policies, e = world
    for service in SERVICES:
        assert policies.allowed(PROMETHEUS, e[service], metrics(service)), service
        assert not policies.allowed(STRANGER, e[service], metrics(service)), service
        assert not policies.allowed(e["envoy"], e[service], metrics(service)), service
    # Envoy's stats listener: from monitoring only (its admin port is not a pod port).
    envoy_metrics = Port(9902, "TCP", "metrics")
    assert policies.allowed(PROMETHEUS, e["envoy"], envoy_metrics)
    assert not policies.allowed(STRANGER, e["envoy"], envoy_metrics)
    assert not policies.allowed(INTERNET_CLIENT, e["envoy"], envoy_metrics)


def test_core_s_scheduler_reaches_the_database_identity_and_company_only(
    world: tuple[str, PolicySet, dict[str, Endpoint]],
) -> None:
    _, policies, e = world
    scheduler = e["core-scheduler"]
    assert policies.allowed(scheduler, e["postgres"], POSTGRES)
    assert policies.allowed(scheduler, e["identity"], grpc("identity"))
    assert policies.allowed(scheduler, e["company"], grpc("company"))
    assert not policies.allowed(scheduler, e["core"], grpc("core"))
    assert not policies.allowed(scheduler, INTERNET_HOST, Port(443))
    assert policies.allowed(scheduler, KUBE_DNS, DNS)
    scheduler_metrics = Port(9054, "TCP", "metrics")
    assert policies.allowed(PROMETHEUS, scheduler, scheduler_metrics)
    for caller in (STRANGER, e["envoy"], e["neighbour"], INTERNET_CLIENT):
        assert not policies.allowed(caller, scheduler, scheduler_metrics), caller.name


def test_the_event_dispatcher_reaches_the_services_the_database_and_public_hosts_only(
    world: tuple[str, PolicySet, dict[str, Endpoint]],
) -> None:
    _, policies, e = world
    dispatcher = e["event-dispatcher"]
    assert policies.allowed(dispatcher, e["postgres"], POSTGRES)
    for service in SERVICES:
        assert policies.allowed(dispatcher, e[service], grpc(service)), service
        assert not policies.allowed(dispatcher, e[service], metrics(service)), service
    assert policies.allowed(dispatcher, KUBE_DNS, DNS)
    # Webhook receivers: public addresses, on any port; never internal ones.
    assert policies.allowed(dispatcher, INTERNET_HOST, Port(443))
    receiver_8443 = Endpoint("receiver", ip="198.51.100.21", ports=[Port(8443)])
    assert policies.allowed(dispatcher, receiver_8443, Port(8443))
    for internal in ("10.0.0.12", "172.20.1.1", "192.168.1.1", "169.254.169.254", "127.0.0.1"):
        host = Endpoint("internal", ip=internal, ports=[Port(443), Port(80)])
        assert not policies.allowed(dispatcher, host, Port(443)), internal
        assert not policies.allowed(dispatcher, host, Port(80)), internal
    assert not policies.allowed(dispatcher, e["envoy"], HTTP)
    dispatcher_metrics = Port(9055, "TCP", "metrics")
    assert policies.allowed(PROMETHEUS, dispatcher, dispatcher_metrics)
    for caller in (STRANGER, e["envoy"], e["neighbour"], INTERNET_CLIENT):
        assert not policies.allowed(caller, dispatcher, dispatcher_metrics), caller.name
    # Nobody else gets the services' gRPC this way.
    assert not policies.allowed(INTERNET_CLIENT, dispatcher, Port(443))


def test_identity_alone_reaches_the_mail_relay_on_the_smtp_ports(
    world: tuple[str, PolicySet, dict[str, Endpoint]],
) -> None:
    _, policies, e = world
    submission, smtps = Port(587), Port(465)
    relay = Endpoint("smtp-relay", ip="198.51.100.25", ports=[submission, smtps, Port(443)])
    assert policies.allowed(e["identity"], relay, submission)
    assert policies.allowed(e["identity"], relay, smtps)
    assert not policies.allowed(e["identity"], relay, Port(443))
    assert not policies.allowed(e["identity"], relay, Port(25))
    for name in ("company", "core", "envoy", "core-scheduler", "identity-migrate"):
        assert not policies.allowed(e[name], relay, submission), name
