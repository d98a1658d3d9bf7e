"""Who may call which RPC: read from the contract, default deny.

Each RPC declares its rule once, in the proto (option
``(cardinsa.common.v1.authorization)``). This module reads those options from
the generated descriptors into a table the interceptor consults on every call.
A method of ours without a rule is refused; so is any method the table does not
know, except the infrastructure services every server carries (health,
reflection), which are public by nature.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor

from cardinsa.common.v1 import common_pb2
from cardinsa_foundation.context import Principal
from cardinsa_foundation.errors import PermissionDenied

INFRASTRUCTURE_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)


class Access(StrEnum):
    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    PERMISSION = "permission"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class MethodRule:
    method: str  # "/cardinsa.identity.v1.UserService/GetUser"
    access: Access
    permission: str | None = None

    def check(self, principal: Principal) -> None:
        """Raise PERMISSION_DENIED unless ``principal`` may call the method."""
        if self.access is Access.AUTHENTICATED:
            return
        if self.access is Access.PERMISSION and self.permission is not None:
            if principal.has_permission(self.permission):
                return
            if self.permission in principal.mfa_permissions:
                # The caller's role grants it, but only after a login with a
                # second factor (the company's MFA policy).
                raise PermissionDenied(
                    "this method needs a login with a second factor: enrol one "
                    "(/v1/me/mfa:enroll) and log in again with a code",
                    reason="MFA_REQUIRED",
                    metadata={"permission": self.permission},
                )
            raise PermissionDenied(
                "the caller lacks the permission this method requires",
                reason="PERMISSION_MISSING",
                metadata={"permission": self.permission},
            )
        raise PermissionDenied(
            "this method declares no authorization rule and is refused",
            reason="METHOD_NOT_AUTHORIZED",
        )


def rule_of(method: str, options: common_pb2.MethodAuthorization | None) -> MethodRule:
    if options is None:
        return MethodRule(method, Access.DENIED)
    which = options.WhichOneof("rule")
    if which == "public" and options.public:
        return MethodRule(method, Access.PUBLIC)
    if which == "authenticated" and options.authenticated:
        return MethodRule(method, Access.AUTHENTICATED)
    if which == "permission" and options.permission:
        return MethodRule(method, Access.PERMISSION, options.permission)
    return MethodRule(method, Access.DENIED)


def rules_for(services: Iterable[ServiceDescriptor]) -> dict[str, MethodRule]:
    """The rule of every method of ``services``, keyed by gRPC method path."""
    table: dict[str, MethodRule] = {}
    for service in services:
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            opts = method.GetOptions()
            extension: Any = common_pb2.authorization
            declared = opts.Extensions[extension] if opts.HasExtension(extension) else None
            table[path] = rule_of(path, declared)
    return table


def rule_for_path(table: dict[str, MethodRule], method: str) -> MethodRule:
    rule = table.get(method)
    if rule is not None:
        return rule
    service = method[1:].split("/", 1)[0]
    if service in INFRASTRUCTURE_SERVICES:
        return MethodRule(method, Access.PUBLIC)
    return MethodRule(method, Access.DENIED)
