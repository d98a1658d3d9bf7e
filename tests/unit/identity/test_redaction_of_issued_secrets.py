"""Log redaction against the secrets identity really issues.

Every generator of a secret in the project is called here (API keys, refresh and
password-reset tokens, access tokens, bootstrap passwords, the settings secrets'
recipe) and each value is placed in the ways a log line can carry it: free text,
key=value, JSON, proto text, a Python repr, a URL query, a structured ``extra``
field and an exception. The log output must not contain the value.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from cardinsa_foundation.context import PrincipalKind
from cardinsa_foundation.logging import REDACTED, configure_logging, redact, redact_text
from cardinsa_identity.application.bootstrap import generate_password
from cardinsa_identity.domain.api_keys import new_api_key
from cardinsa_identity.domain.signing_keys import generate_signing_key
from cardinsa_identity.domain.tokens import (
    OpaqueTokenKind,
    build_access_claims,
    new_opaque_token,
    sign_access_token,
)

# Secrets that look like nothing in particular (passwords) are masked only by the
# name they stand under; self-describing ones (cdk_/cdr_/cdp_, JWTs) wherever they are.
SELF_DESCRIBING = ("api_key", "refresh_token", "reset_token", "access_token")


def issued_secrets() -> dict[str, str]:
    """A fresh value of every kind of secret the project issues, from the real code."""
    key = generate_signing_key()
    claims = build_access_claims(
        issuer="cardinsa-identity",
        audience="cardinsa",
        subject="8d0c1c2e-0000-4000-8000-000000000001",
        kind=PrincipalKind.USER,
        company_id="8d0c1c2e-0000-4000-8000-000000000002",
        roles=["company_admin"],
        permissions=["users.get", "users.update"],
        ttl=timedelta(minutes=15),
        session_id="8d0c1c2e-0000-4000-8000-000000000003",
    )
    service_claims = build_access_claims(
        issuer="cardinsa-identity",
        audience="cardinsa",
        subject="8d0c1c2e-0000-4000-8000-000000000004",
        kind=PrincipalKind.SERVICE_ACCOUNT,
        company_id=None,
        roles=[],
        permissions=["companies.get_status"],
        ttl=timedelta(minutes=15),
    )
    return {
        "api_key": new_api_key().full_key,
        "refresh_token": new_opaque_token(OpaqueTokenKind.REFRESH).token,
        "reset_token": new_opaque_token(OpaqueTokenKind.PASSWORD_RESET).token,
        "access_token": sign_access_token(claims, key),
        "service_access_token": sign_access_token(service_claims, key),
        "bootstrap_password": generate_password(),
        # The recipe the docs give for the settings secrets.
        "settings_secret": secrets.token_urlsafe(32),
    }


def placements(name: str, value: str) -> dict[str, str]:
    """The ways a log line can carry ``value`` of kind ``name``."""
    field = {
        "api_key": "api_key",
        "refresh_token": "refresh_token",
        "reset_token": "token",
        "access_token": "access_token",
        "service_access_token": "authorization",
        "bootstrap_password": "password",
        "settings_secret": "signing_key_encryption_key",
    }[name]
    texts = {
        "key=value": f"{field}={value} from 10.0.0.1",
        "json": json.dumps({"email": "a@b.c", field: value, "n": 1}),
        "escaped json": json.dumps(json.dumps({field: value})),
        "proto text": f'request: email: "a@b.c" {field}: "{value}"',
        "repr": repr({"user": "u1", field: value}),
        "env": f"CARDINSA_{field.upper()}={value}",
        "header": f"metadata (('x-request-id', 'r1'), ('{field}', '{value}'))",
    }
    if name == "bootstrap_password":
        texts["new password"] = f'{{"current_password": "x", "new_password": "{value}"}}'
    if name in SELF_DESCRIBING or name == "service_access_token":
        # Self-describing secrets are masked with no name in front of them.
        texts["free text"] = f"presented {value} and failed"
        texts["after a colon"] = f"bad credential:{value}"
        texts["url query"] = f"GET /v1/auth/reset?t={value}&x=1"
        texts["bearer"] = f"authorization: Bearer {value}"
        texts["quoted"] = f"'{value}'"
        texts["end of line"] = f"value {value}"
    return texts


CASES = [
    (name, where) for name, value in issued_secrets().items() for where in placements(name, value)
]


@pytest.fixture
def capture() -> Iterator[Callable[..., io.StringIO]]:
    root = logging.getLogger()
    saved_level = root.level
    saved_handlers = list(root.handlers)

    def configure(*, json_lines: bool = True) -> io.StringIO:
        buffer = io.StringIO()
        configure_logging("DEBUG", json_lines, "test-svc", stream=buffer)
        return buffer

    yield configure
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)
    logging.captureWarnings(False)


@pytest.mark.parametrize(("name", "where"), CASES, ids=[f"{n}-{w}" for n, w in CASES])
def test_issued_secret_is_masked_in_text(name: str, where: str) -> None:
    # A fresh value per run (the ids above come from another draw): nothing is fitted
    # to one sample.
    for _ in range(20):
        value = issued_secrets()[name]
        text = placements(name, value)[where]
        out = redact_text(text)
        assert value not in out, out
        assert REDACTED in out
        # Not even a recognisable part of it stays (all but the kind prefix).
        assert value[-12:] not in out, out


@pytest.mark.parametrize("json_lines", [True, False], ids=["json", "text"])
def test_issued_secrets_never_reach_a_log_line(
    capture: Callable[..., io.StringIO], json_lines: bool
) -> None:
    issued = issued_secrets()
    out = capture(json_lines=json_lines)
    log = logging.getLogger("cardinsa.test")
    for name, value in issued.items():
        for text in placements(name, value).values():
            log.info(text)
            log.info("got %s", text)
            log.info("m", extra={"detail": text, name: value, "nested": {"list": [text]}})
            try:
                raise ValueError(text)
            except ValueError:
                log.exception("failed")
    output = out.getvalue()
    for name, value in issued.items():
        assert value not in output, name
    assert REDACTED in output


def test_api_key_in_a_structure_under_a_harmless_key_is_masked() -> None:
    key = new_api_key().full_key
    refresh = new_opaque_token(OpaqueTokenKind.REFRESH).token
    cleaned = redact({"key": key, "items": [refresh, ("x", key)], "n": 3})
    assert cleaned == {"key": REDACTED, "items": [REDACTED, ("x", REDACTED)], "n": 3}


def test_look_alikes_of_our_prefixes_are_left_alone() -> None:
    for text in (
        "abcdk_something_long_enough here",  # inside a word
        "cdk_ short",  # too short to be a secret
        "module cardinsa_foundation.interceptors.authentication loaded",
        "policy 8d0c1c2e-0000-4000-8000-00000000cdcd moved to IN_FORCE",
        "/cardinsa.identity.v1.AccessService/CreateApiKey OK in 3.2 ms",
        "api key prefix k3x9q0a1bc exchanged",
    ):
        assert redact_text(text) == text
