"""`make bench`: load the whole suite and print one table of figures against the targets.

    .venv/bin/python -m cardinsa_tools.bench [--quick] [--use-running] [--workers N] [--seconds S]

What it does, in order:

1. installs the load generators when missing: ``h2load`` (Debian package
   nghttp2-client, HTTP/2 and gRPC unary calls) and ``wrk`` (HTTP/1.1, for REST),
   with apt-get (root only; ``apt-get update`` once if the first install fails);
2. starts its own suite (`make up`, by ``cardinsa_tools.launcher``) on free ports
   of 127.0.0.1 with its own embedded PostgreSQL in ``.data/bench/full`` (``quick``
   for --quick; kept between runs, ``--fresh`` starts over), or with
   ``--use-running`` uses the suite `make up` runs (same ``CARDINSA_*`` settings);
3. seeds realistic data unless it is already there: 12 companies (registered
   with the company service), an admin and a claims adjuster per company and
   login accounts (identity), and in the core service 100 000 policies (one
   large company with 30 000, so that page 1 000 of a filtered list exists),
   as many policyholders, the policies' versions and status logs, and 20 000
   claims with their logs; and the growth benchmark's companies, one per size
   (10 000, 100 000 and 1 000 000 policies, a claim per 5 policies; --quick:
   1 000, 2 000, 4 000), seeded once and kept like the rest. Then, every run,
   it tops up in SQL the claims under review that ApproveClaim approves
   (10 000 of company 0; 2 500 for --quick) and those the mixed workload
   approves (1 000 per company, the growth companies too; 600 for --quick),
   as the API leaves them after create, submit and review by the company's
   claims adjuster (``bench-adjuster-NN``): numbered from the company's
   counter, with the benefit the review estimates (claims of 100.00-140.00,
   the bench product's 20 % co-insurance: payable 80 %) and their three log
   entries; and the quoted policies BindPolicy binds (5 000 of company 0;
   1 500 for --quick), as the API leaves them after create and quote: copies
   of the company's quoted template (product version, premium, its rating as
   ``premium_breakdown``, sum insured, payment frequency; no underwriting
   issue open), each with a policyholder of its own, effective today for 12
   months, and their two log entries; those left from an earlier run start
   today again (bind refuses a start further back than the company allows);
4. loads it (scenarios below) and verifies every call on the server side;
5. prints one table and writes the same figures as JSON to
   ``.data/bench/<timestamp>-full.json`` (``--output-dir``) for comparing runs.

Seeding bypasses the API on purpose. Creating 100 000 policies through the API
(create, quote, bind: three RPCs, ~10 statements each) would take longer than
the benchmark itself, so per company one product, one policyholder, one
policy in force, one quoted policy and one submitted claim are created through
the API (the real rows, audit events and counters), and the bulk is copied from
those templates in SQL (INSERT ... SELECT: the rows are made inside the
server and nothing crosses the connection; COPY from the client, asyncpg's
``copy_records_to_table`` with the rows made in Python, was measured slower:
100 000 policyholders in 2.8-3.3 s against 2.2-2.6 s, the indexes and the
WAL being most of both), as the owner role, one transaction per 100 000
policies with the company set as the row-level-security tenant
(``cardinsa.company_id``), a progress line per transaction for a larger
company: every row carries its ``company_id``, references stay inside the
company, policy and claim numbers are gap-free and the counters hold the last
number handed out, so the API keeps numbering where the seed stopped (checked
after seeding, every run). An interrupted seed goes on from its last whole
transaction. A company's policies were created 5 minutes apart (closer for a
large one: all within 250 days, so that they are still in force). One audit
event per company and transaction (``bench.seed``) records the bulk load; the
copies have no audit events of their own. From scratch, the full profile
seeded in 9 minutes (540 s, 440 s of them the 1 000 000-policy company) on 2
cores that others kept busy, and the whole `make bench` took 13.5 minutes;
a second run finds the data there (seeded in 20 s: the top-ups) and takes
about 7 minutes.

Scenarios (ratios are measured in the same run, on the same machine):

- ``noop``: the ceiling -- a bare grpc.aio server with one empty unary method
  and no interceptors, started here and loaded exactly like the gRPC scenarios
  (h2load, 50 connections x 10 streams);
- GetPolicy over gRPC, one core process, authenticated and tenant-isolated:
  target >= 0.40 of noop;
- the same GetPolicy through the gateway as REST (wrk, 50 connections): target
  >= 0.85 of the direct gRPC rate, and p99 < 50 ms at these 50 connections;
- ListPolicies with a filter, page 1 000 against page 1 (keyset paging): page
  1 000 may cost at most 1.2 times page 1;
- CreateClaim (validation, eligibility, claim row, action log, audit event, one
  transaction): target >= 0.20 of noop;
- ApproveClaim, reported against noop (no target yet): each call approves
  another claim under review for its payable amount, as the company's admin
  (who holds every approval band; the adjuster reviewed it) -- the band check,
  the cover re-checked with the policy read FOR SHARE, the benefit worked out
  with the accumulator rows locked FOR UPDATE and moved, the action log and
  audit event, one transaction. The claims are spread over the company's
  policies in force, least-used first (claim j on the j-th policy, cycling):
  approvals lock different accumulator rows (member, coverage and period;
  the policy's sum insured) instead of queueing on one, and no limit runs
  out -- the bench product keeps its 10 000 per-year limit, and a policy gets
  more of these claims only while 2 000 of its limit and sum insured are
  left (``APPROVAL_HEADROOM``). With --quick's 400 policies some approvals do
  share a policy; with the full profile's 27 000 in force none do. h2load
  sends one body over and over and an approval cannot be repeated, so this
  row's load is a grpc.aio client (``load.run_distinct_calls``) with h2load's
  shape: 50 channels (one HTTP/2 connection each) x 10 calls in flight, a
  timed warm-up, then exactly rate x seconds calls, verified on the server
  like the others. The row's note gives that client's own rate against noop
  (its ceiling, far above an approval's rate);
- BindPolicy, reported against noop (no target yet): each call binds
  another quoted policy (topped up, above) as the company's admin -- the
  product on sale, the policyholder, the underwriting check, the next policy
  number (the company's counter row locked), the version row, the NEW premium
  transaction and the invoices of the payment plan, the status log (bind,
  then activate: the policies start today), audit and outbox events, one
  transaction. Loaded like ApproveClaim but with 50 x 2 calls in flight
  (``write_streams``: 500 queue past the connection pool's 10 s timeout when
  a write takes tens of ms on a busy machine, and the server answers
  UNAVAILABLE); afterwards every policy it was sent, warm-up included, must
  be BOUND or IN_FORCE in SQL with its policy number, its premium
  transaction and invoices;
- the mixed workload, reported against noop (no target yet; zero errors):
  80 % reads, 20 % writes over policies and claims of all 12 companies, each
  call as its company's admin, per block of 10 calls (shuffled): 4 GetPolicy
  of a random policy in force, 2 ListPolicies (first page of 20, no
  filter), 2 GetClaim of a random claim, 1 CreateClaim (on a random policy
  in force) and 1 ApproveClaim of the next claim under review (the company's
  at random; random ids from 2 000 of each company's, read in SQL when the
  row starts). The grpc.aio client of several methods (``load.run_calls``),
  50 x 2 in flight, a timed warm-up, then rate x seconds calls; throughput,
  p50/p99/p99.9 latency, and errors from ``grpc_server_handled_total`` of
  every method called, summed;
- 1 000 concurrent connections through the gateway (REST GetPolicy, wrk) for
  30 s: zero errors;
- Login over gRPC (one account per connection) against what argon2id
  verification alone allows on the same cores (identity's own hasher
  parameters and thread count, measured here in the same run): target >= 0.9;
- the revocation check every call runs, timed alone with 20 000 entries,
  against GetPolicy's CPU per call: target ≤ 0.03 (3 %);
- a control: GetPolicy of an id that does not exist. h2load counts it as
  success (gRPC errors travel in trailers, HTTP status 200); the server-side
  verification must count every call as an error, or the verifier is broken;
- peak memory (VmHWM, the resident-set high-water mark) of every service
  process and Envoy at the end: services < 200 MB;
- tracing off (the default): the statements tracing adds to a GetPolicy, timed
  in this process, against the GetPolicy's CPU per call from the same run:
  target ≤ 2 % (``tracing_off_hooks_us``).

The growth benchmark, in the full profile after the main scenarios and the
peak memory (the rows ``growth: ...``): the same mixed workload against each
growth company alone (10 000, 100 000 and 1 000 000 policies; 1 000, 2 000
and 4 000 for --quick, which covers the code path), as its admin, then a
row setting the largest against the smallest: server CPU per call (core and
PostgreSQL) at most 1.20 times (flat within 20 %), req/s of each in the note.
The companies share the tables with the rest (the per-tenant size grows,
the whole table holds them all); one company per size, so that a run with
the kept data measures every size again without seeding.

Besides req/s, each scenario reports the CPU time the serving processes used per
call (``CPU µs/call``, from /proc: the service's workers, plus Envoy for REST,
plus PostgreSQL -- the postmaster's children but autovacuum -- for
BindPolicy, ApproveClaim, the mixed and the growth rows).
It moves far less than req/s when something else runs on the machine, so it is
the figure to compare between runs of one change; ``--hold`` starts and seeds
the suite and waits, for profiling a process under load (py-spy).

Errors are never taken from the load generator's success count. Every scenario
scrapes ``grpc_server_handled_total`` of the method from each worker's
/metrics before and after, and every non-OK status is an error; so are
requests the client counted as answered that the server did not count as OK,
and the client's own failures (h2load failed/errored/timeout, wrk non-2xx and
socket errors). h2load runs a fixed number of requests (measured after a
warm-up), so its counts match the server's exactly. wrk runs for a fixed time
and abandons its in-flight requests when time is up: the server reports those
as CANCELLED. Up to one per connection is expected and shown in its own
column; more would be errors. A client giving up before the end shows up as a
wrk timeout, an error.

The suite the benchmark starts differs from the defaults in three settings,
all load-generator artefacts: the gateway's overall rate limit (1 000 req/s,
a safety valve) is lifted, and so is the per-client-address login limit
(every bench call comes from 127.0.0.1); access tokens live an hour. The
services log every call (JSON access log, INFO) to a file, as in production.
With ``--use-running`` the running suite's limits apply (they show up as
errors).

Everything runs on 127.0.0.1, every load is bounded in time, and every process
started here is stopped by its PID or process group, also on failure or Ctrl-C.

The parts: ``profiles`` (how much data, how long), ``tools`` (h2load, wrk),
``suite`` (the suite under test), ``calls`` (gRPC helpers), ``seed``, ``load``
(the load generators), ``verification`` (server-side counts), ``scenarios``,
``report`` and ``__main__`` (the command line).
"""
