"""What each chart costs: describing it from the data, and drawing the description as a plotly.js figure
(the report's and the dashboard's) and as a PNG (``nnexp compare --plots``, a run's plots/).

    python benchmarks/bench_charts.py [--runs 2000] [--steps 50000] [--repeats 3]

Comparison charts: ``--runs`` synthetic runs (``bench_store.generate``: half of
them trials of 20-trial sweeps) as ``nnexp compare`` selects them, every chart
of ``nnexp/charts/comparison.py`` with ``sweep=True`` (the learning curves read
the runs' metrics.csv). A run's charts: its learning curves against ``--steps``
logged steps (drawn from at most MAX_POINTS points a curve), and the diagnostics
of a 30-epoch, 6-layer run. Each figure is the best of ``--repeats``, in
milliseconds; "PNG / plotly" is the ratio of the two drawings of one description. The
groups' hover texts are built once for a chart set, by the first chart that needs them: a
repeat's "describe" leaves them out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402 -- the benchmarks' own helper, next to this file
from bench_store import generate  # noqa: E402

import numpy as np  # noqa: E402

from nnexp.charts import comparison, run  # noqa: E402
from nnexp.charts.matplotlib import save_png  # noqa: E402
from nnexp.charts.plotly import figure  # noqa: E402
from nnexp.compare.cli import comparison as compared  # noqa: E402
from nnexp.compare.select import select_runs  # noqa: E402


def best_ms(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000, out


def row(name: str, build, repeats: int, folder: Path) -> None:
    describe, chart = best_ms(build, repeats)
    if chart is None:
        print(f"{name:<34}{'(not drawn: the data does not support it)':>40}")
        return
    interactive, _ = best_ms(lambda: json.dumps(figure(chart)), repeats)
    picture, _ = best_ms(lambda: save_png(chart, folder / "chart.png"), repeats)
    print(f"{name:<34}{describe:>10.1f}{interactive:>12.1f}{picture:>10.1f}{picture / interactive:>10.0f}x", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    machine.print_header("bench_charts.py", ceiling=False, torch=False)
    with tempfile.TemporaryDirectory() as tmp:
        store, folder = Path(tmp) / "runs", Path(tmp)
        generate(store, args.runs)
        records = select_runs(str(store)).records
        result = compared(records, None)
        print(f"\n{args.runs:,} runs, {len(result.varied)} varied parameters; milliseconds, best of {args.repeats}")
        print(f"{'chart':<34}{'describe':>10}{'plotly+JSON':>12}{'PNG':>10}{'PNG/plotly':>11}")
        plan = comparison.planned(result.runs, result.varied, result.metric, result.goal, sweep=True)
        for chart_id, _, _, build in plan:
            row(chart_id, build, args.repeats, folder)
        rng = np.random.default_rng(0)
        loss, accuracy = rng.random(args.steps), rng.random(args.steps)
        rows = [{"step": i, "epoch": i // 1000, "train_loss": float(v), "train_accuracy": float(a)}
                for i, (v, a) in enumerate(zip(loss, accuracy))]
        for i in range(999, args.steps, 1000):
            rows[i].update(val_loss=float(loss[i]), val_accuracy=float(accuracy[i]))
        diagnostics = [{"epoch": e, "layer": k, "name": f"{k}.W" if stat != "dead_fraction" else "relu",
                        "stat": stat, "value": float(rng.random() * 0.01 + 1e-4)}
                       for e in range(1, 31) for k in range(6) for stat in ("dead_fraction", "grad_norm",
                                                                           "update_ratio")]
        print(f"\none run{'':<26}{'describe':>10}{'plotly+JSON':>12}{'PNG':>10}{'PNG/plotly':>11}")
        row(f"learning curves, {args.steps:,} steps", lambda: run.learning_curves(rows), args.repeats, folder)
        row("diagnostics, 30 epochs x 6 layers", lambda: run.diagnostics_overview(diagnostics), args.repeats, folder)


if __name__ == "__main__":
    main()
