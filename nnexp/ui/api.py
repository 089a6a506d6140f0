"""The dashboard's JSON API: what each ``/api/...`` answer holds (docs/ui.md lists them).

Every answer is built from the store's own readers: run records (the
snapshot of ``snapshot.py``, or ``make_record`` on one folder for a run's
page), ``MetricRowsCache`` for a run's rows, the sweep folders' states
(``list_sweeps``, ``find_sweep``), the ``--where`` grammar, and for
comparisons ``comparison()``, the function behind ``nnexp compare``, whose
result is shown as it is (every table it returns, every column). Nothing
here writes to the store, and every file is read through
``tracking/reading.py`` (regular files only, never blocking, up to a limit).
A run is named by its folder: what its summary.json says its id is, is not used.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from ..compare.charts import comparison_charts
from ..compare.cli import comparison, test_lines
from ..compare.fmt import format_cell, summary_text
from ..compare.select import Chosen, RunQuery, select_runs
from ..errors import NnexpError
from ..tracking import RunNotFound, live_status, make_record
from ..tracking.reading import read_tail
from ..tracking.records import MetricRowsCache, listed, read_config
from ..tracking.run import ERROR, PLOTS, DamagedRun, read_summary
from ..tracking.sweeps import SweepFolder, find_sweep, list_sweeps
from ..values import is_missing, is_number, plain
from .diagnostics import read_diagnostic_series
from .folders import RUN_NAME, listed_files, run_folder
from .run_charts import run_charts
from .snapshot import StoreSnapshot

DEFAULT_LIMIT, MAX_LIMIT = 50, 1000
MAX_ERROR_BYTES = 20_000  # the end of a long traceback is the part that says what failed
STATUS_TTL = 2.0  # seconds a status filter's result is reused (a run's process may die meanwhile)
SWEEP_REDRAW = 2.0  # seconds a sweep's comparison and charts are reused while its trials change


class ApiError(Exception):
    """An answer other than 200: ``status`` and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def jsonable(value):
    """``value`` with NaN and infinities as None, NumPy and pandas scalars as plain
    Python values and dates as ISO text, ready for ``json.dumps(allow_nan=False)``."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    value = plain(value)
    if isinstance(value, (list, float, int, str, bool)):
        return jsonable(value)
    if is_missing(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def encode(value) -> bytes:
    return json.dumps(jsonable(value), separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode("utf-8")


def file_url(run_id: str, path: str) -> str:
    return f"/files/{quote(run_id, safe='')}/" + "/".join(quote(part, safe="") for part in path.split("/"))


class Api:
    """The answers of the JSON API over the store at ``root`` (read through ``snapshot``)."""

    def __init__(self, root, snapshot: StoreSnapshot):
        self.root = Path(root)
        self.snapshot = snapshot
        self._sweeps: tuple[float, list] = (-1e9, [])
        self._sweeps_lock = threading.Lock()
        self._metric_rows = MetricRowsCache()  # the run page polls a growing metrics.csv once a second

    # ------------------------------------------------------------------ runs --

    def runs(self, query: dict) -> dict:
        """A page of the runs table: filtered (q, where, tag, status, sweep), sorted, paged."""
        sort = query.get("sort", "").strip() or "started"
        order = query.get("order", "").strip() or ("desc" if sort == "started" else "asc")
        if order not in ("asc", "desc"):
            raise ApiError(400, f"order must be asc or desc, not {order!r}")
        wanted = RunQuery(sweeps=_listed(query, "sweep"), where=query.get("where"), tags=_listed(query, "tag"),
                          statuses=_listed(query, "status"), text=query.get("q", ""), sort=sort,
                          descending=order == "desc", offset=_int(query, "offset", 0, 0, None),
                          limit=_int(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT))
        live = bool(wanted.statuses) or sort == "status"  # results that depend on whether processes still run
        whole = replace(wanted, offset=0, limit=None)  # kept whole, so that paging costs only the page
        chosen = self.snapshot.cached(("runs", whole), lambda: self._chosen(whole), ttl=STATUS_TTL if live else None)
        page = chosen.records[wanted.offset:wanted.offset + wanted.limit]
        return {"total": chosen.total, "in_store": len(self.snapshot.records), "offset": wanted.offset,
                "limit": wanted.limit, "sort": sort, "order": order, "runs": [run_row(r) for r in page]}

    def _chosen(self, wanted: RunQuery) -> Chosen:
        """The store query over the records in memory; a reference or sweep that names nothing is a 404."""
        try:
            return select_runs(self.root, wanted, records=self.snapshot.records,
                               find=lambda root, ref: self.sweep_state(ref))
        except RunNotFound as exc:
            raise ApiError(404, str(exc)) from None

    def tags(self) -> dict:
        """Every tag with its number of runs, and the runs per (live) status."""
        def count():
            tags, statuses = {}, {}
            for r in self.snapshot.records:
                for t in _tags(r["summary"]):
                    tags[t] = tags.get(t, 0) + 1
                s = live_status(r["summary"]) or "unknown"
                statuses[s] = statuses.get(s, 0) + 1
            return {"tags": dict(sorted(tags.items())), "statuses": dict(sorted(statuses.items()))}
        return self.snapshot.cached("tags", count, ttl=STATUS_TTL)

    def _folder(self, run_id: str) -> Path:
        path = run_folder(self.root, run_id)
        if path is None:
            raise ApiError(404, f"no run {run_id!r} in the store")
        return path

    def run(self, run_id: str) -> dict:
        """A run's summary (and each field as text), config (as written and flattened), metrics, files and
        error text, read now."""
        run_dir = self._folder(run_id)
        try:
            record = make_record(run_dir)
            config = read_config(run_dir, run_id)
        except DamagedRun as exc:
            raise ApiError(422, str(exc)) from None
        summary = record["summary"]
        files = listed_files(run_dir)
        for f in files:
            f["url"] = file_url(run_id, f["path"])
        plots = [f for f in files if f["path"].startswith(f"{PLOTS}/") and f["path"].endswith(".png")
                 and not f["too_large"]]
        texts = {key: summary_text(key, value, summary) for key, value in summary.items()}
        return {"id": record["id"], "path": record["path"], "status": live_status(summary), "summary": summary,
                "summary_text": texts, "config": config, "params": record["params"], "metrics": record["metrics"],
                "files": files, "plots": plots, "error": _tail(run_dir / ERROR),
                **_diagnostics_brief(read_diagnostic_series(run_dir))}

    def metrics(self, run_id: str, query: dict) -> dict:
        """The run's epochs from ``since`` on (0: all), and its live status, for polling."""
        run_dir = self._folder(run_id)
        since = _int(query, "since", 0, 0, None)
        try:
            rows = self._metric_rows.rows(run_dir, run_id)
            summary = read_summary(run_dir, run_id)
        except DamagedRun as exc:
            raise ApiError(422, str(exc)) from None
        return {"id": run_id, "status": live_status(summary), "epochs_completed": summary.get("epochs_completed"),
                "epochs_planned": summary.get("epochs_planned"), "total": len(rows), "since": since,
                "rows": [_epoch_row(row) for row in rows[since:]]}

    def diagnostics(self, run_id: str) -> dict:
        return dict(read_diagnostic_series(self._folder(run_id)), id=run_id)

    def charts(self, run_id: str) -> dict:
        """The run page's charts: learning curves and one per diagnostic statistic."""
        run_dir = self._folder(run_id)
        try:
            rows = self._metric_rows.rows(run_dir, run_id)
        except DamagedRun as exc:
            raise ApiError(422, str(exc)) from None
        return {"id": run_id, "epochs": len(rows), "charts": run_charts(rows, read_diagnostic_series(run_dir))}

    # ---------------------------------------------------------------- sweeps --

    def sweeps(self) -> list[dict]:
        """The state of every sweep (sweep.json), oldest update first; 'dead' when its driver is gone."""
        with self._sweeps_lock:  # one listing a second serves every poller
            when, states = self._sweeps
            if time.monotonic() - when > 1.0:
                states = list_sweeps(self.root)
                self._sweeps = (time.monotonic(), states)
        return states

    def sweep_state(self, ref: str) -> dict:
        """A sweep's state by id (or any reference ``find_sweep`` takes); 404 if there is none."""
        for state in self.sweeps():
            if state.get("id") == ref:
                return state
        try:
            return find_sweep(self.root, ref)
        except NnexpError as exc:
            raise ApiError(404, str(exc)) from None

    def sweep(self, ref: str) -> dict:
        """A sweep's state, its trials (live status, metric, best so far), the comparison and its charts."""
        state = self.sweep_state(ref)
        sweep_id = str(state.get("id"))
        metric, goal = state.get("metric") or "val_accuracy", state.get("goal") or "maximize"
        records = self._chosen(RunQuery(sweeps=(sweep_id,))).records
        trials = self._trials(sweep_id, records, metric, goal)
        # A running sweep's trials change every epoch: its charts are drawn again at most every 2 s.
        shown = self.snapshot.cached(("sweep", sweep_id, metric, goal), lambda: self._sweep_comparison(records, state),
                                     at_most_every=SWEEP_REDRAW)
        shown = shown or {"tables": [], "charts": [], "varied": [], "grouped": False, "runs": [], "extra": {},
                          "test_lines": []}
        return {**shown, "sweep": state, "metric": metric, "goal": goal, "trials": trials}

    def _sweep_comparison(self, records: list[dict], state: dict) -> dict | None:
        """The comparison of a sweep's trials (before any has its metric: their parameters); None before the first."""
        return self._compared(records, state) if records else None

    def _trials(self, sweep_id: str, records: list[dict], metric: str, goal: str) -> list[dict]:
        plan = [e for e in SweepFolder(self.root, sweep_id).read_plan() if isinstance(e, dict)]
        by_run = {r["id"]: r for r in records}
        if not plan:  # no plan.json: the trials found in the store
            plan = [{"index": r["summary"].get("trial"), "run": r["id"], "params": r["summary"].get("trial_params"),
                     "seed": r["summary"].get("seed")} for r in records]
        trials, best = [], None
        sign = 1.0 if goal == "maximize" else -1.0
        for entry in sorted(plan, key=lambda e: (not is_number(e.get("index")), e.get("index") or 0)):
            record = by_run.get(str(entry.get("run")))
            summary = record["summary"] if record else {}
            value = (record or {}).get("metrics", {}).get(metric)
            status = live_status(summary) if record else "pending"
            if status == "completed" and is_number(value) and math.isfinite(value):
                best = value if best is None or sign * value > sign * best else best
            trials.append({"index": entry.get("index"), "run": entry.get("run"), "params": entry.get("params"),
                           "seed": entry.get("seed"), "status": status, "value": value,
                           "epochs_completed": summary.get("epochs_completed"),
                           "epochs_planned": summary.get("epochs_planned"), "best_so_far": best,
                           "exists": record is not None})
        return trials

    # --------------------------------------------------------------- compare --

    def compare(self, query: dict) -> dict:
        """``nnexp compare``'s result for the runs named (ids), a sweep's, and/or a --where filter."""
        ids = [i.strip() for i in query.get("ids", "").split(",") if i.strip()]
        sweep_ref, where = query.get("sweep", "").strip(), query.get("where", "").strip()
        agg = query.get("agg", "").strip() or "final"
        sort = query.get("sort", "").strip() or None
        metrics = [m.strip() for m in query.get("metrics", "").split(",") if m.strip()] or None
        group = {"": None, "auto": None, "1": True, "true": True, "0": False, "false": False}.get(
            query.get("group", "").strip().lower(), "bad")
        if group == "bad":
            raise ApiError(400, "group must be 1, 0 or auto")
        if not (ids or sweep_ref or where):
            raise ApiError(400, "nothing to compare: name runs (ids=a,b), a sweep (sweep=...) or a filter (where=...)")
        unknown = [i for i in ids if i not in self.snapshot.by_id]
        if unknown:  # the page names runs by id, never by prefix or name
            raise ApiError(404, f"no run {unknown[0]!r} in the store")
        chosen = self._chosen(RunQuery(runs=tuple(ids), sweeps=(sweep_ref,) if sweep_ref else (), where=where))
        records, sweep = chosen.records, chosen.sweep
        if not records:
            raise ApiError(404, "no runs to compare: nothing in the store matches")
        key = ("compare", tuple(ids), (sweep or {}).get("id"), where, agg, sort, tuple(metrics or ()), group)
        return self.snapshot.cached(key, lambda: self._compared(records, sweep, agg=agg, sort=sort, metrics=metrics,
                                                                group=group))

    def _compared(self, records: list[dict], sweep: dict | None, **options) -> dict:
        """``comparison()`` of the records as JSON: every table it returns, its other fields, and the charts."""
        result = comparison(records, sweep, **options)
        tables = [table_json("table", result.table)]
        # the tests against the reference (difference, CI, p, Holm, effect size, seeds) are columns of the
        # table; the reference's row and the number of groups tested come along
        extra = {"reference": result.reference, "tested": result.tested, "tests": result.tests,
                 "objectives": [list(o) for o in result.objectives]}
        charts = comparison_charts(result.runs, result.varied, result.metric, result.goal, sweep=sweep is not None,
                                   objectives=result.objectives)
        return jsonable({"metric": result.metric, "goal": result.goal, "grouped": result.grouped,
                         "test_lines": test_lines(result), "varied": [c.removeprefix("param.") for c in result.varied],
                         "runs": result.runs["id"].tolist(), "tables": tables, "extra": extra, "charts": charts})


