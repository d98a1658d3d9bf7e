"""The seed's SQL, with named parameters (``:name``, bound by :func:`named`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_NAME = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


def named(sql: str, values: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """``:name`` → ``$n`` (asyncpg numbers its parameters) and the values in that
    order: exactly the names the statement uses (``::type`` casts are left alone)."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"no value for :{name}")
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return _NAME.sub(number, sql), [values[name] for name in order]


#: One company's bulk copy, statement by statement, in chunks (one transaction
#: each). The copied policyholders have no national id and no postal address:
#: those are stored only encrypted (docs/personal-data.md), by the service.
#: Parameters: ``:company``; the copies of this chunk, policies
#: ``:policy_first`` + 1 .. ``:policy_first`` + ``:policy_copies`` of
#: ``:policy_total`` and claims ``:claim_first`` + 1 .. ``:claim_first`` +
#: ``:claim_copies``; ``:spacing``, the seconds between two policies' creation
#: (the last one a day ago); and the template rows ``:in_force`` (policy),
#: ``:claim`` and ``:holder`` (policyholder). Copy g is in force unless g is a
#: multiple of 10 (then quoted); in-force copies take policy numbers 2, 3, ...
#: in creation order (the template holds 1), gap-free: copy g's number is 1 + g
#: - g/10. Claim j is submitted unless j is a multiple of 5 (then a draft);
#: submitted claims take 2, 3, ... likewise. A chunk's claims go to its own
#: policies in force.
BULK_COPY = (
    """
    CREATE TEMP TABLE bench_policy ON COMMIT DROP AS
    SELECT g,
           gen_random_uuid() AS holder_id,
           gen_random_uuid() AS policy_id,
           g % 10 <> 0 AS in_force,
           CASE WHEN g % 10 <> 0 THEN 1 + g - g / 10 END AS number,
           now() - make_interval(secs => (:policy_total::int - g + 1) * :spacing::float8)
               - interval '1 day' AS ts
      FROM generate_series(:policy_first::int + 1, :policy_first::int + :policy_copies::int)
           AS g
    """,
    """
    INSERT INTO core.policyholders
        (kind, given_name, family_name, date_of_birth, gender, legal_name,
         registration_number, email, phone, address_country_code, display_name,
         id, create_time, update_time, created_by, updated_by, delete_time,
         version, company_id)
    SELECT 'PERSON', n.given, 'Family' || p.g, date '1950-01-01' + (p.g * 37) % 20000,
           (ARRAY['FEMALE', 'MALE', 'GENDER_UNSPECIFIED'])[1 + p.g % 3], '', '',
           'holder-' || p.g || '@' || left(:company::uuid::text, 8) || '.holders.example',
           '+49 30 ' || lpad((p.g::bigint * 7919 % 10000000)::text, 7, '0'),
           'DE', n.given || ' Family' || p.g, p.holder_id, p.ts, p.ts,
           t.created_by, t.created_by, NULL, 1, :company::uuid
      FROM bench_policy p
      CROSS JOIN core.policyholders t
      CROSS JOIN LATERAL (SELECT (ARRAY['Amira', 'Jonas', 'Mei', 'Omar', 'Sofia', 'Liam',
                                        'Noor', 'Elena'])[1 + p.g % 8] AS given) n
     WHERE t.id = :holder::uuid AND t.company_id = :company::uuid
    """,
    """
    INSERT INTO core.policies
        (policy_number, policyholder_id, product_id, product_version, state,
         effective_date, expiry_date, currency, premium, sum_insured, payment_frequency,
         insures_holder, insured_dependent_ids, current_version, version_effective_date,
         cancel_reason, cancel_effective_date, lapse_date, termination_note,
         previous_policy_id, successor_policy_id, bind_time, activate_time, id,
         create_time, update_time, created_by, updated_by, delete_time, version, company_id)
    SELECT CASE WHEN p.in_force
                THEN split_part(t.policy_number, '-', 1) || '-' || lpad(p.number::text, 8, '0')
           END,
           p.holder_id, t.product_id, t.product_version,
           CASE WHEN p.in_force THEN 'IN_FORCE' ELSE 'QUOTED' END,
           d.effective, (d.effective + interval '1 year' - interval '1 day')::date,
           t.currency, t.premium, 50000 + (p.g % 10) * 10000,
           (ARRAY['MONTHLY', 'QUARTERLY', 'ANNUAL', 'SEMI_ANNUAL'])[1 + p.g % 4],
           true, '{}', CASE WHEN p.in_force THEN 1 ELSE 0 END,
           CASE WHEN p.in_force THEN d.effective END,
           NULL, NULL, NULL, '', NULL, NULL,
           CASE WHEN p.in_force THEN p.ts + interval '1 minute' END,
           CASE WHEN p.in_force THEN p.ts + interval '1 minute' END,
           p.policy_id, p.ts,
           p.ts + CASE WHEN p.in_force THEN interval '1 minute' ELSE interval '10 seconds' END,
           t.created_by, t.created_by, NULL, CASE WHEN p.in_force THEN 4 ELSE 2 END, :company::uuid
      FROM bench_policy p
      CROSS JOIN core.policies t
      CROSS JOIN LATERAL (SELECT CASE WHEN p.in_force THEN (p.ts AT TIME ZONE 'UTC')::date
                                      ELSE (p.ts AT TIME ZONE 'UTC')::date + 30 END
                                 AS effective) d
     WHERE t.id = :in_force::uuid AND t.company_id = :company::uuid
    """,
    """
    INSERT INTO core.policy_versions
        (id, company_id, policy_id, version, effective_date, currency, premium,
         sum_insured, insures_holder, insured_dependent_ids, description, changed_fields,
         create_time, created_by)
    SELECT gen_random_uuid(), :company::uuid, c.id, 1, c.effective_date, c.currency, c.premium,
           c.sum_insured, true, '{}', '', '{}', c.bind_time, c.created_by
      FROM bench_policy p JOIN core.policies c ON c.id = p.policy_id
     WHERE p.in_force
    """,
    """
    INSERT INTO core.policy_status_changes
        (id, company_id, policy_id, from_state, to_state, transition, reason,
         effective_date, actor_id, request_id, create_time)
    SELECT gen_random_uuid(), :company::uuid, c.id, s.from_state, s.to_state, s.transition, '',
           CASE WHEN s.step >= 3 THEN c.effective_date END, t.actor_id,
           gen_random_uuid()::text, p.ts + s.after
      FROM bench_policy p
      JOIN core.policies c ON c.id = p.policy_id
      CROSS JOIN (SELECT actor_id FROM core.policy_status_changes
                   WHERE policy_id = :in_force::uuid AND company_id = :company::uuid LIMIT 1) t
      CROSS JOIN (VALUES (1, NULL, 'DRAFT', 'create', interval '0'),
                         (2, 'DRAFT', 'QUOTED', 'quote', interval '10 seconds'),
                         (3, 'QUOTED', 'BOUND', 'bind', interval '1 minute'),
                         (4, 'BOUND', 'IN_FORCE', 'activate', interval '61 seconds'))
                  AS s(step, from_state, to_state, transition, after)
     WHERE s.step <= 2 OR p.in_force
    """,
    """
    CREATE TEMP TABLE bench_claim ON COMMIT DROP AS
    WITH f AS (
        SELECT p.policy_id, c.effective_date, row_number() OVER (ORDER BY p.g) AS k
          FROM bench_policy p JOIN core.policies c ON c.id = p.policy_id
         WHERE p.in_force
    ), t AS (
        SELECT count(*) AS n FROM f
    )
    SELECT j,
           gen_random_uuid() AS claim_id,
           f.policy_id,
           j % 5 <> 0 AS submitted,
           CASE WHEN j % 5 <> 0 THEN 1 + j - j / 5 END AS number,
           f.effective_date + (j % greatest(1, current_date - f.effective_date)) AS incident
      FROM generate_series(:claim_first::int + 1, :claim_first::int + :claim_copies::int) AS j
      CROSS JOIN t
      -- j and n on one side: a hash join, not j x policies comparisons.
      JOIN f ON f.k = 1 + (j::bigint * 7919) % greatest(t.n, 1)
    """,
    """
    INSERT INTO core.claims
        (claim_number, policy_id, policy_version, claimant_dependent_id, claim_type,
         description, coverage_code, incident_date, report_date, currency,
         claimed_amount, approved_amount, paid_amount, payment_reference, deny_reason,
         state, assigned_adjuster_id, id, create_time, update_time, created_by,
         updated_by, delete_time, version, company_id)
    SELECT CASE WHEN b.submitted
                THEN split_part(t.claim_number, '-', 1) || '-' || lpad(b.number::text, 8, '0')
           END,
           b.policy_id, 1, NULL, t.claim_type,
           (ARRAY['outpatient treatment', 'specialist visit', 'physiotherapy',
                  'diagnostic imaging', 'prescription'])[1 + b.j % 5],
           t.coverage_code, b.incident, least(b.incident + 2, current_date), t.currency,
           100 + (b.j % 40) * 25, NULL, NULL, '', '',
           CASE WHEN b.submitted THEN 'SUBMITTED' ELSE 'DRAFT' END, NULL, b.claim_id,
           least(now(), (least(b.incident + 2, current_date) + time '08:00') AT TIME ZONE 'UTC'),
           least(now(), (least(b.incident + 2, current_date) + time '08:05') AT TIME ZONE 'UTC'),
           t.created_by, t.created_by, NULL, CASE WHEN b.submitted THEN 2 ELSE 1 END, :company::uuid
      FROM bench_claim b CROSS JOIN core.claims t
     WHERE t.id = :claim::uuid AND t.company_id = :company::uuid
    """,
    """
    INSERT INTO core.claim_log_entries
        (id, company_id, claim_id, action, from_state, to_state, amount, currency, note,
         payment_reference, actor_id, request_id, create_time)
    SELECT gen_random_uuid(), :company::uuid, c.id, s.action, s.from_state, s.to_state,
           c.claimed_amount, c.currency, '', '', t.actor_id, gen_random_uuid()::text,
           CASE WHEN s.action = 'create' THEN c.create_time ELSE c.update_time END
      FROM bench_claim b
      JOIN core.claims c ON c.id = b.claim_id
      CROSS JOIN (SELECT actor_id FROM core.claim_log_entries
                   WHERE claim_id = :claim::uuid AND company_id = :company::uuid LIMIT 1) t
      CROSS JOIN (VALUES ('create', NULL, 'DRAFT'), ('submit', 'DRAFT', 'SUBMITTED'))
                  AS s(action, from_state, to_state)
     WHERE s.action = 'create' OR b.submitted
    """,
    """
    UPDATE core.number_counters
       SET last_value = CASE kind
               WHEN 'POLICY' THEN 1 + (:policy_first::int + :policy_copies::int)
                                  - (:policy_first::int + :policy_copies::int) / 10
               WHEN 'CLAIM' THEN 1 + (:claim_first::int + :claim_copies::int)
                                 - (:claim_first::int + :claim_copies::int) / 5 END
     WHERE company_id = :company::uuid AND kind IN ('POLICY', 'CLAIM')
    """,
    """
    INSERT INTO core.audit_events
        (company_id, actor_id, action, entity_type, entity_id, changed_fields,
         request_id, detail)
    VALUES (:company::uuid, 'system:bench-seed', 'bench.seed', 'company', :company::uuid::text,
            '{}', NULL,
            jsonb_build_object('policies', :policy_copies::int, 'claims', :claim_copies::int,
                               'after_policies', :policy_first::int,
                               'after_claims', :claim_first::int,
                               'via', 'cardinsa_tools.bench bulk SQL from API-made templates'))
    """,
)

