"""Seeding: companies and accounts through the services, templates through the
API, the bulk copied from them in SQL (see the package docstring)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cardinsa_tools.bench import seed_sql
from cardinsa_tools.bench.calls import Account, gdate, login, money
from cardinsa_tools.bench.profiles import (
    ACCOUNT_DOMAIN,
    APPROVAL_DESCRIPTION,
    APPROVAL_HEADROOM,
    BIND_HOLDER_DOMAIN,
    COMPANY_PROFILES,
    COVERAGE_CODE,
    GROWTH_CLAIMS_PER_POLICY,
    NAMESPACE,
    PRODUCT_CODE,
    SEED_CHUNK,
    Profile,
    company_sizes,
    say,
)
from cardinsa_tools.bench.suite import Suite

# ------------------------------------------------------------------ seeding


@dataclass
class CompanySeed:
    index: int
    company_id: str
    currency: str
    policies: int
    claims: int
    admin: Account
    in_force_policy: str = ""
    claim_policy: str = ""
    #: Claims under review for ApproveClaim: (claim id, payable amount), in the
    #: order they are approved (company 0: the ApproveClaim row's; every
    #: company: the mixed workload's, read again when it starts).
    reviewed: list[tuple[str, str]] = field(default_factory=list)
    #: Quoted policies for BindPolicy, in the order they are bound (company 0).
    quoted: list[str] = field(default_factory=list)
    #: The company's claims adjuster (the reviewer of those claims).
    adjuster: Account | None = None
    #: A growth company (the growth benchmark's), not one of the main ones.
    growth: bool = False


@dataclass
class SeedResult:
    companies: list[CompanySeed]
    logins: list[Account]
    #: The growth benchmark's companies, smallest first (one per size).
    growth: list[CompanySeed]
    password: str
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)


def company_uuid(index: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"company-{index}")


async def register_companies(suite: Suite, profile: Profile) -> None:
    from cardinsa_company.cli import register_company
    from cardinsa_company.domain.companies import CompanyProfile
    from cardinsa_company.settings import CompanyServiceSettings

    settings = _settings(CompanyServiceSettings, suite)
    for index in range(profile.companies + len(profile.growth_sizes)):
        country, currency, zone = COMPANY_PROFILES[index % len(COMPANY_PROFILES)]
        growth = index - profile.companies
        await register_company(
            settings,
            company_uuid(index),
            CompanyProfile(
                display_name=(
                    f"Bench Insurance {index:02d}"
                    if growth < 0
                    else f"Bench Growth {profile.growth_sizes[growth]:,}"
                ),
                country=country,
                default_currency=currency,
                time_zone=zone,
                locale="en",
            ),
        )


def _settings(cls: Any, suite: Suite) -> Any:
    """Service settings as the suite's processes see them."""
    from cardinsa_foundation.db import app_role_url

    return cls(
        _env_file=None,
        database_url=app_role_url(suite.admin_url),
        database_admin_url=suite.admin_url,
        identity_address=suite.endpoints.grpc("identity"),
    )


async def ensure_accounts(
    suite: Suite, profile: Profile, password: str
) -> tuple[list[Account], list[Account], list[Account]]:
    """A company-admin per company (the growth companies too), the login accounts
    (viewers of company 0), and a claims adjuster per company (the reviewer of
    the claims the admin approves): (admins, logins, adjusters)."""
    from cardinsa_identity.application.bootstrap import ensure_user_with_role
    from cardinsa_identity.main import build
    from cardinsa_identity.settings import IdentitySettings

    settings = _settings(IdentitySettings, suite)
    app = build(settings, settings.database_url.get_secret_value(), port=0, metrics_port=None)
    companies = profile.companies + len(profile.growth_sizes)
    wanted = (
        [
            (f"bench-admin-{i:02d}@{ACCOUNT_DOMAIN}", company_uuid(i), "company-admin")
            for i in range(companies)
        ]
        + [
            (f"bench-login-{j:02d}@{ACCOUNT_DOMAIN}", company_uuid(0), "viewer")
            for j in range(profile.login_accounts)
        ]
        + [
            (f"bench-adjuster-{i:02d}@{ACCOUNT_DOMAIN}", company_uuid(i), "claims-adjuster")
            for i in range(companies)
        ]
    )
    accounts = []
    try:
        await app.prepare()
        for email, company, role in wanted:
            made = await ensure_user_with_role(
                app.ctx, email=email, password=password, company_id=company, role_name=role
            )
            accounts.append(Account(email, str(company), user_id=str(made.user_id)))
    finally:
        await app.ctx.keys.stop()
        app.ctx.hasher.close()
        await app.ctx.db.dispose()
    logins = profile.login_accounts
    return accounts[:companies], accounts[companies : companies + logins], accounts[-companies:]


