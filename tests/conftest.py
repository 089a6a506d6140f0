"""Shared fixtures: a tiny real-MNIST config, a CLI runner, a temporary store, one
headless Chromium for every browser test; and the strict skip check (see tests/expected_skips.txt)."""

from __future__ import annotations

import inspect
import textwrap

import pytest
from browser import INSTALL_HINT, Browser, find_browser
from strict_skips import EXPECTED_SKIPS, read_expected_skips, skip_is_expected, skip_reason, strict_skips

import nnexp.train as train_module
from nnexp.cli import main

TINY = """\
data:
  dataset: mnist
  val_size: 1000
  batch_size: 64
  train_subset: 3000
model:
  layers:
    - {{type: flatten}}
    - {{type: dense, units: 64}}
    - {{type: relu}}
    - {{type: dense, units: 10}}
optimizer: {{name: adam, lr: 0.002}}
train: {{epochs: 2, seed: 0}}
tracking: {{store: {store}, name: tiny}}
"""


@pytest.fixture
def store(tmp_path):
    return tmp_path / "runs"


@pytest.fixture
def tiny_config(tmp_path, store):
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(TINY.format(store=store)))
    return path


@pytest.fixture
def nnexp(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""
    def run(*args):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.fixture
def ctrl_c_at_epoch(monkeypatch):
    """``ctrl_c_at_epoch(k)``: from now on training stops with KeyboardInterrupt (as
    Ctrl-C does) when epoch k starts; ``ctrl_c_at_epoch(None)`` lets it run again."""
    real = train_module.train_one_epoch
    signature = inspect.signature(real)

    def arm(epoch):
        def interrupted(*args, **kwargs):
            if signature.bind(*args, **kwargs).arguments["epoch"] >= epoch:
                raise KeyboardInterrupt
            return real(*args, **kwargs)
        monkeypatch.setattr(train_module, "train_one_epoch", real if epoch is None else interrupted)
    return arm


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium shared by the browser tests (report, dashboard); each opens its own tabs."""
    if find_browser() is None:
        pytest.skip(f"no headless browser for the browser tests: {INSTALL_HINT}")
    with Browser(timeout=120) as browser:  # a deadline for a loaded machine
        yield browser


# ------------------------------------------------------------ strict skips --
# See strict_skips.py: under NNEXP_STRICT_SKIPS=1 a skip not listed in
# tests/expected_skips.txt is reported as a failure, and listed at the end.

UNEXPECTED_SKIPS = pytest.StashKey[list]()
SKIP_ENTRIES = pytest.StashKey[list]()


def pytest_configure(config):
    config.stash[UNEXPECTED_SKIPS] = []
    if strict_skips():
        config.stash[SKIP_ENTRIES] = read_expected_skips()


def _fail_unexpected_skip(config, report) -> None:
    """Turn ``report`` (a skip) into a failure when strict and the skip is not listed."""
    if not (strict_skips() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report)
    if skip_is_expected(report.nodeid, reason, config.stash[SKIP_ENTRIES]):
        return
    config.stash[UNEXPECTED_SKIPS].append((report.nodeid, reason))
    report.outcome = "failed"
    report.longrepr = (f"unexpected skip (NNEXP_STRICT_SKIPS is on): {reason}\n"
                       f"install what it needs, or list it in tests/{EXPECTED_SKIPS.name} with why it is expected")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_unexpected_skip(item.config, outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_unexpected_skip(collector.config, outcome.get_result())


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if strict_skips():
        terminalreporter.write_line(f"strict skips: on (only those listed in tests/{EXPECTED_SKIPS.name} may skip)")
    unexpected = config.stash.get(UNEXPECTED_SKIPS, [])
    if unexpected:
        terminalreporter.section("unexpected skips (NNEXP_STRICT_SKIPS is on)", red=True)
        for nodeid, reason in unexpected:
            terminalreporter.line(f"{nodeid}: {reason}")
        terminalreporter.line(f"each fails the run: install what it needs, or list it in tests/{EXPECTED_SKIPS.name}")
