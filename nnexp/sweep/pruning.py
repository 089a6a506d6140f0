"""Early stopping of a sweep's trials (``halving:``): which epochs a trial
reports its metric at, and whether it goes on.

Three rules, chosen with ``halving.rule``:

- ``asha`` (:class:`Rungs`): asynchronous successive halving. A trial reaching
  a rung goes on only if its value is among the best ``1/eta`` recorded at
  that rung so far (at least the best one).
- ``median`` (:class:`MedianRule`): from ``min_epochs`` on, a trial stops at an
  epoch where its value is worse than the median of the values the earlier
  trials recorded at that epoch, once ``min_trials`` of them did.
- ``hyperband`` (:class:`Hyperband`): several successive-halving brackets with
  different first rungs, the last one without pruning; points go to the
  brackets in turn, in Hyperband's proportions (more points where the first
  rung is early).

Every rule is driven by the values that reached each epoch, in the order they
arrived: with one worker its decisions are reproducible, and a resumed sweep
replays the finished trials' values (``record``) before deciding anew. With
several workers they depend on which trials report first.
"""

from __future__ import annotations

import math

import numpy as np


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


class EpochValues:
    """The finite values recorded at each of ``epochs``, in arrival order; ``sign`` makes larger better."""

    def __init__(self, epochs: list[int], goal: str):
        self.sign = 1.0 if goal == "maximize" else -1.0
        self.values: dict[int, list[float]] = {e: [] for e in epochs}

    def epochs(self, trial: int | None = None) -> list[int]:
        """The epochs at which ``trial`` reports its value."""
        return list(self.values)

    def record(self, epoch: int, value: float, trial: int | None = None) -> None:
        if epoch in self.values and _finite(value):
            self.values[epoch].append(value)


class Rungs(EpochValues):
    """Asynchronous successive halving (ASHA-style) over the epochs ``rungs``."""

    def __init__(self, rungs: list[int], eta: int, goal: str):
        super().__init__(rungs, goal)
        self.eta = eta

    def decide(self, epoch: int, value: float, trial: int | None = None) -> str | None:
        """Record ``value`` at rung ``epoch``; the reason to prune, or None."""
        self.record(epoch, value)
        seen = self.values[epoch]
        keep = max(1, len(seen) // self.eta)
        better = sum(1 for v in seen if self.sign * v > self.sign * value)
        if _finite(value) and better < keep:
            return None
        return (f"pruned at epoch {epoch}: {value:.4g} is not in the best {keep} of {len(seen)} "
                f"trials at this rung (halving, eta {self.eta})")


class MedianRule(EpochValues):
    """The median stopping rule at every epoch of ``epochs``."""

    def __init__(self, epochs: list[int], min_trials: int, goal: str):
        super().__init__(epochs, goal)
        self.min_trials = min_trials

    def decide(self, epoch: int, value: float, trial: int | None = None) -> str | None:
        others = list(self.values.get(epoch, []))
        self.record(epoch, value)
        if not _finite(value):
            return f"pruned at epoch {epoch}: the metric is {value} (median rule)"
        if len(others) < self.min_trials:
            return None
        median = float(np.median(others))
        if self.sign * value < self.sign * median:
            return (f"pruned at epoch {epoch}: {value:.4g} is worse than the median {median:.4g} of the "
                    f"{len(others)} trials that reached this epoch before (median rule)")
        return None


class Hyperband:
    """Hyperband's brackets, each an ASHA over the rungs from its first one on.

    Bracket ``b`` starts at ``rungs[b]``; the last bracket has no rung (its
    points train to the end). Hyperband gives bracket ``b`` (with ``s`` rungs
    of ``s_max``) ``ceil((s_max + 1) / (s + 1) * eta**s)`` points per cycle;
    point ``p`` (trial index // repeats, so a point's repeats share a bracket)
    takes its place ``p mod cycle`` in that order.
    """

    def __init__(self, rungs: list[int], eta: int, goal: str, repeats: int = 1):
        self.repeats = max(1, repeats)
        self.brackets = [Rungs(rungs[b:], eta, goal) for b in range(len(rungs) + 1)]
        s_max = len(rungs)
        self.cycle: list[int] = []
        for b in range(len(self.brackets)):
            s = s_max - b
            self.cycle += [b] * math.ceil((s_max + 1) / (s + 1) * eta ** s)

    def bracket(self, trial: int) -> int:
        return self.cycle[(trial // self.repeats) % len(self.cycle)]

    def epochs(self, trial: int | None = None) -> list[int]:
        return self.brackets[self.bracket(trial or 0)].epochs()

    def record(self, epoch: int, value: float, trial: int | None = None) -> None:
        self.brackets[self.bracket(trial or 0)].record(epoch, value)

    def decide(self, epoch: int, value: float, trial: int | None = None) -> str | None:
        b = self.bracket(trial or 0)
        reason = self.brackets[b].decide(epoch, value)
        return None if reason is None else f"{reason[:-1]}, hyperband bracket {b})"


def make_pruner(halving, goal: str, repeats: int = 1):
    """The rule a spec's ``halving`` block asks for (None: no early stopping)."""
    if halving is None:
        return None
    if halving.rule == "median":
        return MedianRule(halving.rungs, halving.min_trials, goal)
    if halving.rule == "hyperband":
        return Hyperband(halving.rungs, halving.eta, goal, repeats)
    return Rungs(halving.rungs, halving.eta, goal)
