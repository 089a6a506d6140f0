"""The search space of a sweep: parameters, their distributions, and how a
space becomes a list of points (grid) or a sample of them (random).

A *point* is a dict ``{dotted config key: value}``. Parameters are declared
in order; a conditional parameter (``when``) is only part of a point whose
earlier values (or the base config) satisfy its condition, e.g.
``optimizer.momentum`` only when ``optimizer.name`` is ``sgd``. A *zip group*
is several parameters that take their i-th values together, one axis of the
grid instead of a cross product.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field

import numpy as np

DISCRETE_LIMIT = 100_000  # enumerate a discrete space up to this many points


@dataclass(frozen=True)
class Param:
    """One swept config key.

    ``kind`` is ``choice`` (``values``), ``uniform`` or ``loguniform``
    (``low``..``high``, floats) or ``int`` (``low``..``high`` inclusive,
    log-spaced when ``log``). ``n`` turns a continuous range into ``n`` grid
    points (evenly spaced, geometrically for ``loguniform``).
    """

    key: str
    kind: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    n: int | None = None
    when: dict = field(default_factory=dict)  # {dotted key: tuple of allowed values}

    @property
    def is_discrete(self) -> bool:
        return self.kind in ("choice", "int") or self.n is not None

    def grid_values(self) -> list:
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int" and self.n is None:
            return list(range(int(self.low), int(self.high) + 1))
        if self.n is None:
            raise ValueError(f"'{self.key}' is a continuous {self.kind} range: a grid needs 'values' or 'n'")
        if self.kind == "loguniform" or (self.kind == "int" and self.log):
            points = np.geomspace(self.low, self.high, self.n)
        else:
            points = np.linspace(self.low, self.high, self.n)
        if self.kind == "int":
            return sorted({int(round(p)) for p in points})
        return [float(p) for p in points]

    def sample(self, rng: np.random.Generator):
        if self.kind == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        if self.n is not None:
            values = self.grid_values()
            return values[int(rng.integers(len(values)))]
        if self.kind == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        if self.log:  # an int on a log scale: uniform in log space, rounded
            return int(round(math.exp(rng.uniform(math.log(self.low), math.log(self.high)))))
        return int(rng.integers(int(self.low), int(self.high) + 1))

    def applies(self, point: dict, base_lookup) -> bool:
        """Whether every condition holds on the point's values (or the base config's)."""
        for key, allowed in self.when.items():
            value = point[key] if key in point else base_lookup(key)
            if value not in allowed:
                return False
        return True


@dataclass(frozen=True)
class ZipGroup:
    """Parameters that vary together: the i-th trial of the group takes the
    i-th value of every member."""

    keys: tuple
    rows: tuple  # tuple of tuples, one per position

    def points(self) -> list[dict]:
        return [dict(zip(self.keys, row)) for row in self.rows]


@dataclass(frozen=True)
class Space:
    params: tuple  # Param, in declaration order
    zips: tuple = ()  # ZipGroup

    @property
    def is_discrete(self) -> bool:
        return all(p.is_discrete for p in self.params)

    def grid(self, base_lookup) -> list[dict]:
        """Every combination, in declaration order (the last parameter varies fastest).

        Zip groups are axes after the plain parameters; conditional parameters
        multiply only the points their condition selects. Equal points are
        kept once.
        """
        plain = [p for p in self.params if not p.when]
        axes = [[{p.key: v} for v in p.grid_values()] for p in plain]
        axes += [z.points() for z in self.zips]
        points = [_merge(combo) for combo in itertools.product(*axes)]
        for p in (p for p in self.params if p.when):
            expanded = []
            for point in points:
                if p.applies(point, base_lookup):
                    expanded += [{**point, p.key: v} for v in p.grid_values()]
                else:
                    expanded.append(point)
            points = expanded
        return _unique(points)

    def sample(self, n: int, seed: int, base_lookup) -> tuple[list[dict], bool]:
        """``n`` distinct random points and whether the space ran out first.

        A discrete space small enough to enumerate is shuffled and cut, so no
        point repeats and an ``n`` larger than the space yields all of it; a
        continuous one is sampled point by point (repeats have probability 0,
        but are still refused).
        """
        rng = np.random.default_rng(seed)
        if self.is_discrete and self.size_at_most(DISCRETE_LIMIT):
            points = self.grid(base_lookup)
            order = rng.permutation(len(points))
            return [points[i] for i in order[:n]], n > len(points)
        points, seen = [], set()
        for _ in range(100 * n):
            point = self._draw(rng, base_lookup)
            key = point_key(point)
            if key not in seen:
                seen.add(key)
                points.append(point)
                if len(points) == n:
                    return points, False
        return points, True

    def size_at_most(self, limit: int) -> bool:
        size = 1
        for p in self.params:
            size *= len(p.grid_values())
            if size > limit:
                return False
        for z in self.zips:
            size *= len(z.rows)
        return size <= limit

    def _draw(self, rng, base_lookup) -> dict:
        point = {}
        for z in self.zips:
            point.update(z.points()[int(rng.integers(len(z.rows)))])
        for p in self.params:
            if p.applies(point, base_lookup):
                point[p.key] = p.sample(rng)
        return point


def point_key(point: dict) -> str:
    """A canonical text for a point, equal for equal points."""
    return json.dumps(point, sort_keys=True, separators=(",", ":"), default=str)


def _merge(dicts) -> dict:
    out = {}
    for d in dicts:
        out.update(d)
    return out


def _unique(points: list[dict]) -> list[dict]:
    seen, out = set(), []
    for point in points:
        key = point_key(point)
        if key not in seen:
            seen.add(key)
            out.append(point)
    return out
