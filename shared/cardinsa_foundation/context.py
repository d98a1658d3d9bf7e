"""The request context: who is calling, for which company, under which request id.

Set once per call by the interceptors and read by logging, errors, the database
layer (tenant setting for row-level security) and the audit writer. The company
id here comes only from the verified token, never from anything else the client
sends.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum

PLATFORM_ADMIN_ROLE = "platform-admin"


class PrincipalKind(StrEnum):
    USER = "user"
    SERVICE_ACCOUNT = "service_account"


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller of an RPC, built from an access token."""

    subject: str
    kind: PrincipalKind
    company_id: str | None
    permissions: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)
    session_id: str | None = None
    token_id: str | None = None
    on_behalf_of: str | None = None
    #: How the caller authenticated (``amr`` claim): ``pwd``, ``otp``.
    amr: frozenset[str] = field(default_factory=frozenset)
    #: Permissions the caller's roles grant only after a login with a second
    #: factor (``mfa_perms`` claim): held back from ``permissions`` because this
    #: token's login had none.
    mfa_permissions: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_platform_admin(self) -> bool:
        return PLATFORM_ADMIN_ROLE in self.roles

    def has_permission(self, permission: str) -> bool:
        return permission in self.permissions


request_id_var: ContextVar[str | None] = ContextVar("cardinsa_request_id", default=None)
principal_var: ContextVar[Principal | None] = ContextVar("cardinsa_principal", default=None)
method_var: ContextVar[str | None] = ContextVar("cardinsa_method", default=None)
client_address_var: ContextVar[str | None] = ContextVar("cardinsa_client_address", default=None)
# (trace id, span id) in hex of the call's span while tracing is on (tracing.py).
trace_var: ContextVar[tuple[str, str] | None] = ContextVar("cardinsa_trace", default=None)


def new_request_id() -> str:
    return str(uuid.uuid4())


def current_request_id() -> str | None:
    return request_id_var.get()


def current_trace_id() -> str | None:
    ids = trace_var.get()
    return ids[0] if ids else None


def current_principal() -> Principal | None:
    return principal_var.get()


def current_company_id() -> str | None:
    principal = principal_var.get()
    return principal.company_id if principal else None
