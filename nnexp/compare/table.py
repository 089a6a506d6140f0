"""``nnexp compare``: choose runs, find what differs, aggregate over seeds, test, render.

The table shows only the parameters that differ between the selected runs
(what they share is noise on screen), then the metrics. Runs that differ only
in their seed are one group: the mean, standard deviation, n and the 95%
confidence interval of the mean (Student t), and, for every group against
the best one (or the ``--baseline``), the difference with its interval, the
p-value of a t-test (paired by seed where the groups ran the same seeds),
the p-value adjusted for the number of groups tested (Holm), an effect size
and the seeds per group that would settle the question (see
``significance.py``).

Everything here works on plain dicts (one flat row per run, see ``rows.py``):
``nnexp compare`` on a store of 10,000 runs loads no pandas. ``Comparison``
still offers both tables as pandas frames, built on first use, for the plots,
the report and notebooks.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from functools import cached_property

from ..errors import ConfigError, NnexpError
from ..nn.optim import OPTIMIZER_SPECS
from ..nn.schedules import SCHEDULE_SPECS
from ..nn.specs import REQUIRED
from ..text_table import aligned, markdown
from ..tracking.records import lower_is_better
from ..values import is_missing, is_number, plain
from .fmt import format_cell
from .rows import flat_row, group_key
from .significance import against_reference, summarize_values

SEED = "param.train.seed"
SEEDS = (SEED, "param.seed")  # the trainer's seed, and a script's (nnexp.init(seed=...) or a config key)
CURVE_METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
DEFAULT_METRICS = ("val_accuracy", "val_loss", "test_accuracy", "train_seconds")
AGGREGATES = ("final", "best", "mean")

# The columns a grouped table adds for its sort metric m, after "m", "m std", "m ci95", "m n":
# the test against the reference, then " diff", " diff_low", " diff_high" (suffixes of m), then these.
TEST = "test"  # "ref" on the reference's row, "welch" or "paired" on the rows tested
TEST_COLUMNS = ("p", "p_holm", "effect", "seeds_80")
REFERENCE = "ref"
# sections whose options have defaults that depend on the section's name
CHOSEN = {"optimizer": OPTIMIZER_SPECS, "schedule": SCHEDULE_SPECS}


@dataclass
class Comparison:
    """What ``nnexp compare`` shows, and what it knows beyond the text.

    ``records`` and ``rows`` (one flat dict per run) are sorted best first;
    ``columns`` and ``table_rows`` are the table as shown (short column names,
    raw values). In a grouped comparison, ``tests[i]`` is table row i against
    the reference (None for the reference and rows without a test: see
    ``significance.against_reference``) and ``reference`` is the reference's
    row (its varied values and metric columns), whether or not ``limit`` cut
    it from the table.
    """

    records: list[dict]
    rows: list[dict]
    varied: list[str]  # param.* keys that differ, the seed excepted
    metric: str  # the metric.* (or param.*) key sorted on
    goal: str  # maximize | minimize
    columns: list[str]
    table_rows: list[dict]
    grouped: bool
    tests: list[dict | None] = field(default_factory=list)
    reference: dict | None = None
    tested: int = 0  # groups tested against the reference (Holm's m), whether or not ``limit`` cut them
    objectives: list = field(default_factory=list)  # [(metric column, goal)] of a multi-objective sweep

    @cached_property
    def runs(self):
        """The runs as a pandas DataFrame (``records_frame``), in this order, with
        the sorting metric's column even where no run has it yet (all missing)."""
        from .frame import records_frame  # pandas: only for plots, reports and notebooks

        frame = records_frame(self.records)
        if self.metric not in frame.columns:
            frame[self.metric] = float("nan")
        return frame

    @cached_property
    def table(self):
        """The table as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame([[row.get(c) for c in self.columns] for row in self.table_rows], columns=self.columns)


def metric_column(name: str, agg: str = "final", present=()) -> str:
    """``val_accuracy`` with ``best`` -> ``metric.best_val_accuracy``, as for any
    column of metrics.csv the runs have (in ``present``); other metrics
    (test_accuracy, train_seconds, ...) have one value per run."""
    name = name.removeprefix("metric.")
    if agg != "final" and (name in CURVE_METRICS or f"metric.{agg}_{name}" in present):
        return f"metric.{agg}_{name}"
    return f"metric.{name}"


def default_goal(metric: str) -> str:
    return "minimize" if lower_is_better(metric) else "maximize"


def varied_params(rows: list[dict], swept: set[str] | None = None) -> list[str]:
    """The param keys with at least two different values, sorted: the differences a person made.

    ``swept``: the keys a sweep's spec varies (see :func:`swept_keys`); only
    they count, the rest being the sweep's base config in every trial. Apart
    from that, an option left at the default of each run's own optimizer or
    schedule (``optimizer.momentum``: 0.0 for sgd, 0.9 for momentum) follows
    the name, which shows. A key that only some runs have (``optimizer.beta1``
    exists for Adam, not for SGD) is not a difference of its own either.
    """
    keys = sorted({k for row in rows for k in row if k.startswith("param.") and k not in SEEDS})
    varied = [k for k in keys if len(_distinct(rows, k)) > 1 and (swept is None or k in swept)]
    if swept is None:
        varied = [k for k in varied if not _follows_a_choice(rows, k, varied)]
    if any(c.startswith("param.model.layers.") for c in varied):  # the layers text only repeats them
        varied = [c for c in varied if c != "param.model.layers"]
    return varied


def swept_keys(records: list[dict]) -> set[str] | None:
    """The param.* keys the spec of a sweep varies, when every record is a trial of
    that one sweep (its summary's trial_params); None otherwise."""
    sweeps = {(r.get("summary") or {}).get("sweep") for r in records}
    params = [(r.get("summary") or {}).get("trial_params") for r in records]
    if len(sweeps) != 1 or None in sweeps or not all(isinstance(p, dict) for p in params):
        return None
    return {f"param.{k}" for p in params for k in p}


def _follows_a_choice(rows: list[dict], key: str, varied: list[str]) -> bool:
    """Whether ``key`` is an option of the optimizer or schedule, whose name differs
    too, and every run has it at its own choice's default."""
    section, _, option = key.removeprefix("param.").partition(".")
    specs = CHOSEN.get(section)
    name_key = f"param.{section}.name"
    if specs is None or name_key not in varied or option == "name":
        return False
    for row in rows:
        if key not in row or is_missing(row[key]):
            continue
        default = specs.get(row.get(name_key), {}).get(option, (None, REQUIRED))[1]
        if default is REQUIRED or group_key(row[key]) != group_key(default):
            return False
    return True


def _distinct(rows: list[dict], key: str) -> set:
    """The group keys of the present values of ``key``."""
    try:  # the distinct values first, by type and value (10,000 equal values are one), then their keys
        values = [v for _, v in {(type(v), v) for v in (row.get(key) for row in rows)}]
    except TypeError:  # unhashable values (lists) in the column
        values = [row.get(key) for row in rows]
    return {group_key(v) for v in values if not is_missing(v)}


def compare(records: list[dict], sort: str | None = None, agg: str = "final", metrics=None,
            group: bool | None = None, goal: str | None = None, limit: int | None = None,
            baseline: str | None = None, default_sort: str = "val_accuracy") -> Comparison:
    """Build the comparison of ``records`` (run records, see ``nnexp.tracking.records``).

    ``sort`` must name a metric or parameter of the runs; without it they are
    sorted by ``default_sort``, which runs that have not finished an epoch yet
    may lack (they keep their order then).

    ``group`` None groups when some parameter setting was run with several
    seeds; ``goal`` None infers it from the metric's name (losses and times
    are minimised); ``baseline`` names the group the others are tested
    against (see :func:`find_baseline`; default: the best group).
    """
    if agg not in AGGREGATES:
        raise ConfigError(f"--agg is {agg!r}; choose one of {', '.join(AGGREGATES)}")
    rows = [flat_row(r) for r in records]
    present = {k for row in rows for k in row}
    shown = [metric_column(m, agg, present) for m in (metrics or DEFAULT_METRICS)]
    sort_col = _sort_column(rows, present, sort or default_sort, agg, required=sort is not None)
    if sort_col.startswith("metric.") and sort_col not in shown:
        shown.insert(0, sort_col)
    shown = [m for m in shown if m in present]
    goal = goal or default_goal(sort_col)
    varied = varied_params(rows, swept_keys(records))
    if group is None:
        group = bool(rows) and _has_repeats(rows, varied)
    if baseline is not None and not group:
        raise ConfigError("--baseline names a group of runs over seeds; these runs are not grouped "
                          "(no setting was run with several seeds, or --no-group)")
    order = _order([row.get(sort_col) for row in rows], goal)
    tests, reference = [], None
    if group:  # groups in the order of their first run, then sorted: ties keep that order
        columns, table_rows, members = _grouped_table(rows, varied, shown, sort_col)
        table_order = _order([r.get(_short(sort_col)) for r in table_rows], goal)
        table_rows, members = [table_rows[i] for i in table_order], [members[i] for i in table_order]
        if sort_col.startswith("metric.") and table_rows:
            columns, tests, reference = _add_tests(columns, table_rows, members, rows, sort_col, varied, baseline)
    else:
        columns, table_rows = _run_table([rows[i] for i in order], varied, shown)
    tested = sum(t is not None for t in tests)
    if limit is not None:
        table_rows, tests = table_rows[:limit], tests[:limit]
    records, rows = [records[i] for i in order], [rows[i] for i in order]
    return Comparison(records, rows, varied, sort_col, goal, columns, table_rows, group, tests, reference, tested)


def _sort_column(rows: list[dict], present: set, sort: str, agg: str, required: bool) -> str:
    for candidate in (metric_column(sort, agg, present), sort, f"param.{sort}"):
        if candidate in present:
            return candidate
    if not rows or not required:
        return metric_column(sort, agg)
    known = sorted(_short(c) for c in present if c.startswith("metric."))
    raise ConfigError(f"--sort: no metric or parameter {sort!r} in the selected runs "
                      f"(metrics: {', '.join(known)[:300]})")


def _has_repeats(rows: list[dict], varied: list[str]) -> bool:
    keys = [tuple(group_key(row.get(c)) for c in varied) for row in rows]
    return len(set(keys)) < len(keys)


def _order(values: list, goal: str) -> list[int]:
    """Positions sorted by ``values``: numbers best first (by ``goal``), missing
    and non-numbers last, ties in their original order; text alone sorts A-Z."""
    numbers = [float(plain(v)) if is_number(plain(v)) and not is_missing(v) else None for v in values]
    if any(n is not None for n in numbers):
        sign = -1.0 if goal == "maximize" else 1.0
        return sorted(range(len(values)), key=lambda i: (numbers[i] is None, sign * (numbers[i] or 0.0)))
    return sorted(range(len(values)), key=lambda i: str(values[i]))


def _run_table(rows: list[dict], varied: list[str], shown: list[str]) -> tuple[list[str], list[dict]]:
    """One row per run: id, status, tags and note where runs have them, the varied params, the metrics."""
    extra = []
    if len({group_key(row.get("tags") or []) for row in rows}) > 1:
        extra.append("tags")
    if any(row.get("note") for row in rows):
        extra.append("note")
    keys = ["id", "status"] + extra + varied + shown
    return [_short(k) for k in keys], [{_short(k): row.get(k) for k in keys} for row in rows]


def _grouped_table(rows: list[dict], varied: list[str], shown: list[str], primary: str):
    """One row per group of runs equal in every varied param, in order of first
    appearance: the varied values, ``runs``, each metric's mean and, for the
    primary metric, its std, 95% half-width and n. Also each group's rows."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(group_key(row.get(c)) for c in varied), []).append(row)
    columns = [_short(c) for c in varied] + ["runs"]
    for m in shown:
        columns += [_short(m)] + ([f"{_short(m)} {s}" for s in ("std", "ci95", "n")] if m == primary else [])
    table_rows = []
    for members in groups.values():
        first = members[0]
        out = {_short(c): (None if is_missing(first.get(c)) else first.get(c)) for c in varied}
        out["runs"] = len(members)
        for m in shown:
            s = summarize_values(row.get(m) for row in members)
            out[_short(m)] = s.mean
            if m == primary:
                out.update({f"{_short(m)} std": s.std, f"{_short(m)} ci95": s.ci95, f"{_short(m)} n": s.n})
        table_rows.append(out)
    return columns, table_rows, list(groups.values())


def _add_tests(columns, table_rows, members, rows, metric, varied, baseline):
    """Each group against the reference: the columns, the tests and the reference's row."""
    m = _short(metric)
    if baseline is not None:
        ref = find_baseline(baseline, table_rows, varied)
    else:
        means = [r.get(m) for r in table_rows]
        ref = next((i for i, v in enumerate(means) if is_number(v) and not math.isnan(v)), None)
    if ref is None:
        return columns, [], None
    values = [[(_seed(row), row.get(metric)) for row in group] for group in members]
    tests = against_reference(values, ref)
    columns = columns + [TEST, f"{m} diff", f"{m} diff_low", f"{m} diff_high", *TEST_COLUMNS]
    for i, (row, test) in enumerate(zip(table_rows, tests)):
        if i == ref:
            row[TEST] = REFERENCE
        elif test is not None:
            row.update({TEST: test["test"], f"{m} diff": test["diff"], f"{m} diff_low": test["low"],
                        f"{m} diff_high": test["high"], "p": test["p"], "p_holm": test["p_holm"],
                        "effect": test["effect"], "seeds_80": test["seeds_80"]})
    return columns, tests, dict(table_rows[ref])


def _seed(row: dict):
    seed = row.get(SEED)
    return row.get("seed") if is_missing(seed) else seed


def find_baseline(text: str, table_rows: list[dict], varied: list[str]) -> int:
    """The group ``--baseline`` names: its row number in the sorted table (1 is
    the best) or ``key=value[,key=value...]`` over the varied parameters (a
    key as shown in the table, or its last dotted part when that is unique).
    ConfigError (exit 2) when nothing or several groups match."""
    text = text.strip()
    if text.isdigit():
        number = int(text)
        if not 1 <= number <= len(table_rows):
            raise ConfigError(f"--baseline {text}: the table has rows 1 to {len(table_rows)}")
        return number - 1
    shown = [_short(c) for c in varied]
    wanted = []
    for part in text.split(","):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"--baseline {text!r}: give a row number or key=value[,key=value...]")
        wanted.append((_baseline_key(key, shown, text), _literal(value.strip())))
    matches = [i for i, row in enumerate(table_rows)
               if all(group_key(row.get(k)) == group_key(v) for k, v in wanted)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        rows = ", ".join(str(i + 1) for i in matches[:8])
        raise ConfigError(f"--baseline {text!r} matches {len(matches)} groups (rows {rows}); add keys or give "
                          "a row number")
    values = "; ".join(f"{k}: {', '.join(sorted({str(r.get(k)) for r in table_rows}))[:80]}" for k, _ in wanted)
    raise ConfigError(f"--baseline {text!r} matches no group ({values})")


def _baseline_key(key: str, shown: list[str], text: str) -> str:
    key = key.removeprefix("param.")
    if key in shown:
        return key
    by_last = [c for c in shown if c.rsplit(".", 1)[-1] == key]
    if len(by_last) == 1:
        return by_last[0]
    raise ConfigError(f"--baseline {text!r}: {key!r} is not a parameter that differs between the groups "
                      f"(they differ in: {', '.join(shown) or 'nothing'})")


def _literal(text: str):
    """A --baseline value: a number, true/false/null, or text (quotes optional)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    words = {"true": True, "false": False, "null": None, "none": None}
    if text.lower() in words:
        return words[text.lower()]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _short(column: str) -> str:
    for prefix in ("param.", "metric."):
        if column.startswith(prefix):
            return column[len(prefix):]
    return column


# ----------------------------------------------------------------- render --


def render(result: Comparison, fmt: str = "text") -> str:
    """The table as aligned text, CSV, Markdown or JSON (raw values in CSV and JSON)."""
    return render_table(result.columns, result.table_rows, fmt)


def render_table(columns: list[str], rows: list[dict], fmt: str = "text") -> str:
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_csv_cell(row.get(c)) for c in columns] for row in rows])
        return buf.getvalue().rstrip("\n")
    if fmt == "json":
        return json.dumps([{c: (None if is_missing(row.get(c)) else plain(row.get(c))) for c in columns}
                           for row in rows], indent=2, default=str)
    if fmt not in ("text", "markdown"):
        raise NnexpError(f"unknown table format {fmt!r}")
    shown, cells = _display(columns, rows)
    return markdown(shown, cells) if fmt == "markdown" else aligned(shown, cells)


def _csv_cell(value):
    if is_missing(value):
        return ""
    value = plain(value)
    return repr(value) if isinstance(value, float) else value


def _display(columns: list[str], rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Headers and cell texts for the terminal; a difference's interval is one cell."""
    header, makers = [], []
    for c in columns:
        if c.endswith(" diff_high") and c.replace(" diff_high", " diff_low") in columns:
            continue
        if c.endswith(" diff_low") and c.replace(" diff_low", " diff_high") in columns:
            high = c.replace(" diff_low", " diff_high")
            header.append("diff 95% CI")
            makers.append(lambda row, c=c, high=high: _interval(c, row.get(c), row.get(high)))
            continue
        header.append(_header(c))
        makers.append(lambda row, c=c: format_cell(c, plain(row.get(c))))
    return header, [[make(row) for make in makers] for row in rows]


def _interval(column: str, low, high) -> str:
    if is_missing(low) or is_missing(high):
        return "-"
    return f"[{format_cell(column, plain(low))}, {format_cell(column, plain(high))}]"


def _header(column: str) -> str:
    """``val_accuracy ci95`` -> ``±ci95``: on screen the statistic sits next to its metric."""
    for suffix, short in ((" std", "±std"), (" ci95", "±ci95"), (" n", "n"), (" diff", "diff")):
        if column.endswith(suffix):
            return short
    return {"p_holm": "p (Holm)", "seeds_80": "seeds@80%"}.get(column, column)