#: The templates made through the API (also once the copies are there: the
#: in-force template holds policy number 1 and the claim template claim number
#: 1; the policyholder template's e-mail starts with ``template-`` and the
#: quoted template is that policyholder's quoted policy).
FIND_TEMPLATES = """
        SELECT (SELECT id FROM core.policies
                 WHERE company_id = :company AND state = 'IN_FORCE'
                   AND policy_number IS NOT NULL
                 ORDER BY policy_number LIMIT 1) AS in_force,
               (SELECT p.id FROM core.policies p
                  JOIN core.policyholders h
                    ON h.company_id = p.company_id AND h.id = p.policyholder_id
                 WHERE p.company_id = :company AND p.state = 'QUOTED'
                   AND h.email LIKE 'template-%'
                 ORDER BY p.create_time LIMIT 1) AS quoted,
               (SELECT id FROM core.claims
                 WHERE company_id = :company AND claim_number IS NOT NULL
                 ORDER BY claim_number LIMIT 1) AS claim,
               (SELECT id FROM core.policyholders
                 WHERE company_id = :company AND email LIKE 'template-%'
                 ORDER BY create_time LIMIT 1) AS holder,
               (SELECT id FROM core.products
                 WHERE company_id = :company AND code = :product_code) AS product
        """

#: Per counter of a company: its value and the numbers handed out (see check_numbers).
NUMBERS = """
    SELECT c.kind, c.last_value,
           count(n.value) AS numbered, count(DISTINCT n.value) AS distinct_values,
           coalesce(min(n.value), 0) AS first, coalesce(max(n.value), 0) AS last
      FROM core.number_counters c
      LEFT JOIN LATERAL (
            SELECT split_part(policy_number, '-', 2)::bigint AS value FROM core.policies
             WHERE company_id = c.company_id AND c.kind = 'POLICY' AND policy_number IS NOT NULL
            UNION ALL
            SELECT split_part(claim_number, '-', 2)::bigint FROM core.claims
             WHERE company_id = c.company_id AND c.kind = 'CLAIM' AND claim_number IS NOT NULL
      ) n ON true
     WHERE c.company_id = :company
     GROUP BY c.kind, c.last_value
"""

