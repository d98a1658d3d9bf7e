"""Documents core issues as PDF: the policy schedule, the claim decision letter
and the invoice.

A document is a pure function of its *facts* (plain frozen dataclasses, built by
the application layer from what core stores) and a locale: :func:`render` lays
the facts out with reportlab in invariant mode (no creation time, no random
document id), so the same facts in the same locale always give the same bytes.
:func:`facts_sha256` hashes the facts' canonical JSON form (:func:`canonical_json`:
sorted keys, amounts as exact decimal strings, dates in ISO form): the stored
document of those facts is found by that hash, and changed facts (an
endorsement, a new approval) make a new document.

Locales: ``en`` and ``de`` (:data:`LOCALES`); every other tag falls back to
``en`` (:func:`supported_locale`). Money: ``EUR 2,980.00`` / ``2.980,00 €``;
dates: ``7 December 2026`` / ``07.12.2026``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any, Final
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from reportlab.platypus.flowables import Flowable

from cardinsa_core.domain.money import minor_units

__all__ = [
    "DEFAULT_LOCALE",
    "LOCALES",
    "ClaimDecision",
    "ClaimDecisionFacts",
    "CoverageTerms",
    "DocumentKind",
    "Facts",
    "InsuredPerson",
    "InvoiceFacts",
    "PolicyScheduleFacts",
    "PremiumLine",
    "PremiumTransactionLine",
    "canonical_json",
    "facts_sha256",
    "format_date",
    "format_money",
    "locale_for_company",
    "render",
    "supported_locale",
]


class DocumentKind(StrEnum):
    """What a document is (the ``kind`` column of ``core.documents``)."""

    POLICY_SCHEDULE = "POLICY_SCHEDULE"
    INVOICE = "INVOICE"
    CLAIM_DECISION = "CLAIM_DECISION"


class ClaimDecision(StrEnum):
    """The decision a claim decision letter announces."""

    APPROVED = "APPROVED"
    PARTIALLY_APPROVED = "PARTIALLY_APPROVED"
    DENIED = "DENIED"


# ------------------------------------------------------------------ facts


@dataclass(frozen=True, slots=True)
class InsuredPerson:
    """A member the policy insures."""

    name: str
    #: POLICYHOLDER, or the dependent's relation (SPOUSE, CHILD, ...).
    relation: str
    date_of_birth: date | None = None


@dataclass(frozen=True, slots=True)
class CoverageTerms:
    """A coverage of the policy's product version, as the schedule shows it."""

    code: str
    name: str
    limit: Decimal
    #: PER_CLAIM, PER_YEAR, PER_TERM or LIFETIME.
    limit_period: str
    deductible: Decimal
    copay: Decimal | None = None
    coinsurance_basis_points: int | None = None
    waiting_period_days: int = 0


@dataclass(frozen=True, slots=True)
class PremiumLine:
    """A line of the policy's premium breakdown (MEMBER, SUM_INSURED, TERM, TAX, FEE)."""

    code: str
    description: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class PremiumTransactionLine:
    """A premium transaction of the policy (NEW, ENDORSE, CANCEL, REINSTATE, RENEW)."""

    sequence: int
    kind: str
    effective_date: date
    end_date: date
    premium: Decimal
    tax: Decimal
    fee: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class PolicyScheduleFacts:
    """What a policy schedule shows: a bound policy at its current version."""

    company_name: str
    policy_number: str
    policy_version: int
    version_effective_date: date | None
    policyholder_name: str
    #: Address lines (street, postal code and city, country); empty if none is stored.
    policyholder_address: tuple[str, ...]
    insured_members: tuple[InsuredPerson, ...]
    product_name: str
    effective_date: date
    expiry_date: date
    currency: str
    sum_insured: Decimal
    coverages: tuple[CoverageTerms, ...]
    #: The premium breakdown of the current version.
    premium_lines: tuple[PremiumLine, ...]
    net_premium: Decimal
    tax: Decimal
    fee: Decimal
    total: Decimal
    #: ANNUAL, SEMI_ANNUAL, QUARTERLY, MONTHLY or SINGLE.
    payment_frequency: str
    transactions: tuple[PremiumTransactionLine, ...]
    #: Sum of the transactions (what the policyholder is charged).
    written_premium: Decimal
    #: First day no longer covered after a cancellation (also one scheduled)
    #: or a lapse; None while the cover runs to the expiry date.
    terminated_from: date | None = None

    KIND = DocumentKind.POLICY_SCHEDULE


