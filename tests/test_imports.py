"""What importing nnexp does, and what the light commands load: checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys


def python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_importing_nnexp_changes_no_environment_variable():
    out = python("import os, json; before = dict(os.environ)\n"
                 "import nnexp, nnexp.cli, nnexp.command, nnexp.train, nnexp.sweep.runner, nnexp.compare.cli\n"
                 "print(json.dumps(sorted(set(os.environ.items()) ^ set(before.items()))))")
    assert json.loads(out) == []


def test_the_command_sets_the_blas_settings_before_numpy_loads_and_runs_stays_light(tmp_path):
    out = python("import os, sys, json; os.environ.pop('OPENBLAS_THREAD_TIMEOUT', None)\n"
                 "from nnexp.command import main\n"
                 f"main(['runs', '--store', {str(tmp_path / 'runs')!r}])\n"
                 "print(json.dumps([os.environ.get('OPENBLAS_THREAD_TIMEOUT'),"
                 " sorted(m for m in ('numpy', 'pandas', 'matplotlib') if m in sys.modules)]))")
    listing, result = out.strip().splitlines()
    assert listing.startswith("no runs in") and json.loads(result) == ["20", []]


def test_a_value_already_set_is_kept():
    out = python("import os; os.environ['OPENBLAS_THREAD_TIMEOUT'] = '7'\n"
                 "from nnexp import environment; environment.apply(); print(os.environ['OPENBLAS_THREAD_TIMEOUT'])")
    assert out.strip() == "7"


def test_tracking_knows_nothing_of_the_network():
    out = python("import sys, json\n"
                 "import nnexp.tracking, nnexp.tracking.plots, nnexp.tracking.sweeps, nnexp.tracking.provenance\n"
                 "print(json.dumps(sorted(m for m in sys.modules if m.startswith('nnexp.nn'))))")
    assert json.loads(out) == []


def test_optuna_loads_only_for_a_tpe_sweep():
    out = python("import sys, json\n"
                 "import nnexp.sweep.runner, nnexp.commands.sweeping, nnexp.compare.cli\n"
                 "print(json.dumps('optuna' in sys.modules))")
    assert json.loads(out) is False
