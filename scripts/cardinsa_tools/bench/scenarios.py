"""The scenarios, each a row of the table, and the ceilings they are set against."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardinsa_tools.bench import seed_sql
from cardinsa_tools.bench.calls import Account, gdate, grpc_frame, login, money
from cardinsa_tools.bench.load import (
    Call,
    Load,
    gateway_failures,
    run_calls,
    run_distinct_calls,
    run_h2load,
    run_wrk,
)
from cardinsa_tools.bench.profiles import (
    APPROVAL_DESCRIPTION,
    COVERAGE_CODE,
    GROWTH_FLAT,
    LIST_FILTER,
    MIXED_SHARES,
    NOOP_PATH,
    NOOP_SERVICE,
    SERVICE_TARGET_MB,
    Profile,
    say,
)
from cardinsa_tools.bench.seed import CompanySeed, SeedResult
from cardinsa_tools.bench.suite import Suite
from cardinsa_tools.bench.tools import stop_process
from cardinsa_tools.bench.verification import settle, settle_all, verify, verify_calls
from cardinsa_tools.procfs import (
    cpu_seconds,
    vm_hwm_mb,
)

#: Random ids drawn per company for the mixed workload (policies in force, claims).
MIXED_SAMPLE = 2_000
#: At most this many mixed calls are prepared (far more than a run sends).
MIXED_MAX_CALLS = 200_000
#: A company of the mixed workload: its seed, metadata (its admin's token),
#: policies in force and claims to draw from, its claims under review.
Pool = tuple[
    "CompanySeed", tuple[tuple[str, str], ...], list[str], list[str], Iterator[tuple[str, str]]
]

# ------------------------------------------------------------------ noop server


async def serve_noop() -> None:
    """The ceiling: grpc.aio, one empty unary method, no interceptor."""
    import grpc

    async def noop(request: bytes, context: Any) -> bytes:
        return b""

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                NOOP_SERVICE, {"Noop": grpc.unary_unary_rpc_method_handler(noop)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


# ------------------------------------------------------------------ scenarios


@dataclass
class Row:
    key: str
    scenario: str
    rate: float | None = None
    baseline: str | None = None
    ratio: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    requests: int | None = None
    server_ok: int | None = None
    server_codes: dict[str, int] = field(default_factory=dict)
    cancelled_at_stop: int = 0
    errors: int | None = None
    peak_mb: float | None = None
    #: CPU the serving processes used per call during the measured run (µs): the
    #: service's workers (cpu_us), Envoy for REST (envoy_cpu_us). Less sensitive to
    #: other load on the machine than req/s.
    cpu_us: float | None = None
    envoy_cpu_us: float | None = None
    #: PostgreSQL's CPU per call (its backends and writers; autovacuum left out),
    #: for the one-by-one, mixed and growth rows.
    pg_cpu_us: float | None = None
    target: str = ""
    holds: bool | None = None
    note: str = ""
    command: str = ""


def measured(key: str, scenario: str, load: Load, **more: Any) -> Row:
    """The row of a loaded scenario: what the load generator saw, plus ``more``."""
    return Row(
        key,
        scenario,
        rate=load.rate,
        p50_ms=load.p50_ms,
        p99_ms=load.p99_ms,
        requests=load.requests,
        command=load.command,
        **more,
    )


class Bench:
    def __init__(
        self, suite: Suite, seed: SeedResult, profile: Profile, workdir: Path, noop: NoopServer
    ) -> None:
        self.suite = suite
        self.seed = seed
        self.profile = profile
        self.workdir = workdir
        self.noop_port = noop.port
        self.noop_pid = noop.process.pid
        self.rows: dict[str, Row] = {}

    # -- helpers

    def token(self, account: Account) -> str:
        return asyncio.run(
            login(self.suite.endpoints.grpc("identity"), account, self.seed.password)
        )

    def add(self, row: Row) -> Row:
        self.rows[row.key] = row
        shown = f"{row.rate:,.0f} req/s" if row.rate is not None else ""
        if row.peak_mb is not None:
            shown = f"{row.peak_mb:.1f} MB"
        elif row.rate is None and row.cpu_us is not None:
            shown = f"{row.cpu_us:.2f} µs/call, {row.ratio or 0:.4%} of {row.baseline}"
        extra = f", errors {row.errors}" if row.errors is not None else ""
        say(f"{row.scenario}: {shown}{extra}")
        return row

    def grpc_scenario(
        self,
        key: str,
        scenario: str,
        *,
        address: str,
        path: str,
        bodies: Sequence[bytes],
        headers: Sequence[str] = (),
        metrics: Sequence[int] | None,
        connections: int | None = None,
        streams: int | None = None,
        seconds: float | None = None,
        warmup: bool = True,
        fixed_requests: int | None = None,
        cpu_pids: Sequence[int] = (),
    ) -> Row:
        """h2load: a timed warm-up (rate estimate), then exactly rate x seconds calls."""
        connections = connections or self.profile.connections
        streams = streams or self.profile.streams
        seconds = seconds or self.profile.seconds
        url = f"http://{address}{path}"
        workdir = self.workdir / key
        requests = fixed_requests
        if requests is None:
            if warmup:
                probe = run_h2load(
                    url,
                    bodies,
                    headers,
                    connections=connections,
                    streams=streams,
                    duration=self.profile.warmup_seconds,
                    workdir=workdir,
                )
                estimate = probe.rate
            else:
                estimate = 100.0
            requests = max(connections * len(bodies), int(estimate * seconds))
        service, _, method = path.strip("/").rpartition("/")
        before = settle(metrics, service, method) if metrics else {}
        cpu_before = cpu_seconds(cpu_pids)
        load = run_h2load(
            url,
            bodies,
            headers,
            connections=connections,
            streams=streams,
            requests=requests,
            workdir=workdir,
        )
        cpu_used = cpu_seconds(cpu_pids) - cpu_before
        row = measured(
            key,
            scenario,
            load,
            cpu_us=cpu_used / load.requests * 1e6 if cpu_pids and load.requests else None,
        )
        if metrics:
            check = verify(before, settle(metrics, service, method), service, method, load)
            row.server_ok, row.server_codes = check.server_ok, check.server_codes
            row.errors = check.errors
        else:
            row.errors = load.client_errors
        return row

    def rest_scenario(
        self, key: str, scenario: str, *, path: str, token: str, connections: int, seconds: float
    ) -> Row:
        service, method = "cardinsa.core.v1.PolicyService", "GetPolicy"
        metrics = self.suite.endpoints.metrics_ports("core")
        url = f"http://127.0.0.1:{self.suite.endpoints.gateway}{path}"
        headers = [f"authorization: Bearer {token}"]
        run_wrk(url, headers, connections=connections, seconds=self.profile.warmup_seconds)
        before = settle(metrics, service, method)
        core_pids, envoy_pids = self.pids("core"), self.pids("envoy")
        cpu_before = cpu_seconds(core_pids), cpu_seconds(envoy_pids)
        access_log = self.suite.state_dir / "access.log"
        offset = access_log.stat().st_size if access_log.exists() else None
        load = run_wrk(url, headers, connections=connections, seconds=seconds)
        cpu_core = cpu_seconds(core_pids) - cpu_before[0]
        cpu_envoy = cpu_seconds(envoy_pids) - cpu_before[1]
        check = verify(before, settle(metrics, service, method), service, method, load)
        calls = max(1, check.server_ok + check.cancelled_at_stop)
        return measured(
            key,
            scenario,
            load,
            server_ok=check.server_ok,
            server_codes=check.server_codes,
            cancelled_at_stop=check.cancelled_at_stop,
            errors=check.errors,
            cpu_us=cpu_core / calls * 1e6 if core_pids else None,
            envoy_cpu_us=cpu_envoy / calls * 1e6 if envoy_pids else None,
            note="; ".join(
                part for part in (load.detail, gateway_failures(access_log, offset)) if part
            ),
        )

    def pids(self, service: str) -> list[int]:
        """The service's worker processes (or Envoy's), for CPU accounting."""
        if not hasattr(self, "_pids"):
            self._pids = self.suite.pids()
        return [pid for name, pid in self._pids.items() if name.split("[")[0] == service]

    # -- the scenarios

    def run(self) -> None:
        from cardinsa.core.v1 import claim_service_pb2 as cs
        from cardinsa.core.v1 import policy_service_pb2 as ps
        from cardinsa.core.v1 import resources_pb2 as r
        from cardinsa.identity.v1 import auth_service_pb2

        p = self.profile
        ep = self.suite.endpoints
        core = ep.grpc("core")
        core_metrics = ep.metrics_ports("core")
        large = self.seed.companies[0]
        admin_token = self.token(large.admin)
        auth = [f"authorization: Bearer {admin_token}"]
        get_path = "/cardinsa.core.v1.PolicyService/GetPolicy"
        policy = large.in_force_policy

        noop = self.add(
            self.grpc_scenario(
                "noop",
                "noop: bare grpc.aio, no interceptor (ceiling)",
                address=f"127.0.0.1:{self.noop_port}",
                path=NOOP_PATH,
                bodies=[b"\x00\x00\x00\x00\x00"],
                metrics=None,
                cpu_pids=[self.noop_pid],
            )
        )
        noop.target = "baseline"

        get = self.add(
            self.grpc_scenario(
                "grpc_get_policy",
                f"GetPolicy gRPC, {self.core_processes()}",
                address=core,
                path=get_path,
                headers=auth,
                metrics=core_metrics,
                cpu_pids=self.pids("core"),
                bodies=[grpc_frame(ps.GetPolicyRequest(policy_id=policy))],
            )
        )
        self.ratio(get, noop, minimum=0.40)
        self.add(self.revocation_check(get))
        self.tracing_off(get)
        self.access_line(get)

        rest = self.add(
            self.rest_scenario(
                "rest_get_policy",
                f"GetPolicy REST via gateway, wrk {p.connections} conn",
                path=f"/v1/policies/{policy}",
                token=self.token(large.admin),
                connections=p.connections,
                seconds=p.seconds,
            )
        )
        self.ratio(rest, get, minimum=0.85)
        rest.target += " and p99 < 50 ms"
        rest.holds = bool(rest.holds) and rest.p99_ms is not None and rest.p99_ms < 50

        list_first = self.add(self.list_scenario("list_page_1", 1, ""))
        list_first.target = "baseline"
        token_n = asyncio.run(self.page_token(large.admin, p.list_page))
        list_far = self.add(self.list_scenario("list_page_far", p.list_page, token_n))
        self.ratio(list_far, list_first, minimum=1 / 1.2)
        list_far.target = f"cost ≤ 1.2 x page 1 (ratio ≥ {1 / 1.2:.2f})"

        today = dt.datetime.now(dt.UTC).date()
        claim = cs.CreateClaimRequest(
            claim=r.Claim(
                policy_id=large.claim_policy,
                claimant=r.InsuredMember(policyholder=True),
                claim_type=r.Claim.MEDICAL,
                description="bench claim",
                coverage_code="OUTPATIENT",
                incident_date=gdate(today - dt.timedelta(days=1)),
                claimed_amount=money("250", large.currency),
            )
        )
        create = self.add(
            self.grpc_scenario(
                "grpc_create_claim",
                f"CreateClaim gRPC, {self.core_processes()}",
                address=core,
                path="/cardinsa.core.v1.ClaimService/CreateClaim",
                headers=[f"authorization: Bearer {self.token(large.admin)}"],
                metrics=core_metrics,
                cpu_pids=self.pids("core"),
                bodies=[grpc_frame(claim)],
            )
        )
        self.ratio(create, noop, minimum=0.20)

        approve = self.add(self.approve_scenario(large))
        approve.baseline = noop.key
        if approve.rate and noop.rate:
            approve.ratio = approve.rate / noop.rate
        approve.target = "reported (no target yet); zero errors"
        approve.holds = approve.errors == 0

        bind = self.add(self.bind_scenario(large))
        bind.baseline = noop.key
        if bind.rate and noop.rate:
            bind.ratio = bind.rate / noop.rate

        mixed = self.add(
            self.mixed_scenario(
                "grpc_mixed",
                f"mixed 80/20 reads/writes gRPC, {len(self.seed.companies)} companies",
                self.seed.companies,
            )
        )
        mixed.baseline = noop.key
        if mixed.rate and noop.rate:
            mixed.ratio = mixed.rate / noop.rate
        mixed.target = "reported (no target yet); zero errors"
        mixed.holds = mixed.errors == 0

        many = self.add(
            self.rest_scenario(
                "rest_many_connections",
                f"GetPolicy REST via gateway, {p.many_connections:,} conn "
                f"for {p.many_seconds:.0f} s",
                path=f"/v1/policies/{policy}",
                token=self.token(large.admin),
                connections=p.many_connections,
                seconds=p.many_seconds,
            )
        )
        many.target, many.holds = "zero errors", many.errors == 0

        control = self.add(
            self.grpc_scenario(
                "control_not_found",
                "control: GetPolicy of an unknown id (all must be errors)",
                address=core,
                path=get_path,
                headers=[f"authorization: Bearer {self.token(large.admin)}"],
                metrics=core_metrics,
                cpu_pids=self.pids("core"),
                bodies=[grpc_frame(ps.GetPolicyRequest(policy_id=str(uuid.uuid4())))],
                warmup=False,
                fixed_requests=max(500, p.connections * 10),
            )
        )
        control.target = "errors = requests (h2load calls them all 2xx)"
        control.holds = control.errors == control.requests and bool(control.requests)

        hash_row = self.add(self.hash_ceiling())
        bodies = [
            grpc_frame(auth_service_pb2.LoginRequest(email=a.email, password=self.seed.password))
            for a in self.seed.logins
        ]
        login_row = self.add(
            self.grpc_scenario(
                "grpc_login",
                f"Login gRPC, {len(bodies)} accounts x 1 connection",
                address=ep.grpc("identity"),
                path="/cardinsa.identity.v1.AuthService/Login",
                bodies=bodies,
                metrics=ep.metrics_ports("identity"),
                cpu_pids=self.pids("identity"),
                connections=1,
                streams=1,
            )
        )
        self.ratio(login_row, hash_row, minimum=0.90)

    def approve_scenario(self, company: CompanySeed) -> Row:
        """ApproveClaim: every call approves another claim under review (seeded,
        see seed.top_up_reviewed) for its payable amount, as the company's admin
        (every band); the reviewer was the claims adjuster. h2load repeats one
        body, so the load is the grpc.aio client of load.run_distinct_calls with
        the same connections and streams: a timed warm-up (rate estimate) on the
        first claims, then exactly rate x seconds more, verified on the server."""
        from cardinsa.core.v1 import claim_service_pb2 as cs

        bodies = [
            cs.ApproveClaimRequest(
                claim_id=claim_id, approved_amount=money(payable, company.currency)
            ).SerializeToString()
            for claim_id, payable in company.reviewed
        ]
        row, _ = self.one_by_one(
            "grpc_approve_claim",
            f"ApproveClaim gRPC, {self.core_processes()}",
            "/cardinsa.core.v1.ClaimService/ApproveClaim",
            bodies,
            company,
            what="claims under review",
            setting="approve_claims",
            ceiling=True,
        )
        return row

    def bind_scenario(self, company: CompanySeed) -> Row:
        """BindPolicy: every call binds another quoted policy (seeded, see
        seed.top_up_quoted: as the API leaves them after create and quote,
        effective today), as the company's admin: the product on sale, the
        policyholder, the underwriting check, the next policy number (counter
        row locked), the version row, the NEW premium transaction and the
        invoices of the payment plan, the status log (bind, then activate: it
        starts today), audit and outbox events, one transaction. Loaded like
        ApproveClaim (one_by_one), with write_streams calls in flight per
        connection; afterwards every policy it was sent, warm-up
        included, must be BOUND or IN_FORCE in SQL, with its policy number, its
        premium transaction and invoices."""
        from cardinsa.core.v1 import policy_service_pb2 as ps

        bodies = [
            ps.BindPolicyRequest(policy_id=policy_id).SerializeToString()
            for policy_id in company.quoted
        ]
        row, sent = self.one_by_one(
            "grpc_bind_policy",
            f"BindPolicy gRPC, {self.core_processes()}",
            "/cardinsa.core.v1.PolicyService/BindPolicy",
            bodies,
            company,
            what="quoted policies",
            setting="bind_policies",
            streams=self.profile.write_streams,
        )
        row.target = "reported (no target yet); zero errors, every one bound in SQL"
        if not sent:
            row.holds = False
            return row
        found = self.query(
            seed_sql.BOUND,
            {"company": uuid.UUID(company.company_id), "ids": company.quoted[:sent]},
        )[0]
        row.note = "; ".join(
            part
            for part in (
                f"in SQL afterwards, of the {sent:,} policies sent (warm-up included): "
                f"{found['bound']:,} BOUND/IN_FORCE with a number ({found['in_force']:,} "
                f"IN_FORCE), {found['transacted']:,} with their NEW premium transaction, "
                f"{found['invoiced']:,} invoiced",
                row.note,
            )
            if part
        )
        row.holds = (
            row.errors == 0 and found["bound"] == found["transacted"] == found["invoiced"] == sent
        )
        return row

    def one_by_one(
        self,
        key: str,
        scenario: str,
        path: str,
        bodies: Sequence[bytes],
        company: CompanySeed,
        *,
        what: str,
        setting: str,
        ceiling: bool = False,
        streams: int | None = None,
    ) -> tuple[Row, int]:
        """Calls that each change another resource (``bodies``, each sent once) as
        the company's admin, with the grpc.aio client of load.run_distinct_calls
        in h2load's shape: a timed warm-up (rate estimate) on the first bodies,
        then exactly rate x seconds more, verified on the server. The row and how
        many bodies were sent (warm-up included). ``ceiling``: also the client's
        own rate against noop, in the note; ``streams``: calls in flight per
        connection (default the profile's, h2load's)."""
        p = self.profile
        service, _, method = path.strip("/").rpartition("/")
        core, metrics = (
            self.suite.endpoints.grpc("core"),
            self.suite.endpoints.metrics_ports("core"),
        )
        if not bodies:
            return Row(key, scenario, errors=None, holds=False, note=f"no {what}"), 0
        metadata = [("authorization", f"Bearer {self.token(company.admin)}")]
        shape = {"connections": p.connections, "streams": streams or p.streams}
        warm = run_distinct_calls(core, path, bodies, metadata, seconds=p.warmup_seconds, **shape)
        wanted = max(shape["connections"] * shape["streams"], int(warm.rate * p.seconds))
        measure = bodies[warm.requests : warm.requests + wanted]
        notes = [f"warm-up: {warm.detail}"] if warm.detail else []
        if len(measure) < wanted:
            notes.append(
                f"ran out of {what}: {len(measure)} of {wanted} calls "
                f"(raise the profile's {setting})"
            )
        if not measure:
            return Row(key, scenario, holds=False, note="; ".join(notes)), warm.requests
        core_pids = self.pids("core")
        before = settle(metrics, service, method)
        cpu_before, pg_before = cpu_seconds(core_pids), self.suite.postgres_cpu()
        load = run_distinct_calls(core, path, measure, metadata, **shape)
        cpu_used = cpu_seconds(core_pids) - cpu_before
        pg_used = self.suite.postgres_cpu_since(pg_before)
        check = verify(before, settle(metrics, service, method), service, method, load)
        if load.detail:
            notes.append(load.detail)
        if ceiling:
            # The client's own ceiling: the same client, calls and shape against noop.
            top = run_distinct_calls(
                f"127.0.0.1:{self.noop_port}",
                NOOP_PATH,
                [b""] * max(1000, int(p.seconds * 300)),
                [],
                **shape,
            )
            notes.append(
                f"its grpc.aio client against noop: {top.rate:,.0f} req/s "
                f"({top.client_errors} errors)"
            )
        row = measured(
            key,
            scenario,
            load,
            server_ok=check.server_ok,
            server_codes=check.server_codes,
            errors=check.errors,
            cpu_us=cpu_used / load.requests * 1e6 if core_pids and load.requests else None,
            pg_cpu_us=pg_used / load.requests * 1e6
            if pg_used is not None and load.requests
            else None,
            note="; ".join(notes),
        )
        return row, warm.requests + load.requests

    # -- the mixed workload

    def mixed_scenario(self, key: str, scenario: str, companies: Sequence[CompanySeed]) -> Row:
        """The mixed workload over ``companies`` (see mixed_calls), each call as
        its company's admin, with the grpc.aio client (load.run_calls), 50
        connections x write_streams: a timed warm-up (rate estimate) on the
        first calls, then exactly rate x seconds more (at least
        mixed_min_calls); errors from the servers' counters of every method
        called, summed."""
        p = self.profile
        core, metrics = (
            self.suite.endpoints.grpc("core"),
            self.suite.endpoints.metrics_ports("core"),
        )
        calls, short = self.mixed_calls(companies)
        methods = sorted(
            {(path.strip("/").rsplit("/", 1)[0], path.rsplit("/", 1)[1]) for path, _, _ in calls}
        )
        shape = {"connections": p.connections, "streams": p.write_streams}
        warm = run_calls(core, calls, seconds=p.warmup_seconds, **shape)
        wanted = max(
            shape["connections"] * shape["streams"], p.mixed_min_calls, int(warm.rate * p.seconds)
        )
        measure = calls[warm.requests : warm.requests + wanted]
        notes = [f"warm-up: {warm.detail}"] if warm.detail else []
        if len(measure) < wanted:
            notes.append(
                f"ran out of {short}: {len(measure)} of {wanted} calls "
                "(raise the profile's mixed_approvals)"
            )
        if not measure:
            return Row(key, scenario, holds=False, note="; ".join(notes))
        core_pids = self.pids("core")
        before = settle_all(metrics, methods)
        cpu_before, pg_before = cpu_seconds(core_pids), self.suite.postgres_cpu()
        load = run_calls(core, measure, **shape)
        cpu_used = cpu_seconds(core_pids) - cpu_before
        pg_used = self.suite.postgres_cpu_since(pg_before)
        check = verify_calls(before, settle_all(metrics, methods), load)
        if load.detail:
            notes.append(load.detail)
        shares = ", ".join(
            f"{path.rsplit('/', 1)[-1]} {n:,}"
            for path, (n, _) in sorted((load.per_path or {}).items())
        )
        notes.append(
            f"calls: {shares}; "
            + (
                f"{len(companies)} companies, each as its admin"
                if len(companies) > 1
                else "as the company's admin"
            )
        )
        return measured(
            key,
            scenario,
            load,
            p999_ms=load.p999_ms,
            server_ok=check.server_ok,
            server_codes=check.server_codes,
            errors=check.errors,
            cpu_us=cpu_used / load.requests * 1e6 if core_pids and load.requests else None,
            pg_cpu_us=pg_used / load.requests * 1e6
            if pg_used is not None and load.requests
            else None,
            note="; ".join(notes),
        )

    def mixed_calls(self, companies: Sequence[CompanySeed]) -> tuple[list[Call], str]:
        """The mixed workload's calls, in order, until a company's claims under
        review run out (and what ran out): per block of 10 calls, shuffled,
        MIXED_SHARES -- GetPolicy of a random policy in force, ListPolicies
        (first page of 20, no filter), GetClaim of a random claim, CreateClaim
        (250.00, yesterday, on a random policy in force), ApproveClaim of the
        next claim under review for its payable amount --, each of a random
        company of ``companies`` as that company's admin. Random ids are drawn
        from MIXED_SAMPLE of each company's, read in SQL now; so are the claims
        under review (what earlier scenarios left)."""
        from cardinsa.core.v1 import claim_service_pb2 as cs
        from cardinsa.core.v1 import policy_service_pb2 as ps
        from cardinsa.core.v1 import resources_pb2 as r

        rng = random.Random(20261207)  # noqa: S311 - a reproducible mix, not a secret
        yesterday = gdate(dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
        pools: dict[int, Pool] = {}
        for company in companies:
            sample = self.query(
                seed_sql.MIXED_SAMPLE,
                {"company": uuid.UUID(company.company_id), "size": MIXED_SAMPLE},
            )
            token: tuple[tuple[str, str], ...] = (
                ("authorization", f"Bearer {self.token(company.admin)}"),
            )
            in_force = [str(x["id"]) for x in sample if x["kind"] == "policy"]
            known = [str(x["id"]) for x in sample if x["kind"] == "claim"]
            if not in_force or not known:
                raise RuntimeError(f"company {company.index}: no policies or claims to call")
            pools[company.index] = (company, token, in_force, known, iter(self.reviewed(company)))
        kinds = [kind for kind, tenths in MIXED_SHARES for _ in range(tenths)]
        list_body = ps.ListPoliciesRequest(page_size=20).SerializeToString()
        calls: list[Call] = []
        policy_svc, claim_svc = "/cardinsa.core.v1.PolicyService", "/cardinsa.core.v1.ClaimService"
        while len(calls) < MIXED_MAX_CALLS:
            block = list(kinds)
            rng.shuffle(block)
            for kind in block:
                company, md, policies, claims, reviewed = pools[rng.choice(list(pools))]
                if kind == "GetPolicy":
                    body = ps.GetPolicyRequest(policy_id=rng.choice(policies)).SerializeToString()
                    calls.append((f"{policy_svc}/GetPolicy", body, md))
                elif kind == "ListPolicies":
                    calls.append((f"{policy_svc}/ListPolicies", list_body, md))
                elif kind == "GetClaim":
                    body = cs.GetClaimRequest(claim_id=rng.choice(claims)).SerializeToString()
                    calls.append((f"{claim_svc}/GetClaim", body, md))
                elif kind == "CreateClaim":
                    claim = r.Claim(
                        policy_id=rng.choice(policies),
                        claimant=r.InsuredMember(policyholder=True),
                        claim_type=r.Claim.MEDICAL,
                        description="bench mixed claim",
                        coverage_code=COVERAGE_CODE,
                        incident_date=yesterday,
                        claimed_amount=money("250", company.currency),
                    )
                    body = cs.CreateClaimRequest(claim=claim).SerializeToString()
                    calls.append((f"{claim_svc}/CreateClaim", body, md))
                else:
                    found = next(reviewed, None)
                    if found is None:
                        return calls, f"company {company.index}'s claims under review"
                    claim_id, payable = found
                    body = cs.ApproveClaimRequest(
                        claim_id=claim_id, approved_amount=money(payable, company.currency)
                    ).SerializeToString()
                    calls.append((f"{claim_svc}/ApproveClaim", body, md))
        return calls, "calls"

    def reviewed(self, company: CompanySeed) -> list[tuple[str, str]]:
        """The company's claims under review now (what earlier calls left)."""
        rows = self.query(
            seed_sql.REVIEWED,
            {"company": uuid.UUID(company.company_id), "description": APPROVAL_DESCRIPTION},
        )
        return [(str(x["id"]), str(x["benefit_payable"])) for x in rows]

    def query(self, sql: str, values: dict[str, Any]) -> list[Any]:
        """A statement of seed_sql as the owner role, its rows."""

        async def run() -> list[Any]:
            import asyncpg

            from cardinsa_foundation.db import to_libpq_url

            conn = await asyncpg.connect(to_libpq_url(self.suite.admin_url))
            try:
                statement, args = seed_sql.named(sql, values)
                return list(await conn.fetch(statement, *args))
            finally:
                await conn.close()

        return asyncio.run(run())

    # -- the growth benchmark

    def growth(self) -> None:
        """The mixed workload against each growth company alone (one per size,
        smallest first; growth_rounds rounds, every other one largest first,
        and per size the round of least server CPU per call), then the largest
        against the smallest: server CPU per call (core + PostgreSQL) and req/s."""

        def server_cpu(row: Row) -> float:
            if row.cpu_us is None:
                return float("inf")
            return row.cpu_us + (row.pg_cpu_us or 0)

        measured_rows: dict[int, list[Row]] = {}
        for round_ in range(self.profile.growth_rounds):
            order = self.seed.growth if round_ % 2 == 0 else self.seed.growth[::-1]
            for company in order:
                say(f"growth round {round_ + 1}: {company.policies:,} policies")
                row = self.mixed_scenario(
                    f"growth_{company.policies}",
                    f"growth: mixed 80/20, one company of {company.policies:,} policies",
                    [company],
                )
                measured_rows.setdefault(company.index, []).append(row)
        rows = []
        for company in self.seed.growth:
            runs = measured_rows[company.index]
            row = min(runs, key=server_cpu)
            errors = [r.errors for r in runs]
            row.target = "zero errors"
            row.holds = all(e == 0 for e in errors)
            if len(runs) > 1:
                row.errors = None if None in errors else sum(e or 0 for e in errors)
                row.note = "; ".join(
                    [
                        row.note,
                        f"round {runs.index(row) + 1} of {len(runs)} (least server CPU per "
                        "call); every round: "
                        + ", ".join(
                            f"{server_cpu(r):,.0f} µs/call {r.rate or 0:,.0f} req/s" for r in runs
                        )
                        + f"; errors over all rounds: {row.errors}",
                    ]
                )
            rows.append(self.add(row))
        if len(rows) < 2:
            return
        small, large = rows[0], rows[-1]
        server = [
            (r.cpu_us or 0) + (r.pg_cpu_us or 0) if r.cpu_us is not None else None
            for r in (small, large)
        ]
        ratio = server[1] / server[0] if server[0] and server[1] else None
        rate_ratio = large.rate / small.rate if large.rate and small.rate else None
        sizes = f"{self.seed.growth[-1].policies:,} vs {self.seed.growth[0].policies:,}"
        self.add(
            Row(
                "growth_flat",
                f"growth: server CPU µs/call at {sizes} policies",
                baseline=small.key,
                ratio=ratio,
                cpu_us=server[1],
                errors=sum(r.errors or 0 for r in rows),
                target=f"≤ {GROWTH_FLAT:.2f} x the smallest (flat within 20 %)",
                holds=ratio is not None and ratio <= GROWTH_FLAT and all(r.holds for r in rows),
                note=(
                    "server CPU per call = core + PostgreSQL: "
                    + ", ".join(
                        f"{r.key.split('_', 1)[1]} {(r.cpu_us or 0) + (r.pg_cpu_us or 0):,.0f} µs "
                        f"({r.rate or 0:,.0f} req/s)"
                        for r in rows
                    )
                    + (
                        f"; req/s at the largest / the smallest: {rate_ratio:.2f}"
                        if rate_ratio
                        else ""
                    )
                ),
            )
        )

    def list_scenario(self, key: str, page: int, page_token: str) -> Row:
        """ListPolicies with the filter, one page (``page_token`` leads to it)."""
        from cardinsa.core.v1 import policy_service_pb2 as ps

        p = self.profile
        size = f" (size {p.list_page_size})" if page == 1 else ""
        return self.grpc_scenario(
            key,
            f"ListPolicies {LIST_FILTER}, page {page:,}{size}",
            address=self.suite.endpoints.grpc("core"),
            path="/cardinsa.core.v1.PolicyService/ListPolicies",
            headers=[f"authorization: Bearer {self.token(self.seed.companies[0].admin)}"],
            metrics=self.suite.endpoints.metrics_ports("core"),
            cpu_pids=self.pids("core"),
            bodies=[
                grpc_frame(
                    ps.ListPoliciesRequest(
                        page_size=p.list_page_size, filter=LIST_FILTER, page_token=page_token
                    )
                )
            ],
        )

    def tracing_off(self, get: Row) -> None:
        """Tracing off must cost GetPolicy at most 2 % (see tracing_off_hooks_us)."""
        hooks = tracing_off_hooks_us()
        share = hooks / get.cpu_us if get.cpu_us else None
        shown = f"{share * 100:.3f} %" if share is not None else "n/a"
        row = self.add(
            Row(
                "tracing_off",
                f"tracing off: its hooks {hooks:.2f} µs per GetPolicy = {shown} of its CPU",
                baseline=get.key,
                ratio=share,
                cpu_us=hooks,
                target="≤ 0.02 x GetPolicy CPU µs/call",
                holds=share is not None and share <= 0.02,
                note=(
                    "the statements tracing adds to a GetPolicy while off, timed in the "
                    f"bench process: {hooks:.3f} µs against {get.cpu_us or 0:,.0f} µs of "
                    "core CPU per GetPolicy in this run"
                ),
            )
        )
        row.target = "≤ 0.02 x GetPolicy CPU µs/call"

    def access_line(self, get: Row) -> None:
        """The access log line every RPC writes (redaction and JSON) must stay far
        below the RPC itself (see access_line_us)."""
        line = access_line_us()
        share = line / get.cpu_us if get.cpu_us else None
        self.add(
            Row(
                "access_line",
                f"access log line: {line:.1f} µs (redaction + JSON) per RPC",
                baseline=get.key,
                ratio=share,
                cpu_us=line,
                target="≤ 0.10 x GetPolicy CPU µs/call",
                holds=share is not None and share <= 0.10,
                note=(
                    "one 'rpc finished' line through the services' logging set-up, timed "
                    f"in the bench process: {line:.1f} µs against {get.cpu_us or 0:,.0f} µs "
                    "of core CPU per GetPolicy in this run"
                ),
            )
        )

    def core_processes(self) -> str:
        n = self.suite.endpoints.workers
        return "1 core process" if n == 1 else f"{n} core processes"

    def ratio(self, row: Row, base: Row, *, minimum: float) -> None:
        row.baseline = base.key
        if row.rate and base.rate:
            row.ratio = row.rate / base.rate
        row.target = f"≥ {minimum:.2f} x {base.key}"
        row.holds = row.ratio is not None and row.ratio >= minimum and row.errors == 0

    async def page_token(self, account: Account, page: int) -> str:
        """The token of page ``page`` of the filtered list, by walking to it."""
        import grpc

        from cardinsa.core.v1 import policy_service_pb2 as ps
        from cardinsa.core.v1 import policy_service_pb2_grpc as psg

        token = await login(self.suite.endpoints.grpc("identity"), account, self.seed.password)
        md = [("authorization", f"Bearer {token}")]
        async with grpc.aio.insecure_channel(self.suite.endpoints.grpc("core")) as channel:
            stub = psg.PolicyServiceStub(channel)  # type: ignore[no-untyped-call]
            page_token = ""
            for number in range(1, page):
                reply = await stub.ListPolicies(
                    ps.ListPoliciesRequest(
                        page_size=self.profile.list_page_size,
                        filter=LIST_FILTER,
                        page_token=page_token,
                    ),
                    metadata=md,
                    timeout=30,
                )
                page_token = reply.next_page_token
                if not page_token:
                    raise RuntimeError(f"the list ends at page {number}, before page {page}")
        return page_token

    def revocation_check(self, get: Row) -> Row:
        """What refusing revoked tokens costs GetPolicy: the check every call runs
        (RevocationSet.check, after the verified-token cache), timed alone in
        this process with a realistic set -- 10 000 revoked sessions and 10 000
        subjects with a not-before -- against GetPolicy's CPU per call measured
        above (which includes it: the suite's core follows identity's
        revocations). Process CPU time, loop included (an overestimate)."""
        from cardinsa_foundation.context import Principal, PrincipalKind
        from cardinsa_foundation.revocation import (
            SESSION,
            SUBJECT,
            Revocation,
            RevocationBatch,
            RevocationSet,
        )

        entries = 10_000
        now = time.time()
        revocations = RevocationSet(name="bench")
        revocations.apply(
            RevocationBatch(
                tuple(
                    Revocation(i, kind, str(uuid.uuid4()), now, now + 900, "bench")
                    for i in range(entries)
                    for kind in (SESSION, SUBJECT)
                ),
                cursor=entries,
                caught_up=True,
            )
        )
        caller = Principal(
            subject=str(uuid.uuid4()),
            kind=PrincipalKind.USER,
            company_id=str(uuid.uuid4()),
            session_id=str(uuid.uuid4()),
        )
        calls = 1_000_000 if self.profile.name == "full" else 200_000
        check = revocations.check
        started = time.process_time()
        for _ in range(calls):
            check(caller, now)
        per_call_us = (time.process_time() - started) / calls * 1e6
        row = Row(
            "revocation_check",
            f"revocation check alone ({len(revocations):,} entries) vs GetPolicy CPU",
            requests=calls,
            errors=0,
            cpu_us=per_call_us,
            baseline="grpc_get_policy CPU",
            target="≤ 0.03 x GetPolicy CPU/call",
        )
        if get.cpu_us:
            row.ratio = per_call_us / get.cpu_us
        row.holds = row.ratio is not None and row.ratio <= 0.03
        return row

    def hash_ceiling(self) -> Row:
        """argon2id verifications per second with identity's own hasher: its
        parameters and its thread pool size, on these cores, now."""
        from concurrent.futures import ThreadPoolExecutor

        from cardinsa_identity.domain.passwords import PasswordHasher

        hasher = PasswordHasher()
        threads = 2  # PasswordHasher's default max_concurrency, as identity uses it
        stored = hasher.hash_password(self.seed.password)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            # Warm-up: each thread's first hashes pay for mapping their 32 MiB.
            list(pool.map(lambda _: hasher.verify_password(self.seed.password, stored), range(4)))
        deadline = time.monotonic() + self.profile.hash_seconds
        counts = [0] * threads

        def work(slot: int) -> None:
            while time.monotonic() < deadline:
                ok, _ = hasher.verify_password(self.seed.password, stored)
                assert ok
                counts[slot] += 1

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(work, range(threads)))
        elapsed = time.monotonic() - started
        return Row(
            "argon2_verify",
            f"argon2id verify alone, {threads} threads (login ceiling)",
            rate=sum(counts) / elapsed,
            requests=sum(counts),
            target="baseline",
            errors=0,
        )

    def memory(self) -> None:
        for name, pid in sorted(self.suite.pids().items()):
            peak = vm_hwm_mb(pid)
            row = Row(f"memory_{name}", f"peak memory (VmHWM) {name}, pid {pid}", peak_mb=peak)
            if name != "envoy":
                row.target = f"< {SERVICE_TARGET_MB:.0f} MB"
                row.holds = peak is not None and peak < SERVICE_TARGET_MB
            else:
                row.target = "reported"
            self.add(row)