@dataclass(frozen=True, slots=True)
class ClaimDecisionFacts:
    """What a claim decision letter shows: the decision and how the payable
    amount follows from the claimed amount
    (``claimed = deductible + copay + coinsurance + limit_cut + payable``)."""

    company_name: str
    claim_number: str
    policy_number: str
    claimant_name: str
    coverage_name: str
    incident_date: date
    decision: ClaimDecision
    decision_date: date
    currency: str
    claimed: Decimal
    deductible: Decimal
    copay: Decimal
    coinsurance: Decimal
    limit_cut: Decimal
    payable: Decimal
    #: The approved amount (0 when denied).
    approved: Decimal
    #: Why (the deny reason); empty for an approval.
    reason: str

    KIND = DocumentKind.CLAIM_DECISION


@dataclass(frozen=True, slots=True)
class InvoiceFacts:
    """What an invoice shows (DocumentService.GetInvoiceDocument)."""

    company_name: str
    invoice_number: str
    issue_date: date
    due_date: date
    policy_number: str
    payer_name: str
    payer_address: tuple[str, ...]
    currency: str
    amount: Decimal
    period_start: date | None = None
    period_end: date | None = None

    KIND = DocumentKind.INVOICE


Facts = PolicyScheduleFacts | ClaimDecisionFacts | InvoiceFacts

#: Bumped when the layout changes: old facts then hash differently, so a
#: reissue renders anew instead of serving the old layout.
LAYOUT_VERSION: Final = 1


# ------------------------------------------------------------------ canonical form


def _plain(value: Any, currency: str) -> Any:
    if isinstance(value, Decimal):
        return _quantize(value, currency).to_eng_string()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name), currency) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(item, currency) for item in value]
    return value


