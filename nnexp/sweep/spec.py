"""Sweep specs: the YAML file that says what to vary, how, and what wins.

A spec names a base config and the dotted keys to vary::

    name: mlp-lr-batch
    base: ../configs/mlp.yaml          # relative to this file
    overrides: {train.epochs: 8}       # fixed changes for every trial
    metric: val_accuracy               # or val_loss (the final epoch's value)
    goal: maximize                     # default: maximize accuracy, minimize loss
    method: grid                       # or random / tpe (with n_trials and seed)
    repeats: 3                         # every point with seeds base+0, +1, +2
    parameters:
      optimizer.lr: [0.001, 0.002, 0.004]
      optimizer.weight_decay: {distribution: loguniform, low: 1.0e-5, high: 0.1}
      optimizer.momentum: {values: [0.9, 0.99], when: {optimizer.name: sgd}}
    zip:
      - {data.batch_size: [64, 128, 256], optimizer.lr: [0.001, 0.002, 0.004]}
    halving: {min_epochs: 1, eta: 3}   # prune the worse trials at epochs 1, 3, 9, ...

:func:`load_spec` checks the spec and :func:`plan` turns it into trials, each
with a validated config, so that a typo fails before the first trial starts.
A model-based search (``method: tpe``) proposes its trials one at a time
while the sweep runs (``tpe.py``); :func:`examples` checks its space up front.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..config import (FLOAT_TEXT, INVALID, Bound, Field, InvalidConfig, check_value, describe_layers, load_yaml,
                      set_path, validate)
from ..errors import ConfigError
from ..tracking.records import lower_is_better
from ..tracking.run import metric_name_problem
from ..tracking.store import slugify
from ..values import is_integer
from .space import Param, Space, ZipGroup, point_key

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")
METRICS = {"val_accuracy": "maximize", "val_loss": "minimize"}
# What a multi-objective sweep may trade off: {metric: (summary.json key, default goal)}.
OBJECTIVES = {"val_accuracy": ("final_val_accuracy", "maximize"), "val_loss": ("final_val_loss", "minimize"),
              "params": ("params", "minimize"), "train_seconds": ("train_seconds", "minimize")}
METHODS = ("grid", "random", "tpe")
GOALS = ("maximize", "minimize")
HALVING_RULES = ("asha", "median", "hyperband")

# The keys a spec may hold, with their types and ranges: load_spec checks a spec against
# these tables and `nnexp schema sweep` prints them as a JSON Schema. A None default: the
# key may be left out (the rules between keys, in load_spec, say when it is needed).
SPEC_FIELDS: dict[str, Field] = {
    "name": Field(str, None),
    "description": Field(str, None, nullable=True),
    "base": Field(str, None),  # the config file every trial starts from, relative to the spec
    "command": Field(str, None),  # or your own code: a command line with {parameter} placeholders
    "function": Field(str, None),  # or 'file.py:name' / 'module:name'
    "overrides": Field(dict, None, nullable=True),
    "metric": Field(str, "val_accuracy"),  # a sweep of a base config: one of METRICS
    "goal": Field(str, None, choices=GOALS),
    "metrics": Field(list, None),  # two or more of OBJECTIVES, each a name or OBJECTIVE_FIELDS
    "method": Field(str, "grid", choices=METHODS),
    "n_trials": Field(int, None, Bound(1)),
    "seed": Field(int, 0, Bound(0)),
    "batch": Field(int, None, Bound(1), nullable=True),
    "startup_trials": Field(int, 10, Bound(0)),
    "repeats": Field(int, None, Bound(1)),
    "seeds": Field(list, None, items=Field(int, None, Bound(0))),
    "halving": Field(dict, None, nullable=True),  # HALVING_FIELDS
    "parameters": Field(dict, None, nullable=True),  # dotted key: a list of values or PARAM_FIELDS
    "zip": Field(list, None, nullable=True),  # of {dotted key: list of values}, the lists equally long
}
PARAM_FIELDS: dict[str, Field] = {
    "values": Field(list, None),
    "distribution": Field(str, None, choices=DISTRIBUTIONS),
    "low": Field(float, None),
    "high": Field(float, None),
    "log": Field(bool, False),
    "n": Field(int, None, Bound(2), nullable=True),
    "when": Field(dict, None, nullable=True),
}
HALVING_FIELDS: dict[str, Field] = {
    "rule": Field(str, "asha", choices=HALVING_RULES),
    "min_epochs": Field(int, 1, Bound(1)),
    "eta": Field(int, 3, Bound(2)),
    "max_epochs": Field(int, None, Bound(1)),  # default: the base config's train.epochs
    "min_trials": Field(int, 3, Bound(1)),
}
OBJECTIVE_FIELDS: dict[str, Field] = {
    "name": Field(str, None, choices=tuple(OBJECTIVES)),
    "goal": Field(str, None, choices=GOALS),
}
SPEC_KEYS, PARAM_KEYS, HALVING_KEYS = tuple(SPEC_FIELDS), tuple(PARAM_FIELDS), tuple(HALVING_FIELDS)
EXAMPLE_POINTS = 8  # random points whose configs a tpe sweep validates before it starts


@dataclass
class Halving:
    """Early stopping by ``rule``: asha and hyperband stop at rungs of
    min_epochs * eta**k epochs below max_epochs; the median rule checks every
    epoch from min_epochs on, once min_trials others reached it."""

    min_epochs: int
    eta: int
    max_epochs: int
    rule: str = "asha"
    min_trials: int = 3

    @property
    def rungs(self) -> list[int]:
        if self.rule == "median":
            return list(range(self.min_epochs, self.max_epochs))
        rungs, r = [], self.min_epochs
        while r < self.max_epochs:
            rungs.append(r)
            r *= self.eta
        return rungs


@dataclass(frozen=True)
class Objective:
    name: str  # a key of OBJECTIVES
    goal: str

    @property
    def summary_key(self) -> str:
        return OBJECTIVES[self.name][0] if self.name in OBJECTIVES else f"final_{self.name}"


@dataclass
class SweepSpec:
    path: Path
    name: str
    base_path: Path
    base: dict  # the base config after the spec's overrides, not yet validated
    space: Space
    metric: str
    goal: str
    method: str
    n_trials: int | None
    seed: int
    seeds: list[int]
    halving: Halving | None
    raw: dict
    objectives: tuple = ()  # Objective; the metric and its goal alone unless 'metrics' lists several
    batch: int | None = None  # tpe: propose this many points at a time, each batch after the last ended
    startup_trials: int = 10  # tpe: points drawn at random before the model proposes
    script: dict | None = None  # a sweep of your own code: {"command": text} or {"function": "file.py:name"}

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def id(self) -> str:
        """The same spec on the same base config always gets the same id, which is
        how running a sweep again finds (and skips) its finished trials."""
        base = {k: v for k, v in self.base.items() if k != "tracking"}
        text = json.dumps({"spec": {k: v for k, v in self.raw.items() if k != "description"}, "base": base},
                          sort_keys=True, default=str)
        return f"{slugify(self.name)}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


@dataclass
class Trial:
    index: int
    params: dict  # {dotted key: value} the sweep chose
    seed: int
    config: dict  # resolved and validated

    def run_id(self, sweep_id: str) -> str:
        return run_id(sweep_id, self.index)

    def label(self) -> str:
        values = ", ".join(f"{k}={short_value(v)}" for k, v in self.params.items())
        return f"trial {self.index} ({values}{', ' if values else ''}seed {self.seed})"


def run_id(sweep_id: str, index: int) -> str:
    """The run id of trial ``index`` of sweep ``sweep_id``."""
    return f"{sweep_id}-t{index:03d}"


# ------------------------------------------------------------------ loading --


def load_spec(path: str | Path, seed: int | None = None) -> SweepSpec:
    """Read and check a sweep spec: one InvalidConfig lists every mistake, each naming
    the file and the key, as a config's does.

    ``seed`` replaces the spec's seed (random and tpe): another sweep, named
    ``<name>-seed<seed>``, so that one spec can be searched with several seeds.
    """
    path = Path(path)
    raw = load_yaml(path)
    src = str(path)
    if seed is not None:
        if raw.get("method", "grid") not in ("random", "tpe"):
            raise ConfigError(f"--seed: {src} is a grid; a seed changes only random and tpe searches")
        raw["name"] = f"{raw.get('name', path.stem)}-seed{seed}"
        raw["seed"] = seed
    problems: list[str] = []
    _unknown(raw, SPEC_FIELDS, "", problems)

    def value(key):  # a key checked against SPEC_FIELDS (its default if absent; INVALID if wrong)
        return check_value(raw[key], SPEC_FIELDS[key], key, problems) if key in raw else SPEC_FIELDS[key].default

    value("description")
    own_code = "command" in raw or "function" in raw
    script = _script(raw, path, problems)
    base_path, base, base_known = path, {}, False
    if own_code:
        if "overrides" in raw:
            kind = "command" if "command" in raw else "function"
            problems.append(f"'overrides' change a base config; a sweep of a {kind} takes fixed values as "
                            "parameters with one value, or in the command itself")
    elif "base" not in raw:
        problems.append("missing 'base': the config file every trial starts from "
                        "(or 'command' / 'function': your own code, docs/your-code.md)")
    else:
        found = _find_base(path, raw["base"], problems)
        if found is not None:
            base_path, base, base_known = found, load_yaml(found), True
    for key, change in _mapping(raw.get("overrides"), "overrides", problems).items():
        parts = _parts(key, f"overrides.{key}", problems)
        if parts is not None:
            try:
                set_path(base, parts, copy.deepcopy(change), f"overrides.{key}")
            except ConfigError as exc:
                problems.append(str(exc))

    metric, goal, objectives = _objectives_of(raw, own_code, problems)
    method = raw.get("method", "grid")
    if method not in METHODS:
        hint = (" (halving is a block of its own: 'halving: {min_epochs: 1, eta: 3}')" if method == "halving" else
                " (model-based search is method: tpe)" if method in ("bayes", "bayesian", "optuna", "hyperopt") else "")
        problems.append(f"'method' is {method!r}; choose {', '.join(METHODS[:-1])} or {METHODS[-1]}{hint}")
        method = INVALID
    n_trials = None
    if method in ("random", "tpe"):
        if raw.get("n_trials") is None:
            problems.append("missing 'n_trials'")
        else:
            n_trials = value("n_trials")
    elif method == "grid" and raw.get("n_trials") is not None:
        problems.append("'n_trials' is for method: random or tpe; a grid runs every combination")
    seed = value("seed")
    batch = raw.get("batch")
    if batch is not None:
        if method not in ("tpe", INVALID):
            problems.append(f"'batch' is for method: tpe (points proposed together); {method} plans every "
                            "trial up front")
        batch = value("batch")
    if "startup_trials" in raw and method not in ("tpe", INVALID):
        problems.append("'startup_trials' is for method: tpe (random points before the model proposes)")
    startup = value("startup_trials")

    space = Space(tuple(_params(raw.get("parameters"), problems)), tuple(_zips(raw.get("zip"), problems)))
    searched = bool(raw.get("parameters") or raw.get("zip"))
    misspelt = any(key not in SPEC_FIELDS for key in raw)  # an unknown key may be the one meant: said once
    if not searched and "repeats" not in raw and "seeds" not in raw and not misspelt:
        problems.append("nothing to sweep: add 'parameters', 'zip' or 'repeats'")
    swept = [p.key for p in space.params] + [k for z in space.zips for k in z.keys]
    duplicates = sorted({k for k in swept if swept.count(k) > 1})
    if duplicates:
        problems.append(f"{', '.join(duplicates)} is swept twice (in parameters and/or zip)")
    for p in space.params:
        for key in p.when:
            if key not in swept[: swept.index(p.key)] and (base_known or own_code) and _lookup(base, key) is _MISSING:
                problems.append(f"parameters.{p.key}.when: {key!r} is neither a parameter declared before it "
                                "nor a key of the base config")
    if method == "tpe" and not searched:
        problems.append("method: tpe searches 'parameters' (or 'zip' groups); this spec has none")
    if method == "grid":
        for p in space.params:
            if not p.is_discrete:
                problems.append(f"parameters.{p.key}: a grid needs discrete values; give 'values', or 'n' points "
                                f"for the {p.kind} range, or use method: random")

    seeds = _seeds(raw, base, problems)
    if "train.seed" in swept and ("repeats" in raw or "seeds" in raw):
        problems.append("train.seed is swept and repeated; use one of the two")
    halving = _halving(raw.get("halving"), base, swept, problems, own_code)
    if halving not in (None, INVALID) and len(objectives) > 1:
        problems.append("halving stops trials on one metric; with several 'metrics' leave it out")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        problems.append("'name' must be a non-empty string")
    if isinstance(script, dict) and "command" in script:
        _check_placeholders(script["command"], swept, problems)
    if problems:
        raise InvalidConfig(src, problems)
    return SweepSpec(path, name, base_path, base, space, metric, goal, method, n_trials, seed, seeds,
                     halving, raw, tuple(objectives), batch, startup, script)


def _objectives_of(raw: dict, own_code: bool, problems: list[str]) -> tuple:
    """(metric, goal, objectives) of a spec; INVALID where a problem was reported."""
    if own_code:
        if "metrics" in raw:
            problems.append("'metrics' (several objectives) is for sweeps of a base config; give "
                            "'metric' (and 'goal'), a name the script logs")
        metric = raw.get("metric", "val_accuracy")
        problem = metric_name_problem(metric)
        if problem is not None:
            problems.append(f"'metric' {metric!r} {problem}")
            metric = INVALID
        default_goal = "minimize" if metric is not INVALID and lower_is_better(metric) else "maximize"
    elif "metrics" in raw:
        if "metric" in raw or "goal" in raw:
            problems.append("give 'metric' (and 'goal') or 'metrics', not both")
        objectives = _objectives(raw["metrics"], problems)
        metric, goal = next(((o.name, o.goal) for o in objectives if o.name in METRICS), (INVALID, INVALID))
        return metric, goal, objectives
    else:
        metric = raw.get("metric", "val_accuracy")
        if metric not in METRICS:
            problems.append(f"'metric' is {metric!r}; choose one of {', '.join(METRICS)} "
                            "(measured on the validation set at the last epoch)")
            metric = INVALID
        default_goal = METRICS.get(metric, "maximize")
    goal = raw.get("goal", default_goal)
    if goal not in GOALS:
        problems.append(f"'goal' is {goal!r}; choose maximize or minimize")
        goal = INVALID
    return metric, goal, [Objective(metric, goal)]


def base_lookup(spec: SweepSpec):
    """``key -> value`` of the spec's base config (a missing key gives MISSING)."""
    return lambda key: _lookup(spec.base, key)


