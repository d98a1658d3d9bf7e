"""Field rules more than one service applies: phone numbers and UI locales.

Each service decides which fields it has and what an empty value means; the
forms themselves (what a phone number looks like once the separators people
type are gone, what a BCP 47 UI locale is and how its subtags are written) are
the same everywhere and live here once.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MAX_LOCALE_LENGTH", "is_locale_tag", "normalize_locale", "normalize_phone"]

#: Separators people type in phone numbers; everything else is kept (and refused).
_PHONE_SEPARATORS: Final = re.compile(r"[\s\-.()/]")

MAX_LOCALE_LENGTH: Final = 35
# language[-script][-region](-variant)*: the BCP 47 subset used for UI locales.
# Languages are ISO 639 codes (2-3 letters; BCP 47's registered 5-8 letter
# language subtags are not in use); extensions and private use are refused.
_LOCALE: Final = re.compile(
    r"^(?P<language>[a-z]{2,3})"
    r"(?:-(?P<script>[a-z]{4}))?"
    r"(?:-(?P<region>[a-z]{2}|[0-9]{3}))?"
    r"(?P<variants>(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*)$"
)


def normalize_phone(raw: str) -> str:
    """Trimmed, with spaces, dashes, dots, slashes and parentheses removed, and a
    leading ``00`` turned into ``+``. Never fails: the caller checks the result
    (E.164)."""
    phone = _PHONE_SEPARATORS.sub("", raw.strip())
    return "+" + phone[2:] if phone.startswith("00") else phone


def normalize_locale(raw: str) -> str:
    """Trimmed, ``_`` → ``-``, and the conventional case of each subtag
    (``en_us`` → ``en-US``, ``zh-hant-tw`` → ``zh-Hant-TW``); unchanged structure
    otherwise, and an empty or overlong value as it is (for the check to refuse)."""
    tag = raw.strip().replace("_", "-")
    if not tag or len(tag) > MAX_LOCALE_LENGTH:
        return tag
    parts = tag.split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            out.append(part.title())
        elif len(part) == 2 and part.isalpha():
            out.append(part.upper())
        else:
            out.append(part.lower())
    return "-".join(out)


def is_locale_tag(tag: str) -> bool:
    """Whether ``tag`` is a BCP 47 language tag of the UI subset (language,
    optional script, region and variants), in any case."""
    return len(tag) <= MAX_LOCALE_LENGTH and _LOCALE.fullmatch(tag.lower()) is not None
