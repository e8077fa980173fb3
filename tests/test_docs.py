"""The fidelity ledger (docs/FIDELITY.md) names tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `test_x.py::test_name`, `::test_name` (same file as the last one named) or `test_x.py`.
REFERENCE = re.compile(r"`(test_\w+\.py)?(?:::(test_\w+))?`")


def ledger_references() -> list[tuple[str, str | None]]:
    """Every (test file, test name or None) the ledger's test column cites."""
    found = []
    for line in (ROOT / "docs" / "FIDELITY.md").read_text().splitlines():
        if not line.startswith("|") or line.startswith("|---"):
            continue
        test_column = line.rstrip("|").rsplit("|", 1)[-1]
        current = None
        for match in REFERENCE.finditer(test_column):
            file, name = match.groups()
            current = file or current
            if current is not None and (file or name):
                found.append((current, name))
    return found


def test_every_rule_row_cites_a_test():
    rows = [line for line in (ROOT / "docs" / "FIDELITY.md").read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| rule ")]
    assert rows
    for row in rows:
        assert REFERENCE.search(row.rstrip("|").rsplit("|", 1)[-1]), row


def test_every_cited_test_exists():
    references = ledger_references()
    assert len(references) > 40
    for file, name in references:
        source = (ROOT / "tests" / file).read_text()
        if name is not None:
            assert re.search(rf"^def {name}\(", source, re.M), f"{file}::{name} not found"
