"""`make premium-story`: one policy's premium transactions, bind to reinstatement.

``python -m cardinsa_tools.premium_story [--keep-files] [--timeout S]``

Starts a suite of its own (``cardinsa_tools.launcher``: the launcher of `make
up` as a child process on free ports of 127.0.0.1, with an embedded PostgreSQL
in a temporary directory, so a running suite and the data in ``.data/`` are
never touched, and no credentials are needed: it sets the demo admin's), then
drives one policy through the REST gateway (Envoy) as that admin:

1. a product with rating rules (age bands, a relation factor, a sum-insured
   rate, 19 % tax, a policy fee, a 10 % short-rate penalty), put on sale;
2. a policyholder with a spouse and a child (dates of birth);
3. a policy for the holder and the spouse, effective today for
   the product's term of a year; ``:quote`` (its breakdown is printed), ``:bind``;
4. ``:endorse`` adding the child from today + 60 days;
5. ``:cancel`` (MEMBER_REQUEST) from today + 120 days, ``scheduled``
   (CANCEL_PENDING, the return premium booked now);
6. ``:reinstate`` (the cancellation withdrawn, its return charged back);

and prints the policy's premium transactions (``GET
/v1/policies/{id}/premiumTransactions``) as a table, with a last line that
checks that their amounts sum to the policy's ``written_premium``. The exit
code is 1 when that check (or any step) fails, 130 on Ctrl-C. Every process it
started is stopped by PID at the end, also on failure and Ctrl-C, and the
temporary directory removed (its log kept on failure).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ADMIN_EMAIL = "admin@premium-story.cardinsa.test"
CURRENCY = "EUR"
ENDORSE_AFTER_DAYS = 60
CANCEL_AFTER_DAYS = 120
KINDS = ("NEW", "ENDORSE", "CANCEL", "REINSTATE", "RENEW")


class StoryError(Exception):
    """A step that did not go as it should (said in one line)."""


def say(message: str) -> None:
    print(f"[premium-story] {message}", flush=True)


# ---------------------------------------------------------------------- money


def amount(money: Mapping[str, Any] | None) -> Decimal:
    """google.type.Money as REST/JSON prints it (``units`` an int64 string,
    ``nanos`` of the same sign, both left out when zero) as a Decimal."""
    if not money:
        return Decimal(0)
    units = Decimal(str(money.get("units", "0")))
    nanos = Decimal(int(money.get("nanos", 0))) / Decimal(10**9)
    return (units + nanos).quantize(Decimal("0.01"))


def money(value: int | str) -> dict[str, Any]:
    return {"currency_code": CURRENCY, "units": str(value)}


def json_date(day: date) -> dict[str, int]:
    return {"year": day.year, "month": day.month, "day": day.day}


def from_json_date(value: Mapping[str, int]) -> date:
    return date(value["year"], value["month"], value["day"])


# ----------------------------------------------------------------------- REST


@dataclass
class Rest:
    """REST/JSON through the gateway, one connection per call."""

    port: int
    token: str = ""

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        headers = {"content-type": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except OSError as error:
            raise StoryError(f"{method} {path}: {error}") from None
        finally:
            connection.close()
        try:
            reply: dict[str, Any] = json.loads(raw or b"{}")
        except ValueError:
            reply = {"message": raw.decode("utf-8", errors="replace")[:300]}
        if status != 200:
            raise StoryError(f"{method} {path}: HTTP {status}: {reply.get('message', reply)}")
        return reply


# ---------------------------------------------------------------------- suite


class Suite:
    """The suite of this run, in ``base`` (cardinsa_tools.launcher)."""

    def __init__(self, base: Path, password: str) -> None:
        from cardinsa_tools.launcher import SuitePorts, SuiteRun, suite_environment

        self.base = base
        self.ports = SuitePorts.free(gateway_metrics=False)
        self.postgres_dir = base / "postgres"
        env = suite_environment(
            self.ports,
            self.postgres_dir,
            base,
            CARDINSA_DEMO_ADMIN_EMAIL=ADMIN_EMAIL,
            CARDINSA_DEMO_ADMIN_PASSWORD=password,
            # A quick stop: nothing else is using this suite.
            CARDINSA_GRACE_PERIOD_S="1",
            CARDINSA_DRAIN_DELAY_S="0",
            CARDINSA_GATEWAY_HEALTH_INTERVAL_S="1",
        )
        self.started = time.monotonic()
        self.run = SuiteRun(base / "state", env, base / "suite.log", self._relay)

    def _relay(self, line: str) -> None:
        """The launcher's own lines as progress (the services' JSON lines go to the log)."""
        if line.startswith("[cardinsa] "):
            text = line.removeprefix("[cardinsa] ").strip()
            say(f"  suite {time.monotonic() - self.started:5.1f} s: {text}")

    def start(self, timeout_s: float) -> None:
        say(f"starting a suite of its own in {self.base} (log: suite.log)")
        self.run.start()
        assert self.run.process is not None
        say(f"  suite launcher pid {self.run.process.pid}, gateway 127.0.0.1:{self.ports.gateway}")
        from cardinsa_tools.launcher import SuiteNotReady

        try:
            self.run.wait_ready(timeout_s)
        except SuiteNotReady as error:
            first = str(error).splitlines()[0].rstrip(":")
            raise StoryError(f"{first} (see {self.base / 'suite.log'})") from None

    def stop(self) -> None:
        """SIGINT to the launcher's group (what Ctrl-C does to `make up`), then by
        PID whatever is left: the group, Envoy, the embedded PostgreSQL."""
        if self.run.process is None:
            return
        say("stopping the suite")
        self.run.stop(timeout_s=30)
        self.run.sweep(self.postgres_dir, self.ports.postgres)
        if self.run.output is not None:
            self.run.output.join(5)
        say("  stopped")


# ---------------------------------------------------------------------- story


@dataclass
class Story:
    rest: Rest
    today: date

    def product(self) -> dict[str, Any]:
        product = self.rest.call(
            "POST",
            "/v1/products",
            {
                "code": f"STORY-{uuid.uuid4().hex[:6].upper()}",
                "line_of_business": "MEDICAL",
                "name": "Family Health (premium story)",
                "currency_code": CURRENCY,
                "base_premium": money(1200),
                "term_months": 12,
                "coverages": [
                    {
                        "code": "OUTPATIENT",
                        "name": "Outpatient care",
                        "limit": money(10_000),
                        "limit_period": "PER_YEAR",
                    }
                ],
                "rating_rules": {
                    "term_basis": "DAYS_OVER_365",
                    "age_bands": [
                        {"min_age": 0, "max_age": 17, "factor_basis_points": 5000},
                        {"min_age": 18, "max_age": 39, "factor_basis_points": 10000},
                        {"min_age": 40, "max_age": 64, "factor_basis_points": 14000},
                        {"min_age": 65, "max_age": 150, "factor_basis_points": 25000},
                    ],
                    "relation_factors": [{"relation": "CHILD", "factor_basis_points": 8000}],
                    "sum_insured_rate_basis_points": 10,
                    "tax_basis_points": 1900,
                    "policy_fee": money(25),
                    "short_rate_penalty_basis_points": 1000,
                },
            },
        )
        return self.rest.call(
            "POST", f"/v1/products/{product['id']}:activate", {"etag": product["etag"]}
        )

    def policyholder(self) -> dict[str, Any]:
        year = self.today.year
        return self.rest.call(
            "POST",
            "/v1/policyholders",
            {
                "kind": "PERSON",
                "given_name": "Amira",
                "family_name": "Haddad",
                "date_of_birth": json_date(date(year - 42, 3, 15)),
                "email": f"amira.haddad-{uuid.uuid4().hex[:6]}@premium-story.cardinsa.test",
                "dependents": [
                    {
                        "relation": "SPOUSE",
                        "given_name": "Karim",
                        "family_name": "Haddad",
                        "date_of_birth": json_date(date(year - 38, 9, 2)),
                    },
                    {
                        "relation": "CHILD",
                        "given_name": "Lina",
                        "family_name": "Haddad",
                        "date_of_birth": json_date(date(year - 7, 6, 20)),
                    },
                ],
            },
        )

    def run(self) -> dict[str, Any]:
        rest = self.rest
        say("creating a product with rating rules and putting it on sale")
        product = self.product()
        say(f"  product {product['code']} v{product['version']} {product['state']}")
        holder = self.policyholder()
        relations = {d["relation"]: d["id"] for d in holder["dependents"]}
        spouse, child = relations["SPOUSE"], relations["CHILD"]
        say(f"  policyholder {holder['display_name']} with a spouse and a child")

        policy = rest.call(
            "POST",
            "/v1/policies",
            {
                "policyholder_id": holder["id"],
                "product_id": product["id"],
                "effective_date": json_date(self.today),
                "sum_insured": money(100_000),
                "payment_frequency": "ANNUAL",
                "insured_members": [{"policyholder": True}, {"dependent_id": spouse}],
            },
        )
        path = f"/v1/policies/{policy['id']}"
        policy = rest.call("POST", f"{path}:quote", {"etag": policy["etag"]})
        print_breakdown("quote (policyholder and spouse)", policy)
        policy = rest.call("POST", f"{path}:bind", {"etag": policy["etag"]})
        say(
            f"bound {policy['policy_number']}: {policy['state']}, "
            f"written {amount(policy['written_premium'])} {CURRENCY}"
        )

        endorse_from = self.today + timedelta(days=ENDORSE_AFTER_DAYS)
        policy = rest.call(
            "POST",
            f"{path}:endorse",
            {
                "etag": policy["etag"],
                "effective_date": json_date(endorse_from),
                "description": "the child joins the policy",
                "policy": {
                    "insured_members": [
                        {"policyholder": True},
                        {"dependent_id": spouse},
                        {"dependent_id": child},
                    ]
                },
                "update_mask": "insuredMembers",
            },
        )
        say(
            f"endorsed from {endorse_from} (version {policy['version']}), "
            f"written {amount(policy['written_premium'])} {CURRENCY}"
        )
        print_breakdown("full-term premium after the endorsement", policy)

        cancel_from = self.today + timedelta(days=CANCEL_AFTER_DAYS)
        policy = rest.call(
            "POST",
            f"{path}:cancel",
            {
                "etag": policy["etag"],
                "reason": "MEMBER_REQUEST",
                "effective_date": json_date(cancel_from),
                "scheduled": True,
                "note": "moving abroad",
            },
        )
        if policy["state"] != "CANCEL_PENDING":
            raise StoryError(f"the scheduled cancellation left the policy {policy['state']}")
        say(
            f"cancellation scheduled from {cancel_from}: {policy['state']}, "
            f"written {amount(policy['written_premium'])} {CURRENCY}"
        )
        policy = rest.call(
            "POST", f"{path}:reinstate", {"etag": policy["etag"], "note": "staying after all"}
        )
        say(
            f"reinstated: {policy['state']}, written {amount(policy['written_premium'])} {CURRENCY}"
        )
        return policy

    def transactions(self, policy_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token = ""
        while True:
            page = self.rest.call(
                "GET",
                f"/v1/policies/{policy_id}/premiumTransactions?page_size=100&page_token={token}",
            )
            found += page.get("premium_transactions", [])
            token = page.get("next_page_token", "")
            if not token:
                return found


# --------------------------------------------------------------------- output


def print_breakdown(title: str, policy: Mapping[str, Any]) -> None:
    breakdown = policy.get("premium_breakdown", {})
    lines = breakdown.get("lines", [])
    width = max([len(line["description"]) for line in lines] + [20])
    print(
        f"\n  {title}: {breakdown.get('strategy', '?')} rating, "
        f"{breakdown.get('term_days', 0)} days"
    )
    for line in lines:
        print(f"    {line['code']:<12} {line['description']:<{width}} {amount(line['amount']):>10}")
    for label, key in (("net premium", "net_premium"), ("total", "total")):
        print(f"    {'':<12} {label:<{width}} {amount(breakdown.get(key)):>10}")
    print()


def table(transactions: list[dict[str, Any]]) -> Iterator[str]:
    yield (
        f"{'seq':>3}  {'kind':<10} {'effective..end':<22} {'premium':>10} {'tax':>9} "
        f"{'fee':>7} {'amount':>10} {'written':>10}  method"
    )
    for t in transactions:
        span = (
            f"{from_json_date(t['effective_date']).isoformat()}.."
            f"{from_json_date(t['end_date']).isoformat()}"
        )
        method = t.get("refund_method", "")
        yield (
            f"{t['sequence']:>3}  {t['kind']:<10} {span:<22} {amount(t.get('premium')):>10} "
            f"{amount(t.get('tax')):>9} {amount(t.get('fee')):>7} {amount(t.get('amount')):>10} "
            f"{amount(t.get('written_premium')):>10}  {method}".rstrip()
        )


def check(transactions: list[dict[str, Any]], policy: Mapping[str, Any]) -> tuple[bool, str]:
    """The amounts sum to the policy's written premium (and each running sum is right)."""
    total = Decimal(0)
    for t in transactions:
        total += amount(t.get("amount"))
        if total != amount(t.get("written_premium")):
            return False, f"transaction {t['sequence']}: running sum {total} != its written premium"
    written = amount(policy.get("written_premium"))
    verdict = "OK" if total == written else "MISMATCH"
    return (
        total == written,
        f"sum of the amounts {total} {CURRENCY}, written_premium of the policy "
        f"{written} {CURRENCY}: {verdict}",
    )