def canonical_json(facts: Facts) -> bytes:
    """The facts as canonical JSON (UTF-8, sorted keys, no spaces; amounts as
    decimal strings in the currency's minor units, dates ISO 8601), with the
    document kind and the layout version."""
    body = {
        "kind": str(facts.KIND),
        "layout": LAYOUT_VERSION,
        "facts": _plain(facts, facts.currency),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def facts_sha256(facts: Facts) -> str:
    """SHA-256 (hex) of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(facts)).hexdigest()


# ------------------------------------------------------------------ locale


DEFAULT_LOCALE: Final = "en"
LOCALES: Final = ("en", "de")
_GERMAN_COUNTRIES: Final = frozenset({"DE", "AT", "CH", "LI"})


def supported_locale(tag: str) -> str | None:
    """The supported locale of a BCP 47 tag (``de-AT`` → ``de``), None if unsupported."""
    language = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return language if language in LOCALES else None


def locale_for_company(requested: str, company_locale: str, country: str) -> str:
    """The locale to render in: the requested one if given (an unsupported tag
    falls back to ``en``); else the company's locale when supported; else by
    the company's country (DE, AT, CH, LI → ``de``); else ``en``."""
    if requested.strip():
        return supported_locale(requested) or DEFAULT_LOCALE
    if company_locale.strip():
        found = supported_locale(company_locale)
        if found is not None:
            return found
    if country.strip().upper() in _GERMAN_COUNTRIES:
        return "de"
    return DEFAULT_LOCALE


def _locale(tag: str) -> str:
    return supported_locale(tag) or DEFAULT_LOCALE


# ------------------------------------------------------------------ formatting


_MONTHS_EN: Final = (
    *("January", "February", "March", "April", "May", "June", "July"),
    *("August", "September", "October", "November", "December"),
)
_CURRENCY_SYMBOLS_DE: Final = {"EUR": "€"}


def _quantize(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_EVEN)


def format_money(amount: Decimal, currency: str, locale: str) -> str:
    """``EUR 2,980.00`` (en) or ``2.980,00 €`` (de), in the currency's minor units."""
    value = _quantize(amount, currency)
    digits = f"{abs(value):,.{minor_units(currency)}f}"
    sign = "-" if value < 0 else ""
    if _locale(locale) == "de":
        digits = digits.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
        return f"{sign}{digits} {_CURRENCY_SYMBOLS_DE.get(currency, currency)}"
    return f"{sign}{currency} {digits}"


def format_date(day: date, locale: str) -> str:
    """``7 December 2026`` (en) or ``07.12.2026`` (de)."""
    if _locale(locale) == "de":
        return f"{day.day:02d}.{day.month:02d}.{day.year:04d}"
    return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"


def _basis_points(value: int, locale: str) -> str:
    percent = (Decimal(value) / 100).normalize()
    text = f"{percent:f}"
    return (text.replace(".", ",") if _locale(locale) == "de" else text) + " %"


# ------------------------------------------------------------------ labels


_LABELS: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {
        "POLICY_SCHEDULE": "Policy schedule",
        "CLAIM_DECISION": "Claim decision",
        "INVOICE": "Invoice",
        "policy_number": "Policy number",
        "version": "Version",
        "version_effective": "Version effective from",
        "policyholder": "Policyholder",
        "address": "Address",
        "product": "Product",
        "period": "Period of cover",
        "period_value": "{start} to {end}",
        "terminated_from": "Cover terminated with effect from",
        "sum_insured": "Sum insured",
        "insured_members": "Insured members",
        "name": "Name",
        "relation": "Relation",
        "date_of_birth": "Date of birth",
        "coverages": "Coverages",
        "coverage": "Coverage",
        "limit": "Limit",
        "limit_period": "Limit applies",
        "deductible": "Deductible",
        "cost_share": "Co-payment / co-insurance",
        "waiting_period": "Waiting period",
        "days": "{n} days",
        "none": "none",
        "premium": "Premium",
        "net_premium": "Net premium",
        "tax": "Premium tax",
        "fee": "Policy fee",
        "total": "Total premium",
        "payment_frequency": "Payment frequency",
        "transactions": "Premium transactions",
        "tax_short": "Tax",
        "fee_short": "Fee",
        "period_short": "Period",
        "transaction": "Transaction",
        "written_premium": "Written premium",
        "amount": "Amount",
        "claim_number": "Claim number",
        "claimant": "Claimant",
        "incident_date": "Date of loss",
        "decision": "Decision",
        "decision_date": "Date of decision",
        "benefit": "Benefit calculation",
        "claimed": "Amount claimed",
        "copay": "Co-payment",
        "coinsurance": "Co-insurance",
        "limit_cut": "Limit applied",
        "payable": "Payable",
        "approved": "Amount approved",
        "reason": "Reason",
        "invoice_number": "Invoice number",
        "issue_date": "Invoice date",
        "due_date": "Due date",
        "payer": "Payer",
        "amount_due": "Amount due",
        "invoice_period": "Period",
        "page_footer": "Issued by {company}",
    },
    "de": {
        "POLICY_SCHEDULE": "Versicherungsschein",
        "CLAIM_DECISION": "Leistungsentscheidung",
        "INVOICE": "Rechnung",
        "policy_number": "Versicherungsnummer",
        "version": "Stand",
        "version_effective": "Gültig ab",
        "policyholder": "Versicherungsnehmer",
        "address": "Anschrift",
        "product": "Tarif",
        "period": "Versicherungszeitraum",
        "period_value": "{start} bis {end}",
        "terminated_from": "Versicherungsschutz beendet mit Wirkung zum",
        "sum_insured": "Versicherungssumme",
        "insured_members": "Versicherte Personen",
        "name": "Name",
        "relation": "Beziehung",
        "date_of_birth": "Geburtsdatum",
        "coverages": "Leistungen",
        "coverage": "Leistung",
        "limit": "Höchstbetrag",
        "limit_period": "Höchstbetrag gilt",
        "deductible": "Selbstbehalt",
        "cost_share": "Zuzahlung / Eigenanteil",
        "waiting_period": "Wartezeit",
        "days": "{n} Tage",
        "none": "keine",
        "premium": "Beitrag",
        "net_premium": "Nettobeitrag",
        "tax": "Versicherungsteuer",
        "fee": "Policengebühr",
        "total": "Gesamtbeitrag",
        "payment_frequency": "Zahlungsweise",
        "transactions": "Beitragsbuchungen",
        "tax_short": "Steuer",
        "fee_short": "Gebühr",
        "period_short": "Zeitraum",
        "transaction": "Buchung",
        "written_premium": "Gebuchter Beitrag",
        "amount": "Betrag",
        "claim_number": "Schadennummer",
        "claimant": "Anspruchsteller",
        "incident_date": "Schadendatum",
        "decision": "Entscheidung",
        "decision_date": "Datum der Entscheidung",
        "benefit": "Leistungsberechnung",
        "claimed": "Geltend gemachter Betrag",
        "copay": "Zuzahlung",
        "coinsurance": "Eigenanteil",
        "limit_cut": "Kürzung durch Höchstbetrag",
        "payable": "Erstattungsfähig",
        "approved": "Bewilligter Betrag",
        "reason": "Begründung",
        "invoice_number": "Rechnungsnummer",
        "issue_date": "Rechnungsdatum",
        "due_date": "Fällig am",
        "payer": "Zahler",
        "amount_due": "Fälliger Betrag",
        "invoice_period": "Zeitraum",
        "page_footer": "Ausgestellt von {company}",
    },
}

