"""What the hostile-input and attack suites run against, generic over services.

A service joins the suites through one :class:`TargetSpec` in :data:`TARGET_SPECS`
(its service descriptors and the name of a session fixture that yields a
:class:`ServiceTarget`: a channel to a running server, the database schemas it
owns and an authenticated probe call). Every RPC of its descriptors is then
fuzzed, checked for half-writes, called with forged tokens, headers, oversized
and malformed messages, other tenants' ids and injected filters -- no code per
method. Identity, company and core are in (the three services of the suite):
core through ``TargetSpec("core", CORE_SERVICES, "core_target")`` and the
session fixture ``core_target`` in conftest.py (its own core server, started
and stopped by ``hostile_core_app``; :func:`seed_core` gives every tenant a
policyholder, an active product, a policy in force and a claim, so the suites
meet real ids of every core resource; the probe is a GetPolicyholder).

Three tenants of its own keep the suites independent of every other suite's data:
the *attacker* (company X) whose admin attacks, the *victim* (company V) whose
rows must never move, and the *fuzz* tenant (company F) whose admin the
property-based suite uses (its own data may change freely).
"""

from __future__ import annotations

import datetime
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.type import date_pb2, money_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from support.identity_harness import PASSWORD, Account, IdentityHarness, unique_email
from support.request_fuzz import call_rpc
from support.tenant_matrix import fill_ids

from cardinsa.company.v1 import (
    company_service_pb2,
    company_service_pb2_grpc,
    organization_service_pb2,
    organization_service_pb2_grpc,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
    webhooks_pb2,
)
from cardinsa.company.v1 import resources_pb2 as company_resources
from cardinsa.core.v1 import (
    billing_service_pb2,
    claim_service_pb2,
    claim_service_pb2_grpc,
    core_service_pb2,
    document_service_pb2,
    policy_service_pb2,
    policy_service_pb2_grpc,
    policyholder_service_pb2,
    policyholder_service_pb2_grpc,
    product_service_pb2,
    product_service_pb2_grpc,
)
from cardinsa.core.v1 import resources_pb2 as core_resources
from cardinsa.identity.v1 import (
    access_service_pb2,
    auth_service_pb2,
    identity_service_pb2,
    resources_pb2,
    user_service_pb2,
)
from cardinsa_identity.application.bootstrap import ensure_user_with_role

Metadata = list[tuple[str, str]]

IDENTITY_SERVICES: tuple[ServiceDescriptor, ...] = (
    identity_service_pb2.DESCRIPTOR.services_by_name["IdentityService"],
    auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"],
    user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
    access_service_pb2.DESCRIPTOR.services_by_name["AccessService"],
)
COMPANY_SERVICES: tuple[ServiceDescriptor, ...] = (
    company_service_pb2.DESCRIPTOR.services_by_name["CompanyService"],
    organization_service_pb2.DESCRIPTOR.services_by_name["OrganizationService"],
    webhook_service_pb2.DESCRIPTOR.services_by_name["WebhookService"],
)

CORE_SERVICES: tuple[ServiceDescriptor, ...] = (  # every service of cardinsa/core/v1
    core_service_pb2.DESCRIPTOR.services_by_name["CoreService"],
    policyholder_service_pb2.DESCRIPTOR.services_by_name["PolicyholderService"],
    product_service_pb2.DESCRIPTOR.services_by_name["ProductService"],
    policy_service_pb2.DESCRIPTOR.services_by_name["PolicyService"],
    claim_service_pb2.DESCRIPTOR.services_by_name["ClaimService"],
    document_service_pb2.DESCRIPTOR.services_by_name["DocumentService"],
    billing_service_pb2.DESCRIPTOR.services_by_name["BillingService"],
)


@dataclass(frozen=True)
class TargetSpec:
    """A service under attack, known at collection time (for parametrization)."""

    name: str
    services: tuple[ServiceDescriptor, ...]
    fixture: str


TARGET_SPECS: tuple[TargetSpec, ...] = (
    TargetSpec("identity", IDENTITY_SERVICES, "identity_target"),
    TargetSpec("company", COMPANY_SERVICES, "company_target"),
    TargetSpec("core", CORE_SERVICES, "core_target"),
)


@dataclass(repr=False)
class Tenant:
    """One company with an admin and one of each resource, ids by tenant-matrix key."""

    label: str
    company_id: str
    admin: Account
    token: str
    user: Account
    ids: dict[str, str] = field(default_factory=dict)
    emails: list[str] = field(default_factory=list)
    api_key_secret: str = ""

    @property
    def bearer(self) -> Metadata:
        return [("authorization", f"Bearer {self.token}")]

    def __repr__(self) -> str:
        return f"Tenant({self.label}, company {self.company_id})"


