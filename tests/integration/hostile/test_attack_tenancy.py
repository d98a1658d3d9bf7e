"""Attack suite: another company's ids in every path, filter and tenant header.

The attacker is company X's admin; the victim is company V. Every RPC of every
target is tried (generic over the descriptors), and afterwards every row of V
is compared with a snapshot taken before: nothing of V may have moved.
"""

from __future__ import annotations

import grpc
import pytest
from hostile_attacks import AttackLog
from hostile_harness import (
    TARGET_SPECS,
    Database,
    ServiceTarget,
    Tenants,
    belongs_to,
    changed,
    discover_fields,
    list_methods,
    own_request,
    repeated_items,
)
from support.request_fuzz import call_rpc
from support.tenant_matrix import report, run_matrix, tenant_methods

TARGETS = [spec.name for spec in TARGET_SPECS]
# Headers a careless service might take the tenant from.
TENANT_HEADERS = ("x-company-id", "x-tenant-id", "x-cardinsa-company-id", "company-id", "x-cid")
# Rows a read by anyone may add for the victim: none. Logins of V's accounts
# by other suites' tests are not part of this module.
_VICTIM_VOLATILE = frozenset({"identity.signing_keys", "identity.login_throttles"})


@pytest.fixture(params=TARGETS)
def target(
    request: pytest.FixtureRequest, hostile_targets: dict[str, ServiceTarget]
) -> ServiceTarget:
    return hostile_targets[request.param]


async def test_attack_another_companys_ids_in_every_path_answer_like_nonexistent_ones(
    target: ServiceTarget, tenants: Tenants, hostile_db: Database, attacks: AttackLog
) -> None:
    attacker, victim = tenants.attacker, tenants.victim
    methods = tenant_methods(target.services)
    with attacks.attempt(
        "another company's ids in every path (B's id == nonexistent id)",
        f"{target.name}: {len(methods)} RPCs",
    ):
        before = await hostile_db.tenant_fingerprint(
            target.schemas, victim.company_id, _VICTIM_VOLATILE
        )
        outcomes = await run_matrix(
            target.channel,
            target.services,
            caller=attacker.bearer,
            foreign_ids=victim.ids,
            foreign_company=victim.company_id,
        )
        assert len(outcomes) == len(methods) > 0
        assert all(o.ok for o in outcomes), report(outcomes)
        refused = [o for o in outcomes if o.foreign[0] in ("NOT_FOUND", "PERMISSION_DENIED")]
        assert refused, "no RPC reached an id check: the matrix proves nothing"
        after = await hostile_db.tenant_fingerprint(
            target.schemas, victim.company_id, _VICTIM_VOLATILE
        )
        assert not changed(before, after), f"V's rows changed: {changed(before, after)}"


def _victim_values(tenants: Tenants) -> list[str]:
    victim = tenants.victim
    return [victim.company_id, victim.admin.user_id, *victim.ids.values(), *victim.emails]


async def test_attack_another_companys_values_in_every_list_filter_return_no_rows(
    target: ServiceTarget, tenants: Tenants, attacks: AttackLog
) -> None:
    """``company_id = "<V>"``, ``email = "<V user's email>"``, V's ids in every
    filterable field of every List RPC: INVALID_ARGUMENT or no rows of V. The same
    filters with X's own values do find X's rows, so the filters are real."""
    attacker, victim = tenants.attacker, tenants.victim
    lists = list_methods(target.services)
    if not lists:
        pytest.skip(f"{target.name} has no List RPC with a filter")
    tried = f"{target.name}: " + ", ".join(m.name for _, m in lists)
    with attacks.attempt("another company's ids/emails in every List filter", tried):
        own_hits = 0
        for service, method in lists:
            fields = await discover_fields(target.channel, service, method, attacker, "filter")
            for field in fields:
                for value, own in zip(
                    _victim_values(tenants),
                    [
                        attacker.company_id,
                        attacker.admin.user_id,
                        *attacker.ids.values(),
                        *attacker.emails,
                    ],
                    strict=False,
                ):
                    for template in ('{f} = "{v}"', '{f}:"{v}"'):
                        request = own_request(
                            method, attacker, filter=template.format(f=field, v=value)
                        )
                        answer = await call_rpc(
                            target.channel, service, method, request, metadata=attacker.bearer
                        )
                        assert answer.code in (
                            grpc.StatusCode.OK,
                            grpc.StatusCode.INVALID_ARGUMENT,
                        ), (
                            method.name,
                            request.filter,
                            answer.code,
                            answer.details,
                        )
                        if answer.response is not None:
                            leaks = [
                                r
                                for item in repeated_items(answer.response)
                                for r in belongs_to(item, victim)
                            ]
                            assert not leaks, (
                                f"{method.name} filter {request.filter!r} "
                                f"returned V's rows: {leaks}"
                            )
                        control = own_request(
                            method, attacker, filter=template.format(f=field, v=own)
                        )
                        mine = await call_rpc(
                            target.channel, service, method, control, metadata=attacker.bearer
                        )
                        if mine.response is not None and repeated_items(mine.response):
                            own_hits += 1
        assert own_hits > 0, (
            "no filter with X's own values found X's rows: the filters prove nothing"
        )


async def test_attack_forged_tenant_headers_are_ignored(
    target: ServiceTarget, tenants: Tenants, attacks: AttackLog
) -> None:
    """Tenant headers naming V change nothing: every List answers exactly as
    without them (X's rows), and the probe for V's company stays refused."""
    attacker, victim = tenants.attacker, tenants.victim
    forged = [(header, victim.company_id) for header in TENANT_HEADERS]
    lists = [(s, m) for s in target.services for m in s.methods if m.name.startswith("List")]
    tried = f"{target.name}: {', '.join(h for h, _ in forged)} on {len(lists)} List RPCs + probe"
    with attacks.attempt("forged tenant headers (x-company-id, x-tenant-id, ...)", tried):
        for service, method in lists:
            request = (
                own_request(method, attacker, page_size=100)
                if "page_size" in method.input_type.fields_by_name
                else own_request(method, attacker)
            )
            plain = await call_rpc(
                target.channel, service, method, request, metadata=attacker.bearer
            )
            spoofed = await call_rpc(
                target.channel, service, method, request, metadata=[*attacker.bearer, *forged]
            )
            assert spoofed.code == plain.code, (method.name, plain.code, spoofed.code)
            if spoofed.response is not None:
                leaks = [
                    r for item in repeated_items(spoofed.response) for r in belongs_to(item, victim)
                ]
                assert not leaks, f"{method.name} with tenant headers returned V's rows: {leaks}"
                assert {getattr(i, "id", None) for i in repeated_items(spoofed.response)} == {
                    getattr(i, "id", None) for i in repeated_items(plain.response)
                }, method.name
        service, method, request = target.probe(victim)
        answer = await call_rpc(
            target.channel, service, method, request, metadata=[*attacker.bearer, *forged]
        )
        assert answer.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED), answer
