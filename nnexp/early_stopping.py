"""Early stopping: stop when a validation metric has not improved for ``patience`` epochs.

The rule (:class:`EarlyStopping`, from ``train.early_stopping``) never
changes during a run; what it remembers from epoch to epoch is a
:class:`Patience` value, part of the training state a checkpoint carries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Patience:
    """What early stopping knows after some epochs."""

    best: float = -math.inf  # the best epoch's metric, times the rule's sign (higher is better)
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best one


@dataclass(frozen=True)
class EarlyStopping:
    metric: str = "val_accuracy"
    patience: int | None = None  # None: never stop (the best epoch is still tracked)
    min_delta: float = 0.0

    @classmethod
    def from_config(cls, section: dict | None) -> "EarlyStopping":
        """The rule a ``train.early_stopping`` section (or None) describes."""
        section = section or {}
        return cls(section.get("metric", "val_accuracy"), section.get("patience"), section.get("min_delta", 0.0))

    @property
    def sign(self) -> float:
        return 1.0 if self.metric.endswith("accuracy") else -1.0  # maximise accuracy, minimise loss

    def update(self, seen: Patience, epoch: int, row: dict) -> Patience:
        """What is known after ``epoch``, whose validation figures ``row`` holds."""
        value = self.sign * row[self.metric]
        if value > seen.best + self.min_delta:
            return Patience(value, epoch, 0)
        return Patience(seen.best, seen.best_epoch, seen.bad_epochs + 1)

    def should_stop(self, seen: Patience) -> bool:
        return self.patience is not None and seen.bad_epochs >= self.patience

    def best_value(self, seen: Patience) -> float:
        """The best epoch's metric as measured."""
        return self.sign * seen.best