@dataclass(repr=False)
class Tenants:
    attacker: Tenant
    victim: Tenant
    fuzz: Tenant
    platform_token: str

    @property
    def platform_bearer(self) -> Metadata:
        return [("authorization", f"Bearer {self.platform_token}")]

    def __repr__(self) -> str:
        return f"Tenants({self.attacker!r}, {self.victim!r}, {self.fuzz!r})"


Probe = Callable[[Tenant], tuple[ServiceDescriptor, MethodDescriptor, Message]]


@dataclass(repr=False)
class ServiceTarget:
    """A running server and what the suites need to know about it.

    ``probe`` builds a Get of one of the tenant's own resources (by id): it
    succeeds for that tenant's admin and must be refused for another tenant's.
    Token attacks send it with forged tokens (and once with the real one, so a
    refusal is known to come from the token). ``volatile_tables`` change on
    their own (background work) and are left out of write checks;
    ``failure_side_effects`` names, per method, the tables a refused call may
    still write by design (a failed login counts against the throttle and is
    audited); ``read_side_effects`` the tables a successful read may write by
    design (core stores a document the first time it is issued, audits that
    and writes its event). ``settle`` waits for background work the last call started.
    """

    spec: TargetSpec
    channel: grpc.aio.Channel
    schemas: tuple[str, ...]
    probe: Probe
    volatile_tables: frozenset[str] = frozenset()
    failure_side_effects: Mapping[str, frozenset[str]] = field(default_factory=dict)
    read_side_effects: Mapping[str, frozenset[str]] = field(default_factory=dict)
    settle: Callable[[], Awaitable[None]] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def services(self) -> tuple[ServiceDescriptor, ...]:
        return self.spec.services

    def __repr__(self) -> str:
        return f"ServiceTarget({self.name})"


def identity_probe(tenant: Tenant) -> tuple[ServiceDescriptor, MethodDescriptor, Message]:
    service = user_service_pb2.DESCRIPTOR.services_by_name["UserService"]
    return (
        service,
        service.methods_by_name["GetUser"],
        user_service_pb2.GetUserRequest(user_id=tenant.admin.user_id),
    )


def company_probe(tenant: Tenant) -> tuple[ServiceDescriptor, MethodDescriptor, Message]:
    service = company_service_pb2.DESCRIPTOR.services_by_name["CompanyService"]
    return (
        service,
        service.methods_by_name["GetCompany"],
        company_service_pb2.GetCompanyRequest(company_id=tenant.company_id),
    )


def core_probe(tenant: Tenant) -> tuple[ServiceDescriptor, MethodDescriptor, Message]:
    service = policyholder_service_pb2.DESCRIPTOR.services_by_name["PolicyholderService"]
    return (
        service,
        service.methods_by_name["GetPolicyholder"],
        policyholder_service_pb2.GetPolicyholderRequest(
            policyholder_id=tenant.ids["policyholder_id"]
        ),
    )


# ------------------------------------------------------------------ tenants


