"""Whether one configuration is really better than another, over seeds.

For each group of runs (one configuration, several seeds) against a
reference group (the best one, or the one the user names), on one metric:

- the difference of the means (group - reference) with its 95% confidence
  interval: Welch's interval (unequal variances, Welch-Satterthwaite degrees
  of freedom), or, when both groups ran the same seeds, the interval of the
  mean per-seed difference (paired by seed: a seed that is hard for one
  configuration is often hard for the other, and pairing removes that share
  of the noise);
- the two-sided p-value of the matching t-test (Welch's, or the paired one),
  and the p-values adjusted for testing several groups at once (Holm);
- an effect size: Hedges' g (Cohen's d with the small-sample correction,
  which with 3 seeds per group shrinks d by a fifth) for independent groups,
  d_z (mean difference over the standard deviation of the differences) for
  paired ones;
- the seeds per group that a two-sided test at alpha 0.05 needs to detect the
  observed effect with 80% power (noncentral t).

The arithmetic is plain Python on a handful of numbers; the distributions
(Student's t and the noncentral t) come from ``scipy.special``, the part of
SciPy the tests of ``scipy.stats`` are built on, which loads in a fraction of
the time ``scipy.stats`` takes (see docs/design.md). The tests check every
result against ``scipy.stats`` and published tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.special import nctdtr, stdtr, stdtrit

from ..values import is_missing, is_number

ALPHA = 0.05
POWER = 0.8
WELCH = "welch"
PAIRED = "paired"


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t distribution with ``df`` degrees of freedom
    (``t_quantile(0.975, n - 1)`` is the multiplier of a 95% interval from n
    values: 12.706 for n = 2, 2.262 for n = 10); ``df`` may be fractional or inf."""
    if not is_number(p) or not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must be a probability in (0, 1), got {p!r}")
    if not is_number(df) or not df > 0:
        raise ValueError(f"t_quantile: df must be > 0, got {df!r}")
    return float(stdtrit(float(df), float(p)))


def _two_sided_p(t: float, df: float) -> float:
    return float(2.0 * stdtr(df, -abs(t)))


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (ddof 1), count and the half-width of
    the 95% t-interval of the mean; std and ci95 are NaN below two values."""

    mean: float
    std: float
    n: int
    ci95: float


def summarize_values(values) -> Summary:
    """Summary of the present numbers among ``values`` (None and NaN dropped)."""
    x = [float(v) for v in values if is_number(v) and not is_missing(v)]
    n = len(x)
    mean = math.fsum(x) / n if n else math.nan
    if n < 2:
        return Summary(mean, math.nan, n, math.nan)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in x) / (n - 1))
    return Summary(mean, std, n, t_quantile(0.975, n - 1) * std / math.sqrt(n))


# ------------------------------------------------------------------ the tests


@dataclass(frozen=True)
class Difference:
    """One group against the reference: ``diff`` = mean(group) - mean(reference)."""

    test: str  # WELCH or PAIRED
    diff: float
    low: float  # the 95% confidence interval of diff
    high: float
    p: float  # two-sided; NaN where the test is undefined (no spread at all)
    df: float
    effect: float  # Hedges' g (welch) or d_z (paired); NaN where undefined
    n: int  # seeds per group (pairs for a paired test; the smaller group otherwise)


def welch(group, reference) -> Difference:
    """Welch's t-test of two independent samples (at least two values each)."""
    a, b = summarize_values(group), summarize_values(reference)
    if a.n < 2 or b.n < 2:
        raise ValueError("welch: each sample needs at least two values")
    diff = a.mean - b.mean
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    se = math.sqrt(va + vb)
    if se == 0.0:  # no spread in either group: no test, an interval of one point
        return Difference(WELCH, diff, diff, diff, math.nan, math.nan, math.nan, min(a.n, b.n))
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
    half = t_quantile(0.975, df) * se
    return Difference(WELCH, diff, diff - half, diff + half, _two_sided_p(diff / se, df), df,
                      hedges_g(a, b), min(a.n, b.n))


def hedges_g(a: Summary, b: Summary) -> float:
    """Cohen's d with the pooled standard deviation, times Hedges' exact
    small-sample correction J(df) = Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2))."""
    df = a.n + b.n - 2
    pooled = math.sqrt(((a.n - 1) * a.std ** 2 + (b.n - 1) * b.std ** 2) / df)
    if pooled == 0.0:
        return math.nan
    j = math.exp(math.lgamma(df / 2) - 0.5 * math.log(df / 2) - math.lgamma((df - 1) / 2))
    return j * (a.mean - b.mean) / pooled


