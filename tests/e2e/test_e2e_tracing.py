"""OpenTelemetry traces across the real suite: Envoy, identity, company, core.

The suite (`make up`, cardinsa_tools.suite) runs here with tracing on
(``CARDINSA_TRACING_ENABLED``), exporting to a real OTLP receiver on 127.0.0.1
(the collector's gRPC TraceService, tests/support/otlp_receiver.py), and with a
tenant-status cache TTL of 0, so every core call asks company about the
caller's company: a REST GetPolicy crosses Envoy → core → company, and both
services read PostgreSQL.

- one REST GetPolicy yields ONE trace: Envoy's spans, core's RPC span under
  them, core's call to company and company's RPC span under it, and database
  spans under each service's RPC span (the trace is printed);
- the request id the client chose reaches company too (core passes it on), in
  its span and its log line, and each service's log line carries the trace id;
- an error's RequestInfo names the trace;
- a client's own ``traceparent`` is continued, not replaced.

This module runs its own suite (the package's ``suite`` runs without tracing).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from support.otlp_receiver import OtlpReceiver, ReceivedSpan, render_tree

from e2e.suite_harness import (
    ADMIN_EMAIL,
    Rest,
    SuiteProcess,
    error_details,
    json_date,
    money,
    policyholder_body,
    product_body,
)

GATEWAY = "cardinsa-gateway"
CORE = "cardinsa-core"
COMPANY = "cardinsa-company"
GET_POLICY = "cardinsa.core.v1.PolicyService/GetPolicy"
GET_COMPANY_STATUS = "cardinsa.company.v1.CompanyService/GetCompanyStatus"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def suite(receiver: OtlpReceiver) -> Iterator[SuiteProcess]:
    """The suite with tracing on (overrides the package's ``suite`` here)."""
    base = Path(tempfile.mkdtemp(prefix="cardinsa-e2e-tracing-"))
    handle = SuiteProcess(base)
    handle.env.update(
        {
            "CARDINSA_TRACING_ENABLED": "true",
            "CARDINSA_TRACING_OTLP_ENDPOINT": receiver.endpoint,
            "CARDINSA_TRACING_EXPORT_INTERVAL_S": "0.2",
            # Every call asks company: the cache is always cold.
            "CARDINSA_TENANT_STATUS_TTL_S": "0",
        }
    )
    try:
        handle.start()
        handle.wait_ready()
        yield handle
    except BaseException as error:
        problems = handle.stop()
        if problems:
            error.add_note("while stopping the suite: " + "; ".join(problems))
        error.add_note(f"the suite's files (suite.log) are kept in {base}")
        raise
    else:
        problems = handle.stop()
        assert not problems, "\n".join(problems)
        if not handle.keep_files:
            shutil.rmtree(base, ignore_errors=True)
    finally:
        if handle.process is not None and handle.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(handle.process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def rest(suite: SuiteProcess) -> Rest:
    return suite.rest()


@pytest.fixture(scope="module")
def admin(rest: Rest) -> str:
    return rest.login(ADMIN_EMAIL)


@pytest.fixture(scope="module")
def policy_id(rest: Rest, admin: str) -> str:
    holder = rest.call("POST", "/v1/policyholders", policyholder_body(), token=admin).ok()
    product = rest.call("POST", "/v1/products", product_body(), token=admin).ok()
    product = rest.call(
        "POST",
        f"/v1/products/{product['id']}:activate",
        {"etag": product["etag"]},
        token=admin,
    ).ok()
    policy = rest.call(
        "POST",
        "/v1/policies",
        {
            "policyholder_id": holder["id"],
            "product_id": product["id"],
            "effective_date": json_date(date.today()),
            "sum_insured": money(100000),
            "payment_frequency": "MONTHLY",
            "insured_members": [{"policyholder": True}],
        },
        token=admin,
    ).ok()
    return str(policy["id"])


def _of_request(spans: list[ReceivedSpan], request_id: str) -> list[ReceivedSpan]:
    """The spans that name the request id: Envoy's (``guid:x-request-id``) and
    the services' (``cardinsa.request_id``)."""
    return [
        s
        for s in spans
        if request_id
        in (s.attributes.get("cardinsa.request_id"), s.attributes.get("guid:x-request-id"))
    ]


def _trace_complete(request_id: str) -> Any:
    def done(spans: list[ReceivedSpan]) -> bool:
        named = _of_request(spans, request_id)
        trace_ids = {s.trace_id for s in named}
        if len(trace_ids) != 1:
            return False
        (trace_id,) = trace_ids
        trace = [s for s in spans if s.trace_id == trace_id]
        return _connected(trace) and any(s.attributes.get("db.system.name") for s in trace)

    return done


def _connected(trace: list[ReceivedSpan], outside: str = "") -> bool:
    """Every service's spans are there and every parent has arrived (Envoy exports
    a span when it ends: its server span after its upstream span)."""
    ids = {s.span_id for s in trace} | {outside, ""}
    services = {s.service for s in trace}
    return {GATEWAY, CORE, COMPANY} <= services and all(s.parent_id in ids for s in trace)


def _logged(suite: SuiteProcess, request_id: str, trace_id: str) -> set[tuple[Any, Any]]:
    """(service, method) of the log lines naming both ids, once core's and
    company's are there (the launcher relays the services' output)."""
    assert suite.output is not None
    expected = {("core", f"/{GET_POLICY}"), ("company", f"/{GET_COMPANY_STATUS}")}
    deadline = time.monotonic() + 30
    while True:
        found = {
            (line.get("service"), line.get("method"))
            for line in suite.output.json_lines()
            if line.get("request_id") == request_id and line.get("trace_id") == trace_id
        }
        if expected <= found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    found = []
    current = by_id.get(span.parent_id)
    while current is not None:
        found.append(current)
        current = by_id.get(current.parent_id)
    return found


def _one(spans: list[ReceivedSpan], **match: Any) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s.service, s.name, s.kind) for s in spans])
    return found[0]


