"""The package's metadata: licence, one version, honest classifiers, pinned and bounded dependencies."""

import ast
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from nnexp import __version__

tomllib = pytest.importorskip("tomllib", reason="tomllib (Python 3.11+) reads pyproject.toml")

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
#: the libraries whose APIs or numbers nnexp depends on closely: a new major may change them
BOUNDED = ("numpy", "pandas", "plotly", "ray", "optuna", "mlflow-skinny", "tensorboard")
#: the extras CI installs, whose exact versions constraints.txt holds
PINNED_EXTRAS = ("test", "ray", "tpe", "mlflow", "tensorboard", "parquet")


def source_files():
    return sorted((ROOT / "nnexp").rglob("*.py"))


def requirements():
    deps = list(PROJECT["dependencies"])
    for extra in PINNED_EXTRAS:
        deps += PROJECT["optional-dependencies"][extra]
    return [Requirement(d) for d in deps]


def pins():
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not name==version"
            out[canonical(name)] = version
    return out


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_licence_file_and_the_spdx_expression_agree():
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().splitlines()[0] == "MIT License"
    # an SPDX expression and a licence classifier together are refused by setuptools
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]


def test_the_version_is_written_once_and_the_cli_reports_it(nnexp):
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "nnexp.__version__"}
    code, out, _ = nnexp("--version")
    assert code == 0 and out.strip() == f"nnexp, version {__version__}"
    stated = re.compile(rf"""["']{re.escape(__version__)}["']""")
    elsewhere = [str(p.relative_to(ROOT)) for p in [*source_files(), *(ROOT / "benchmarks").glob("*.py"),
                                                    ROOT / "pyproject.toml"]
                 if p != ROOT / "nnexp" / "__init__.py" and stated.search(p.read_text())]
    assert not elsewhere, f"the version is also written in {elsewhere}; import nnexp.__version__ instead"


def test_the_operating_systems_named_are_those_the_locks_run_on():
    uses_fcntl = [p for p in source_files() if re.search(r"^import fcntl|^from fcntl ", p.read_text(), re.M)]
    assert uses_fcntl, "no module takes fcntl's locks any more: the classifiers may name more systems"
    systems = [c for c in PROJECT["classifiers"] if c.startswith("Operating System ::")]
    assert "Operating System :: POSIX" in systems
    assert not [c for c in systems if "Windows" in c or "OS Independent" in c]


def test_the_python_versions_named_are_those_the_code_accepts():
    lowest = tuple(int(x) for x in re.fullmatch(r">=(\d+)\.(\d+)", PROJECT["requires-python"]).groups())
    named = sorted(tuple(int(x) for x in c.rsplit(" ", 1)[1].split("."))
                   for c in PROJECT["classifiers"] if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
    assert named[0] == lowest and sys.version_info[:2] in named
    for path in source_files():  # the oldest named version must at least parse every module
        ast.parse(path.read_text(), str(path), feature_version=lowest)


def test_the_closely_driven_libraries_have_an_upper_bound_on_their_major():
    by_name = {canonical(r.name): r for r in requirements()}
    for name in BOUNDED:
        assert any(s.operator == "<" for s in by_name[name].specifier), f"{name} has no upper bound"


def test_every_dependency_is_pinned_within_its_range():
    pinned = pins()
    for req in requirements():
        name = canonical(req.name)
        assert name in pinned, f"constraints.txt has no version of {req.name}"
        assert req.specifier.contains(pinned[name], prereleases=True), \
            f"constraints.txt pins {req.name}=={pinned[name]}, outside pyproject.toml's {req.specifier}"