def plan(spec: SweepSpec, log=print) -> list[Trial]:
    """Every trial of the sweep, each config built and validated now (none
    for tpe, which proposes its trials as the sweep runs)."""
    lookup = base_lookup(spec)
    if spec.method == "tpe":
        return []
    if spec.method == "grid":
        points = spec.space.grid(lookup)
    else:
        points, exhausted = spec.space.sample(spec.n_trials, spec.seed, lookup)
        if exhausted:
            log(f"note: the space has only {len(points)} distinct configurations; n_trials is "
                f"{spec.n_trials}, so each runs once")
    trials = []
    for point in points:
        for seed in spec.seeds:
            trials.append(make_trial(spec, len(trials), point, seed))
    return trials


def examples(spec: SweepSpec) -> list[Trial]:
    """A few random points of the space, built and validated: a typo in a
    tpe spec fails before the first trial, as a planned sweep's does."""
    points, _ = spec.space.sample(EXAMPLE_POINTS, spec.seed, base_lookup(spec))
    return [make_trial(spec, i, point, spec.seeds[0]) for i, point in enumerate(points or [{}])]


def make_trial(spec: SweepSpec, index: int, point: dict, seed: int | None) -> Trial:
    """Trial ``index`` of the sweep: the base config with ``point`` and ``seed`` set, validated.
    A sweep of your own code has no config to build: the trial is its parameters and seed."""
    if spec.script is not None:
        return Trial(index, dict(point), seed, {})
    cfg = copy.deepcopy(spec.base)
    where = f"{spec.path}: trial {index} ({', '.join(f'{k}={short_value(v)}' for k, v in point.items())})"
    for key, value in point.items():
        set_path(cfg, key.split("."), copy.deepcopy(value), where)
    if seed is not None:
        set_path(cfg, ["train", "seed"], seed, where)
    cfg = validate(cfg, source=where, base_dir=spec.base_path.parent)
    return Trial(index, dict(point), cfg["train"]["seed"], cfg)


