"""Attack suite: forged trace context (W3C ``traceparent`` / ``tracestate``).

With tracing on, every service continues the trace context a caller sends. A
client controls those headers: malformed ones (garbage, all-zero ids, the
forbidden version ``ff``, a 4 KB value, a valid parent with 4 KB of
``tracestate`` junk) must neither fail the call nor be adopted -- the call is
answered as without them and starts a trace of its own. A well-formed one is
continued by design (the runbook says so). Tracing is switched on for this
test only, with the SDK's in-memory exporter; the servers are the attack
suite's real ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from hostile_attacks import AttackLog
from hostile_harness import TARGET_SPECS, ServiceTarget, Tenants
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.request_fuzz import call_rpc

from cardinsa_foundation import tracing
from cardinsa_foundation.config import Settings

TARGETS = [spec.name for spec in TARGET_SPECS]
VALID_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
VALID_PARENT = "00f067aa0ba902b7"
FORGED: dict[str, list[tuple[str, str]]] = {
    "garbage": [("traceparent", "not-a-trace-context; drop table")],
    "all-zero ids": [("traceparent", f"00-{'0' * 32}-{'0' * 16}-01")],
    "version ff": [("traceparent", f"ff-{VALID_TRACE}-{VALID_PARENT}-01")],
    "4 KB value": [("traceparent", f"00-{VALID_TRACE}-{VALID_PARENT}-01-" + "a" * 4096)],
    "upper-case hex": [("traceparent", f"00-{VALID_TRACE.upper()}-{VALID_PARENT.upper()}-01")],
}
JUNK_STATE = [
    ("traceparent", f"00-{VALID_TRACE}-{VALID_PARENT}-01"),
    ("tracestate", ",".join(f"k{i}=" + "v" * 40 for i in range(90))),
]


@pytest.fixture(params=TARGETS)
def target(
    request: pytest.FixtureRequest, hostile_targets: dict[str, ServiceTarget]
) -> ServiceTarget:
    return hostile_targets[request.param]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    tracing.configure(
        Settings(_env_file=None, tracing_enabled=True),  # type: ignore[call-arg]
        "hostile",
        exporter=spans,
    )
    try:
        yield spans
    finally:
        tracing.shutdown()


async def test_attack_forged_trace_context_is_not_adopted_and_fails_nothing(
    target: ServiceTarget, tenants: Tenants, attacks: AttackLog, exporter: InMemorySpanExporter
) -> None:
    tenant = tenants.attacker
    service, method, request = target.probe(tenant)
    name = f"{service.full_name}/{method.name}"
    with attacks.attempt(
        "forged trace context (malformed traceparent, tracestate junk)",
        f"{target.name} {service.name}/{method.name}",
    ):
        for label, headers in [*FORGED.items(), ("4 KB tracestate", JUNK_STATE)]:
            exporter.clear()
            answer = await call_rpc(
                target.channel, service, method, request, metadata=[*tenant.bearer, *headers]
            )
            assert answer.code is grpc.StatusCode.OK, (
                f"{label}: {answer.code.name} {answer.details!r}"
            )
            assert tracing.force_flush()
            (span,) = [s for s in exporter.get_finished_spans() if s.name == name]
            trace_id = format(span.context.trace_id, "032x")
            if label == "4 KB tracestate":
                # A valid parent is continued by design; the junk state is not kept.
                assert trace_id == VALID_TRACE, label
                assert len(str(span.context.trace_state)) < 1024, label
            else:
                assert span.parent is None, f"{label}: adopted parent {span.parent}"
                assert trace_id not in (VALID_TRACE, "0" * 32), label
