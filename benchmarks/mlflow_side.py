"""MLflow's side of bench_store.py: the same work on MLflow's file store.

Run by bench_store.py in an interpreter that has MLflow installed (never an
nnexp dependency)::

    .bench/mlflow-venv/bin/python benchmarks/mlflow_side.py --runs runs.jsonl \\
        --small 1000 --large 10000 --budget 300 --out results.json

``--runs`` is a JSON-lines file written by bench_store.py, one run per line:
its id, name, start time, status, flattened params (as nnexp indexes them),
per-epoch history (metrics.csv) and final metrics. The runs are loaded into a
fresh file store with MlflowClient (one create_run + log_batch +
set_terminated each, run in ``--workers`` processes), first ``--small`` of
them, then 1,000 more at a time up to ``--large`` until the loading has
taken ``--budget`` seconds. It measures, writing seconds to ``--out`` (JSON):

- log_value: ``mlflow.log_metric`` of one value, mean over 1,000 calls;
- log_epoch: ``mlflow.log_metrics`` of one epoch's 6 values, mean over 300 epochs;
- create_run: ``mlflow.start_run`` + ``log_params`` of a run's config + ``end_run``;
- search_all_N / search_where_N: ``mlflow.search_runs`` (a DataFrame, like
  ``nnexp.load_runs``) of every run, and with the filter
  ``params.optimizer.name = 'adam' and metrics.val_accuracy > 0.97``, best of 3
  (best of 2 for the large set);
- the same logging and creation figures on a SQLite backend, for reference.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import warnings

FILTER = "params.`optimizer.name` = 'adam' and metrics.val_accuracy > 0.97"
CURVES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def quiet():
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)


def best_of(fn, repeats=3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure_logging(mlflow, params: dict, scale: float = 1.0) -> dict:
    """Per-value and per-epoch logging, and run creation, on the current tracking
    URI (``scale`` < 1 makes fewer calls, for slow backends)."""
    out = {}
    mlflow.set_experiment("logging")
    with mlflow.start_run():
        mlflow.log_metric("warmup", 0.0, step=0)
        n = int(1000 * scale)
        t = time.perf_counter()
        for i in range(n):
            mlflow.log_metric("val_accuracy", 0.9 + i * 1e-5, step=i)
        out["log_value"] = (time.perf_counter() - t) / n
        n = int(300 * scale)
        t = time.perf_counter()
        for i in range(n):
            mlflow.log_metrics({"train_loss": 0.1, "train_accuracy": 0.97, "val_loss": 0.12, "val_accuracy": 0.96,
                                "lr": 0.001, "seconds": 1.3}, step=i)
        out["log_epoch"] = (time.perf_counter() - t) / n
    n = int(50 * scale)
    t = time.perf_counter()
    for i in range(n):
        mlflow.start_run(run_name=f"create-{i}")
        mlflow.log_params(params)
        mlflow.end_run()
    out["create_run"] = (time.perf_counter() - t) / n
    return out


def load_chunk(args) -> int:
    """Load some runs into the file store at ``uri`` (one worker process)."""
    uri, experiment_id, runs = args
    quiet()
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for run in runs:
        start_ms = int(run["start_time"] * 1000)
        created = client.create_run(experiment_id, start_time=start_ms, run_name=run["name"],
                                    tags={"nnexp.id": run["id"]})
        run_id = created.info.run_id
        metrics = [Metric(key, value, start_ms + step * 1000, step)
                   for step, row in enumerate(run["history"], start=1)
                   for key, value in row.items() if value is not None]
        metrics += [Metric(key, value, start_ms, 0) for key, value in run["final"].items()]
        params = [Param(key, str(value)) for key, value in run["params"].items()]
        # log_batch takes at most 1,000 metrics and 100 params per call
        for i in range(0, max(len(metrics), len(params)), 100):
            client.log_batch(run_id, metrics=metrics[i:i + 100], params=params[i:i + 100],
                             tags=[RunTag("sweep", run["sweep"])] if i == 0 and run.get("sweep") else [])
        client.set_terminated(run_id, status="FINISHED" if run["status"] == "completed" else "FAILED",
                              end_time=start_ms + 60_000)
    return len(runs)


def load(uri: str, experiment_id: str, runs: list, workers: int) -> float:
    t = time.perf_counter()
    if workers <= 1:
        load_chunk((uri, experiment_id, runs))
    else:
        chunks = [(uri, experiment_id, runs[i::workers]) for i in range(workers)]
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pool.map(load_chunk, chunks)
    return time.perf_counter() - t


def measure_search(mlflow, experiment_id: str, expect: int, repeats: int) -> dict:
    matched = []

    def search_all():
        frame = mlflow.search_runs([experiment_id], max_results=100_000)
        assert len(frame) == expect, (len(frame), expect)

    def search_where():
        matched.append(len(mlflow.search_runs([experiment_id], filter_string=FILTER, max_results=100_000)))

    return {"search_all": best_of(search_all, repeats), "search_where": best_of(search_where, repeats),
            "matched": matched[-1]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="MLflow's side of bench_store.py")
    ap.add_argument("--runs", required=True, help="JSON-lines file of runs written by bench_store.py")
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=10_000)
    ap.add_argument("--budget", type=float, default=300.0, help="seconds of loading allowed for --large")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    quiet()

    # MLflow 3 refuses its file store unless asked: it is in maintenance mode there,
    # but it is the backend the figures (and most notebooks) use.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    t = time.perf_counter()
    import mlflow

    results = {"version": mlflow.__version__, "import_s": time.perf_counter() - t, "notes": []}
    with open(args.runs, encoding="utf-8") as f:
        runs = [json.loads(line) for line in f]
    params = runs[0]["params"]
    tmp = tempfile.mkdtemp(prefix="mlflow-bench-")
    try:
        # logging and run creation, file store then SQLite
        mlflow.set_tracking_uri("file:" + os.path.join(tmp, "logging"))
        results.update(measure_logging(mlflow, params))
        print(f"  MLflow {mlflow.__version__} file store: {results['log_value'] * 1e6:.0f} us per value, "
              f"{results['create_run'] * 1e3:.1f} ms per run", flush=True)
        try:
            mlflow.set_tracking_uri("sqlite:///" + os.path.join(tmp, "mlflow.db"))
            results["sqlite"] = measure_logging(mlflow, params, scale=0.2)  # ~20 ms a call
        except Exception as exc:  # noqa: BLE001 - a reference figure only
            results["notes"].append(f"MLflow SQLite backend not measured: {type(exc).__name__}: {exc}")

        # search over the small set, then over as many runs as the budget allows
        uri = "file:" + os.path.join(tmp, "search")
        mlflow.set_tracking_uri(uri)
        experiment_id = mlflow.create_experiment("store")
        small = min(args.small, len(runs))
        results["load_small"] = load(uri, experiment_id, runs[:small], args.workers)
        print(f"  loaded {small:,} runs into MLflow in {results['load_small']:.1f} s", flush=True)
        results.update({f"{k}_small": v for k, v in measure_search(mlflow, experiment_id, small, 3).items()})
        results["n_small"] = small
        print(f"  search_runs over {small:,}: {results['search_all_small']:.2f} s, "
              f"with the filter {results['search_where_small']:.2f} s", flush=True)

        large = min(args.large, len(runs))
        loaded, seconds = small, results["load_small"]
        while loaded < large and seconds < args.budget:  # in chunks: MLflow slows down as runs pile up
            chunk = runs[loaded:min(large, loaded + 1000)]
            seconds += load(uri, experiment_id, chunk, args.workers)
            loaded += len(chunk)
        if loaded > small:
            results["load_large"], results["n_large"] = seconds, loaded
            print(f"  loaded {loaded:,} runs into MLflow in {seconds:.1f} s", flush=True)
            results.update({f"{k}_large": v for k, v in measure_search(mlflow, experiment_id, loaded, 2).items()})
        if loaded < large:
            results["notes"].append(f"MLflow: loading stopped at {loaded:,} of {large:,} runs after the "
                                    f"{args.budget:g} s budget (--mlflow-budget)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # 10,000 MLflow runs are ~2 GB of small files
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