# ------------------------------------------------------------- the pieces --

_MISSING = object()


def _lookup(cfg: dict, key: str):
    node = cfg
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _params(section, problems: list[str]) -> list[Param]:
    """The parameters that are right; a problem for each one that is not."""
    params = []
    for key, spec in _mapping(section, "parameters", problems).items():
        where = f"parameters.{key}"
        if _parts(key, where, problems) is None:
            continue
        if isinstance(spec, list):
            spec = {"values": spec}
        if not isinstance(spec, dict):
            problems.append(f"{where} is {spec!r}: give a list of values or a mapping such as "
                            "{distribution: loguniform, low: 1.0e-4, high: 0.1}; a single fixed value "
                            "belongs under 'overrides'")
            continue
        param = _param(key, spec, where, problems)
        if param is not None:
            params.append(param)
    return params


def _param(key: str, spec: dict, where: str, problems: list[str]) -> Param | None:
    before = len(problems)
    _unknown(spec, PARAM_FIELDS, f"{where}.", problems)
    kind = spec.get("distribution", "choice" if "values" in spec else None)
    if kind not in DISTRIBUTIONS:
        problems.append(f"{where}: 'distribution' is {kind!r}; choose one of {', '.join(DISTRIBUTIONS)} "
                        "(or give 'values')")
        return None
    when = _when(spec.get("when"), where, problems)
    log = check_value(spec.get("log", False), PARAM_FIELDS["log"], f"{where}.log", problems)
    n = None if spec.get("n") is None else check_value(spec["n"], PARAM_FIELDS["n"], f"{where}.n", problems)
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            problems.append(f"{where}.values must be a non-empty list, got {values!r}")
        elif len({point_key({"v": v}) for v in values}) < len(values):
            problems.append(f"{where}.values lists a value twice: {values!r}")
        if len(problems) > before:
            return None
        return Param(key, kind, values=tuple(_yaml_number(v) for v in values), when=when)
    ends = {}
    for end in ("low", "high"):
        if spec.get(end) is None:
            problems.append(f"missing '{where}.{end}' (the {kind} range)")
        else:
            ends[end] = check_value(spec[end], PARAM_FIELDS[end], f"{where}.{end}", problems)
    if len(problems) > before:
        return None
    low, high = ends["low"], ends["high"]
    if not low < high:
        problems.append(f"{where}: low ({low}) must be below high ({high})")
    elif (kind == "loguniform" or log) and low <= 0:
        problems.append(f"{where}: a log scale needs low > 0, got {low}")
    elif kind == "int":
        low, high = (check_value(v, Field(int), f"{where}.{end}", problems) for end, v in (("low", low), ("high", high)))
    if len(problems) > before:
        return None
    return Param(key, kind, low=low, high=high, log=log, n=n, when=when)


