"""docs/reliability.md stays true: every test it names exists, and every test of the fault
files has a row."""

from __future__ import annotations

import re

from src.paths import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "reliability.md"
FAULT_FILES = ("test_trust.py", "test_trust_fuzz.py", "test_resume.py", "test_dataset_faults.py")


def named_tests() -> set[tuple[str, str]]:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| ")]
    return {
        (path, name)
        for row in rows
        for path, name in re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", row.split("|")[-2])
    }


def test_every_named_test_exists():
    named = named_tests()
    assert len(named) > 20
    for path, name in named:
        source = (PROJECT_ROOT / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name} named in {DOC.name}"


def test_every_fault_test_has_a_row():
    named = named_tests()
    for file in FAULT_FILES:
        source = (PROJECT_ROOT / "tests" / file).read_text()
        for name in re.findall(r"^def (test_\w+)\(", source, re.M):
            assert (f"tests/{file}", name) in named, f"tests/{file}::{name} has no row"
