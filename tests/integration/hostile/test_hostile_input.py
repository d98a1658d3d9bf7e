"""Hostile input: every RPC of every target, with requests generated from its descriptors.

For each method (support/request_fuzz.py draws the requests; nothing here is per
method), hypothesis sends a bounded, reproducible set of hostile requests:

* as the fuzz tenant's company admin (every non-public method),
* with no token (every method; non-public ones must answer UNAUTHENTICATED),
* as the platform admin, for the platform-only methods that only read or create
  (GetCompanyStatus, ListSigningKeys, CreateCompany) -- never suspend, close,
  delete or rotate, which would break the other suites' tenants.

Each answer must be a client's answer: never INTERNAL, UNKNOWN, UNAVAILABLE,
DEADLINE_EXCEEDED (the deadline is generous) or UNIMPLEMENTED; every error
carries an ErrorInfo and no exception, SQL or driver text. Each call is
bracketed by a fingerprint of the service's tables (superuser, every tenant):
a refused call, and any read, must leave every row as it was -- no half-write
-- except for the tables a target declares as written by design on refusal
(a failed login is counted and audited). At the end, no row of the victim
company has moved.

Bounded for CI: ``max_examples`` per method and caller below, ``derandomize``
(the same examples on every run), no example database.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from hostile_attacks import ATTACKS, HOSTILE_INPUT
from hostile_harness import (
    TARGET_SPECS,
    Database,
    Fingerprint,
    KnownBug,
    ServiceTarget,
    Tenants,
    changed,
    known_bug,
    own_request,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from support.grpc_errors import details
from support.identity_harness import PASSWORD
from support.request_fuzz import (
    Hints,
    authorization_rule,
    call_rpc,
    is_read,
    is_standard_create,
    message_strategy,
    required_permission,
    rpc_methods,
)
from support.tenant_matrix import fill_ids

from cardinsa.identity.v1 import user_service_pb2
from cardinsa_identity.domain.permissions import BUILT_IN_ROLES

# Answers that are never a client's fault.
FORBIDDEN = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.CANCELLED,
}
# Exception, SQL and driver words that must not reach a client (unless the
# client sent them and the message quotes its input).
LEAK_MARKERS = (
    "Traceback",
    "Exception",
    "Error:",
    "sqlalchemy",
    "asyncpg",
    "psycopg",
    "SQLSTATE",
    "SELECT ",
    "INSERT INTO",
    "UPDATE ",
    "DELETE FROM",
    "pg_catalog",
    "/work/",
    '.py"',
)
DEADLINE_S = 30.0
COMPANY_ADMIN_PERMISSIONS = BUILT_IN_ROLES["company-admin"].permissions

FUZZ_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
        HealthCheck.differing_executors,
    ],
    "print_blob": True,
}


class Case:
    """One method of one target (a plain class: hypothesis prints it by repr)."""

    def __init__(self, target: str, service: ServiceDescriptor, method: MethodDescriptor) -> None:
        self.target, self.service, self.method = target, service, method

    @property
    def id(self) -> str:
        return f"{self.target}:{self.service.name}.{self.method.name}"

    def __repr__(self) -> str:
        return self.id


class Fuzz:
    """Everything a hostile-input example needs, in one fixture value with a short
    repr (hypothesis prints every argument of a failing example)."""

    def __init__(
        self, hints: Hints, tenants: Tenants, targets: dict[str, ServiceTarget], db: Database
    ) -> None:
        self.hints, self.tenants, self.targets, self.db = hints, tenants, targets, db

    def __repr__(self) -> str:
        return "Fuzz(...)"


def _cases(select: Any) -> list[Case]:
    return [
        Case(spec.name, service, method)
        for spec in TARGET_SPECS
        for service, method in rpc_methods(spec.services)
        if select(method)
    ]


def _needs_token(method: MethodDescriptor) -> bool:
    return authorization_rule(method) != "public"


def _platform_only_safe(method: MethodDescriptor) -> bool:
    permission = required_permission(method)
    return (
        permission is not None
        and permission not in COMPANY_ADMIN_PERMISSIONS
        and (is_read(method) or is_standard_create(method))
    )


ADMIN_CASES = _cases(_needs_token)
PUBLIC_CASES = _cases(lambda m: not _needs_token(m))
ANONYMOUS_CASES = _cases(_needs_token)
PLATFORM_CASES = _cases(_platform_only_safe)


def _ids(cases: list[Case]) -> list[str]:
    return [c.id for c in cases]


# -------------------------------------------------------------------- hints


def fuzz_hints(tenants: Tenants) -> Hints:
    fuzz, victim = tenants.fuzz, tenants.victim
    ids: dict[str, list[str]] = {}
    for tenant in (fuzz, fuzz, victim):
        for key, value in tenant.ids.items():
            ids.setdefault(key, []).append(value)
    ids["user_id"] += [fuzz.admin.user_id, victim.admin.user_id]
    return Hints(
        ids=ids,
        values={
            "email": [*fuzz.emails, *victim.emails, "nobody@example.com", "UPPER@EXAMPLE.COM"],
            "password": [PASSWORD, "short", "password123", "a brand new passphrase 77"],
            "current_password": [PASSWORD, "wrong password 000000"],
            "new_password": ["a brand new passphrase 77", "short", "password", fuzz.admin.email],
            "refresh_token": ["cdr_" + "A" * 43, "cdp_" + "A" * 43, "cdr_" + "A" * 42],
            "reset_token": ["cdp_" + "A" * 43, "cdr_" + "A" * 43],
            # The fuzz tenant's own key (not the victim's: its holder may use it).
            "api_key": ["cdk_abcdefghij_" + "B" * 43, fuzz.api_key_secret],
            "country": ["DE", "KE", "US", "de", "XX", "DEU"],
            "default_currency": ["EUR", "KES", "JPY", "BHD", "XXX", "eur"],
            "currency_code": ["EUR", "KES", "JPY", "BHD", "XXX", "eur", ""],
            "time_zone": ["Europe/Berlin", "UTC", "Africa/Nairobi", "Mars/Phobos", "europe/berlin"],
            "locale": ["en", "de-DE", "pt-BR", "en_US", "zz-ZZ", "x-private"],
            "phone": ["+4915112345678", "0049 30 1234567", "(030) 123-456", "+1", "12345"],
            "website": [
                "https://example.com",
                "http://x.example/p?q=1",
                "javascript:alert(1)",
                "ftp://x",
            ],
            "name": ["senior-adjuster", "Senior Adjuster", "a", "claims_team", "x" * 64],
            "display_name": ["Acme", "Ünïcödé GmbH", "A" * 200, "A" * 201],
            "legal_name": ["Acme AG", "A" * 300, "A" * 301],
            "given_name": ["Ada", "A" * 200],
            "family_name": ["Lovelace", "A" * 201],
            "description": ["a role", "x" * 1000, "x" * 1001],
            "code": ["CLM-1", "bad code!", "x" * 33],
            "permissions": [
                "users.get",
                "users.create",
                "roles.create",
                "companies.create",
                "signing_keys.rotate",
                "companies.suspend",
                "*",
                "users.*",
                "nonexistent.perm",
            ],
            "line_of_business": ["motor", "health", "Motor", "m", "x" * 41],
            "reason": ["fraud", "customer request"],
            "fiscal_year_start_month": [1, 12, 0, 13, -1],
            "page_size": [0, 1, 20, 100, 101, -1],
            "etag": ['"AAAAAAAAAAAAAAAA"', 'W/"AAAAAAAAAAAAAAAA"', "*", "é", '"ü"'],
        },
    )


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fuzz(tenants: Tenants, hostile_targets: dict[str, ServiceTarget], hostile_db: Database) -> Fuzz:
    return Fuzz(fuzz_hints(tenants), tenants, hostile_targets, hostile_db)


_VICTIM_IGNORED = frozenset(
    {
        # Written by design when anyone names the victim's email at login or
        # password reset (counted, audited, a reset token mailed to the owner).
        "identity.login_throttles",
        "identity.audit_events",
        "identity.password_resets",
        "identity.signing_keys",
    }
)


@pytest_asyncio.fixture(scope="module", autouse=True)
async def victim_before(
    tenants: Tenants, hostile_targets: dict[str, ServiceTarget], hostile_db: Database
) -> AsyncIterator[Fingerprint]:
    schemas = sorted({s for t in hostile_targets.values() for s in t.schemas})
    yield await hostile_db.tenant_fingerprint(schemas, tenants.victim.company_id, _VICTIM_IGNORED)


# ------------------------------------------------------------------- checks


def _strings(message: Message) -> list[str]:
    found: list[str] = []
    for fd, value in message.ListFields():
        values = value if fd.is_repeated else [value]
        if fd.type == FieldDescriptor.TYPE_STRING:
            found += [v for v in values if isinstance(v, str)]
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            if fd.message_type.GetOptions().map_entry:
                found += [str(k) for k in value]
                found += [v for v in value.values() if isinstance(v, str)]
            else:
                for item in values:
                    found += _strings(item)
    return found


def _leaks(text: str, request: Message) -> list[str]:
    sent = "\n".join(_strings(request))
    return [m for m in LEAK_MARKERS if m in text and m not in sent]


async def exercise(
    case: Case,
    request: Message,
    *,
    metadata: list[tuple[str, str]],
    caller: str,
    target: ServiceTarget,
    db: Database,
) -> KnownBug | None:
    """One call with every check; raises AssertionError naming what broke. Returns
    the known bug whose symptom the answer shows (the other checks are skipped
    then, except the write check)."""
    method = case.method
    before = await db.fingerprint(target.schemas, target.volatile_tables)
    answer = await call_rpc(
        target.channel, case.service, method, request, metadata=metadata, deadline_s=DEADLINE_S
    )
    if target.settle is not None:
        await target.settle()
    after = await db.fingerprint(target.schemas, target.volatile_tables)
    HOSTILE_INPUT.add(target.name, f"{case.service.name}.{method.name}:{caller}", answer.code.name)

    where = f"{case.id} as {caller}"
    bug = known_bug(request, answer)
    if bug is not None:
        HOSTILE_INPUT.known_bugs[f"{bug.name} ({bug.reproduction})"] += 1
        moved = changed(before, after, target.failure_side_effects.get(method.name, frozenset()))
        assert not moved, f"{where}: {bug.name}, and it wrote {moved}"
        return bug
    assert answer.code not in FORBIDDEN, f"{where}: {answer.code.name} {answer.details!r}"
    if caller == "anonymous" and _needs_token(method):
        assert answer.code is grpc.StatusCode.UNAUTHENTICATED, (
            f"{where}: {answer.code.name} without a token"
        )
    if answer.error is not None:
        found = details(answer.error)
        assert "ErrorInfo" in found, (
            f"{where}: {answer.code.name} without ErrorInfo: {answer.details!r}"
        )
        leaked = _leaks(answer.details, request)
        assert not leaked, f"{where}: {answer.code.name} message leaks {leaked}: {answer.details!r}"
        allowed = target.failure_side_effects.get(method.name, frozenset())
        moved = changed(before, after, allowed)
        assert not moved, (
            f"{where}: refused with {answer.code.name} but wrote {moved} ({answer.details!r})"
        )
    elif is_read(method):
        moved = changed(before, after, target.read_side_effects.get(method.name, frozenset()))
        assert not moved, f"{where}: a read wrote {moved}"
    return None


def _metadata(caller: str, tenants: Tenants) -> list[tuple[str, str]]:
    if caller == "company_admin":
        return tenants.fuzz.bearer
    if caller == "platform_admin":
        return tenants.platform_bearer
    return [("x-request-id", f"hostile-{uuid.uuid4().hex[:12]}")]


async def _run(case: Case, caller: str, data: st.DataObject, fuzz: Fuzz) -> None:
    drawn = data.draw(message_strategy(case.method.input_type, fuzz.hints), label="request")
    # Most examples name the fuzz tenant's real resources, so that the hostile
    # values reach validation and the database instead of stopping at NOT_FOUND:
    # 0 = as drawn; 1 = drawn values merged over real ids (drawn ids win);
    # 2, 3 = real ids in every id field, hostile values everywhere else.
    mode = data.draw(st.integers(0, 3), label="0 drawn, 1 over real ids, 2-3 real ids")
    if mode == 0:
        request = drawn
    else:
        request = own_request(case.method, fuzz.tenants.fuzz)
        request.MergeFrom(drawn)
        if mode >= 2:
            fill_ids(request, fuzz.tenants.fuzz.ids, random_ids=False)
    with ATTACKS.attempt(_ROWS[caller], _tried(case.target, caller)) as attempt:
        bug = await exercise(
            case,
            request,
            metadata=_metadata(caller, fuzz.tenants),
            caller=caller,
            target=fuzz.targets[case.target],
            db=fuzz.db,
        )
        if bug is not None:
            attempt.tolerate(f"{bug.name} ({bug.reproduction})")


# One row per caller in the attack table; "tried" counts the RPCs per target.
_ROWS = {
    "company_admin": "hostile input (hypothesis) as company admin: clean codes, no half-write",
    "anonymous": "hostile input (hypothesis) without token: public clean, rest refused",
    "platform_admin": "hostile input (hypothesis) as platform admin: platform reads/creates",
}


def _tried(target: str, caller: str) -> str:
    cases = {
        "company_admin": ADMIN_CASES,
        "anonymous": PUBLIC_CASES + ANONYMOUS_CASES,
        "platform_admin": PLATFORM_CASES,
    }[caller]
    count = len({c.id for c in cases if c.target == target})
    return f"{target}: {count} RPC{'s' if count != 1 else ''}"


# -------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", ADMIN_CASES, ids=_ids(ADMIN_CASES))
@settings(max_examples=25, **FUZZ_SETTINGS)
@given(data=st.data())
async def test_hostile_input_as_company_admin(case: Case, data: st.DataObject, fuzz: Fuzz) -> None:
    await _run(case, "company_admin", data, fuzz)


@pytest.mark.parametrize("case", PUBLIC_CASES, ids=_ids(PUBLIC_CASES))
@settings(max_examples=25, **FUZZ_SETTINGS)
@given(data=st.data())
async def test_hostile_input_to_public_methods(case: Case, data: st.DataObject, fuzz: Fuzz) -> None:
    await _run(case, "anonymous", data, fuzz)


@pytest.mark.parametrize("case", ANONYMOUS_CASES, ids=_ids(ANONYMOUS_CASES))
@settings(max_examples=4, **FUZZ_SETTINGS)
@given(data=st.data())
async def test_hostile_input_without_a_token_is_unauthenticated(
    case: Case, data: st.DataObject, fuzz: Fuzz
) -> None:
    await _run(case, "anonymous", data, fuzz)


@pytest.mark.parametrize("case", PLATFORM_CASES, ids=_ids(PLATFORM_CASES))
@settings(max_examples=10, **FUZZ_SETTINGS)
@given(data=st.data())
async def test_hostile_input_as_platform_admin_to_platform_reads_and_creates(
    case: Case, data: st.DataObject, fuzz: Fuzz
) -> None:
    await _run(case, "platform_admin", data, fuzz)


def test_every_rpc_of_every_target_is_fuzzed() -> None:
    """The parametrization really covers the descriptors (a new RPC joins by itself)."""
    every = {c.id for c in _cases(lambda m: True)}
    fuzzed = {c.id for c in ADMIN_CASES} | {c.id for c in PUBLIC_CASES}
    assert every == fuzzed
    assert {c.id for c in ANONYMOUS_CASES} == {c.id for c in ADMIN_CASES}
    assert len(every) > 60


async def test_hostile_input_left_the_victim_company_untouched(
    tenants: Tenants,
    hostile_targets: dict[str, ServiceTarget],
    hostile_db: Database,
    victim_before: Fingerprint,
) -> None:
    """Runs after the fuzz tests (file order): they sent the victim's ids and
    emails all along, as the fuzz tenant's admin and without a token."""
    schemas = sorted({s for t in hostile_targets.values() for s in t.schemas})
    after = await hostile_db.tenant_fingerprint(schemas, tenants.victim.company_id, _VICTIM_IGNORED)
    assert not changed(victim_before, after), (
        f"the victim's rows changed: {changed(victim_before, after)}"
    )


