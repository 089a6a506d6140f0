"""Strict skips: with NNEXP_STRICT_SKIPS=1 (set by `bash scripts/quickstart.sh
test`, which CI runs), a test that skips for a reason not listed in
tests/expected_skips.txt fails: a missing tool or a failed install must not
pass as green. conftest.py holds the hooks; tests call ``require``."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import pytest

EXPECTED_SKIPS = Path(__file__).with_name("expected_skips.txt")


def strict_skips() -> bool:
    return os.environ.get("NNEXP_STRICT_SKIPS", "") not in ("", "0")


def require(module: str, missing: str):
    """``module`` imported; else the test skips saying ``missing`` (how to get
    it), or fails at once under NNEXP_STRICT_SKIPS."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    if strict_skips():
        pytest.fail(f"{missing} (NNEXP_STRICT_SKIPS is on: this test must run)", pytrace=False)
    pytest.skip(missing)


def read_expected_skips(path: Path = EXPECTED_SKIPS) -> list[tuple[str, re.Pattern]]:
    """(test id pattern, reason regex) per line 'TEST ID | REASON'; '#' starts a comment line."""
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        test_id, sep, reason = (part.strip() for part in line.partition(" | "))
        if not sep or not test_id or not reason:
            raise pytest.UsageError(f"{path}:{number}: expected 'TEST ID | REASON REGEX', got {line!r}")
        entries.append((test_id, re.compile(reason)))
    return entries


def skip_is_expected(nodeid: str, reason: str, entries) -> bool:
    """A test id pattern is the id itself, or a prefix of it when it ends with '*'."""
    for pattern, wanted in entries:
        same = nodeid.startswith(pattern[:-1]) if pattern.endswith("*") else nodeid == pattern
        if same and wanted.search(reason):
            return True
    return False


def skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)
