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
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..config import FLOAT_TEXT, describe_layers, load_yaml, set_path, validate
from ..errors import ConfigError
from ..tracking.records import lower_is_better
from ..tracking.run import metric_name_problem
from ..tracking.store import slugify
from ..values import is_integer
from .space import Param, Space, ZipGroup, point_key

SPEC_KEYS = ("name", "description", "base", "command", "function", "overrides", "metric", "goal", "metrics", "method", "n_trials",
             "seed", "batch", "startup_trials", "repeats", "seeds", "halving", "parameters", "zip")
PARAM_KEYS = ("values", "distribution", "low", "high", "log", "n", "when")
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")
METRICS = {"val_accuracy": "maximize", "val_loss": "minimize"}
# What a multi-objective sweep may trade off: {metric: (summary.json key, default goal)}.
OBJECTIVES = {"val_accuracy": ("final_val_accuracy", "maximize"), "val_loss": ("final_val_loss", "minimize"),
              "params": ("params", "minimize"), "train_seconds": ("train_seconds", "minimize")}
METHODS = ("grid", "random", "tpe")
HALVING_KEYS = ("rule", "min_epochs", "eta", "max_epochs", "min_trials")
HALVING_RULES = ("asha", "median", "hyperband")
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
    """Read and check a sweep spec; every error names the file and the key.

    ``seed`` replaces the spec's seed (random and tpe): another sweep, named
    ``<name>-seed<seed>``, so that one spec can be searched with several seeds.
    """
    path = Path(path)
    raw = load_yaml(path)
    src = str(path)
    _unknown(raw, SPEC_KEYS, "", src)
    script = _script(raw, path, src)
    if seed is not None:
        if raw.get("method", "grid") not in ("random", "tpe"):
            raise ConfigError(f"--seed: {src} is a grid; a seed changes only random and tpe searches")
        raw["name"] = f"{raw.get('name', path.stem)}-seed{seed}"
        raw["seed"] = seed
    if script is not None:
        base_path, base = path, {}
        if "overrides" in raw:
            raise ConfigError(f"{src}: 'overrides' change a base config; a sweep of a {next(iter(script))} "
                              "takes fixed values as parameters with one value, or in the command itself")
    elif "base" not in raw:
        raise ConfigError(f"{src}: missing 'base': the config file every trial starts from "
                          "(or 'command' / 'function': your own code, docs/your-code.md)")
    else:
        base_path = _find_base(path, raw["base"], src)
        base = load_yaml(base_path)
    for key, value in _mapping(raw.get("overrides"), "overrides", src).items():
        set_path(base, _parts(key, f"overrides.{key}", src), copy.deepcopy(value), f"{src}: overrides.{key}")

    if script is not None:
        if "metrics" in raw:
            raise ConfigError(f"{src}: 'metrics' (several objectives) is for sweeps of a base config; give "
                              "'metric' (and 'goal'), a name the script logs")
        metric = raw.get("metric", "val_accuracy")
        problem = metric_name_problem(metric)
        if problem is not None:
            raise ConfigError(f"{src}: 'metric' {metric!r} {problem}")
        goal = raw.get("goal", "minimize" if lower_is_better(metric) else "maximize")
        if goal not in ("maximize", "minimize"):
            raise ConfigError(f"{src}: 'goal' is {goal!r}; choose maximize or minimize")
        objectives = (Objective(metric, goal),)
    elif "metrics" in raw:
        if "metric" in raw or "goal" in raw:
            raise ConfigError(f"{src}: give 'metric' (and 'goal') or 'metrics', not both")
        objectives = _objectives(raw["metrics"], src)
        metric, goal = next((o.name, o.goal) for o in objectives if o.name in METRICS)
    else:
        metric = raw.get("metric", "val_accuracy")
        if metric not in METRICS:
            raise ConfigError(f"{src}: 'metric' is {metric!r}; choose one of {', '.join(METRICS)} "
                              "(measured on the validation set at the last epoch)")
        goal = raw.get("goal", METRICS[metric])
        if goal not in ("maximize", "minimize"):
            raise ConfigError(f"{src}: 'goal' is {goal!r}; choose maximize or minimize")
        objectives = (Objective(metric, goal),)
    method = raw.get("method", "grid")
    if method not in METHODS:
        hint = (" (halving is a block of its own: 'halving: {min_epochs: 1, eta: 3}')" if method == "halving" else
                " (model-based search is method: tpe)" if method in ("bayes", "bayesian", "optuna", "hyperopt") else "")
        raise ConfigError(f"{src}: 'method' is {method!r}; choose grid, random or tpe{hint}")
    n_trials = raw.get("n_trials")
    if method in ("random", "tpe"):
        n_trials = _int(n_trials, "n_trials", src, minimum=1, required=True)
    elif n_trials is not None:
        raise ConfigError(f"{src}: 'n_trials' is for method: random or tpe; a grid runs every combination")
    seed = _int(raw.get("seed", 0), "seed", src, minimum=0)
    batch = raw.get("batch")
    if batch is not None:
        if method != "tpe":
            raise ConfigError(f"{src}: 'batch' is for method: tpe (points proposed together); "
                              f"{method} plans every trial up front")
        batch = _int(batch, "batch", src, minimum=1)
    if "startup_trials" in raw and method != "tpe":
        raise ConfigError(f"{src}: 'startup_trials' is for method: tpe (random points before the model proposes)")
    startup = _int(raw.get("startup_trials", 10), "startup_trials", src, minimum=0)

    space = Space(tuple(_params(raw.get("parameters"), src)), tuple(_zips(raw.get("zip"), src)))
    if not space.params and not space.zips and "repeats" not in raw and "seeds" not in raw:
        raise ConfigError(f"{src}: nothing to sweep: add 'parameters', 'zip' or 'repeats'")
    swept = [p.key for p in space.params] + [k for z in space.zips for k in z.keys]
    duplicates = sorted({k for k in swept if swept.count(k) > 1})
    if duplicates:
        raise ConfigError(f"{src}: {', '.join(duplicates)} is swept twice (in parameters and/or zip)")
    for p in space.params:
        for key in p.when:
            if key not in swept[: swept.index(p.key)] and _lookup(base, key) is _MISSING:
                raise ConfigError(f"{src}: parameters.{p.key}.when: {key!r} is neither a parameter declared "
                                  "before it nor a key of the base config")
    if method == "tpe" and not space.params and not space.zips:
        raise ConfigError(f"{src}: method: tpe searches 'parameters' (or 'zip' groups); this spec has none")
    if method == "grid":
        for p in space.params:
            if not p.is_discrete:
                raise ConfigError(f"{src}: parameters.{p.key}: a grid needs discrete values; give 'values', "
                                  f"or 'n' points for the {p.kind} range, or use method: random")

    seeds = _seeds(raw, base, src)
    if "train.seed" in swept and ("repeats" in raw or "seeds" in raw):
        raise ConfigError(f"{src}: train.seed is swept and repeated; use one of the two")
    halving = _halving(raw.get("halving"), base, swept, src, script is not None)
    if halving is not None and len(objectives) > 1:
        raise ConfigError(f"{src}: halving stops trials on one metric; with several 'metrics' leave it out")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{src}: 'name' must be a non-empty string")
    if script is not None and "command" in script:
        _check_placeholders(script["command"], [p.key for p in space.params] + [k for z in space.zips for k in z.keys],
                            src)
    return SweepSpec(path, name, base_path, base, space, metric, goal, method, n_trials, seed, seeds,
                     halving, raw, tuple(objectives), batch, startup, script)


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