_ENUMS: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {
        "PER_CLAIM": "per claim",
        "PER_YEAR": "per policy year",
        "PER_TERM": "per policy term",
        "LIFETIME": "lifetime",
        "ANNUAL": "annual",
        "SEMI_ANNUAL": "semi-annual",
        "QUARTERLY": "quarterly",
        "MONTHLY": "monthly",
        "SINGLE": "single payment",
        "POLICYHOLDER": "policyholder",
        "SPOUSE": "spouse",
        "CHILD": "child",
        "PARENT": "parent",
        "OTHER": "other",
        "NEW": "new business",
        "ENDORSE": "endorsement",
        "CANCEL": "cancellation",
        "REINSTATE": "reinstatement",
        "RENEW": "renewal",
        "MEMBER": "member premium",
        "SUM_INSURED": "sum insured loading",
        "TERM": "term adjustment",
        "TAX": "premium tax",
        "FEE": "policy fee",
        "APPROVED": "approved",
        "PARTIALLY_APPROVED": "partially approved",
        "DENIED": "denied",
    },
    "de": {
        "PER_CLAIM": "je Schadenfall",
        "PER_YEAR": "je Versicherungsjahr",
        "PER_TERM": "je Vertragslaufzeit",
        "LIFETIME": "lebenslang",
        "ANNUAL": "jährlich",
        "SEMI_ANNUAL": "halbjährlich",
        "QUARTERLY": "vierteljährlich",
        "MONTHLY": "monatlich",
        "SINGLE": "Einmalzahlung",
        "POLICYHOLDER": "Versicherungsnehmer",
        "SPOUSE": "Ehepartner",
        "CHILD": "Kind",
        "PARENT": "Elternteil",
        "OTHER": "sonstige",
        "NEW": "Neugeschäft",
        "ENDORSE": "Nachtrag",
        "CANCEL": "Kündigung",
        "REINSTATE": "Wiederinkraftsetzung",
        "RENEW": "Verlängerung",
        "MEMBER": "Beitrag versicherte Person",
        "SUM_INSURED": "Zuschlag Versicherungssumme",
        "TERM": "Laufzeitanpassung",
        "TAX": "Versicherungsteuer",
        "FEE": "Policengebühr",
        "APPROVED": "bewilligt",
        "PARTIALLY_APPROVED": "teilweise bewilligt",
        "DENIED": "abgelehnt",
    },
}


class _Text:
    """Labels, enums, money and dates of one locale."""

    def __init__(self, locale: str, currency: str) -> None:
        self.locale = _locale(locale)
        self.currency = currency
        self._labels = _LABELS[self.locale]
        self._enums = _ENUMS[self.locale]

    def __call__(self, key: str, **values: object) -> str:
        return self._labels[key].format(**values)

    def enum(self, value: str) -> str:
        return self._enums.get(value, value.replace("_", " ").lower())

    def money(self, amount: Decimal) -> str:
        return format_money(amount, self.currency, self.locale)

    def date(self, day: date | None) -> str:
        return "" if day is None else format_date(day, self.locale)


# ------------------------------------------------------------------ layout

_BASE: Final = ParagraphStyle("base", fontName="Helvetica", fontSize=9.5, leading=12)
_TITLE: Final = ParagraphStyle(
    "title", parent=_BASE, fontName="Helvetica-Bold", fontSize=16, leading=20
)
_COMPANY: Final = ParagraphStyle("company", parent=_BASE, fontName="Helvetica-Bold", fontSize=11)
_HEADING: Final = ParagraphStyle(
    "heading", parent=_BASE, fontName="Helvetica-Bold", fontSize=11, leading=14, spaceBefore=8
)
_CELL: Final = ParagraphStyle("cell", parent=_BASE, fontSize=8.5, leading=10.5)
_CELL_RIGHT: Final = ParagraphStyle("cell_right", parent=_CELL, alignment=2)
_GRID: Final = TableStyle(
    [
        ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8ecf2")),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#b0b8c4")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
)
_PAIRS: Final = TableStyle(
    [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 1),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
        ("LEFTPADDING", (0, 0), (-1, -1), 0),
    ]
)
_WIDTH: Final = A4[0] - 40 * mm


