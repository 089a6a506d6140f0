"""The strict skip check (strict_skips.py, conftest.py): under
NNEXP_STRICT_SKIPS=1 only the skips listed in expected_skips.txt pass."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from strict_skips import EXPECTED_SKIPS, read_expected_skips, skip_is_expected

HERE = Path(__file__).parent

SAMPLE = '''
import pytest
from strict_skips import require

@pytest.mark.skipif(True, reason="root ignores file permissions here")
def test_listed():
    pass

@pytest.fixture
def tmpfs():
    pytest.skip("no tmpfs")

def test_listed_with_another_reason(tmpfs):
    pass

@pytest.mark.parametrize("n", [1, 2])
def test_listed_by_prefix(n):
    pytest.skip("case skipped on purpose")

def test_not_listed():
    pytest.skip("some tool is missing")

def test_needs_a_missing_module():
    require("no_such_module_anywhere", "no_such_module_anywhere is not installed")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False

def test_plain():
    assert True
'''

LISTED = """\
# a comment, then a blank line

tests/test_sample.py::test_listed | root ignores file permissions
tests/test_sample.py::test_listed_with_another_reason | root ignores
tests/test_sample.py::test_listed_by_prefix* | on purpose
"""


def run_sample(tmp_path: Path, strict: str) -> subprocess.CompletedProcess:
    tests = tmp_path / "tests"
    if not tests.exists():
        tests.mkdir()
        for name in ("conftest.py", "strict_skips.py", "browser.py"):
            shutil.copy(HERE / name, tests / name)
        (tests / EXPECTED_SKIPS.name).write_text(LISTED)
        (tests / "test_sample.py").write_text(SAMPLE)
    env = dict(os.environ, NNEXP_STRICT_SKIPS=strict)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "tests"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_strict_mode_fails_each_skip_not_listed_and_names_it(tmp_path):
    done = run_sample(tmp_path, "1")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "2 failed, 1 passed, 3 skipped, 1 xfailed, 1 error" in out, out  # a fixture's skip: an error
    for failed in ("test_not_listed", "test_needs_a_missing_module"):
        assert f"FAILED tests/test_sample.py::{failed}" in out, out
    assert "ERROR tests/test_sample.py::test_listed_with_another_reason" in out
    assert "tests/test_sample.py::test_listed_with_another_reason: no tmpfs" in out
    assert "tests/test_sample.py::test_not_listed: some tool is missing" in out
    assert "no_such_module_anywhere is not installed (NNEXP_STRICT_SKIPS is on: this test must run)" in out


def test_without_strict_mode_skips_are_listed_and_pass(tmp_path):
    done = run_sample(tmp_path, "0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 6 skipped, 1 xfailed" in done.stdout, done.stdout
    assert "SKIPPED [1] tests/test_sample.py:21: some tool is missing" in done.stdout


def test_the_expected_skips_file_is_well_formed_and_says_why():
    entries = read_expected_skips()
    assert entries, "tests/expected_skips.txt lists nothing"
    lines = EXPECTED_SKIPS.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            assert number > 0 and lines[number - 1].startswith("# "), f"no reason given above {line!r}"
    for test_id, _ in entries:
        path = HERE.parent / test_id.split("::")[0]
        assert path.is_file() and test_id.split("::")[1].rstrip("*").split("[")[0] in path.read_text(), test_id


@pytest.mark.parametrize("nodeid, reason, expected", [
    ("tests/a.py::t", "why not", True),
    ("tests/a.py::t2", "why not", False),
    ("tests/a.py::t", "something else", False),
    ("tests/b.py::p[1]", "on purpose", True),
    ("tests/c.py::p[1]", "on purpose", False),
])
def test_an_entry_matches_its_test_id_and_reason(nodeid, reason, expected):
    import re

    entries = [("tests/a.py::t", re.compile("why")), ("tests/b.py::p*", re.compile("purpose"))]
    assert skip_is_expected(nodeid, reason, entries) is expected
