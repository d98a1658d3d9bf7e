"""What the benchmark loads and for how long: the profiles and the fixed names."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cardinsa_foundation.config import PROJECT_ROOT

BENCH_DIR = PROJECT_ROOT / ".data" / "bench"
NOOP_SERVICE = "cardinsa.bench.v1.Bench"
NOOP_PATH = f"/{NOOP_SERVICE}/Noop"
#: Exit code when h2load or wrk is missing and cannot be installed.
EXIT_NO_TOOLS = 3
TOOLS = (("h2load", "nghttp2-client"), ("wrk", "wrk"))
SERVICE_TARGET_MB = 200.0
NAMESPACE = uuid.UUID("6f1f6f5e-6a43-4d8e-9a35-8c1b3a0d5e11")
ACCOUNT_DOMAIN = "bench.cardinsa.local"
PRODUCT_CODE = "BENCH-HEALTH"
LIST_FILTER = 'state = "IN_FORCE"'
#: The coverage of the bench product, and the description of the claims the
#: seed puts under review for the ApproveClaim scenario (found again by it).
COVERAGE_CODE = "OUTPATIENT"
APPROVAL_DESCRIPTION = "bench approval"
#: The e-mail domain of the policyholders of the quoted policies the seed tops
#: up for the BindPolicy scenario (found again by it).
BIND_HOLDER_DOMAIN = "bind.holders.example"
#: The mixed workload: (kind, share of the calls in tenths); 80 % reads.
MIXED_SHARES = (
    ("GetPolicy", 4),
    ("ListPolicies", 2),
    ("GetClaim", 2),
    ("CreateClaim", 1),
    ("ApproveClaim", 1),
)
#: Policies per transaction (and progress line) when a company is seeded.
SEED_CHUNK = 100_000
#: Seeded claims per policy of a growth company (the main seed's ratio).
GROWTH_CLAIMS_PER_POLICY = 0.2
#: The growth benchmark's target: CPU per call at the largest size at most this
#: many times that at the smallest ("flat within 20 %").
GROWTH_FLAT = 1.20
#: What a policy keeps free of its limit and sum insured to get more of those
#: claims (each approves at most 112.00 of a claim of at most 140.00).
APPROVAL_HEADROOM = 2000
COMPANY_PROFILES = (
    ("DE", "EUR", "Europe/Berlin"),
    ("US", "USD", "America/New_York"),
    ("GB", "GBP", "Europe/London"),
    ("AE", "AED", "Asia/Dubai"),
    ("FR", "EUR", "Europe/Paris"),
    ("JP", "JPY", "Asia/Tokyo"),
)
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# --------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Profile:
    """How much data and how long each scenario runs."""

    name: str
    companies: int
    policies: int
    claims: int
    large_policies: int  # policies of company 0 (the ListPolicies company)
    large_claims: int
    seconds: float  # measured part of each scenario
    warmup_seconds: float
    many_connections: int
    many_seconds: float
    list_page_size: int
    list_page: int
    login_accounts: int
    hash_seconds: float
    #: Claims under review (company 0) that ApproveClaim approves one by one,
    #: topped up before every run: more than the warm-up and the measured
    #: seconds use up.
    approve_claims: int
    #: Quoted policies (company 0) that BindPolicy binds one by one, topped up
    #: before every run like the claims under review.
    bind_policies: int
    #: Claims under review per company for the mixed workload's approvals
    #: (topped up every run; the growth companies too).
    mixed_approvals: int
    #: The growth benchmark: one company per size (policies), seeded once and
    #: kept; the mixed workload runs against each.
    growth_sizes: tuple[int, ...]
    #: The mixed workload's and growth rows' least number of measured calls
    #: (more than rate x seconds when that is small: p99.9 and the CPU per call
    #: of a few hundred calls mean little).
    mixed_min_calls: int
    #: Rounds of the growth benchmark (every size once per round, the order
    #: reversed every other round); a size's row is its round with the least
    #: server CPU per call (other load on the machine only ever adds to it).
    growth_rounds: int
    connections: int = 50
    streams: int = 10
    #: Calls in flight per connection for BindPolicy, the mixed workload and the
    #: growth rows: 50 x 2 saturate one core process (its pool holds 10
    #: connections) without queueing calls past the pool's 10 s timeout when a
    #: write takes tens of ms on a busy machine (500 in flight did: UNAVAILABLE).
    write_streams: int = 2


FULL = Profile(
    name="full",
    companies=12,
    policies=100_000,
    claims=20_000,
    large_policies=30_000,
    large_claims=6_000,
    seconds=10.0,
    warmup_seconds=2.0,
    many_connections=1000,
    many_seconds=30.0,
    list_page_size=20,
    list_page=1000,
    login_accounts=8,
    hash_seconds=5.0,
    approve_claims=10_000,
    bind_policies=5_000,
    mixed_approvals=1_000,
    growth_sizes=(10_000, 100_000, 1_000_000),
    mixed_min_calls=3_000,
    growth_rounds=2,
)
QUICK = Profile(
    name="quick",
    companies=2,
    policies=600,
    claims=100,
    large_policies=400,
    large_claims=60,
    seconds=2.5,
    warmup_seconds=1.0,
    many_connections=200,
    many_seconds=3.0,
    list_page_size=2,
    list_page=100,
    login_accounts=4,
    hash_seconds=2.0,
    approve_claims=2_500,
    bind_policies=1_500,
    mixed_approvals=600,
    growth_sizes=(1_000, 2_000, 4_000),
    mixed_min_calls=200,
    growth_rounds=1,
)


def company_sizes(profile: Profile) -> list[tuple[int, int]]:
    """(policies, claims) per company, summing exactly to the profile's totals."""
    others = profile.companies - 1
    sizes = [(profile.large_policies, profile.large_claims)]
    rest_p, rest_c = (
        profile.policies - profile.large_policies,
        profile.claims - profile.large_claims,
    )
    for index in range(others):
        sizes.append(
            (
                rest_p // others + (1 if index < rest_p % others else 0),
                rest_c // others + (1 if index < rest_c % others else 0),
            )
        )
    return sizes