def _params(section, src) -> list[Param]:
    params = []
    for key, spec in _mapping(section, "parameters", src).items():
        where = f"parameters.{key}"
        _parts(key, where, src)
        if isinstance(spec, list):
            spec = {"values": spec}
        if not isinstance(spec, dict):
            raise ConfigError(f"{src}: {where} is {spec!r}: give a list of values or a mapping such as "
                              "{distribution: loguniform, low: 1.0e-4, high: 0.1}; a single fixed value "
                              "belongs under 'overrides'")
        params.append(_param(key, spec, where, src))
    return params


def _param(key: str, spec: dict, where: str, src: str) -> Param:
    _unknown(spec, PARAM_KEYS, f"{where}.", src)
    kind = spec.get("distribution", "choice" if "values" in spec else None)
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{src}: {where}: 'distribution' is {kind!r}; choose one of {', '.join(DISTRIBUTIONS)} "
                          "(or give 'values')")
    when = _when(spec.get("when"), where, src)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{src}: {where}.log must be true or false, got {log!r}")
    n = None if spec.get("n") is None else _int(spec["n"], f"{where}.n", src, minimum=2)
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{src}: {where}.values must be a non-empty list, got {values!r}")
        if len({point_key({"v": v}) for v in values}) < len(values):
            raise ConfigError(f"{src}: {where}.values lists a value twice: {values!r}")
        return Param(key, kind, values=tuple(_yaml_number(v) for v in values), when=when)
    low, high = _number(spec.get("low"), f"{where}.low", src), _number(spec.get("high"), f"{where}.high", src)
    if not low < high:
        raise ConfigError(f"{src}: {where}: low ({low}) must be below high ({high})")
    if (kind == "loguniform" or log) and low <= 0:
        raise ConfigError(f"{src}: {where}: a log scale needs low > 0, got {low}")
    if kind == "int":
        low, high = _int(low, f"{where}.low", src), _int(high, f"{where}.high", src)
    return Param(key, kind, low=low, high=high, log=log, n=n, when=when)


