"""Evaluate Kubernetes NetworkPolicies offline: is a connection from A to B allowed?

Implements the networking.k8s.io/v1 semantics the deploy/k8s policies rely on: a pod
selected by a policy of a type (Ingress/Egress) is isolated for that direction and
only what some selecting policy allows gets through; a connection needs the
source's egress and the destination's ingress to allow it. Peers: podSelector
(same namespace), namespaceSelector, both together, ipBlock (with except). Ports:
number or name (resolved against the destination pod's container ports), protocol,
endPort. Selectors: matchLabels and matchExpressions (In, NotIn, Exists,
DoesNotExist).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
POD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet")


@dataclass(frozen=True)
class Port:
    number: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass
class Endpoint:
    """A pod (namespace set) or an address outside the cluster (namespace None)."""

    name: str
    namespace: str | None = None
    namespace_labels: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ports: list[Port] = field(default_factory=list)
    ip: str | None = None

    @property
    def in_cluster(self) -> bool:
        return self.namespace is not None


def selector_matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {operator}")
    return True


def _peer_matches(peer: Obj, policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if other.ip is None:  # pod IPs are not what ipBlock is for
            return False
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(e) for e in block.get("except") or [])
    if not other.in_cluster:
        return False
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    if "podSelector" in peer:
        return selector_matches(peer["podSelector"], other.labels)
    return True


def _port_matches(rule_port: Obj, destination: Endpoint, port: Port) -> bool:
    if rule_port.get("protocol", "TCP") != port.protocol:
        return False
    wanted = rule_port.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):
        return any(
            p.name == wanted and p.number == port.number and p.protocol == port.protocol
            for p in destination.ports
        )
    end = rule_port.get("endPort") or wanted
    return int(wanted) <= port.number <= int(end)


def _policy_types(policy: Obj) -> list[str]:
    spec = policy.get("spec") or {}
    types = spec.get("policyTypes")
    if types:
        return list(types)
    return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]


class PolicySet:
    def __init__(self, objects: list[Obj]) -> None:
        self.policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]

    def _selecting(self, pod: Endpoint, direction: str) -> list[Obj]:
        return [
            p
            for p in self.policies
            if p["metadata"].get("namespace") == pod.namespace
            and direction in _policy_types(p)
            and selector_matches(p["spec"].get("podSelector", {}), pod.labels)
        ]

    def _allows(
        self, pod: Endpoint, direction: str, other: Endpoint, dest: Endpoint, port: Port
    ) -> bool:
        policies = self._selecting(pod, direction)
        if not policies:
            return True  # not isolated in this direction
        rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in policies:
            namespace = policy["metadata"]["namespace"]
            for rule in policy["spec"].get(rules_key) or []:
                peers = rule.get(peers_key)
                if peers and not any(_peer_matches(p, namespace, other) for p in peers):
                    continue
                ports = rule.get("ports")
                if ports and not any(_port_matches(p, dest, port) for p in ports):
                    continue
                return True
        return False

    def allowed(self, source: Endpoint, destination: Endpoint, port: Port) -> bool:
        """Both ends agree: the source's egress and the destination's ingress."""
        egress = not source.in_cluster or self._allows(
            source, "Egress", destination, destination, port
        )
        ingress = not destination.in_cluster or self._allows(
            destination, "Ingress", source, destination, port
        )
        return egress and ingress


def pods(objects: list[Obj]) -> dict[str, Endpoint]:
    """One endpoint per workload of the rendered objects, keyed by the workload's name."""
    namespaces = {
        o["metadata"]["name"]: {
            "kubernetes.io/metadata.name": o["metadata"]["name"],
            **(o["metadata"].get("labels") or {}),
        }
        for o in objects
        if o.get("kind") == "Namespace"
    }
    found: dict[str, Endpoint] = {}
    for obj in objects:
        if obj.get("kind") not in POD_KINDS:
            continue
        namespace = obj["metadata"]["namespace"]
        template = obj["spec"]["template"]
        ports = [
            Port(p["containerPort"], p.get("protocol", "TCP"), p.get("name"))
            for c in template["spec"]["containers"]
            for p in c.get("ports") or []
        ]
        found[obj["metadata"]["name"]] = Endpoint(
            name=obj["metadata"]["name"],
            namespace=namespace,
            namespace_labels=namespaces.get(namespace, {"kubernetes.io/metadata.name": namespace}),
            labels=dict(template["metadata"].get("labels") or {}),
            ports=ports,
        )
    return found