#: The claim counter of a company, locked until the top-up below commits.
CLAIM_COUNTER = """
    SELECT last_value FROM core.number_counters
     WHERE company_id = :company::uuid AND kind = 'CLAIM'
       FOR UPDATE
"""

#: The claims under review that ApproveClaim approves, oldest number first, with
#: their estimated payable amount (the benefit the review worked out).
REVIEWED = """
    SELECT id, benefit_payable, currency FROM core.claims
     WHERE company_id = :company::uuid AND state = 'UNDER_REVIEW'
       AND description = :description AND delete_time IS NULL
     ORDER BY claim_number
"""

#: Up to ``:count`` more claims under review for ApproveClaim, as the API leaves
#: them after create, submit and review (by ``:adjuster``, not the approver):
#: numbered from ``:first`` + 1 on, the benefit estimated from the coverage
#: (claims of 100.00 to 140.00; the bench product has no deductible and 20 %
#: co-insurance: payable 80 %), the three log entries. Claim j goes to the
#: j-th policy in force (cycling), least-used first, so that approvals lock
#: different accumulator rows (member, coverage, period; sum insured of the
#: policy) and no limit runs out: only policies with ``:headroom`` left below
#: both their sum insured and the coverage's limit after what was approved on
#: them are used. Statement by statement, like BULK_COPY.
REVIEWED_TOP_UP = (
    """
    CREATE TEMP TABLE bench_review ON COMMIT DROP AS
    WITH used AS (
        SELECT policy_id, sum(approved_amount) AS amount FROM core.claims
         WHERE company_id = :company::uuid AND state IN ('APPROVED', 'PAID', 'CLOSED')
         GROUP BY policy_id
    ), eligible AS (
        SELECT p.id AS policy_id, p.currency,
               greatest(p.effective_date + cv.waiting_period_days, current_date - 1)
                   AS incident,
               cv.deductible, cv.copay, cv.coinsurance_percent,
               row_number() OVER (ORDER BY coalesce(u.amount, 0), p.id) AS k
          FROM core.policies p
          JOIN core.product_versions pv
            ON pv.company_id = p.company_id AND pv.product_id = p.product_id
           AND pv.version = p.product_version
          JOIN core.coverages cv
            ON cv.company_id = pv.company_id AND cv.product_version_id = pv.id
           AND cv.code = :coverage
          LEFT JOIN used u ON u.policy_id = p.id
         WHERE p.company_id = :company::uuid AND p.state = 'IN_FORCE'
           AND p.delete_time IS NULL AND p.insures_holder
           AND p.effective_date + cv.waiting_period_days <= current_date
           AND p.expiry_date >= current_date
           AND coalesce(u.amount, 0) + :headroom < least(p.sum_insured, cv.limit_amount)
    ), total AS (
        SELECT count(*) AS n FROM eligible
    )
    SELECT j, gen_random_uuid() AS claim_id, e.policy_id, e.currency, e.incident,
           :first::int + j AS number, a.claimed, a.deductible, a.copay, a.coinsurance,
           a.claimed - a.deductible - a.copay - a.coinsurance AS payable
      FROM generate_series(1, :count::int) AS j
      CROSS JOIN total t
      -- j and n on one side: a hash join, not j x policies comparisons.
      JOIN eligible e ON e.k = 1 + (j - 1) % greatest(t.n, 1)
      CROSS JOIN LATERAL (SELECT (100 + (j % 5) * 10)::numeric AS claimed) c
      CROSS JOIN LATERAL (SELECT least(c.claimed, e.deductible) AS deductible) d
      CROSS JOIN LATERAL (
            SELECT c.claimed, d.deductible,
                   CASE WHEN e.copay IS NOT NULL
                        THEN least(c.claimed - d.deductible, e.copay) ELSE 0 END AS copay,
                   CASE WHEN e.copay IS NULL
                        THEN round((c.claimed - d.deductible)
                                   * coalesce(e.coinsurance_percent, 0) / 100, 2)
                        ELSE 0 END AS coinsurance) a
    """,
    """
    INSERT INTO core.claims
        (claim_number, policy_id, policy_version, claimant_dependent_id, claim_type,
         description, coverage_code, incident_date, report_date, currency,
         claimed_amount, approved_amount, paid_amount, payment_reference, deny_reason,
         state, assigned_adjuster_id, benefit_claimed, benefit_deductible, benefit_copay,
         benefit_coinsurance, benefit_limit_cut, benefit_payable, id, create_time,
         update_time, created_by, updated_by, delete_time, version, company_id)
    SELECT :prefix || '-' || lpad(b.number::text, 8, '0'), b.policy_id, 1, NULL, 'MEDICAL',
           :description, :coverage, b.incident, current_date, b.currency,
           b.claimed, NULL, NULL, '', '', 'UNDER_REVIEW', :adjuster::uuid, b.claimed,
           b.deductible, b.copay, b.coinsurance, 0, b.payable, b.claim_id,
           now() - interval '10 minutes', now() - interval '5 minutes',
           :admin::uuid, :adjuster::uuid, NULL, 3, :company::uuid
      FROM bench_review b
    """,
    """
    INSERT INTO core.claim_log_entries
        (id, company_id, claim_id, action, from_state, to_state, amount, currency, note,
         payment_reference, actor_id, request_id, create_time)
    SELECT gen_random_uuid(), :company::uuid, b.claim_id, s.action, s.from_state, s.to_state,
           CASE WHEN s.action <> 'review' THEN b.claimed END,
           CASE WHEN s.action <> 'review' THEN b.currency END, '', '',
           CASE WHEN s.action = 'review' THEN :adjuster::uuid::text ELSE :admin::uuid::text END,
           gen_random_uuid()::text, now() - s.ago
      FROM bench_review b
      CROSS JOIN (VALUES ('create', NULL, 'DRAFT', interval '10 minutes'),
                         ('submit', 'DRAFT', 'SUBMITTED', interval '9 minutes'),
                         ('review', 'SUBMITTED', 'UNDER_REVIEW', interval '5 minutes'))
                  AS s(action, from_state, to_state, ago)
    """,
    """
    UPDATE core.number_counters
       SET last_value = :first::int + (SELECT count(*) FROM bench_review)
     WHERE company_id = :company::uuid AND kind = 'CLAIM'
    """,
    """
    INSERT INTO core.audit_events
        (company_id, actor_id, action, entity_type, entity_id, changed_fields,
         request_id, detail)
    SELECT :company::uuid, 'system:bench-seed', 'bench.seed', 'company', :company::uuid::text,
           '{}', NULL,
           jsonb_build_object('claims_under_review', count(*),
                              'via', 'cardinsa_tools.bench bulk SQL (ApproveClaim scenario)')
      FROM bench_review
    """,
)