async def api_templates(suite: Suite, seed: CompanySeed, password: str) -> dict[str, str]:
    """The rows the bulk copies: made through the API, as the company's admin."""
    import grpc

    from cardinsa.core.v1 import claim_service_pb2 as cs
    from cardinsa.core.v1 import claim_service_pb2_grpc as csg
    from cardinsa.core.v1 import policy_service_pb2 as ps
    from cardinsa.core.v1 import policy_service_pb2_grpc as psg
    from cardinsa.core.v1 import policyholder_service_pb2 as hs
    from cardinsa.core.v1 import policyholder_service_pb2_grpc as hsg
    from cardinsa.core.v1 import product_service_pb2 as prs
    from cardinsa.core.v1 import product_service_pb2_grpc as prsg
    from cardinsa.core.v1 import resources_pb2 as r

    token = await login(suite.endpoints.grpc("identity"), seed.admin, password)
    md = [("authorization", f"Bearer {token}")]
    cur = seed.currency
    today = dt.datetime.now(dt.UTC).date()
    async with grpc.aio.insecure_channel(suite.endpoints.grpc("core")) as channel:
        products = prsg.ProductServiceStub(channel)  # type: ignore[no-untyped-call]
        holders = hsg.PolicyholderServiceStub(channel)  # type: ignore[no-untyped-call]
        policies = psg.PolicyServiceStub(channel)  # type: ignore[no-untyped-call]
        claims = csg.ClaimServiceStub(channel)  # type: ignore[no-untyped-call]
        product = await products.CreateProduct(
            prs.CreateProductRequest(
                product=r.Product(
                    code=PRODUCT_CODE,
                    line_of_business=r.Product.MEDICAL,
                    name="Health Basic",
                    currency_code=cur,
                    base_premium=money("540", cur),
                    term_months=12,
                    coverages=[
                        r.Coverage(
                            code=COVERAGE_CODE,
                            name="Outpatient care",
                            limit=money("10000", cur),
                            limit_period=r.Coverage.PER_YEAR,
                            deductible=money("0", cur),
                            coinsurance_basis_points=2000,
                            waiting_period_days=0,
                        )
                    ],
                )
            ),
            metadata=md,
        )
        product = await products.ActivateProduct(
            prs.ActivateProductRequest(product_id=product.id), metadata=md
        )
        holder = await holders.CreatePolicyholder(
            hs.CreatePolicyholderRequest(
                policyholder=r.Policyholder(
                    kind=r.Policyholder.PERSON,
                    given_name="Amira",
                    family_name="Haddad",
                    date_of_birth=gdate(dt.date(1984, 2, 3)),
                    national_id=f"T{seed.index:02d}000000000",
                    email=f"template-{seed.index:02d}@holders.{ACCOUNT_DOMAIN}",
                )
            ),
            metadata=md,
        )
        ids: dict[str, str] = {"product": product.id, "holder": holder.id}
        for key, bind in (("in_force", True), ("quoted", False)):
            draft = await policies.CreatePolicy(
                ps.CreatePolicyRequest(
                    policy=r.Policy(
                        policyholder_id=holder.id,
                        product_id=product.id,
                        effective_date=gdate(today - dt.timedelta(days=20)),
                        sum_insured=money("100000", cur),
                        payment_frequency=r.Policy.MONTHLY,
                        insured_members=[r.InsuredMember(policyholder=True)],
                    )
                ),
                metadata=md,
            )
            quoted = await policies.QuotePolicy(
                ps.QuotePolicyRequest(policy_id=draft.id, etag=draft.etag), metadata=md
            )
            if bind:
                quoted = await policies.BindPolicy(
                    ps.BindPolicyRequest(policy_id=quoted.id, etag=quoted.etag), metadata=md
                )
            ids[key] = quoted.id
        claim = await claims.CreateClaim(
            cs.CreateClaimRequest(
                claim=r.Claim(
                    policy_id=ids["in_force"],
                    claimant=r.InsuredMember(policyholder=True),
                    claim_type=r.Claim.MEDICAL,
                    description="outpatient treatment",
                    coverage_code=COVERAGE_CODE,
                    incident_date=gdate(today - dt.timedelta(days=2)),
                    claimed_amount=money("800", cur),
                )
            ),
            metadata=md,
        )
        claim = await claims.SubmitClaim(cs.SubmitClaimRequest(claim_id=claim.id), metadata=md)
        ids["claim"] = claim.id
    return ids