def paired(group, reference) -> Difference:
    """The paired t-test of ``group[i] - reference[i]`` (at least two pairs)."""
    if len(group) != len(reference):
        raise ValueError("paired: the samples must have the same length")
    d = summarize_values([x - y for x, y in zip(group, reference)])
    if d.n < 2:
        raise ValueError("paired: at least two pairs are needed")
    if d.std == 0.0:
        return Difference(PAIRED, d.mean, d.mean, d.mean, math.nan, math.nan, math.nan, d.n)
    se = d.std / math.sqrt(d.n)
    return Difference(PAIRED, d.mean, d.mean - d.ci95, d.mean + d.ci95, _two_sided_p(d.mean / se, d.n - 1),
                      float(d.n - 1), d.mean / d.std, d.n)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment of ``pvalues`` (NaN entries are not tests and
    stay NaN): the k-th smallest of m is multiplied by m - k + 1, then made
    non-decreasing, and capped at 1."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m = len(tested)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - k) * p))
        adjusted[i] = running
    return adjusted


def power(effect: float, n: int, paired_test: bool, alpha: float = ALPHA) -> float:
    """Power of the two-sided t-test at ``alpha`` for a true standardized effect
    ``effect``: two groups of ``n`` (d), or ``n`` pairs (d_z)."""
    df = n - 1 if paired_test else 2 * n - 2
    shift = abs(effect) * math.sqrt(n if paired_test else n / 2.0)
    t = t_quantile(1.0 - alpha / 2.0, df)
    return float(1.0 - nctdtr(df, shift, t) + nctdtr(df, shift, -t))


def seeds_needed(effect: float, paired_test: bool, target: float = POWER, alpha: float = ALPHA) -> int | None:
    """The smallest n (seeds per group, or pairs) whose power reaches ``target``;
    None for an effect that is zero or undefined. Cohen's tables: d = 0.8 needs
    26 per group, d = 0.5 needs 64."""
    if not is_number(effect) or is_missing(effect) or effect == 0.0 or math.isinf(effect):
        return None
    z = t_quantile(1.0 - alpha / 2.0, math.inf) + t_quantile(target, math.inf)
    guess = (z / abs(effect)) ** 2 * (1.0 if paired_test else 2.0)  # the normal approximation
    n = max(2, math.ceil(guess))
    while power(effect, n, paired_test, alpha) < target:
        n += 1
    while n > 2 and power(effect, n - 1, paired_test, alpha) >= target:
        n -= 1
    return n


# ------------------------------------------------------------------ groups


def pairs_by_seed(group: list[tuple], reference: list[tuple]) -> tuple[list[float], list[float]] | None:
    """The two groups' values lined up by seed, when both ran the same seeds
    (each once, every value present, two or more); else None.

    Each group is a list of (seed, value)."""
    def by_seed(items):
        out = {}
        for seed, value in items:
            if seed is None or is_missing(seed) or seed in out or not is_number(value) or is_missing(value):
                return None
            out[seed] = float(value)
        return out

    a, b = by_seed(group), by_seed(reference)
    if a is None or b is None or len(a) < 2 or set(a) != set(b):
        return None
    seeds = sorted(a, key=repr)
    return [a[s] for s in seeds], [b[s] for s in seeds]


def against_reference(groups: list[list[tuple]], reference: int) -> list[dict | None]:
    """Every group against ``groups[reference]``: one dict per group (None for the
    reference itself and for groups with fewer than two values), with the
    fields of :class:`Difference`, ``p_holm`` (Holm over the groups tested) and
    ``seeds_80`` (seeds per group for 80% power at alpha 0.05)."""
    ref = groups[reference]
    ref_values = [v for _, v in ref if is_number(v) and not is_missing(v)]
    results: list[Difference | None] = []
    for i, group in enumerate(groups):
        values = [v for _, v in group if is_number(v) and not is_missing(v)]
        if i == reference or len(values) < 2 or len(ref_values) < 2:
            results.append(None)
            continue
        lined = pairs_by_seed(group, ref)
        results.append(paired(*lined) if lined else welch(values, ref_values))
    adjusted = holm([r.p if r else math.nan for r in results])
    out = []
    for r, p_holm in zip(results, adjusted):
        if r is None:
            out.append(None)
            continue
        out.append({"test": r.test, "diff": r.diff, "low": r.low, "high": r.high, "p": r.p, "p_holm": p_holm,
                    "df": r.df, "effect": r.effect, "n": r.n, "seeds_80": seeds_needed(r.effect, r.test == PAIRED)})
    return out