def access_line_us(lines: int = 5_000) -> float:
    """What the access log line of one RPC costs, in µs, timed here: the
    services' own logging set-up (redaction filter, JSON formatter) writing to
    memory, inside a request context, the line the call pipeline writes."""
    import io
    import logging
    import time

    from cardinsa_foundation.context import method_var, request_id_var
    from cardinsa_foundation.logging import configure_logging

    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    configure_logging("INFO", True, "bench", stream=buffer)
    tokens = (
        request_id_var.set(str(uuid.uuid4())),
        method_var.set("/cardinsa.core.v1.PolicyService/GetPolicy"),
    )
    log = logging.getLogger("cardinsa.access")
    try:
        started = time.perf_counter()
        for _ in range(lines):
            log.info(
                "rpc finished",
                extra={"code": "OK", "duration_ms": 1.25, "peer": "ipv4:10.0.0.1:5555"},
            )
        elapsed = time.perf_counter() - started
    finally:
        method_var.reset(tokens[1])
        request_id_var.reset(tokens[0])
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
        root.setLevel(saved_level)
    if buffer.getvalue().count("\n") != lines:
        raise RuntimeError("the access lines were not all written")
    return elapsed / lines * 1e6


def tracing_off_hooks_us(iterations: int = 200_000) -> float:
    """What tracing costs a GetPolicy while it is off, in µs per call, timed here.

    With ``CARDINSA_TRACING_ENABLED`` false (the default, and this process:
    nothing configures tracing here) a GetPolicy runs these statements because
    tracing exists, each copied from where it runs: the call pipeline's test
    before and after the call (cardinsa_foundation.interceptors), Database.read's
    test (db.py) and the trace ids the JSON access line looks up in the context
    (logging.py; none, so the line has no trace fields). No span, provider or
    exporter exists (tests/integration/test_tracing.py). Timed as the loop of
    these statements less an empty loop, and set against the GetPolicy's CPU
    per call measured in the same run.
    """
    import timeit

    from cardinsa_foundation import tracing
    from cardinsa_foundation.context import trace_var

    if tracing.TRACER is not None:
        raise RuntimeError("tracing is on in the bench process; the figure would be wrong")
    method = "/cardinsa.core.v1.PolicyService/GetPolicy"
    metadata = {"authorization": "Bearer x", "x-request-id": str(uuid.uuid4())}
    traced = True

    def hooks() -> None:
        span = (
            tracing.start_server_span(method, metadata)
            if traced and tracing.TRACER is not None
            else None
        )
        if tracing.TRACER is not None:  # Database.read
            raise AssertionError
        trace_ids = trace_var.get()  # the log line's context, then its test
        if trace_ids:
            raise AssertionError
        if span is not None:  # the pipeline's end of call
            raise AssertionError

    def empty() -> None:
        return None

    hooks_s: list[float] = []
    empty_s: list[float] = []
    for _ in range(7):  # interleaved, best of each: the machine may be busy
        hooks_s.append(timeit.timeit(hooks, number=iterations) / iterations)
        empty_s.append(timeit.timeit(empty, number=iterations) / iterations)
    return max(0.0, min(hooks_s) - min(empty_s)) * 1e6


class NoopServer:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cardinsa_tools.bench", "--serve-noop"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def stop(self) -> None:
        stop_process(self.process)