def _objectives(section, src: str) -> list[Objective]:
    names = ", ".join(OBJECTIVES)
    if not isinstance(section, list) or len(section) < 2:
        raise ConfigError(f"{src}: 'metrics' must list two or more metrics, e.g. [{{name: val_accuracy, goal: "
                          f"maximize}}, {{name: params, goal: minimize}}] (one metric: use 'metric'), got {section!r}")
    objectives = []
    for i, item in enumerate(section):
        where = f"metrics[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            raise ConfigError(f"{src}: {where} must be a mapping {{name: ..., goal: ...}}, got {item!r}")
        _unknown(item, ("name", "goal"), f"{where}.", src)
        name = item.get("name")
        if name not in OBJECTIVES:
            raise ConfigError(f"{src}: {where}.name is {name!r}; choose one of {names}")
        goal = item.get("goal", OBJECTIVES[name][1])
        if goal not in ("maximize", "minimize"):
            raise ConfigError(f"{src}: {where}.goal is {goal!r}; choose maximize or minimize")
        if any(o.name == name for o in objectives):
            raise ConfigError(f"{src}: 'metrics' lists {name} twice")
        objectives.append(Objective(name, goal))
    if not any(o.name in METRICS for o in objectives):
        raise ConfigError(f"{src}: 'metrics' needs val_accuracy or val_loss among them (the validation "
                          "result the sweep reports and halving would use)")
    return objectives


def _when(when, where: str, src: str) -> dict:
    if when is None:
        return {}
    if not isinstance(when, dict) or not when:
        raise ConfigError(f"{src}: {where}.when must map keys to values, e.g. {{optimizer.name: sgd}}")
    return {str(k): tuple(v) if isinstance(v, list) else (v,) for k, v in when.items()}


def _zips(section, src) -> list[ZipGroup]:
    if section is None:
        return []
    if not isinstance(section, list):
        raise ConfigError(f"{src}: 'zip' must be a list of groups, each mapping keys to equally long lists")
    groups = []
    for i, group in enumerate(section):
        where = f"zip[{i}]"
        if not isinstance(group, dict) or len(group) < 1:
            raise ConfigError(f"{src}: {where} must map keys to lists of values")
        lengths = set()
        for key, values in group.items():
            _parts(str(key), f"{where}.{key}", src)
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{src}: {where}.{key} must be a non-empty list, got {values!r}")
            lengths.add(len(values))
        if len(lengths) > 1:
            sizes = ", ".join(f"{k}: {len(v)}" for k, v in group.items())
            raise ConfigError(f"{src}: {where}: the lists must be equally long ({sizes})")
        keys = tuple(str(k) for k in group)
        groups.append(ZipGroup(keys, tuple(zip(*group.values()))))
    return groups


def _seeds(raw: dict, base: dict, src: str) -> list:
    if "repeats" in raw and "seeds" in raw:
        raise ConfigError(f"{src}: give 'repeats' or 'seeds', not both")
    if "seeds" in raw:
        seeds = raw["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(
                is_integer(s) and s >= 0 for s in seeds):
            raise ConfigError(f"{src}: 'seeds' must be a list of integers >= 0, got {seeds!r}")
        if len(set(seeds)) < len(seeds):
            raise ConfigError(f"{src}: 'seeds' lists a seed twice: {seeds!r}")
        return list(seeds)
    if "repeats" in raw:
        repeats = _int(raw["repeats"], "repeats", src, minimum=1)
        first = _lookup(base, "train.seed")
        first = first if is_integer(first) else 0
        return [first + r for r in range(repeats)]
    return [None]  # the base config's own seed