def test_one_rest_get_policy_is_one_trace_across_gateway_core_company_and_database(
    suite: SuiteProcess,
    admin: str,
    policy_id: str,
    receiver: OtlpReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rest = suite.rest()
    request_id = f"trace-{uuid.uuid4()}"
    reply = rest.call(
        "GET", f"/v1/policies/{policy_id}", token=admin, headers={"x-request-id": request_id}
    )
    assert reply.ok()["id"] == policy_id
    assert reply.header("x-request-id") == request_id

    spans = receiver.wait_for(_trace_complete(request_id))
    named = _of_request(spans, request_id)
    trace_ids = {s.trace_id for s in named}
    assert len(trace_ids) == 1, f"the request's spans are in {len(trace_ids)} traces: {named}"
    (trace_id,) = trace_ids
    trace = [s for s in spans if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in trace}
    tree = render_tree(trace)
    with capsys.disabled():
        print(f"\n--- trace {trace_id} of REST GET /v1/policies/{{id}} (GetPolicy) ---")
        print(tree)

    # Envoy started the trace: its server span is the root, nothing above it.
    roots = [s for s in trace if not s.parent_id]
    assert [(s.service, s.kind) for s in roots] == [(GATEWAY, "server")], tree
    # core's RPC span under Envoy's spans.
    core_rpc = _one(trace, service=CORE, name=GET_POLICY, kind="server")
    assert by_id[core_rpc.parent_id].service == GATEWAY, tree
    assert roots[0] in _ancestors(core_rpc, by_id), tree
    assert core_rpc.attributes["rpc.grpc.status_code"] == 0
    # core asks company: a client span under core's RPC, company's RPC under it.
    core_call = _one(trace, service=CORE, name=GET_COMPANY_STATUS, kind="client")
    assert core_call.parent_id == core_rpc.span_id, tree
    company_rpc = _one(trace, service=COMPANY, name=GET_COMPANY_STATUS, kind="server")
    assert company_rpc.parent_id == core_call.span_id, tree
    # The request id went on to company with the call.
    assert company_rpc.attributes["cardinsa.request_id"] == request_id
    # Database statements under each service's RPC span.
    core_db = [s for s in trace if s.service == CORE and s.attributes.get("db.system.name")]
    assert any("read_policy" in s.attributes["db.query.text"] for s in core_db), tree
    assert all(core_rpc in _ancestors(s, by_id) for s in core_db), tree
    company_db = [s for s in trace if s.service == COMPANY and s.attributes.get("db.system.name")]
    assert company_db, tree
    assert all(company_rpc in _ancestors(s, by_id) for s in company_db), tree
    # Children inside their parents' time.
    for span in trace:
        parent = by_id.get(span.parent_id)
        if parent is not None and parent.service == span.service:
            assert parent.start_ns <= span.start_ns and span.end_ns <= parent.end_ns, span

    # Each service's log line for the call carries the request id and the trace id.
    logged = _logged(suite, request_id, trace_id)
    assert ("core", f"/{GET_POLICY}") in logged, logged
    assert ("company", f"/{GET_COMPANY_STATUS}") in logged, logged


def test_an_error_names_its_trace_in_request_info(
    rest: Rest, admin: str, receiver: OtlpReceiver
) -> None:
    reply = rest.call("GET", f"/v1/policies/{uuid.uuid4()}", token=admin)
    assert reply.status == 404, reply.body[:500]
    (info,) = error_details(reply.json(), "RequestInfo")
    assert info["request_id"] == reply.header("x-request-id")
    serving = info.get("serving_data", "")
    assert serving.startswith("trace_id="), info
    trace_id = serving.removeprefix("trace_id=")
    spans = receiver.wait_for(
        lambda found: any(s.trace_id == trace_id and s.name == GET_POLICY for s in found)
    )
    rpc = _one([s for s in spans if s.trace_id == trace_id], name=GET_POLICY)
    assert rpc.attributes["rpc.grpc.status_code"] == 5  # NOT_FOUND
    assert rpc.attributes["cardinsa.request_id"] == info["request_id"]


def test_a_clients_traceparent_is_continued(
    rest: Rest, admin: str, policy_id: str, receiver: OtlpReceiver
) -> None:
    trace_id = uuid.uuid4().hex
    client_span = uuid.uuid4().hex[:16]
    reply = rest.call(
        "GET",
        f"/v1/policies/{policy_id}",
        token=admin,
        headers={"traceparent": f"00-{trace_id}-{client_span}-01"},
    )
    reply.ok()
    spans = receiver.wait_for(
        lambda found: _connected([s for s in found if s.trace_id == trace_id], client_span)
    )
    trace = [s for s in spans if s.trace_id == trace_id]
    tree = render_tree(trace, outside=[client_span])
    # Envoy's server span hangs under the client's span; nothing else does.
    under_client = [s for s in trace if s.parent_id == client_span]
    assert [(s.service, s.kind) for s in under_client] == [(GATEWAY, "server")], tree
    core_rpc = _one(trace, service=CORE, name=GET_POLICY)
    assert core_rpc.trace_id == trace_id