def _objectives(section, problems: list[str]) -> list[Objective]:
    names = ", ".join(OBJECTIVES)
    if not isinstance(section, list) or len(section) < 2:
        problems.append("'metrics' must list two or more metrics, e.g. [{name: val_accuracy, goal: maximize}, "
                        f"{{name: params, goal: minimize}}] (one metric: use 'metric'), got {section!r}")
        return []
    objectives = []
    for i, item in enumerate(section):
        where = f"metrics[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            problems.append(f"{where} must be a mapping {{name: ..., goal: ...}}, got {item!r}")
            continue
        _unknown(item, OBJECTIVE_FIELDS, f"{where}.", problems)
        name = item.get("name")
        if name not in OBJECTIVES:
            problems.append(f"{where}.name is {name!r}; choose one of {names}")
            continue
        goal = item.get("goal", OBJECTIVES[name][1])
        if goal not in GOALS:
            problems.append(f"{where}.goal is {goal!r}; choose maximize or minimize")
        elif any(o.name == name for o in objectives):
            problems.append(f"'metrics' lists {name} twice")
        else:
            objectives.append(Objective(name, goal))
    if not any(o.name in METRICS for o in objectives) and len(objectives) == len(section):
        problems.append("'metrics' needs val_accuracy or val_loss among them (the validation "
                        "result the sweep reports and halving would use)")
    return objectives


