"""The field forms services share: phone numbers and UI locale tags."""

from __future__ import annotations

import pytest

from cardinsa_foundation.fields import (
    MAX_LOCALE_LENGTH,
    is_locale_tag,
    normalize_locale,
    normalize_phone,
)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        (" +49 (151) 123-456.78 ", "+4915112345678"),
        ("0049/151 1234", "+491511234"),
        ("", ""),
        ("+49 abc", "+49abc"),  # kept, for the caller's check to refuse
    ],
)
def test_normalize_phone(raw: str, normalized: str) -> None:
    assert normalize_phone(raw) == normalized


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("en_us", "en-US"),
        (" zh-hant-tw ", "zh-Hant-TW"),
        ("DE", "de"),
        ("es-419", "es-419"),
        ("", ""),
        ("x" * (MAX_LOCALE_LENGTH + 1), "x" * (MAX_LOCALE_LENGTH + 1)),
    ],
)
def test_normalize_locale(raw: str, normalized: str) -> None:
    assert normalize_locale(raw) == normalized


@pytest.mark.parametrize("tag", ["en", "en-US", "pt-BR", "zh-Hant-TW", "es-419", "de-DE-1996"])
def test_locale_tags(tag: str) -> None:
    assert is_locale_tag(tag)
    assert is_locale_tag(tag.lower())


@pytest.mark.parametrize(
    "tag", ["", "e", "english", "en-", "en-US-x-private", "en_US", "de-" + "a" * 40]
)
def test_not_locale_tags(tag: str) -> None:
    assert not is_locale_tag(tag)
