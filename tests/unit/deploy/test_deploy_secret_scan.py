"""No secret-looking value anywhere in deploy/ (or in the runbook).

Allowed are references (secretKeyRef, ${VAR}), obvious placeholders (<...>,
CHANGE-ME, REPLACE) and the public development values, which must say so:
``dev-only-...-not-secret``, in files whose name ends with ``.dev.env`` or that
live in the dev overlay. The scanner is tested on samples of what it must catch.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import pytest
from deploy_support import DEPLOY, REPO

SCANNED = [
    *(p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts),
    REPO / "docs" / "runbook.md",
]

PLACEHOLDER = re.compile(
    r"^(<[^>]*>|\$\{?[A-Z_][A-Z0-9_]*\}?|CHANGE-?ME.*|REPLACE.*|\*+|\.\.\.|x+|)$", re.I
)
DEV_VALUE = re.compile(r"dev-only-[a-z0-9-]*not-secret")

# Things that are secrets whatever they are called.
ALWAYS = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "private key"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "AWS access key id"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"), "GitHub token"),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), "Slack token"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), "JWT"),
    (re.compile(r"\bcardinsa_[A-Za-z0-9_-]{16,}"), "Cardinsa API key"),
]
# name = value / name: value where the name says secret.
ASSIGNMENT = re.compile(
    r"""(?P<name>[A-Za-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|private[_-]?key|
    encryption[_-]?key|credential)[A-Za-z0-9_.-]*)["']?\s*[:=]\s*["']?(?P<value>[^\s"'#,}]+)""",
    re.I | re.X,
)
# Settings about secrets that are not secrets: lifetimes, delays, sizes.
NOT_SECRET_NAME = re.compile(r"(_S|_MS|TTL|_DELAY|LENGTH|_SIZE)$", re.I)
URL_PASSWORD = re.compile(r"://[^:/@\s]+:(?P<value>[^@/\s]+)@")
LONG_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{32,}={0,2}")
LONG_HEX = re.compile(r"\b[0-9a-fA-F]{32,}\b")


def entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def dev_file(path: Path) -> bool:
    return path.name.endswith(".dev.env") or "dev" in path.relative_to(REPO).parts


def acceptable(value: str, path: Path) -> bool:
    value = value.strip().rstrip(";").strip("\"'`").lstrip("?:")
    if PLACEHOLDER.match(value):
        return True
    if DEV_VALUE.search(value):
        return dev_file(path) or path.name in ("runbook.md", "cardinsa.dev.env")
    # Values that name where the secret comes from (an env variable, a psql variable,
    # a Secret key), not the secret itself.
    if re.fullmatch(r"[A-Z][A-Z0-9_]*|true|false", value):
        return True
    return bool(
        re.fullmatch(r"[a-z][a-z0-9_]*", value) and re.search(r"password|secret|token|key", value)
    )


def scan(text: str, path: Path) -> list[str]:
    problems = []
    markdown = path.suffix == ".md"
    in_code = False
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{path.relative_to(REPO)}:{number}"
        for pattern, what in ALWAYS:
            if pattern.search(line):
                problems.append(f"{where}: {what}")
        if line.lstrip().startswith("```"):
            in_code = not in_code
        # Assignments are looked for in code and configuration, not in prose or comments.
        prose = (markdown and not in_code) or line.lstrip().startswith("#")
        for match in [] if prose else ASSIGNMENT.finditer(line):
            if NOT_SECRET_NAME.search(match["name"]):
                continue
            if not acceptable(match["value"], path):
                problems.append(f"{where}: {match['name']} has a literal value")
        for match in URL_PASSWORD.finditer(line):
            if not acceptable(match["value"], path):
                problems.append(f"{where}: password in a URL")
        for match in LONG_TOKEN.finditer(line):
            token = match.group()
            mixed = re.search(r"[a-z]", token) and re.search(r"[A-Z]", token)
            if mixed and re.search(r"[0-9]", token) and entropy(token) > 4.3:
                problems.append(f"{where}: high-entropy string {token[:6]}…")
        for match in LONG_HEX.finditer(line):
            problems.append(f"{where}: long hex string {match.group()[:6]}…")
    return problems


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: str(p.relative_to(REPO)))
def test_no_secret_in_deploy(path: Path) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        pytest.fail(f"{path}: binary files do not belong in deploy/")
    assert scan(text, path) == []


@pytest.mark.parametrize(
    "line",
    [
        "CARDINSA_PAGE_TOKEN_SECRET=9f8e7d6c5b4a39281706f5e4d3c2b1a0",
        "password: hunter2hunter2",
        "CARDINSA_DATABASE_URL=postgresql://app:Tr0ub4dor&3@db:5432/cardinsa",
        '"signing_key_encryption_key": "k3y-that-is-real"',
        "token = eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "key: AKIAIOSFODNN7EXAMPLE",
        "data: {x: Zm9vYmFyYmF6cXV4UXVVeDEyMzQ1Njc4OTBhYmNkZWZnaGlqa2xtbm9w}",
        "CARDINSA_GATEWAY_SECRET=dev-only-gateway-secret-not-secret",  # outside a dev file
    ],
)
def test_the_scanner_catches(line: str) -> None:
    assert scan(line, DEPLOY / "k8s" / "base" / "sample.yaml")


@pytest.mark.parametrize(
    "line",
    [
        "CARDINSA_GATEWAY_SECRET=dev-only-gateway-secret-not-secret",
        "            - name: CARDINSA_PAGE_TOKEN_SECRET",
        "                  key: CARDINSA_PAGE_TOKEN_SECRET",
        "CARDINSA_DATABASE_URL=postgresql://cardinsa_app:<password>@db.internal:5432/cardinsa",
        "password: ${POSTGRES_PASSWORD}",
        "image: registry.example.com/cardinsa/cardinsa:0.1.0",
    ],
)
def test_the_scanner_lets_references_and_dev_placeholders_through(line: str) -> None:
    assert scan(line, DEPLOY / "k8s" / "overlays" / "dev" / "secrets.dev.env") == []
