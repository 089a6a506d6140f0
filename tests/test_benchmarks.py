"""Every benchmark script still starts: its imports resolve against the package as it is now
(a benchmark is run rarely, so a renamed function would otherwise go unnoticed until then)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# mutation.py runs only in Cosmic Ray's own interpreter and says so (benchmarks/README.md)
OTHER_INTERPRETER = {"mutation.py"}
SCRIPTS = sorted(p.name for p in (REPO / "benchmarks").glob("*.py")
                 if "argparse" in p.read_text(encoding="utf-8") and p.name not in OTHER_INTERPRETER)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_script_starts_and_explains_its_options(script):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout and "--" in done.stdout, done.stdout[-500:]


def test_every_benchmark_is_checked():
    helpers = {"blas_threads.py", "machine.py"}  # imported by the others, which the test starts
    assert set(SCRIPTS) | helpers | OTHER_INTERPRETER == {p.name for p in (REPO / "benchmarks").glob("*.py")}