def _when(when, where: str, problems: list[str]) -> dict:
    if when is None:
        return {}
    if not isinstance(when, dict) or not when:
        problems.append(f"{where}.when must map keys to values, e.g. {{optimizer.name: sgd}}")
        return {}
    return {str(k): tuple(v) if isinstance(v, list) else (v,) for k, v in when.items()}


def _zips(section, problems: list[str]) -> list[ZipGroup]:
    if section is None:
        return []
    if not isinstance(section, list):
        problems.append("'zip' must be a list of groups, each mapping keys to equally long lists")
        return []
    groups = []
    for i, group in enumerate(section):
        where = f"zip[{i}]"
        if not isinstance(group, dict) or len(group) < 1:
            problems.append(f"{where} must map keys to lists of values")
            continue
        before = len(problems)
        for key, values in group.items():
            _parts(str(key), f"{where}.{key}", problems)
            if not isinstance(values, list) or not values:
                problems.append(f"{where}.{key} must be a non-empty list, got {values!r}")
        if len(problems) > before:
            continue
        if len({len(v) for v in group.values()}) > 1:
            sizes = ", ".join(f"{k}: {len(v)}" for k, v in group.items())
            problems.append(f"{where}: the lists must be equally long ({sizes})")
            continue
        groups.append(ZipGroup(tuple(str(k) for k in group), tuple(zip(*group.values()))))
    return groups


