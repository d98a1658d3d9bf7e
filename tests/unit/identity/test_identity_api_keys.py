"""API keys: format, hashing, parsing of well- and malformed input."""

from __future__ import annotations

import hashlib
import re

import pytest

from cardinsa_identity.domain.api_keys import (
    PREFIX_LENGTH,
    NewApiKey,
    ParsedApiKey,
    hash_api_key_secret,
    new_api_key,
    parse_api_key,
    verify_api_key_secret,
)

SECRET_43 = "A" * 20 + "_-" + "z9" * 10 + "Q"  # 43 url-safe characters, with '_' and '-'


def test_new_key_format() -> None:
    issued = new_api_key()
    assert isinstance(issued, NewApiKey)
    full_key, prefix, secret_hash = issued
    assert re.fullmatch(rf"[a-z0-9]{{{PREFIX_LENGTH}}}", prefix)
    assert 8 <= PREFIX_LENGTH <= 12
    assert full_key.startswith(f"cdk_{prefix}_")
    secret = full_key[len(f"cdk_{prefix}_") :]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)  # 256 random bits
    assert secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in secret_hash and full_key not in secret_hash


def test_new_keys_are_unique() -> None:
    keys = [new_api_key() for _ in range(1000)]
    assert len({k.full_key for k in keys}) == 1000
    assert len({k.prefix for k in keys}) == 1000


def test_parse_round_trip() -> None:
    full_key, prefix, secret_hash = new_api_key()
    secret = full_key[len(f"cdk_{prefix}_") :]
    parsed = parse_api_key(full_key)
    assert parsed == ParsedApiKey(prefix, secret)
    assert verify_api_key_secret(parsed.secret, secret_hash)


def test_secret_may_contain_separators() -> None:
    parsed = parse_api_key(f"cdk_abcdef1234_{SECRET_43}")
    assert parsed == ParsedApiKey("abcdef1234", SECRET_43)


@pytest.mark.parametrize("prefix", ["abcdefgh", "abcdefghijkl"])
def test_prefix_lengths_8_to_12_parse(prefix: str) -> None:
    assert parse_api_key(f"cdk_{prefix}_{SECRET_43}") == ParsedApiKey(prefix, SECRET_43)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "cdk",
        "cdk_",
        "cdk__",
        "cdk_abcdef1234",
        "cdk_abcdef1234_",
        f"cdk__{SECRET_43}",
        f"cdk_abcdefg_{SECRET_43}",  # prefix too short
        f"cdk_abcdefghijklm_{SECRET_43}",  # prefix too long
        f"cdk_ABCDEF1234_{SECRET_43}",  # upper-case prefix
        f"cdk_abc-ef1234_{SECRET_43}",
        f"cdk_abcdef1234_{SECRET_43[:-1]}",  # secret too short
        f"cdk_abcdef1234_{SECRET_43}A",  # secret too long
        f"cdk_abcdef1234_{SECRET_43[:-1]}=",
        f"cdk_abcdef1234_{SECRET_43[:-1]}+",
        f"cdk_abcdef1234_{SECRET_43}\n",
        f" cdk_abcdef1234_{SECRET_43}",
        f"CDK_abcdef1234_{SECRET_43}",
        f"cdr_abcdef1234_{SECRET_43}",  # a refresh-token marker
        f"cdkabcdef1234_{SECRET_43}",
        f"cdk-abcdef1234-{SECRET_43}",
        f"cdk_abcdef1234_{SECRET_43[:-1]}é",
        "Bearer cdk_abcdef1234_" + SECRET_43,
        "cdk_abcdef1234_" + "a" * 100_000,
    ],
)
def test_malformed_keys_do_not_parse(key: str) -> None:
    assert parse_api_key(key) is None


def test_verification_is_exact() -> None:
    secret = SECRET_43
    stored = hash_api_key_secret(secret)
    assert verify_api_key_secret(secret, stored)
    assert verify_api_key_secret(secret, stored.upper())
    assert not verify_api_key_secret(secret[:-1] + "R", stored)
    assert not verify_api_key_secret(secret, "")
    assert not verify_api_key_secret(secret, "0" * 64)
    assert not verify_api_key_secret(secret, "ü" * 64)
