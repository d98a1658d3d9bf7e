"""The PDF documents: what they show (read back with pypdf), in English and
German, and that the same facts give the same bytes."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pypdf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardinsa_core.domain.documents import (
    ClaimDecision,
    ClaimDecisionFacts,
    CoverageTerms,
    InsuredPerson,
    InvoiceFacts,
    PolicyScheduleFacts,
    PremiumLine,
    PremiumTransactionLine,
    canonical_json,
    facts_sha256,
    format_date,
    format_money,
    locale_for_company,
    render,
)

D = Decimal

SCHEDULE = PolicyScheduleFacts(
    company_name="Nordlicht Versicherung AG",
    policy_number="POL-2026-000042",
    policy_version=1,
    version_effective_date=date(2026, 12, 7),
    policyholder_name="Jürgen Weiß",
    policyholder_address=("Hauptstraße 1", "10115 Berlin", "DE"),
    insured_members=(
        InsuredPerson("Jürgen Weiß", "POLICYHOLDER", date(1980, 5, 6)),
        InsuredPerson("Lena Weiß", "CHILD", date(2015, 3, 1)),
    ),
    product_name="Gesundheit Basis",
    effective_date=date(2026, 12, 7),
    expiry_date=date(2027, 12, 6),
    currency="EUR",
    sum_insured=D("100000"),
    coverages=(
        CoverageTerms("OUTPATIENT", "Ambulant", D("10000"), "PER_YEAR", D("250"), None, 2000, 30),
        CoverageTerms("DENTAL", "Zahn", D("1500.5"), "PER_CLAIM", D("0"), D("25"), None, 0),
    ),
    premium_lines=(
        PremiumLine("MEMBER", "policyholder, age 46: 1500.00 x 1.00", D("1500")),
        PremiumLine("MEMBER", "child, age 11: 1000.00 x 1.00", D("1000")),
    ),
    net_premium=D("2500"),
    tax=D("475"),
    fee=D("5"),
    total=D("2980"),
    payment_frequency="MONTHLY",
    transactions=(
        PremiumTransactionLine(
            1, "NEW", date(2026, 12, 7), date(2027, 12, 6), D("2500"), D("475"), D("5"), D("2980")
        ),
    ),
    written_premium=D("2980"),
)

DECISION = ClaimDecisionFacts(
    company_name="Nordlicht Versicherung AG",
    claim_number="CLM-2026-000007",
    policy_number="POL-2026-000042",
    claimant_name="Lena Weiß",
    coverage_name="Ambulant (OUTPATIENT)",
    incident_date=date(2026, 12, 1),
    decision=ClaimDecision.PARTIALLY_APPROVED,
    decision_date=date(2026, 12, 7),
    currency="EUR",
    claimed=D("1250"),
    deductible=D("250"),
    copay=D("0"),
    coinsurance=D("200"),
    limit_cut=D("0"),
    payable=D("800"),
    approved=D("800"),
    reason="",
)

INVOICE = InvoiceFacts(
    company_name="Nordlicht Versicherung AG",
    invoice_number="INV-2026-000003",
    issue_date=date(2026, 12, 7),
    due_date=date(2026, 12, 21),
    policy_number="POL-2026-000042",
    payer_name="Jürgen Weiß",
    payer_address=("Hauptstraße 1", "10115 Berlin"),
    currency="EUR",
    amount=D("248.33"),
    period_start=date(2026, 12, 7),
    period_end=date(2027, 1, 6),
)


def text_of(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    # Table cells wrap; join the lines so a label reads as one phrase.
    return " ".join(" ".join(page.extract_text().split()) for page in reader.pages)


def test_money_and_dates_per_locale() -> None:
    assert format_money(D("2980"), "EUR", "en") == "EUR 2,980.00"
    assert format_money(D("2980"), "EUR", "de") == "2.980,00 €"
    assert format_money(D("-1234567.125"), "USD", "de") == "-1.234.567,12 USD"
    assert format_money(D("1000"), "JPY", "en") == "JPY 1,000"
    assert format_money(D("1.0005"), "KWD", "en") == "KWD 1.000"
    assert format_date(date(2026, 12, 7), "en") == "7 December 2026"
    assert format_date(date(2026, 12, 7), "de") == "07.12.2026"
    assert format_date(date(2026, 12, 7), "de-AT") == "07.12.2026"
    assert format_date(date(2026, 12, 7), "fr") == "7 December 2026"


@given(
    cents=st.integers(min_value=-(10**13), max_value=10**13),
    locale=st.sampled_from(["en", "de"]),
)
def test_formatted_money_reads_back_as_the_amount(cents: int, locale: str) -> None:
    amount = D(cents).scaleb(-2)
    text = format_money(amount, "EUR", locale)
    if locale == "de":
        assert text.endswith(" €")
        digits = text.removesuffix(" €").replace(".", "").replace(",", ".")
    else:
        assert "EUR " in text
        digits = text.replace("EUR ", "").replace(",", "")
    assert D(digits) == amount


@pytest.mark.parametrize(
    ("requested", "company_locale", "country", "expected"),
    [
        ("", "de-DE", "DE", "de"),
        ("", "de", "US", "de"),
        ("", "en", "DE", "en"),
        ("", "", "AT", "de"),
        ("", "", "CH", "de"),
        ("", "", "US", "en"),
        ("", "pt-BR", "DE", "de"),
        ("", "pt-BR", "BR", "en"),
        ("en", "de-DE", "DE", "en"),
        ("de-CH", "en", "US", "de"),
        ("fr", "de-DE", "DE", "en"),
    ],
)
def test_locale_of_a_document(
    requested: str, company_locale: str, country: str, expected: str
) -> None:
    assert locale_for_company(requested, company_locale, country) == expected


def test_schedule_in_english_shows_the_facts() -> None:
    text = text_of(render(SCHEDULE, "en"))
    for expected in [
        "Nordlicht Versicherung AG",
        "Policy schedule",
        "POL-2026-000042",
        "Jürgen Weiß",
        "Hauptstraße 1",
        "Lena Weiß",
        "Gesundheit Basis",
        "7 December 2026 to 6 December 2027",
        "EUR 100,000.00",
        "Ambulant (OUTPATIENT)",
        "EUR 10,000.00",
        "per policy year",
        "EUR 250.00",
        "20 %",
        "30 days",
        "Zahn (DENTAL)",
        "EUR 1,500.50",
        "per claim",
        "EUR 25.00",
        "Net premium EUR 2,500.00",
        "Premium tax EUR 475.00",
        "Policy fee EUR 5.00",
        "Total premium EUR 2,980.00",
        "monthly",
        "Written premium EUR 2,980.00",
    ]:
        assert expected in text, expected


def test_schedule_in_german_translates_every_label() -> None:
    text = text_of(render(SCHEDULE, "de"))
    for expected in [
        "Versicherungsschein",
        "Versicherungsnummer POL-2026-000042",
        "Versicherungsnehmer Jürgen Weiß",
        "07.12.2026 bis 06.12.2027",
        "100.000,00 €",
        "10.000,00 €",
        "je Versicherungsjahr",
        "250,00 €",
        "30 Tage",
        "Nettobeitrag 2.500,00 €",
        "Versicherungsteuer 475,00 €",
        "Policengebühr 5,00 €",
        "Gesamtbeitrag 2.980,00 €",
        "monatlich",
        "Kind",
    ]:
        assert expected in text, expected
    for english in ["Policy", "Premium", "Deductible", "December", "EUR", "monthly"]:
        assert english not in text, english


def test_decision_letter_shows_the_benefit() -> None:
    english = text_of(render(DECISION, "en"))
    for expected in [
        "Claim decision",
        "CLM-2026-000007",
        "POL-2026-000042",
        "Lena Weiß",
        "partially approved",
        "Amount claimed EUR 1,250.00",
        "Deductible -EUR 250.00",
        "Co-insurance -EUR 200.00",
        "Payable EUR 800.00",
        "1 December 2026",
    ]:
        assert expected in english, expected
    denied = dataclasses.replace(
        DECISION,
        decision=ClaimDecision.DENIED,
        approved=D("0"),
        reason="Behandlung vor Versicherungsbeginn",
    )
    german = text_of(render(denied, "de"))
    for expected in [
        "Leistungsentscheidung",
        "abgelehnt",
        "Geltend gemachter Betrag 1.250,00 €",
        "Selbstbehalt -250,00 €",
        "Begründung Behandlung vor Versicherungsbeginn",
    ]:
        assert expected in german, expected


def test_invoice_shows_number_dates_amount_and_payer() -> None:
    english = text_of(render(INVOICE, "en"))
    for expected in [
        "Invoice",
        "INV-2026-000003",
        "Due date 21 December 2026",
        "POL-2026-000042",
        "Jürgen Weiß",
        "Amount due EUR 248.33",
    ]:
        assert expected in english, expected
    german = text_of(render(INVOICE, "de"))
    assert "Rechnungsnummer INV-2026-000003" in german
    assert "Fälliger Betrag 248,33 €" in german
    assert "Fällig am 21.12.2026" in german


def test_stored_strings_are_text_not_markup() -> None:
    hostile = dataclasses.replace(SCHEDULE, policyholder_name="<b>A & B</b> <unclosed")
    assert "<b>A & B</b> <unclosed" in text_of(render(hostile, "en"))


def test_same_facts_same_bytes_other_facts_other_bytes() -> None:
    first = render(SCHEDULE, "de")
    assert render(dataclasses.replace(SCHEDULE), "de") == first
    assert render(SCHEDULE, "en") != first
    assert render(SCHEDULE, "fr") == render(SCHEDULE, "en")
    endorsed = dataclasses.replace(SCHEDULE, policy_version=2, total=D("3100"))
    assert render(endorsed, "de") != first


def test_same_bytes_in_another_process() -> None:
    script = (
        "import sys, hashlib\n"
        "sys.path.insert(0, sys.argv[1])\n"
        f"from {Path(__file__).stem} import SCHEDULE, DECISION\n"
        "from cardinsa_core.domain.documents import render\n"
        "print(hashlib.sha256(render(SCHEDULE, 'de') + render(DECISION, 'en')).hexdigest())\n"
    )
    folder = str(Path(__file__).parent)
    output = subprocess.run(
        [sys.executable, "-c", script, folder], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert output == hashlib.sha256(render(SCHEDULE, "de") + render(DECISION, "en")).hexdigest()


def test_facts_hash_is_canonical() -> None:
    same = dataclasses.replace(SCHEDULE, total=D("2980.000"), sum_insured=D("1E+5"))
    assert facts_sha256(same) == facts_sha256(SCHEDULE)
    assert re.fullmatch(r"[0-9a-f]{64}", facts_sha256(SCHEDULE))
    assert facts_sha256(dataclasses.replace(SCHEDULE, tax=D("475.01"))) != facts_sha256(SCHEDULE)
    # The kind is part of the hash: an invoice never shares a schedule's hash.
    assert b'"kind":"POLICY_SCHEDULE"' in canonical_json(SCHEDULE)
    assert b'"total":"2980.00"' in canonical_json(SCHEDULE)


def test_a_terminated_policy_says_from_when() -> None:
    cancelled = dataclasses.replace(SCHEDULE, terminated_from=date(2027, 3, 1))
    assert "Cover terminated with effect from 1 March 2027" in text_of(render(cancelled, "en"))
    german = text_of(render(cancelled, "de"))
    assert "Versicherungsschutz beendet mit Wirkung zum 01.03.2027" in german
    assert "beendet" not in text_of(render(SCHEDULE, "de"))
    assert facts_sha256(cancelled) != facts_sha256(SCHEDULE)