#: The quoted policies BindPolicy binds (their policyholders' e-mail is in
#: ``:domain``), oldest first.
QUOTED = """
    SELECT p.id FROM core.policies p
      JOIN core.policyholders h ON h.company_id = p.company_id AND h.id = p.policyholder_id
     WHERE p.company_id = :company::uuid AND p.state = 'QUOTED' AND p.delete_time IS NULL
       AND h.email LIKE '%@' || :domain
     ORDER BY p.create_time, p.id
"""

#: Those left from an earlier run start today again: bind refuses an effective
#: date further back than the company allows (max_backdate_days), and the API
#: would re-quote them. Starting today, each bind also activates (IN_FORCE).
QUOTED_REDATE = """
    UPDATE core.policies p
       SET effective_date = current_date,
           expiry_date = (current_date + interval '12 months' - interval '1 day')::date
      FROM core.policyholders h
     WHERE p.company_id = :company::uuid AND p.state = 'QUOTED' AND p.delete_time IS NULL
       AND h.company_id = p.company_id AND h.id = p.policyholder_id
       AND h.email LIKE '%@' || :domain AND p.effective_date <> current_date
"""

#: ``:count`` more quoted policies for BindPolicy, as the API leaves them after
#: create and quote (``:quoted``, the template made through the API, gives the
#: product version, premium, rating (premium_breakdown), sum insured and
#: payment frequency; no underwriting issue is open, as on the template): a
#: policyholder each (e-mail in ``:domain``), effective today for the
#: product's 12 months, the two log entries (create, quote). Statement by
#: statement, like BULK_COPY.
QUOTED_TOP_UP = (
    """
    CREATE TEMP TABLE bench_quote ON COMMIT DROP AS
    SELECT j, gen_random_uuid() AS holder_id, gen_random_uuid() AS policy_id,
           now() - interval '10 minutes' + make_interval(secs => j * 0.001) AS ts
      FROM generate_series(1, :count::int) AS j
    """,
    """
    INSERT INTO core.policyholders
        (kind, given_name, family_name, date_of_birth, gender, legal_name,
         registration_number, email, phone, address_country_code, display_name,
         id, create_time, update_time, created_by, updated_by, delete_time,
         version, company_id)
    SELECT 'PERSON', 'Bind', 'Applicant' || q.j, date '1970-01-01' + (q.j * 37) % 10000,
           (ARRAY['FEMALE', 'MALE', 'GENDER_UNSPECIFIED'])[1 + q.j % 3], '', '',
           'bind-' || q.holder_id || '@' || :domain, '', 'DE',
           'Bind Applicant' || q.j, q.holder_id, q.ts, q.ts,
           t.created_by, t.created_by, NULL, 1, :company::uuid
      FROM bench_quote q
      CROSS JOIN core.policies t
     WHERE t.id = :quoted::uuid AND t.company_id = :company::uuid
    """,
    """
    INSERT INTO core.policies
        (policy_number, policyholder_id, product_id, product_version, state,
         effective_date, expiry_date, currency, premium, sum_insured, payment_frequency,
         insures_holder, insured_dependent_ids, current_version, version_effective_date,
         cancel_reason, cancel_effective_date, lapse_date, termination_note,
         previous_policy_id, successor_policy_id, bind_time, activate_time,
         premium_breakdown, written_premium, do_not_renew, cover_since,
         open_underwriting_issues, paid_to_date, id,
         create_time, update_time, created_by, updated_by, delete_time, version, company_id)
    SELECT NULL, q.holder_id, t.product_id, t.product_version, 'QUOTED',
           current_date, (current_date + interval '12 months' - interval '1 day')::date,
           t.currency, t.premium, t.sum_insured, t.payment_frequency,
           true, '{}', 0, NULL, NULL, NULL, NULL, '', NULL, NULL, NULL, NULL,
           t.premium_breakdown, NULL, false, '{}', 0, NULL, q.policy_id,
           q.ts, q.ts + interval '10 seconds', t.created_by, t.created_by, NULL, 2,
           :company::uuid
      FROM bench_quote q
      CROSS JOIN core.policies t
     WHERE t.id = :quoted::uuid AND t.company_id = :company::uuid
    """,
    """
    INSERT INTO core.policy_status_changes
        (id, company_id, policy_id, from_state, to_state, transition, reason,
         effective_date, actor_id, request_id, create_time)
    SELECT gen_random_uuid(), :company::uuid, q.policy_id, s.from_state, s.to_state,
           s.transition, '', NULL, t.actor_id, gen_random_uuid()::text, q.ts + s.after
      FROM bench_quote q
      CROSS JOIN (SELECT actor_id FROM core.policy_status_changes
                   WHERE policy_id = :quoted::uuid AND company_id = :company::uuid
                   LIMIT 1) t
      CROSS JOIN (VALUES (NULL, 'DRAFT', 'create', interval '0'),
                         ('DRAFT', 'QUOTED', 'quote', interval '10 seconds'))
                  AS s(from_state, to_state, transition, after)
    """,
    """
    INSERT INTO core.audit_events
        (company_id, actor_id, action, entity_type, entity_id, changed_fields,
         request_id, detail)
    VALUES (:company::uuid, 'system:bench-seed', 'bench.seed', 'company', :company::uuid::text,
            '{}', NULL,
            jsonb_build_object('quoted_policies', :count::int,
                               'via', 'cardinsa_tools.bench bulk SQL (BindPolicy scenario)'))
    """,
)

