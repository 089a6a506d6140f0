"""``nnexp diff``: how two runs differ: config keys, metrics, curves.

Works on run records (see nnexp/tracking/records.py) and the runs'
metrics.csv; no pandas. ``plot_curves`` (matplotlib, loaded only for it)
draws both runs' curves on one figure.
"""

from __future__ import annotations

import math

from ..tracking.records import read_metric_rows
from ..tracking.run import NOT_CURVES
from ..values import is_missing, is_number
from .rows import group_key

RUN_FIELDS = ("name", "status", "started", "epochs_completed", "tags", "note", "sweep", "trial")


def diff_records(a: dict, b: dict) -> dict:
    """{"a", "b": ids; "run": [{field, a, b}] of the summary fields that differ;
    "params": [{key, a, b}] of the config keys that differ (a key only one run
    has shows None on the other side); "equal_params": how many keys are equal;
    "metrics": [{name, a, b, diff}] of every metric either has (diff = b - a);
    "axis": what the curves' x is ("step" or "epoch");
    "curves": {"a": {column: [[x, value], ...]}, "b": ...}}."""
    sa, sb = a.get("summary") or {}, b.get("summary") or {}
    run = [{"field": f, "a": sa.get(f), "b": sb.get(f)} for f in RUN_FIELDS
           if group_key(sa.get(f)) != group_key(sb.get(f))]
    pa, pb = a.get("params") or {}, b.get("params") or {}
    keys = sorted(set(pa) | set(pb))
    params = [{"key": k, "a": pa.get(k), "b": pb.get(k)} for k in keys if group_key(pa.get(k)) != group_key(pb.get(k))]
    ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
    metrics = []
    names = set(ma) | set(mb)
    names -= {n for n in names if n.startswith("final_") and n[len("final_"):] in names}  # the same value twice
    for name in sorted(names, key=_metric_order):
        x, y = ma.get(name), mb.get(name)
        both = all(is_number(v) and not is_missing(v) for v in (x, y))
        metrics.append({"name": name, "a": x, "b": y, "diff": y - x if both else None})
    (axis_a, curves_a), (axis_b, curves_b) = curves(a["path"]), curves(b["path"])
    return {"a": a["id"], "b": b["id"], "run": run, "params": params, "equal_params": len(keys) - len(params),
            "metrics": metrics, "axis": axis_a if axis_a == axis_b else "epoch or step",
            "curves": {"a": curves_a, "b": curves_b}}


def _metric_order(name: str) -> tuple:
    """Validation, test, then the rest; final before best before mean."""
    rank = 0 if "val_" in name else 1 if name.startswith("test_") else 2
    return (rank, name.replace("final_", "").replace("best_", "~").replace("mean_", "~~"), name)


def curves(run_dir) -> tuple[str, dict]:
    """The x axis ("step" when the run logs steps, else "epoch") and {column: [[x, value],
    ...]} of every metric column of a run's metrics.csv (finite values only)."""
    rows = read_metric_rows(run_dir, columns=None)
    axis = "step" if rows and "step" in rows[0] else "epoch"
    out = {}
    for column in [c for c in (rows[0] if rows else ()) if c not in NOT_CURVES]:
        points = [[row.get(axis, i + 1.0), row[column]] for i, row in enumerate(rows)
                  if math.isfinite(row[column]) and math.isfinite(row.get(axis, i + 1.0))]
        if points:
            out[column] = points
    return axis, out


def curve_table(result: dict, columns=("val_accuracy", "val_loss"), max_rows: int = 15) -> tuple[list, list]:
    """The curves side by side, one row per epoch (at most ``max_rows``, evenly
    spaced, the last epoch always): (header, rows of values or None)."""
    present = [c for c in columns if c in result["curves"]["a"] or c in result["curves"]["b"]]
    by_epoch = {side: {c: dict((e, v) for e, v in result["curves"][side].get(c, [])) for c in present}
                for side in ("a", "b")}
    epochs = sorted({e for side in by_epoch.values() for points in side.values() for e in points})
    if len(epochs) > max_rows:
        step = (len(epochs) - 1) / (max_rows - 1)
        epochs = sorted({epochs[round(i * step)] for i in range(max_rows)})
    header = [result["axis"]] + [f"{c} {side}" for c in present for side in ("a", "b")]
    rows = [[e] + [by_epoch[side][c].get(e) for c in present for side in ("a", "b")] for e in epochs]
    return header, rows


def plot_curves(result: dict, path, labels: tuple[str, str]) -> None:
    """Both runs' loss and accuracy curves on one PNG (train dashed, validation solid)."""
    from ..charts.matplotlib import save_png  # matplotlib: only for --plot
    from ..charts.spec import PALETTE, Axis, Chart, Panel, Series

    panels = []
    for kind in ("accuracy", "loss"):
        marks = []
        for side, color in (("a", PALETTE[0]), ("b", PALETTE[1])):
            for split, dash in (("train", "dash"), ("val", "solid")):
                points = result["curves"][side].get(f"{split}_{kind}")
                if points:
                    marks.append(Series([p[0] for p in points], [p[1] for p in points],
                                        f"{labels[0 if side == 'a' else 1]} {split}", color=color, width=1.5, dash=dash))
        panels.append(Panel(Axis(result["axis"], whole=True), Axis(kind), marks, title=kind))
    save_png(Chart(f"a: {result['a']}   b: {result['b']}", panels, size=(11, 4.5)), path)