async def make_tenant(
    label: str,
    identity: IdentityHarness,
    company_channel: grpc.aio.Channel,
    platform: Metadata,
    *,
    password: str = PASSWORD,
) -> Tenant:
    """A registered company with an admin, a user, a role, a binding, a service
    account with an API key, a session, a department and a unit."""
    company_id = uuid.uuid4()
    created = await ensure_user_with_role(
        identity.app.ctx,
        email=unique_email(f"hostile-{label}-admin"),
        password=password,
        company_id=company_id,
        role_name="company-admin",
    )
    admin = Account(created.email, password, str(company_id), str(created.user_id))
    companies = _stub(company_service_pb2_grpc, "CompanyService", company_channel)
    await companies.CreateCompany(
        company_service_pb2.CreateCompanyRequest(
            company=company_resources.Company(
                display_name=f"Hostile {label} {company_id.hex[:6]}",
                country="DE",
                default_currency="EUR",
                time_zone="Europe/Berlin",
            ),
            company_id=str(company_id),
        ),
        metadata=platform,
    )
    pair = await identity.login(admin.email, password)
    bearer = identity.bearer(pair.access_token)
    user = await identity.create_user(admin, password=password)
    session = await identity.login(user.email, password)
    role = await identity.access.CreateRole(
        access_service_pb2.CreateRoleRequest(
            role=resources_pb2.Role(
                name=f"{label}-role-{company_id.hex[:6]}", permissions=["users.get"]
            )
        ),
        metadata=bearer,
    )
    binding = await identity.access.CreateRoleBinding(
        access_service_pb2.CreateRoleBindingRequest(
            role_binding=resources_pb2.RoleBinding(user_id=user.user_id, role_id=role.id)
        ),
        metadata=bearer,
    )
    account = await identity.access.CreateServiceAccount(
        access_service_pb2.CreateServiceAccountRequest(
            service_account=resources_pb2.ServiceAccount(name=f"{label}-svc-{company_id.hex[:6]}")
        ),
        metadata=bearer,
    )
    key = await identity.access.CreateApiKey(
        access_service_pb2.CreateApiKeyRequest(
            service_account_id=account.id,
            api_key=resources_pb2.ApiKey(display_name="hostile", permissions=["users.get"]),
        ),
        metadata=bearer,
    )
    org = _stub(organization_service_pb2_grpc, "OrganizationService", company_channel)
    department = await org.CreateDepartment(
        organization_service_pb2.CreateDepartmentRequest(
            company_id=str(company_id),
            department=company_resources.Department(display_name=f"{label} claims"),
        ),
        metadata=bearer,
    )
    unit = await org.CreateUnit(
        organization_service_pb2.CreateUnitRequest(
            company_id=str(company_id),
            department_id=department.id,
            unit=company_resources.Unit(display_name=f"{label} motor claims"),
        ),
        metadata=bearer,
    )
    webhooks = _stub(webhook_service_pb2_grpc, "WebhookService", company_channel)
    subscription = await webhooks.CreateWebhookSubscription(
        webhook_service_pb2.CreateWebhookSubscriptionRequest(
            company_id=str(company_id),
            webhook_subscription=webhooks_pb2.WebhookSubscription(
                url=f"https://1.1.1.1/{label}", event_types=["*"]
            ),
        ),
        metadata=bearer,
    )
    return Tenant(
        label=label,
        company_id=str(company_id),
        admin=admin,
        token=pair.access_token,
        user=user,
        ids={
            "company_id": str(company_id),
            "user_id": user.user_id,
            "session_id": session.session_id,
            "role_id": role.id,
            "role_binding_id": binding.id,
            "service_account_id": account.id,
            "api_key_id": key.api_key.id,
            "department_id": department.id,
            "parent_department_id": department.id,
            "unit_id": unit.id,
            "webhook_subscription_id": subscription.id,
        },
        emails=[admin.email, user.email],
        api_key_secret=key.secret,
    )


async def seed_core(channel: grpc.aio.Channel, tenant: Tenant) -> None:
    """One of each core resource of ``tenant`` (created as its admin), ids in
    ``tenant.ids``: a policyholder, an active product, a policy in force on them
    and a claim under it."""
    md = tenant.bearer
    suffix = uuid.uuid4().hex[:6]
    holders = _stub(policyholder_service_pb2_grpc, "PolicyholderService", channel)
    holder = await holders.CreatePolicyholder(
        policyholder_service_pb2.CreatePolicyholderRequest(
            policyholder=core_resources.Policyholder(
                kind=core_resources.Policyholder.PERSON,
                given_name=tenant.label.title(),
                family_name=f"Holder{suffix}",
                date_of_birth=date_pb2.Date(year=1990, month=2, day=3),
                email=unique_email(f"hostile-{tenant.label}-holder"),
            )
        ),
        metadata=md,
    )
    products = _stub(product_service_pb2_grpc, "ProductService", channel)
    product = await products.CreateProduct(
        product_service_pb2.CreateProductRequest(
            product=core_resources.Product(
                code=f"H-{suffix.upper()}",
                line_of_business=core_resources.Product.MEDICAL,
                name=f"{tenant.label} health",
                currency_code="EUR",
                base_premium=_eur(500),
                term_months=12,
                coverages=[
                    core_resources.Coverage(
                        code="OUTPATIENT",
                        name="Outpatient care",
                        limit=_eur(10_000),
                        limit_period=core_resources.Coverage.PER_YEAR,
                        deductible=_eur(0),
                    )
                ],
            )
        ),
        metadata=md,
    )
    await products.ActivateProduct(
        product_service_pb2.ActivateProductRequest(product_id=product.id), metadata=md
    )
    policies = _stub(policy_service_pb2_grpc, "PolicyService", channel)
    start = datetime.date.today() - datetime.timedelta(days=20)
    policy = await policies.CreatePolicy(
        policy_service_pb2.CreatePolicyRequest(
            policy=core_resources.Policy(
                policyholder_id=holder.id,
                product_id=product.id,
                effective_date=date_pb2.Date(year=start.year, month=start.month, day=start.day),
                sum_insured=_eur(100_000),
                payment_frequency=core_resources.Policy.MONTHLY,
                insured_members=[core_resources.InsuredMember(policyholder=True)],
            )
        ),
        metadata=md,
    )
    policy = await policies.QuotePolicy(
        policy_service_pb2.QuotePolicyRequest(policy_id=policy.id, etag=policy.etag), metadata=md
    )
    policy = await policies.BindPolicy(
        policy_service_pb2.BindPolicyRequest(policy_id=policy.id, etag=policy.etag), metadata=md
    )
    incident = datetime.date.today() - datetime.timedelta(days=2)
    claim = await _stub(claim_service_pb2_grpc, "ClaimService", channel).CreateClaim(
        claim_service_pb2.CreateClaimRequest(
            claim=core_resources.Claim(
                policy_id=policy.id,
                claimant=core_resources.InsuredMember(policyholder=True),
                claim_type=core_resources.Claim.MEDICAL,
                description=f"{tenant.label} broken arm",
                coverage_code="OUTPATIENT",
                incident_date=date_pb2.Date(
                    year=incident.year, month=incident.month, day=incident.day
                ),
                claimed_amount=_eur(800),
            )
        ),
        metadata=md,
    )
    tenant.ids.update(
        policyholder_id=holder.id, product_id=product.id, policy_id=policy.id, claim_id=claim.id
    )


