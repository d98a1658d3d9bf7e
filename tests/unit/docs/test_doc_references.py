"""Every document the project refers to is in the repository.

Comments, docstrings and strings of the Python code, the protos, the
configuration and the Markdown documents name documents (``docs/rating.md``,
"see runbook.md", a Markdown link): each must resolve to a file of the
repository, relative to the referring file, to the repository root or to
``docs/``. A reference to a document that is not there fails here.
"""

from __future__ import annotations

import io
import os
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOCS = REPO / "docs"
SKIPPED = {".git", ".venv", "gen", ".data", ".cache", "third_party", "node_modules", "__pycache__"}
SUFFIXES = {".py", ".md", ".proto", ".toml", ".yaml", ".yml", ".env", ".cfg", ".ini"}
EXTRA = {"Makefile"}

#: A document path: optional folders, a name, ``.md``; not part of a longer word
#: (``tenant.md()`` in code is not a reference: only Python's strings and comments
#: are read), nor a URL's path.
REFERENCE = re.compile(r"(?<![\w./:-])((?:\.{1,2}/)*(?:[\w-]+/)*[\w-]+\.md)(?![\w(])")


def scanned_files() -> list[Path]:
    found = []
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [d for d in subfolders if d not in SKIPPED and not d.startswith("gen.")]
        for name in files:
            path = Path(folder) / name
            if path == Path(__file__).resolve():  # its examples are not references
                continue
            if path.suffix in SUFFIXES or name in EXTRA:
                found.append(path)
    return sorted(found)


def prose(path: Path) -> str:
    """What of the file may refer to a document: all of it, but only the comments
    and strings of Python."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix != ".py":
        return text
    parts = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            kind = tokenize.tok_name.get(token.type, "")
            if kind in {"COMMENT", "STRING"} or kind.startswith("FSTRING"):
                parts.append(token.string)
    except (tokenize.TokenError, SyntaxError):
        return text
    return "\n".join(parts)


def references(text: str) -> set[str]:
    # Markdown links and bare names alike; a URL's own path is not ours.
    without_urls = re.sub(r"\bhttps?://\S+", " ", text)
    return set(REFERENCE.findall(without_urls))


def resolves(reference: str, source: Path) -> bool:
    return any(
        (base / reference).resolve().is_file() for base in (source.parent, REPO, DOCS)
    ) and all(
        REPO in (base / reference).resolve().parents
        for base in (source.parent, REPO, DOCS)
        if (base / reference).resolve().is_file()
    )


def missing_references() -> list[str]:
    out = []
    for path in scanned_files():
        for reference in sorted(references(prose(path))):
            if not resolves(reference, path):
                out.append(f"{path.relative_to(REPO)}: {reference}")
    return out


def test_every_referenced_document_exists() -> None:
    assert missing_references() == []


def test_the_architecture_document_is_there_and_read() -> None:
    assert (DOCS / "architecture.md").is_file()
    readme = (REPO / "README.md").read_text()
    assert "docs/architecture.md" in readme


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see ARCHITECTURE.md, 'Authentication'", {"ARCHITECTURE.md"}),
        ("[rating](rating.md) and docs/missing-guide.md.", {"rating.md", "docs/missing-guide.md"}),
        ("(../docs/runbook.md#logs)", {"../docs/runbook.md"}),
        ("https://example.com/guide.md and tenant.md()", set()),
    ],
)
def test_references_are_found(text: str, expected: set[str]) -> None:
    assert references(text) == expected


def test_a_missing_document_fails(tmp_path: Path) -> None:
    source = REPO / "shared" / "cardinsa_foundation" / "auth.py"
    assert not resolves("ARCHITECTURE.md", source)
    assert not resolves("docs/no-such-guide.md", source)
    assert resolves("docs/runbook.md", source)
    assert resolves("runbook.md", source)  # in docs/
    assert resolves("rating.md", DOCS / "underwriting.md")
    # Python code that is not prose (an attribute called md) is not a reference.
    code = tmp_path / "example.py"
    code.write_text('value = tenant.md\n# see rating.md\n"and ARCHITECTURE.md"\n')
    assert references(prose(code)) == {"rating.md", "ARCHITECTURE.md"}