def _halving(section, base: dict, swept: list[str], src: str, script: bool = False) -> Halving | None:
    if section is None:
        return None
    section = _mapping(section, "halving", src)
    _unknown(section, HALVING_KEYS, "halving.", src)
    if script and "max_epochs" not in section:
        raise ConfigError(f"{src}: halving.max_epochs is needed for a sweep of your own code: the epochs "
                          "(or steps) a trial that is never pruned runs")
    if "train.epochs" in swept:
        raise ConfigError(f"{src}: halving decides the epochs; do not sweep train.epochs with it")
    rule = section.get("rule", "asha")
    if rule not in HALVING_RULES:
        raise ConfigError(f"{src}: halving.rule is {rule!r}; choose one of {', '.join(HALVING_RULES)}")
    if rule == "median" and "eta" in section:
        raise ConfigError(f"{src}: halving.eta is for the asha and hyperband rules; the median rule "
                          "checks every epoch from min_epochs on (its own key: min_trials)")
    if rule != "median" and "min_trials" in section:
        raise ConfigError(f"{src}: halving.min_trials is for rule: median")
    epochs = _lookup(base, "train.epochs")
    default_max = epochs if is_integer(epochs) else 10
    h = Halving(min_epochs=_int(section.get("min_epochs", 1), "halving.min_epochs", src, minimum=1),
                eta=_int(section.get("eta", 3), "halving.eta", src, minimum=2),
                max_epochs=_int(section.get("max_epochs", default_max), "halving.max_epochs", src, minimum=1),
                rule=rule, min_trials=_int(section.get("min_trials", 3), "halving.min_trials", src, minimum=1))
    if not h.rungs:
        raise ConfigError(f"{src}: halving.min_epochs ({h.min_epochs}) must be below the trials' epochs "
                          f"({h.max_epochs}), or nothing is ever pruned")
    if h.max_epochs != default_max and not script:
        set_path(base, ["train", "epochs"], h.max_epochs, f"{src}: halving.max_epochs")
    return h


def _script(raw: dict, path: Path, src: str) -> dict | None:
    """The spec's ``command`` or ``function`` (a sweep of your own code), checked; None for a base config."""
    given = [k for k in ("base", "command", "function") if k in raw]
    if len(given) > 1:
        raise ConfigError(f"{src}: give one of 'base', 'command' and 'function', not {' and '.join(given)}")
    if "command" in raw:
        command = raw["command"]
        if not isinstance(command, str) or not command.strip():
            raise ConfigError(f"{src}: 'command' must be a command line such as 'python train.py --lr {{lr}}'")
        return {"command": command, "cwd": str(path.parent.resolve())}
    if "function" in raw:
        function = raw["function"]
        if not isinstance(function, str) or function.count(":") != 1 or not all(function.split(":")):
            raise ConfigError(f"{src}: 'function' must be 'file.py:name' or 'module:name', got {function!r}")
        where, _ = function.split(":")
        if where.endswith(".py") and not (path.parent / where).is_file():
            raise ConfigError(f"{src}: function: {where} not found next to the spec ({path.parent})")
        return {"function": function, "cwd": str(path.parent.resolve())}
    return None


def _check_placeholders(command: str, names: list[str], src: str) -> None:
    """Every ``{name}`` of the command is a parameter (or ``seed``): a typo fails before any trial."""
    values = {n: 0 for n in names} | {"seed": 0}
    try:
        for token in shlex.split(command):
            token.format_map(values)
    except KeyError as exc:
        raise ConfigError(f"{src}: command: {{{exc.args[0]}}} is not a parameter of the sweep "
                          f"(parameters: {', '.join(names) or 'none'}; also {{seed}})") from None
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"{src}: command: {exc} (write a literal brace as {{{{ or }}}})") from None


def _find_base(spec_path: Path, base, src: str) -> Path:
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{src}: 'base' must be the path of a config file, got {base!r}")
    for candidate in (spec_path.parent / base, Path(base)):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{src}: base config {base!r} not found (looked in {spec_path.parent} and the current directory)")


def _mapping(value, where: str, src: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{src}: '{where}' must be a mapping, got {value!r}")
    return value


def _parts(key, where: str, src: str) -> list[str]:
    parts = str(key).split(".")
    if not isinstance(key, str) or any(not p for p in parts):
        raise ConfigError(f"{src}: {where}: {key!r} is not a dotted config key such as optimizer.lr")
    return parts


def _unknown(given: dict, allowed, prefix: str, src: str) -> None:
    for key in given:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            extra = f"; did you mean '{prefix}{hint[0]}'?" if hint else f" (allowed: {', '.join(allowed)})"
            raise ConfigError(f"{src}: unknown key '{prefix}{key}'{extra}")


def _int(value, where: str, src: str, minimum: int | None = None, required: bool = False) -> int:
    if value is None and required:
        raise ConfigError(f"{src}: missing '{where}'")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{src}: '{where}' must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{src}: '{where}' must be >= {minimum}, got {value}")
    return value


def _number(value, where: str, src: str) -> float:
    value = _yaml_number(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{src}: '{where}' must be a number, got {value!r}")
    return float(value)


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