def _stub(module: Any, service: str, channel: grpc.aio.Channel) -> Any:
    return getattr(module, f"{service}Stub")(channel)


def _eur(units: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="EUR", units=units)


def strong_password() -> str:
    """A password nobody (and no fuzzer) guesses: the victim's."""
    return "victim " + secrets.token_urlsafe(18)


# ------------------------------------------------------------- fingerprints


Fingerprint = dict[str, tuple[int, int]]


class Database:
    """Superuser view of the shared test database (row-level security does not
    apply): row counts and a content hash per table, for write checks."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self._tables: dict[str, list[str]] = {}
        self._tenant_sql: dict[str, str] = {}

    async def tables(self, schema: str) -> list[str]:
        if schema not in self._tables:
            rows = await self.connection.execute(
                text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = :schema AND table_type = 'BASE TABLE' "
                    "AND table_name <> 'alembic_version' ORDER BY table_name"
                ),
                {"schema": schema},
            )
            self._tables[schema] = [r[0] for r in rows]
        return self._tables[schema]

    async def existing_tables(self, schemas: Sequence[str]) -> set[str]:
        rows = await self.connection.execute(
            text(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_schema = ANY(:schemas) AND table_type = 'BASE TABLE'"
            ),
            {"schemas": list(schemas)},
        )
        return {r[0] for r in rows}

    async def fingerprint(
        self, schemas: Sequence[str], exclude: frozenset[str] = frozenset()
    ) -> Fingerprint:
        """``schema.table`` → (row count, sum of row hashes): moves on any insert,
        delete or update, whatever the table."""
        parts: list[str] = []
        for schema in schemas:
            for table in await self.tables(schema):
                name = f"{schema}.{table}"
                if name in exclude:
                    continue
                # Names from information_schema, not from a client.
                parts.append(
                    f"SELECT '{name}', count(*), coalesce(sum(hashtext(t::text)::bigint), 0) "  # noqa: S608
                    f'FROM "{schema}"."{table}" t'
                )
        if not parts:
            return {}
        rows = await self.connection.execute(text(" UNION ALL ".join(parts)))
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    async def tenant_fingerprint(
        self, schemas: Sequence[str], company_id: str, exclude: frozenset[str] = frozenset()
    ) -> Fingerprint:
        """Like :meth:`fingerprint`, over the rows of one company only (tables with
        a ``company_id`` column; ``companies`` by its id)."""
        parts: list[str] = []
        for schema in schemas:
            columns = await self.connection.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = :schema AND column_name IN ('company_id', 'id')"
                ),
                {"schema": schema},
            )
            by_table: dict[str, set[str]] = {}
            for table, column in columns:
                by_table.setdefault(table, set()).add(column)
            for table in await self.tables(schema):
                name = f"{schema}.{table}"
                cols = by_table.get(table, set())
                if name in exclude:
                    continue
                if "company_id" in cols:
                    key = "company_id"
                elif table == "companies" and "id" in cols:
                    key = "id"
                else:
                    continue
                parts.append(
                    f"SELECT '{name}', count(*), coalesce(sum(hashtext(t::text)::bigint), 0) "  # noqa: S608
                    f'FROM "{schema}"."{table}" t WHERE t.{key}::text = :company'
                )
        if not parts:
            return {}
        rows = await self.connection.execute(
            text(" UNION ALL ".join(parts)), {"company": company_id}
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def changed(
    before: Fingerprint, after: Fingerprint, ignore: frozenset[str] = frozenset()
) -> list[str]:
    return sorted(
        name
        for name in set(before) | set(after)
        if name not in ignore and before.get(name) != after.get(name)
    )


def list_methods(
    services: Sequence[ServiceDescriptor],
) -> list[tuple[ServiceDescriptor, MethodDescriptor]]:
    """Every List RPC that takes a ``filter``."""
    return [(s, m) for s in services for m in s.methods if "filter" in m.input_type.fields_by_name]


def repeated_items(response: Any) -> list[Any]:
    """The resources of a List response (its repeated message fields)."""
    items: list[Any] = []
    for fd in response.DESCRIPTOR.fields:
        if fd.is_repeated and fd.message_type is not None:
            items += list(getattr(response, fd.name))
    return items


# ------------------------------------------------------------------ lists


_FIELD_LIST = re.compile(
    r"the fields you can (?:filter|order) on are ([A-Za-z0-9_., ]+?)(?: \(at character \d+\))?\.?$"
)
_ORDER_LIST = re.compile(r"the fields you can order by are ([A-Za-z0-9_., ]+?)\.?$")


def own_request(method: MethodDescriptor, tenant: Tenant, **fields: Any) -> Message:
    """A request whose id fields (path and parent ids) are ``tenant``'s own."""
    request = message_factory.GetMessageClass(method.input_type)()
    fill_ids(request, tenant.ids, random_ids=False)
    for name, value in fields.items():
        setattr(request, name, value)
    return request