def _p(text: str, style: ParagraphStyle = _CELL) -> Paragraph:
    # Every stored string is escaped: a name with "<" or "&" is text, not markup.
    return Paragraph(escape(text).replace("\n", "<br/>"), style)


def _pairs(rows: Sequence[tuple[str, str]]) -> Table:
    table = Table(
        [[_p(label, _BASE), _p(value, _BASE)] for label, value in rows],
        colWidths=[55 * mm, _WIDTH - 55 * mm],
        hAlign="LEFT",
    )
    table.setStyle(_PAIRS)
    return table


def _grid(
    header: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[float], right: set[int]
) -> Table:
    cells = [[_p(h) for h in header]]
    cells += [
        [_p(value, _CELL_RIGHT if i in right else _CELL) for i, value in enumerate(row)]
        for row in rows
    ]
    total = sum(widths)
    table = Table(
        cells, colWidths=[_WIDTH * w / total for w in widths], hAlign="LEFT", repeatRows=1
    )
    table.setStyle(_GRID)
    return table


def _header(t: _Text, company: str, kind: DocumentKind) -> list[Flowable]:
    return [_p(company, _COMPANY), Spacer(1, 2 * mm), _p(t(kind.value), _TITLE), Spacer(1, 4 * mm)]


def _schedule(facts: PolicyScheduleFacts, t: _Text) -> list[Flowable]:
    story = _header(t, facts.company_name, facts.KIND)
    rows = [
        (t("policy_number"), facts.policy_number),
        (t("version"), str(facts.policy_version)),
    ]
    if facts.version_effective_date is not None:
        rows.append((t("version_effective"), t.date(facts.version_effective_date)))
    rows += [(t("policyholder"), facts.policyholder_name)]
    if facts.policyholder_address:
        rows.append((t("address"), "\n".join(facts.policyholder_address)))
    rows += [
        (t("product"), facts.product_name),
        (
            t("period"),
            t("period_value", start=t.date(facts.effective_date), end=t.date(facts.expiry_date)),
        ),
    ]
    if facts.terminated_from is not None:
        rows.append((t("terminated_from"), t.date(facts.terminated_from)))
    rows += [
        (t("sum_insured"), t.money(facts.sum_insured)),
        (t("payment_frequency"), t.enum(facts.payment_frequency)),
    ]
    story.append(_pairs(rows))

    story.append(_p(t("insured_members"), _HEADING))
    story.append(
        _grid(
            [t("name"), t("relation"), t("date_of_birth")],
            [(m.name, t.enum(m.relation), t.date(m.date_of_birth)) for m in facts.insured_members],
            [3, 2, 2],
            set(),
        )
    )

    story.append(_p(t("coverages"), _HEADING))
    coverage_rows = []
    for c in facts.coverages:
        shares = []
        if c.copay is not None and c.copay:
            shares.append(t.money(c.copay))
        if c.coinsurance_basis_points:
            shares.append(_basis_points(c.coinsurance_basis_points, t.locale))
        coverage_rows.append(
            (
                f"{c.name} ({c.code})",
                t.money(c.limit),
                t.enum(c.limit_period),
                t.money(c.deductible),
                ", ".join(shares) or t("none"),
                t("days", n=c.waiting_period_days) if c.waiting_period_days else t("none"),
            )
        )
    story.append(
        _grid(
            [
                t("coverage"),
                t("limit"),
                t("limit_period"),
                t("deductible"),
                t("cost_share"),
                t("waiting_period"),
            ],
            coverage_rows,
            [3, 1.8, 2.2, 1.6, 1.8, 1.3],
            {1, 3},
        )
    )

    story.append(_p(t("premium"), _HEADING))
    lines = [
        (t.enum(line.code), line.description, t.money(line.amount)) for line in facts.premium_lines
    ]
    lines += [
        (t("net_premium"), "", t.money(facts.net_premium)),
        (t("tax"), "", t.money(facts.tax)),
        (t("fee"), "", t.money(facts.fee)),
        (t("total"), "", t.money(facts.total)),
    ]
    story.append(_grid([t("premium"), "", t("amount")], lines, [2.5, 4, 1.6], {2}))

    if facts.transactions:
        story.append(_p(t("transactions"), _HEADING))
        story.append(
            _grid(
                [
                    "#",
                    t("transaction"),
                    t("period_short"),
                    t("net_premium"),
                    t("tax_short"),
                    t("fee_short"),
                    t("amount"),
                ],
                [
                    (
                        str(x.sequence),
                        t.enum(x.kind),
                        t("period_value", start=t.date(x.effective_date), end=t.date(x.end_date)),
                        t.money(x.premium),
                        t.money(x.tax),
                        t.money(x.fee),
                        t.money(x.amount),
                    )
                    for x in facts.transactions
                ],
                [0.4, 1.5, 3, 1.5, 1.4, 1.4, 1.5],
                {3, 4, 5, 6},
            )
        )
        story.append(Spacer(1, 2 * mm))
        story.append(_pairs([(t("written_premium"), t.money(facts.written_premium))]))
    return story