def spacing_seconds(policies: int) -> float:
    """Seconds between two seeded policies' creation: 5 minutes, or less so that
    a company's policies all start within 250 days (and are still in force)."""
    return min(300.0, 250 * 86400 / max(1, policies))


def chunks(copies: int, claims: int, done: int = 0) -> list[tuple[int, int, int, int]]:
    """The chunks of a company's copies from ``done`` on: (first policy copy,
    policy copies, first claim copy, claim copies), SEED_CHUNK policies each and
    the claims in proportion, so that the chunks add up to the whole whichever
    chunk a run starts from."""
    plan = []
    while done < copies:
        chunk = min(SEED_CHUNK, copies - done)
        claim_first = claims * done // copies
        plan.append((done, chunk, claim_first, claims * (done + chunk) // copies - claim_first))
        done += chunk
    return plan


async def bulk_copy(
    conn: Any, seed: CompanySeed, templates: dict[str, str], *, done: int = 0
) -> None:
    """The company's copies from ``done`` on (copies already there), one
    transaction per SEED_CHUNK policies, a progress line per chunk when there
    are several."""
    company = uuid.UUID(seed.company_id)
    copies, claims = seed.policies - 2, seed.claims - 1
    started, first = time.monotonic(), done
    for start, chunk, claim_first, claim_copies in chunks(copies, claims, done):
        values = {
            "company": company,
            "policy_first": start,
            "policy_copies": chunk,
            "policy_total": copies,
            "spacing": spacing_seconds(seed.policies),
            "claim_first": claim_first,
            "claim_copies": claim_copies,
            "in_force": uuid.UUID(templates["in_force"]),
            "claim": uuid.UUID(templates["claim"]),
            "holder": uuid.UUID(templates["holder"]),
        }
        async with conn.transaction():
            # The row-level-security tenant of this transaction: the company itself.
            await conn.execute(
                "SELECT set_config('cardinsa.company_id', $1, true)", seed.company_id
            )
            for statement in seed_sql.BULK_COPY:
                sql, args = seed_sql.named(statement, values)
                await conn.execute(sql, *args)
        if copies > SEED_CHUNK:
            elapsed, made = time.monotonic() - started, start + chunk
            left = elapsed / (made - first) * (copies - made)
            say(
                f"company {seed.index:2d}: {made + 2:,} of {seed.policies:,} policies "
                f"({elapsed:.0f} s, about {left:.0f} s left)"
            )


async def top_up_reviewed(
    conn: Any, seed: CompanySeed, adjuster: Account, wanted: int
) -> list[tuple[str, str]]:
    """Claims under review for ApproveClaim, topped up to ``wanted`` in SQL (every
    run uses some up); what is there, in approval order."""
    company = uuid.UUID(seed.company_id)
    query = {"company": company, "description": APPROVAL_DESCRIPTION}

    async def reviewed() -> list[tuple[str, str]]:
        sql, args = seed_sql.named(seed_sql.REVIEWED, query)
        return [(str(r["id"]), str(r["benefit_payable"])) for r in await conn.fetch(sql, *args)]

    have = await reviewed()
    if len(have) >= wanted:
        return have
    async with conn.transaction():
        await conn.execute("SELECT set_config('cardinsa.company_id', $1, true)", seed.company_id)
        prefix = await conn.fetchval(
            "SELECT split_part(claim_number, '-', 1) FROM core.claims "
            "WHERE company_id = $1 AND claim_number IS NOT NULL LIMIT 1",
            company,
        )
        sql, args = seed_sql.named(seed_sql.CLAIM_COUNTER, query)
        first = await conn.fetchval(sql, *args)
        values = {
            **query,
            "count": wanted - len(have),
            "first": first,
            "prefix": prefix or "CLM",
            "coverage": COVERAGE_CODE,
            "headroom": APPROVAL_HEADROOM,
            "admin": uuid.UUID(seed.admin.user_id),
            "adjuster": uuid.UUID(adjuster.user_id),
        }
        for statement in seed_sql.REVIEWED_TOP_UP:
            sql, args = seed_sql.named(statement, values)
            await conn.execute(sql, *args)
    have = await reviewed()
    if len(have) < wanted:
        say(
            f"company {seed.index}: only {len(have)} claims under review for ApproveClaim "
            f"(wanted {wanted}): the policies in force have no headroom left (--fresh starts over)"
        )
    return have


async def find_templates(conn: Any, company: uuid.UUID) -> dict[str, str] | None:
    """Templates an interrupted earlier run made through the API (the bulk copy of a
    company is one transaction, so either it happened or only these exist)."""
    sql, args = seed_sql.named(
        seed_sql.FIND_TEMPLATES, {"company": company, "product_code": PRODUCT_CODE}
    )
    row = await conn.fetchrow(sql, *args)
    if row is None or any(v is None for v in row.values()):
        return None
    return {k: str(v) for k, v in row.items()}


async def check_numbers(conn: Any, seeds: Sequence[CompanySeed]) -> None:
    """Policy and claim numbers are 1..n without gaps or repeats and each counter
    holds n: what the API's numbering relies on."""
    for seed in seeds:
        sql, args = seed_sql.named(seed_sql.NUMBERS, {"company": uuid.UUID(seed.company_id)})
        for row in await conn.fetch(sql, *args):
            n = row["last_value"]
            if not (
                row["numbered"] == row["distinct_values"] == n
                and (n == 0 or (row["first"] == 1 and row["last"] == n))
            ):
                raise RuntimeError(f"company {seed.index}: {row['kind']} numbers: {dict(row)}")


async def top_up_quoted(conn: Any, seed: CompanySeed, quoted: str, wanted: int) -> list[str]:
    """Quoted policies for BindPolicy, topped up to ``wanted`` in SQL (every run
    binds some), those left from an earlier run starting today again; what is
    there, in bind order. ``quoted``: the company's quoted template (API-made)."""
    company = uuid.UUID(seed.company_id)
    query = {"company": company, "domain": BIND_HOLDER_DOMAIN}
    async with conn.transaction():
        await conn.execute("SELECT set_config('cardinsa.company_id', $1, true)", seed.company_id)
        sql, args = seed_sql.named(seed_sql.QUOTED_REDATE, query)
        await conn.execute(sql, *args)
        sql, args = seed_sql.named(seed_sql.QUOTED, query)
        have = [str(r["id"]) for r in await conn.fetch(sql, *args)]
        if len(have) < wanted:
            values = {**query, "count": wanted - len(have), "quoted": uuid.UUID(quoted)}
            for statement in seed_sql.QUOTED_TOP_UP:
                sql, args = seed_sql.named(statement, values)
                await conn.execute(sql, *args)
            sql, args = seed_sql.named(seed_sql.QUOTED, query)
            have = [str(r["id"]) for r in await conn.fetch(sql, *args)]
    return have


async def reviewed_claims(conn: Any, seed: CompanySeed) -> list[tuple[str, str]]:
    """The company's claims under review for approval now, in approval order."""
    query = {"company": uuid.UUID(seed.company_id), "description": APPROVAL_DESCRIPTION}
    sql, args = seed_sql.named(seed_sql.REVIEWED, query)
    return [(str(r["id"]), str(r["benefit_payable"])) for r in await conn.fetch(sql, *args)]


async def seed_company(
    suite: Suite, conn: Any, seed: CompanySeed, password: str
) -> dict[str, str] | None:
    """The company's templates (made through the API) and bulk copies, unless
    already there; the templates, or None when the company holds other data."""
    company = uuid.UUID(seed.company_id)
    have = await conn.fetchval("SELECT count(*) FROM core.policies WHERE company_id = $1", company)
    templates = await find_templates(conn, company) if have else None
    if have >= seed.policies:
        return templates
    if templates is None and have == 0:
        templates = await api_templates(suite, seed, password)
        have = 2
    # Chunks are transactions of their own: what is there is whole chunks.
    done = have - 2
    if templates is None or (done % SEED_CHUNK and have > 2):
        say(f"company {seed.index}: {have} policies, not what the seed makes; left as is")
        return None
    t0 = time.monotonic()
    if done:
        say(f"company {seed.index:2d}: {have:,} policies there, going on")
    await bulk_copy(conn, seed, templates, done=done)
    say(
        f"company {seed.index:2d}: {seed.policies:,} policies, {seed.claims:,} claims "
        f"({time.monotonic() - t0:.1f} s)"
    )
    return templates


async def seed_all(suite: Suite, profile: Profile, password: str) -> SeedResult:
    import asyncpg

    from cardinsa_foundation.db import to_libpq_url

    started = time.monotonic()
    growth_total = sum(profile.growth_sizes)
    say(
        f"seeding: {profile.companies} companies, {profile.policies:,} policies, "
        f"{profile.claims:,} claims; growth companies of "
        + ", ".join(f"{n:,}" for n in profile.growth_sizes)
        + f" policies ({growth_total:,}); skipped where already there"
    )
    await register_companies(suite, profile)
    admins, logins, adjusters = await ensure_accounts(suite, profile, password)
    sizes = company_sizes(profile) + [
        (n, max(1, int(n * GROWTH_CLAIMS_PER_POLICY))) for n in profile.growth_sizes
    ]
    seeds = []
    for index, ((policies, claims), admin, adjuster) in enumerate(
        zip(sizes, admins, adjusters, strict=True)
    ):
        currency = COMPANY_PROFILES[index % len(COMPANY_PROFILES)][1]
        seeds.append(
            CompanySeed(
                index,
                str(company_uuid(index)),
                currency,
                policies,
                claims,
                admin,
                adjuster=adjuster,
                growth=index >= profile.companies,
            )
        )
    conn = await asyncpg.connect(to_libpq_url(suite.admin_url))
    try:
        templates = {}
        for seed in seeds:
            found = await seed_company(suite, conn, seed, password)
            if found is not None:
                templates[seed.index] = found
        large = seeds[0]
        t0 = time.monotonic()
        assert large.adjuster is not None
        large.reviewed = await top_up_reviewed(conn, large, large.adjuster, profile.approve_claims)
        say(
            f"company  0: {len(large.reviewed)} claims under review for ApproveClaim "
            f"({time.monotonic() - t0:.1f} s)"
        )
        if 0 in templates:
            t0 = time.monotonic()
            large.quoted = await top_up_quoted(
                conn, large, templates[0]["quoted"], profile.bind_policies
            )
            say(
                f"company  0: {len(large.quoted)} quoted policies for BindPolicy "
                f"({time.monotonic() - t0:.1f} s)"
            )
        t0 = time.monotonic()
        for seed in seeds[1:]:
            assert seed.adjuster is not None
            seed.reviewed = await top_up_reviewed(
                conn, seed, seed.adjuster, profile.mixed_approvals
            )
        say(
            f"{len(seeds) - 1} more companies: claims under review for the mixed workload "
            f"topped up to {profile.mixed_approvals} each ({time.monotonic() - t0:.1f} s)"
        )
        await conn.execute(
            "ANALYZE core.policies, core.policyholders, core.claims, "
            "core.policy_versions, core.policy_status_changes, "
            "core.claim_log_entries"
        )
        for seed in seeds:
            company = uuid.UUID(seed.company_id)
            seed.in_force_policy = str(
                await conn.fetchval(
                    "SELECT p.id FROM core.policies p JOIN core.policyholders h "
                    "ON h.company_id = p.company_id AND h.id = p.policyholder_id "
                    "WHERE p.company_id = $1 AND p.state = 'IN_FORCE' AND h.email NOT LIKE $2 "
                    "ORDER BY p.create_time DESC LIMIT 1 OFFSET 7",
                    company,
                    f"%@{BIND_HOLDER_DOMAIN}",
                )
            )
            seed.claim_policy = seed.in_force_policy
        await check_numbers(conn, seeds)
        counts = {}
        for table in (
            "policies",
            "policyholders",
            "claims",
            "policy_status_changes",
            "policy_versions",
            "claim_log_entries",
        ):
            # The table names are the constants above, never input.
            query = f"SELECT count(*) FROM core.{table} WHERE company_id = ANY($1::uuid[])"  # noqa: S608
            main = [uuid.UUID(s.company_id) for s in seeds if not s.growth]
            grown = [uuid.UUID(s.company_id) for s in seeds if s.growth]
            counts[table] = int(await conn.fetchval(query, main))
            counts[f"growth_{table}"] = int(await conn.fetchval(query, grown))
    finally:
        await conn.close()
    elapsed = time.monotonic() - started
    say(f"data ready in {elapsed:.1f} s: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return SeedResult(
        [s for s in seeds if not s.growth],
        logins,
        [s for s in seeds if s.growth],
        password,
        elapsed,
        counts,
    )
