"""Attack suite: oversized messages, fields and metadata, to every RPC of every target.

* 5 MB messages exceed the servers' 4 MiB receive limit: gRPC itself answers
  RESOURCE_EXHAUSTED before any handler runs, and the server keeps serving.
* 1 MB in each string field (one field at a time, nested ones too) and 100 000
  entries in each repeated string field: a clean answer -- INVALID_ARGUMENT or
  a success -- never INTERNAL/UNKNOWN or a timeout. These run as the fuzz
  tenant's admin, whose data may change.
* Metadata beyond gRPC's header limits: RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from hostile_attacks import AttackLog
from hostile_harness import TARGET_SPECS, ServiceTarget, Tenants, known_bug, own_request
from support.request_fuzz import (
    authorization_rule,
    call_rpc,
    rpc_methods,
    set_path,
    string_field_paths,
)

TARGETS = [spec.name for spec in TARGET_SPECS]
FORBIDDEN = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.DATA_LOSS,
}
FIVE_MB = 5 * 1024 * 1024
ONE_MB = 1024 * 1024


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def unknown_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field the message does not declare (valid wire format)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


@pytest.fixture(params=TARGETS)
def target(
    request: pytest.FixtureRequest, hostile_targets: dict[str, ServiceTarget]
) -> ServiceTarget:
    return hostile_targets[request.param]


async def test_attack_5mb_message_to_every_rpc_is_resource_exhausted(
    target: ServiceTarget, tenants: Tenants, attacks: AttackLog
) -> None:
    attacker = tenants.attacker
    methods = rpc_methods(target.services)

    def oversized(method: object) -> bytes:
        request = message_factory.GetMessageClass(method.input_type)()  # type: ignore[attr-defined]
        paths = string_field_paths(method.input_type)  # type: ignore[attr-defined]
        if paths:
            set_path(request, paths[0], "x" * FIVE_MB)
            return request.SerializeToString()
        return request.SerializeToString() + unknown_field(1000, b"x" * FIVE_MB)

    with attacks.attempt(
        "oversized gRPC message (5 MB) to every RPC", f"{target.name}: {len(methods)} RPCs"
    ):
        # Eight at a time: each call waits for the server to refuse its stream.
        for start in range(0, len(methods), 8):
            batch = methods[start : start + 8]
            answers = await asyncio.gather(
                *(
                    call_rpc(target.channel, s, m, oversized(m), metadata=attacker.bearer)
                    for s, m in batch
                )
            )
            for (_, method), answer in zip(batch, answers, strict=True):
                assert answer.code is grpc.StatusCode.RESOURCE_EXHAUSTED, (
                    method.name,
                    answer.code,
                    answer.details,
                )
        # Still serving.
        service, method, request = target.probe(attacker)
        answer = await call_rpc(target.channel, service, method, request, metadata=attacker.bearer)
        assert answer.code is grpc.StatusCode.OK, answer


async def test_attack_1mb_string_in_every_field_is_refused_or_answered_cleanly(
    target: ServiceTarget, tenants: Tenants, attacks: AttackLog
) -> None:
    fuzz = tenants.fuzz
    methods = rpc_methods(target.services)
    accepted: list[str] = []
    calls = 0
    with attacks.attempt(
        "1 MB string in every string field of every RPC", f"{target.name}: {len(methods)} RPCs"
    ) as attempt:
        for service, method in methods:
            metadata = [] if authorization_rule(method) == "public" else fuzz.bearer
            for path in string_field_paths(method.input_type):
                request = own_request(method, fuzz)
                set_path(request, path, ("é" if len(path) % 2 else "x") * ONE_MB)
                answer = await call_rpc(target.channel, service, method, request, metadata=metadata)
                calls += 1
                bug = known_bug(request, answer)
                if bug is not None:
                    attempt.tolerate(f"{bug.name} ({bug.reproduction})")
                    continue
                assert answer.code not in FORBIDDEN, (
                    f"{method.name}.{'.'.join(path)}: {answer.code.name} {answer.details!r}"
                )
                if answer.code is grpc.StatusCode.OK:
                    accepted.append(f"{method.name}.{'.'.join(path)}")
        if target.settle is not None:
            await target.settle()
    assert calls > 0
    if accepted:
        print(f"{target.name}: 1 MB accepted by {', '.join(accepted)}")


async def test_attack_100k_entries_in_every_repeated_field_are_refused_or_answered_cleanly(
    target: ServiceTarget, tenants: Tenants, attacks: AttackLog
) -> None:
    fuzz = tenants.fuzz
    methods = rpc_methods(target.services)
    tried = 0
    with attacks.attempt(
        "100 000 entries in every repeated string field", f"{target.name}: {len(methods)} RPCs"
    ) as attempt:
        for service, method in methods:
            metadata = [] if authorization_rule(method) == "public" else fuzz.bearer
            for top in method.input_type.fields:
                if (
                    top.type != FieldDescriptor.TYPE_MESSAGE
                    or not top.message_type.full_name.startswith("cardinsa.")
                ):
                    continue
                for fd in top.message_type.fields:
                    if not (fd.is_repeated and fd.type == FieldDescriptor.TYPE_STRING):
                        continue
                    request = own_request(method, fuzz)
                    getattr(getattr(request, top.name), fd.name).extend(["users.get"] * 100_000)
                    answer = await call_rpc(
                        target.channel, service, method, request, metadata=metadata
                    )
                    tried += 1
                    bug = known_bug(request, answer)
                    if bug is not None:
                        attempt.tolerate(f"{bug.name} ({bug.reproduction})")
                        continue
                    assert answer.code not in FORBIDDEN, (
                        f"{method.name}.{top.name}.{fd.name}: {answer.code.name} {answer.details!r}"
                    )
    if tried == 0:
        pytest.skip(f"{target.name} has no repeated string field in a request resource")


async def test_attack_oversized_metadata_is_resource_exhausted(
    target: ServiceTarget, tenants: Tenants, attacks: AttackLog
) -> None:
    attacker = tenants.attacker
    service, method, request = target.probe(attacker)
    with attacks.attempt(
        "oversized metadata (20 KB-1 MB: authorization, x-request-id, 40 headers)",
        f"{target.name} {service.name}/{method.name}",
    ):
        for metadata in (
            [("authorization", "Bearer " + "a" * 20_000)],
            [("authorization", "Bearer " + "a" * 1_000_000)],
            [*attacker.bearer, ("x-request-id", "r" * 100_000)],
            [*attacker.bearer, ("x-junk", "j" * 1_000_000)],
            [*attacker.bearer, *((f"x-junk-{i}", "j" * 1000) for i in range(40))],
        ):
            answer = await call_rpc(target.channel, service, method, request, metadata=metadata)
            assert answer.code is grpc.StatusCode.RESOURCE_EXHAUSTED, (metadata[-1][0], answer)
        answer = await call_rpc(target.channel, service, method, request, metadata=attacker.bearer)
        assert answer.code is grpc.StatusCode.OK, answer
