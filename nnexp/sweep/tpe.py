"""Model-based search (``method: tpe``): Optuna's TPE sampler, asked one point at a time.

Optuna is optional (``pip install "nnexp[tpe]"``) and imported only here.

The run folders are the sweep's memory, not Optuna's: before each ask, a new
in-memory study is filled with every earlier point in index order (completed
ones with their value, or the mean over their repeats; pruned ones as pruned,
with their per-epoch values; failed ones as failed; those still training as
running, which the sampler's constant liar treats as poor results), and the
sampler of point ``i`` is seeded from ``(spec seed, i)``. So a proposal is a
function of the spec, the point's index and what the earlier points gave,
and nothing else: a killed sweep resumed from its folders proposes what an
uninterrupted one would have, and one worker with one seed proposes the same
trials every time. The first ``startup_trials`` points (10 by default) are
the first points random search draws with the same seed, so tpe and random
search with one seed part ways only where the model starts proposing.

How a spec's parameters become Optuna's distributions (the point's values
are what the trials get; Optuna sees):

- ``choice`` (and a range with ``n`` points): a categorical over the index
  of each value, so any value (a list of layers, a mapping) can be a choice;
- ``uniform`` / ``loguniform``: a float range, on a log scale for loguniform
  (or ``log: true``); ``int``: an integer range (``log`` as given);
- a ``zip`` group: a categorical over its rows;
- ``when:``: a conditional parameter is asked only when its condition holds
  on the values asked before it (Optuna's define-by-run), and the
  multivariate sampler groups the points that share a set of parameters.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from .space import point_key

COMPLETE, PRUNED, FAILED, RUNNING = "complete", "pruned", "failed", "running"


def import_optuna():
    """Optuna, or exit 2 with how to install it."""
    try:
        import optuna  # optional and heavy: only method: tpe loads it
    except ImportError:
        raise ConfigError('method: tpe needs Optuna, which is not installed: pip install "nnexp[tpe]" '
                          "(or pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


@dataclass
class Told:
    """What one earlier point gave, as the sampler is told it."""

    point: dict  # {dotted key: value}
    state: str  # COMPLETE, PRUNED, FAILED or RUNNING
    values: list | None = None  # one per objective (COMPLETE)
    intermediate: dict = field(default_factory=dict)  # {epoch: value} (PRUNED)


def point_seed(seed: int, index: int) -> int:
    """The sampler's seed for point ``index`` of a sweep with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


class TpeSearch:
    """Proposes a sweep's points from what the earlier ones gave."""

    def __init__(self, space, directions: list[str], seed: int, lookup, startup: int = 10):
        self.optuna = import_optuna()
        self.space, self.directions, self.seed, self.lookup = space, list(directions), seed, lookup
        self.startup = startup
        # The start-up points are random search's first points with the same seed: a
        # comparison of the two with one seed differs only where the model proposes.
        self.first_points = space.sample(startup, seed, lookup)[0] if startup else []

    def ask(self, index: int, history: list[Told]) -> dict:
        """Point ``index``, given the ``history`` of points 0 .. index-1."""
        if index < len(self.first_points):
            return dict(self.first_points[index])
        optuna = self.optuna
        sampler = optuna.samplers.TPESampler(seed=point_seed(self.seed, index), n_startup_trials=self.startup,
                                             multivariate=True, group=True, constant_liar=True)
        study = optuna.create_study(directions=self.directions, sampler=sampler)
        for told in history:
            study.add_trial(self._frozen(told))
        trial = study.ask()
        point = {}
        for i, group in enumerate(self.space.zips):
            row = trial.suggest_categorical(_zip_name(i), list(range(len(group.rows))))
            point.update(group.points()[row])
        for p in self.space.params:
            if p.applies(point, self.lookup):
                point[p.key] = self._suggest(trial, p)
        return point

    # ------------------------------------------------------------ mapping --
    def _suggest(self, trial, p):
        if p.kind == "choice" or p.n is not None:
            values = p.grid_values()
            return values[trial.suggest_categorical(p.key, list(range(len(values))))]
        if p.kind == "int":
            return trial.suggest_int(p.key, int(p.low), int(p.high), log=p.log)
        return trial.suggest_float(p.key, float(p.low), float(p.high), log=p.log or p.kind == "loguniform")

    def _distribution(self, p):
        d = self.optuna.distributions
        if p.kind == "choice" or p.n is not None:
            return d.CategoricalDistribution(list(range(len(p.grid_values()))))
        if p.kind == "int":
            return d.IntDistribution(int(p.low), int(p.high), log=p.log)
        return d.FloatDistribution(float(p.low), float(p.high), log=p.log or p.kind == "loguniform")

    def encode(self, point: dict) -> tuple[dict, dict]:
        """A point as Optuna's (params, distributions); values the space cannot hold are left out."""
        params, dists = {}, {}
        for i, group in enumerate(self.space.zips):
            rows = [point_key(r) for r in group.points()]
            mine = point_key({k: point[k] for k in group.keys if k in point})
            if mine in rows:
                params[_zip_name(i)] = rows.index(mine)
                dists[_zip_name(i)] = self.optuna.distributions.CategoricalDistribution(list(range(len(rows))))
        for p in self.space.params:
            if p.key not in point:
                continue
            value = point[p.key]
            if p.kind == "choice" or p.n is not None:
                keys = [point_key({"v": v}) for v in p.grid_values()]
                if point_key({"v": value}) not in keys:
                    continue
                value = keys.index(point_key({"v": value}))
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not p.low <= value <= p.high:
                continue
            elif p.kind == "int":
                value = int(value)
            else:
                value = float(value)
            params[p.key], dists[p.key] = value, self._distribution(p)
        return params, dists

    def _frozen(self, told: Told):
        optuna = self.optuna
        states = {COMPLETE: optuna.trial.TrialState.COMPLETE, PRUNED: optuna.trial.TrialState.PRUNED,
                  FAILED: optuna.trial.TrialState.FAIL, RUNNING: optuna.trial.TrialState.RUNNING}
        params, dists = self.encode(told.point)
        kwargs = {"params": params, "distributions": dists, "state": states[told.state]}
        if told.state == COMPLETE:
            kwargs["values"] = list(told.values)
        elif told.state == PRUNED and len(self.directions) == 1:
            kwargs["intermediate_values"] = dict(told.intermediate)
        return optuna.trial.create_trial(**kwargs)


def _zip_name(i: int) -> str:
    return f"zip[{i}]"