def company_today() -> date:
    """Today, never after the company's today: the date in UTC (the demo company's
    zone, Europe/Berlin, is ahead of UTC). Before midnight UTC it may already be
    tomorrow for the company; a policy from "yesterday" is still bound in force,
    one from "tomorrow" would not be."""
    return datetime.now(UTC).date()


# ----------------------------------------------------------------------- main


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make premium-story", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the suite")
    parser.add_argument(
        "--keep-files", action="store_true", help="keep the temporary directory (and its log)"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="cardinsa-premium-story-"))
    suite: Suite | None = None
    code = 1
    try:
        suite = Suite(base, secrets.token_urlsafe(18))
        suite.start(args.timeout)
        rest = Rest(suite.ports.gateway)
        say("logging in as the demo admin through the gateway")
        rest.token = rest.call(
            "POST",
            "/v1/auth:login",
            {"email": ADMIN_EMAIL, "password": suite.run.env["CARDINSA_DEMO_ADMIN_PASSWORD"]},
        )["access_token"]
        today = company_today()
        story = Story(rest, today)
        policy = story.run()
        transactions = story.transactions(policy["id"])
        policy = rest.call("GET", f"/v1/policies/{policy['id']}")
        print(
            f"\nPremium transactions of {policy['policy_number']} "
            f"({policy['state']}, {CURRENCY}; today {today}):\n"
        )
        for line in table(transactions):
            print("  " + line)
        ok, verdict = check(transactions, policy)
        print(f"\n  {verdict}\n", flush=True)
        code = 0 if ok else 1
    except KeyboardInterrupt:
        say("interrupted")
        code = 130
    except StoryError as error:
        say(f"failed: {error}")
        code = 1
    finally:
        # A second Ctrl-C must not cut the stop short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if suite is not None:
            suite.stop()
        if args.keep_files:
            say(f"files kept in {base}")
        elif code not in (0, 130):
            shutil.rmtree(base / "postgres", ignore_errors=True)
            say(f"the suite's log is kept in {base / 'suite.log'}")
        else:
            with contextlib.suppress(OSError):
                shutil.rmtree(base)
        say(f"took {time.monotonic() - started:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