def _seeds(raw: dict, base: dict, problems: list[str]) -> list:
    if "repeats" in raw and "seeds" in raw:
        problems.append("give 'repeats' or 'seeds', not both")
        return [None]
    if "seeds" in raw:
        seeds = raw["seeds"]
        item = SPEC_FIELDS["seeds"].items
        if not isinstance(seeds, list) or not seeds or not all(is_integer(s) and not item.check(s) for s in seeds):
            problems.append(f"'seeds' must be a list of integers {item.check.text()}, got {seeds!r}")
        elif len(set(seeds)) < len(seeds):
            problems.append(f"'seeds' lists a seed twice: {seeds!r}")
        else:
            return list(seeds)
        return [None]
    if "repeats" in raw:
        repeats = check_value(raw["repeats"], SPEC_FIELDS["repeats"], "repeats", problems)
        if repeats is INVALID:
            return [None]
        first = _lookup(base, "train.seed")
        first = first if is_integer(first) else 0
        return [first + r for r in range(repeats)]
    return [None]  # the base config's own seed


def _halving(section, base: dict, swept: list[str], problems: list[str], script: bool = False):
    """The spec's Halving, None without one, INVALID where a problem was reported."""
    if section is None:
        return None
    if not isinstance(section, dict):
        problems.append(f"'halving' must be a mapping, got {section!r}")
        return INVALID
    before = len(problems)
    _unknown(section, HALVING_FIELDS, "halving.", problems)
    if script and "max_epochs" not in section:
        problems.append("halving.max_epochs is needed for a sweep of your own code: the epochs "
                        "(or steps) a trial that is never pruned runs")
    if "train.epochs" in swept:
        problems.append("halving decides the epochs; do not sweep train.epochs with it")
    rule = section.get("rule", "asha")
    if rule not in HALVING_RULES:
        problems.append(f"halving.rule is {rule!r}; choose one of {', '.join(HALVING_RULES)}")
    elif rule == "median" and "eta" in section:
        problems.append("halving.eta is for the asha and hyperband rules; the median rule "
                        "checks every epoch from min_epochs on (its own key: min_trials)")
    elif rule != "median" and "min_trials" in section:
        problems.append("halving.min_trials is for rule: median")
    epochs = _lookup(base, "train.epochs")
    default_max = epochs if is_integer(epochs) else 10
    given = {key: check_value(section[key], field, f"halving.{key}", problems) if key in section else field.default
             for key, field in HALVING_FIELDS.items() if key != "rule"}
    if len(problems) > before:
        return INVALID
    h = Halving(min_epochs=given["min_epochs"], eta=given["eta"], rule=rule, min_trials=given["min_trials"],
                max_epochs=default_max if given["max_epochs"] is None else given["max_epochs"])
    if not h.rungs:
        problems.append(f"halving.min_epochs ({h.min_epochs}) must be below the trials' epochs "
                        f"({h.max_epochs}), or nothing is ever pruned")
        return INVALID
    if h.max_epochs != default_max and not script:
        try:
            set_path(base, ["train", "epochs"], h.max_epochs, "halving.max_epochs")
        except ConfigError as exc:  # a base whose train is not a section
            problems.append(str(exc))
            return INVALID
    return h