async def discover_fields(
    channel: grpc.aio.Channel,
    service: ServiceDescriptor,
    method: MethodDescriptor,
    tenant: Tenant,
    field_name: str,
) -> list[str]:
    """The documented fields of ``filter`` / ``order_by``, as the server lists them
    when it refuses an unknown one (so the suites need no per-RPC list)."""
    probe = "zz_no_such_field = 1" if field_name == "filter" else "zz_no_such_field"
    answer = await call_rpc(
        channel,
        service,
        method,
        own_request(method, tenant, **{field_name: probe}),
        metadata=tenant.bearer,
    )
    assert answer.code is grpc.StatusCode.INVALID_ARGUMENT, (method.full_name, answer)
    pattern = _FIELD_LIST if field_name == "filter" else _ORDER_LIST
    match = pattern.search(" ".join(answer.details.split()))
    assert match, f"{method.full_name}: cannot read the {field_name} fields from {answer.details!r}"
    return [name.strip() for name in match.group(1).split(",") if name.strip()]


def belongs_to(item: Any, tenant: Tenant) -> list[str]:
    """Why ``item`` (a resource of a List answer) is ``tenant``'s, if it is."""
    reasons: list[str] = []
    ids = set(tenant.ids.values()) | {tenant.admin.user_id, tenant.user.user_id}
    names = {f.name for f in item.DESCRIPTOR.fields}
    for name in ("company_id", "id", "user_id", "entity_id", "actor_id"):
        if name in names and getattr(item, name) and getattr(item, name) in ids:
            reasons.append(f"{name}={getattr(item, name)}")
    if "email" in names and item.email in tenant.emails:
        reasons.append(f"email={item.email}")
    return reasons


# ------------------------------------------------------------- known bugs


@dataclass(frozen=True)
class KnownBug:
    """A bug the suites found, reproduced by a strict-xfail test in
    test_hostile_regressions.py. The generic suites recognise its symptom and
    count it instead of failing on it (they still check for half-writes);
    when the bug is fixed, the xfail turns into a failure and this entry goes."""

    name: str
    reproduction: str
    matches: Callable[[Message, Any], bool]


def _oversized_error_details(request: Message, answer: Any) -> bool:
    return (
        answer.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        and "received metadata size exceeds" in answer.details
    )


# None open. (Fixed: unbounded error details -> trailers over the client's
# metadata limit, now a regression test in test_hostile_regressions.py.)
KNOWN_BUGS: tuple[KnownBug, ...] = ()


def known_bug(request: Message, answer: Any) -> KnownBug | None:
    return next((bug for bug in KNOWN_BUGS if bug.matches(request, answer)), None)