def test_hostile_input_reached_the_handlers() -> None:
    """Guards against a silently useless run (say the fuzz admin's token stopped
    working half-way): as company admin, every target answered OK many times."""
    for spec in TARGET_SPECS:
        answers = [
            counter
            for key, counter in HOSTILE_INPUT.codes.items()
            if key.startswith(f"{spec.name}:") and key.endswith(":company_admin")
        ]
        calls = sum(sum(c.values()) for c in answers)
        if calls < 10 * len([c for c in ADMIN_CASES if c.target == spec.name]):
            pytest.skip("the hostile-input tests did not all run in this session")
        successes = sum(c["OK"] for c in answers)
        assert successes >= calls // 50, f"{spec.name}: {successes} OK of {calls} calls"


async def test_the_write_check_catches_a_write_behind_a_refused_call(
    fuzz: Fuzz, hostile_db: Database
) -> None:
    """The half-write check can fail: a row written while a call is refused (here
    by the target's settle hook, into a scratch schema) is reported."""
    connection = hostile_db.connection
    await connection.execute(text("CREATE SCHEMA hostile_selftest"))
    await connection.execute(text("CREATE TABLE hostile_selftest.rows (id int)"))
    try:

        async def sneaky_write() -> None:
            await connection.execute(text("INSERT INTO hostile_selftest.rows VALUES (1)"))

        target = dataclasses.replace(
            fuzz.targets["identity"], schemas=("hostile_selftest",), settle=sneaky_write
        )
        case = next(c for c in ADMIN_CASES if c.id == "identity:UserService.GetUser")
        with pytest.raises(AssertionError, match=r"refused with NOT_FOUND but wrote"):
            await exercise(
                case,
                user_service_pb2.GetUserRequest(user_id=str(uuid.uuid4())),
                metadata=fuzz.tenants.fuzz.bearer,
                caller="company_admin",
                target=target,
                db=hostile_db,
            )
    finally:
        await connection.execute(text("DROP SCHEMA hostile_selftest CASCADE"))
