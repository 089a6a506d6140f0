"""Shared fixtures: a tiny real-MNIST config, a CLI runner, a temporary store."""

from __future__ import annotations

import textwrap

import pytest

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