def _decision(facts: ClaimDecisionFacts, t: _Text) -> list[Flowable]:
    story = _header(t, facts.company_name, facts.KIND)
    story.append(
        _pairs(
            [
                (t("claim_number"), facts.claim_number),
                (t("policy_number"), facts.policy_number),
                (t("claimant"), facts.claimant_name),
                (t("coverage"), facts.coverage_name),
                (t("incident_date"), t.date(facts.incident_date)),
                (t("decision"), t.enum(facts.decision)),
                (t("decision_date"), t.date(facts.decision_date)),
            ]
        )
    )
    story.append(_p(t("benefit"), _HEADING))
    rows = [
        (t("claimed"), t.money(facts.claimed)),
        (t("deductible"), t.money(-facts.deductible)),
        (t("copay"), t.money(-facts.copay)),
        (t("coinsurance"), t.money(-facts.coinsurance)),
        (t("limit_cut"), t.money(-facts.limit_cut)),
        (t("payable"), t.money(facts.payable)),
        (t("approved"), t.money(facts.approved)),
    ]
    story.append(_grid([t("benefit"), t("amount")], rows, [4, 2], {1}))
    if facts.reason:
        story.append(_p(t("reason"), _HEADING))
        story.append(_p(facts.reason, _BASE))
    return story


def _invoice(facts: InvoiceFacts, t: _Text) -> list[Flowable]:
    story = _header(t, facts.company_name, facts.KIND)
    rows = [
        (t("invoice_number"), facts.invoice_number),
        (t("issue_date"), t.date(facts.issue_date)),
        (t("due_date"), t.date(facts.due_date)),
        (t("policy_number"), facts.policy_number),
        (t("payer"), "\n".join((facts.payer_name, *facts.payer_address))),
    ]
    if facts.period_start is not None and facts.period_end is not None:
        rows.append(
            (
                t("invoice_period"),
                t("period_value", start=t.date(facts.period_start), end=t.date(facts.period_end)),
            )
        )
    rows.append((t("amount_due"), t.money(facts.amount)))
    story.append(_pairs(rows))
    return story


def render(facts: Facts, locale: str) -> bytes:
    """The document as PDF bytes in ``locale`` (``en`` or ``de``; anything else
    renders ``en``). The same facts and locale give the same bytes."""
    t = _Text(locale, facts.currency)
    if isinstance(facts, PolicyScheduleFacts):
        story = _schedule(facts, t)
        number = facts.policy_number
    elif isinstance(facts, ClaimDecisionFacts):
        story = _decision(facts, t)
        number = facts.claim_number
    else:
        story = _invoice(facts, t)
        number = facts.invoice_number
    buffer = io.BytesIO()
    footer = t("page_footer", company=facts.company_name)

    def _page(canvas: Any, document: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7.5)
        canvas.drawString(20 * mm, 12 * mm, footer)
        canvas.drawRightString(A4[0] - 20 * mm, 12 * mm, f"{number} · {canvas.getPageNumber()}")
        canvas.restoreState()

    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=20 * mm,
        title=f"{t(facts.KIND.value)} {number}",
        author=facts.company_name,
        creator="Cardinsa",
        producer="Cardinsa",
        subject=number,
        invariant=1,
    )
    document.build(story, onFirstPage=_page, onLaterPages=_page)
    return buffer.getvalue()