#: After BindPolicy: of the policies it bound (``:ids``), how many are BOUND or
#: IN_FORCE with a policy number, a NEW premium transaction and invoices.
BOUND = """
    SELECT count(*) FILTER (WHERE p.state IN ('BOUND', 'IN_FORCE')
                                  AND p.policy_number IS NOT NULL) AS bound,
           count(*) FILTER (WHERE p.state = 'IN_FORCE') AS in_force,
           count(*) FILTER (WHERE EXISTS (
                 SELECT 1 FROM core.premium_transactions t
                  WHERE t.company_id = p.company_id AND t.policy_id = p.id
                    AND t.kind = 'NEW')) AS transacted,
           count(*) FILTER (WHERE EXISTS (
                 SELECT 1 FROM core.invoices i
                  WHERE i.company_id = p.company_id AND i.policy_id = p.id)) AS invoiced
      FROM core.policies p
     WHERE p.company_id = :company::uuid AND p.id = ANY(:ids::uuid[])
"""

#: The mixed workload's random ids of a company: ``:size`` policies in force
#: that a claim of yesterday may be made on, and ``:size`` claims.
MIXED_SAMPLE = """
    (SELECT 'policy' AS kind, id FROM core.policies
      WHERE company_id = :company::uuid AND state = 'IN_FORCE' AND delete_time IS NULL
        AND insures_holder AND effective_date < current_date AND expiry_date >= current_date
      ORDER BY random() LIMIT :size::int)
    UNION ALL
    (SELECT 'claim', id FROM core.claims
      WHERE company_id = :company::uuid AND delete_time IS NULL
      ORDER BY random() LIMIT :size::int)
"""
