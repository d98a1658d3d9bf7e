"""What the attack suite tried and whether it held, collected for the end-of-run table.

Every attack test wraps its assertions in :meth:`AttackLog.attempt`; the outcome
(held, or not and why) lands in the session-wide :data:`ATTACKS`, and the
``pytest_terminal_summary`` hook of this directory's conftest prints it as one
table. Rows with the same attack name (one per service it was tried against)
are merged: "tried" lists every target, "held" is yes only if all held.

Gateway-level attacks (REST bodies, deep JSON: test_attack_rest.py) record here the
same way: a test under ``tests/integration/hostile/`` uses the ``attacks``
fixture (see conftest.py) and its rows appear in the same table.

:data:`HOSTILE_INPUT` counts the answers of the property-based suite per
service and status code, printed under the table.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class AttackRow:
    attack: str
    tried: list[str] = field(default_factory=list)
    outcomes: list[bool] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return bool(self.outcomes) and all(self.outcomes)


def _short(text: str, limit: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Attempt:
    """Handed to the block of :meth:`AttackLog.attempt`."""

    known_bugs: set[str] = field(default_factory=set)

    def tolerate(self, bug: str) -> None:
        """The block met a known bug (reproduced by a strict xfail) and went on."""
        self.known_bugs.add(bug)


class AttackLog:
    def __init__(self) -> None:
        self.rows: dict[str, AttackRow] = {}

    def record(self, attack: str, tried: str, held: bool, note: str = "") -> None:
        row = self.rows.setdefault(attack, AttackRow(attack))
        if tried not in row.tried:
            row.tried.append(tried)
        row.outcomes.append(held)
        if note:
            row.notes.append(_short(note))

    @contextlib.contextmanager
    def attempt(self, attack: str, tried: str, *, known_bug: str = "") -> Iterator[Attempt]:
        """Record ``attack`` as held when the block finishes, as not held when it
        raises -- or when the block noted a known bug it tolerated."""
        attempt = Attempt()
        try:
            yield attempt
        except BaseException as error:
            note = f"known bug: {known_bug}" if known_bug else f"{type(error).__name__}: {error}"
            self.record(attack, tried, False, note)
            raise
        if attempt.known_bugs:
            self.record(attack, tried, False, "known bug: " + "; ".join(sorted(attempt.known_bugs)))
        else:
            self.record(attack, tried, True)

    def table(self) -> list[str]:
        if not self.rows:
            return []
        rows = [
            (
                row.attack,
                "; ".join(row.tried),
                "yes" if row.held else "NO",
                row.notes[0] if row.notes and not row.held else "",
            )
            for row in self.rows.values()
        ]
        widths = [
            min(max(len(r[i]) for r in [("attack", "tried", "held", "why not"), *rows]), cap)
            for i, cap in enumerate((72, 72, 4, 110))
        ]

        def line(cells: tuple[str, str, str, str]) -> str:
            joined = " | ".join(_short(c, w).ljust(w) for c, w in zip(cells, widths, strict=True))
            return joined.rstrip()

        out = [line(("attack", "tried", "held", "why not"))]
        out.append("-+-".join("-" * w for w in widths))
        out += [line(r) for r in rows]
        held = sum(1 for row in self.rows.values() if row.held)
        out.append(f"{held} of {len(self.rows)} attacks held")
        return out


@dataclass
class HostileInputStats:
    """Answers of the property-based suite: (target, method) → codes seen."""

    codes: dict[str, Counter[str]] = field(default_factory=dict)
    known_bugs: Counter[str] = field(default_factory=Counter)

    def add(self, target: str, method: str, code: str) -> None:
        self.codes.setdefault(target, Counter())[code] += 1
        self.codes.setdefault(f"{target}:{method}", Counter())[code] += 1

    def summary(self, per_method: bool = False) -> list[str]:
        lines: list[str] = []
        for key, counter in sorted(self.codes.items()):
            if ":" in key:
                if per_method:
                    codes = ", ".join(f"{code} {n}" for code, n in counter.most_common())
                    lines.append(f"  {key}: {codes}")
                continue
            methods = sum(1 for k in self.codes if k.startswith(key + ":"))
            total = sum(counter.values())
            codes = ", ".join(f"{code} {n}" for code, n in counter.most_common())
            lines.append(f"{key}: {total} calls over {methods} method/caller pairs -> {codes}")
        for bug, hits in self.known_bugs.most_common():
            lines.append(
                f"known bug met {hits} times (tolerated, reproduced by a strict xfail): {bug}"
            )
        return lines


ATTACKS = AttackLog()
HOSTILE_INPUT = HostileInputStats()