# --------------------------------------------------------------------- helpers


def _diagnostics_brief(diagnostics: dict) -> dict:
    """What the run page says of a run's diagnostics: whether it has them, why a file it has
    cannot be used, and the warnings ``nnexp show`` gives."""
    return {"diagnostics": diagnostics["available"], "diagnostics_problem": diagnostics["problem"],
            "warnings": [w["message"] for w in diagnostics["warnings"]]}


def run_row(record: dict) -> dict:
    """A run as ``nnexp runs --json`` shows it (the id and path of its folder, then the
    summary's fields), with its live status."""
    summary = record["summary"]
    return {**listed(record["id"], record["path"], summary), "status": live_status(summary)}


def table_json(name: str, table: pd.DataFrame) -> dict:
    """A DataFrame as {name, columns, rows}: each cell its raw value and its text as the terminal shows it."""
    columns = [str(c) for c in table.columns]
    rows = []
    for values in table.itertuples(index=False, name=None):
        row = []
        for column, value in zip(columns, values):
            value = plain(value)
            missing = not isinstance(value, (list, tuple, dict)) and is_missing(value)
            row.append({"value": None if missing else jsonable(value),
                        "text": format_cell(column, None if missing else value)})
        rows.append(row)
    return {"name": name, "columns": columns, "rows": rows}


def _int(query: dict, name: str, default: int, low: int, high: int | None) -> int:
    text = query.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, not {text[:40]!r}") from None
    if value < low or (high is not None and value > high):
        raise ApiError(400, f"{name} must be between {low} and {high}" if high is not None
                       else f"{name} must be at least {low}")
    return value


def _tags(summary: dict) -> list[str]:
    tags = summary.get("tags")
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _listed(query: dict, name: str) -> tuple[str, ...]:
    """A comma-separated query parameter as its parts."""
    return tuple(part for part in query.get(name, "").split(",") if part.strip())


def _epoch_row(row: dict) -> dict:
    out = {}
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        elif key == "epoch" and isinstance(value, float) and value.is_integer():
            value = int(value)
        out[key] = value
    return out


def _tail(path: Path) -> str | None:
    """The end of a run's error text; None without one (or when it is not a regular file)."""
    try:
        data, cut = read_tail(path, MAX_ERROR_BYTES)
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    return "…" + text if cut else text


def valid_name(name: str) -> bool:
    """Whether ``name`` can name a run or sweep folder (what the URL may carry)."""
    return bool(RUN_NAME.match(name)) and ".." not in name
