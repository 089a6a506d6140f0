"""Hyperparameter sweeps: specs (what to vary), planning (which trials) and the
driver that runs trials as ordinary runs on local worker processes."""

from .runner import SweepResult, SweepRunner
from .spec import SweepSpec, Trial, load_spec, plan

__all__ = ["SweepResult", "SweepRunner", "SweepSpec", "Trial", "load_spec", "plan"]
