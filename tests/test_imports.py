"""What importing nnexp does, and what the light commands load: checked in fresh interpreters."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


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


def test_the_reference_network_loads_nothing_of_the_fast_engine():
    out = python("import sys, json\n"
                 "import nnexp.nn, nnexp.nn.gradcheck, nnexp.nn.deskew, nnexp.nn.warp\n"
                 "print(json.dumps(sorted(m for m in sys.modules if m.startswith('nnexp.nn.fast'))))")
    assert json.loads(out) == []


def fast_imports(path: Path) -> list[str]:
    """The imports in the module at ``path`` (of nnexp/nn, inside functions too) that name nnexp.nn.fast."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("nnexp.nn.fast")]
        elif isinstance(node, ast.ImportFrom):
            base = "nnexp.nn" if node.level == 1 else "nnexp" if node.level == 2 else ""
            target = ".".join(p for p in (base, node.module) if p)
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            found += [n for n in names if n == "nnexp.nn.fast" or n.startswith("nnexp.nn.fast.")]
    return found


def test_no_module_of_the_reference_network_imports_the_fast_engine():
    modules = sorted((REPO / "nnexp" / "nn").glob("*.py"))
    assert len(modules) >= 10 and all(p.parent.name == "nn" for p in modules)
    assert {str(p.name): fast_imports(p) for p in modules if fast_imports(p)} == {}