def _script(raw: dict, path: Path, problems: list[str]):
    """The spec's ``command`` or ``function`` (a sweep of your own code), checked; None for
    a base config, INVALID where a problem was reported."""
    given = [k for k in ("base", "command", "function") if k in raw]
    if len(given) > 1:
        problems.append(f"give one of 'base', 'command' and 'function', not {' and '.join(given)}")
        return INVALID
    if "command" in raw:
        command = raw["command"]
        if not isinstance(command, str) or not command.strip():
            problems.append("'command' must be a command line such as 'python train.py --lr {lr}'")
            return INVALID
        return {"command": command, "cwd": str(path.parent.resolve())}
    if "function" in raw:
        function = raw["function"]
        if not isinstance(function, str) or function.count(":") != 1 or not all(function.split(":")):
            problems.append(f"'function' must be 'file.py:name' or 'module:name', got {function!r}")
            return INVALID
        where, _ = function.split(":")
        if where.endswith(".py") and not (path.parent / where).is_file():
            problems.append(f"function: {where} not found next to the spec ({path.parent})")
            return INVALID
        return {"function": function, "cwd": str(path.parent.resolve())}
    return None


def _check_placeholders(command: str, names: list[str], problems: list[str]) -> None:
    """Every ``{name}`` of the command is a parameter (or ``seed``): a typo fails before any trial."""
    values = {n: 0 for n in names} | {"seed": 0}
    try:
        for token in shlex.split(command):
            token.format_map(values)
    except KeyError as exc:
        problems.append(f"command: {{{exc.args[0]}}} is not a parameter of the sweep "
                        f"(parameters: {', '.join(names) or 'none'}; also {{seed}})")
    except (ValueError, IndexError) as exc:
        problems.append(f"command: {exc} (write a literal brace as {{{{ or }}}})")


def _find_base(spec_path: Path, base, problems: list[str]) -> Path | None:
    if not isinstance(base, str) or not base:
        problems.append(f"'base' must be the path of a config file, got {base!r}")
        return None
    for candidate in (spec_path.parent / base, Path(base)):
        if candidate.is_file():
            return candidate
    problems.append(f"base config {base!r} not found (looked in {spec_path.parent} and the current directory)")
    return None


def _mapping(value, where: str, problems: list[str]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"'{where}' must be a mapping, got {value!r}")
        return {}
    return value


def _parts(key, where: str, problems: list[str]) -> list[str] | None:
    parts = str(key).split(".")
    if not isinstance(key, str) or any(not p for p in parts):
        problems.append(f"{where}: {key!r} is not a dotted config key such as optimizer.lr")
        return None
    return parts


def _unknown(given: dict, allowed, prefix: str, problems: list[str]) -> None:
    allowed = list(allowed)
    for key in given:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            extra = f"; did you mean '{prefix}{hint[0]}'?" if hint else f" (allowed: {', '.join(allowed)})"
            problems.append(f"unknown key '{prefix}{key}'{extra}")


def _yaml_number(value):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; a sweep value that looks
    like a number is one."""
    if isinstance(value, str) and "e" in value.lower() and FLOAT_TEXT.match(value.strip()):
        return float(value)
    return value


def short_value(value) -> str:
    """A value as a trial's label shows it: 4 significant digits, layer lists as text."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and all(isinstance(v, dict) and "type" in v for v in value):
        return describe_layers(value)
    text = json.dumps(value, default=str) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
