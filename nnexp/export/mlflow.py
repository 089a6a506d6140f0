"""Runs into an MLflow tracking store (``nnexp export mlflow``), through MLflow's own client.

Each nnexp run becomes one MLflow run of the experiment (``nnexp`` unless named):

- params: the flattened config (``optimizer.lr``, ``model.layers``, ...), as records hold it;
- metrics: every cell of metrics.csv at its row's step (the epoch for the trainer's rows,
  the logged step for a script's; see runs.py), timed from the run's start by its
  ``seconds`` column where it has one; and the run's single values (test_accuracy,
  best_*, final_*, a script's summary values) at step 0;
- tags: ``nnexp.run_id`` (how a later export finds the run again), ``nnexp.status``,
  ``nnexp.sweep``, ``nnexp.path``, ``nnexp.tags`` (the tags, comma-joined) and each tag as a
  tag of its own set to ``true``; the note as ``mlflow.note.content``, the run's description;
  the git commit as ``mlflow.source.git.commit``;
- artifacts: config.yaml and the regular files of plots/ (never a symbolic link).

A second export updates the MLflow runs it made: points already logged at a step are not
logged again, new epochs are, a changed single value is logged anew (it becomes the latest),
tags and the note follow the run's, and a param MLflow has (params never change there) is
kept, with a warning if the run's value differs. Names MLflow does not take (characters
outside letters, digits, ``_ - . /`` and space, a path such as ``a/../b``) are written with
``_`` in place of each such character.
"""

from __future__ import annotations

import logging
import math
import posixpath
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from ..errors import ConfigError, NnexpError
from ..timestamps import TIMESTAMP_FORMAT
from ..tracking import live_status
from ..tracking.reading import MAX_TABLE_FILE, read_bytes
from ..tracking.run import CONFIG, PLOTS
from ..values import is_number
from .runs import check_file_target, metric_rows, need, summary_metrics

EXPERIMENT = "nnexp"
RUN_ID_TAG = "nnexp.run_id"
TAGS_TAG = "nnexp.tags"
NOTE_TAG = "mlflow.note.content"  # what MLflow's pages show as the run's description
RESERVED = ("nnexp.", "mlflow.")  # a tag of the run named like these stays only in nnexp.tags
STATUSES = {"running": "RUNNING", "completed": "FINISHED", "pruned": "FINISHED", "failed": "FAILED",
            "interrupted": "KILLED", "dead": "KILLED"}
MAX_KEY = 250      # MLflow's longest param, metric and tag name
MAX_PARAM = 6000   # MLflow's longest param value
METRICS_BATCH = 1000  # MLflow's most metrics in one log_batch call
PARAMS_BATCH = 100    # and its most params, or tags
_NOT_IN_NAMES = re.compile(r"[^\w.\- /]")


def mlflow_key(name: str) -> str:
    """``name`` as MLflow takes it: each character it refuses as ``_``; a name that reads as
    another path (``a//b``, ``../x``, ``/x``) without its slashes."""
    key = _NOT_IN_NAMES.sub("_", str(name))[:MAX_KEY]
    if posixpath.normpath(key) != key or key.startswith(("..", "/")):
        key = key.replace("/", "_")
    if key in ("", ".") or key.startswith(".."):
        key = "_" + key
    return key[:MAX_KEY]


def param_text(value) -> str:
    """A config value as MLflow's params text, in YAML's words for true, false and null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def export_runs(records: list[dict], tracking_uri: str, experiment: str = EXPERIMENT, warn=None) -> list[dict]:
    """Write ``records`` into the MLflow store at ``tracking_uri``; per run
    {"id", "mlflow_run_id", "created": bool}. ConfigError (exit 2) for a URI that
    cannot be used, NnexpError for what MLflow refuses."""
    warn = _once(warn or (lambda message: print(f"warning: {message}", file=sys.stderr)))
    artifacts = check(tracking_uri)
    tracking = need("mlflow.tracking", "mlflow", "nnexp export mlflow")
    entities = need("mlflow.entities", "mlflow", "nnexp export mlflow")
    exceptions = need("mlflow.exceptions", "mlflow", "nnexp export mlflow")
    for name in ("mlflow", "alembic"):  # their set-up of a new database is not news for the user
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        client = tracking.MlflowClient(tracking_uri=tracking_uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found is not None else \
            client.create_experiment(experiment, artifact_location=artifacts)
        known = _exported(client, experiment_id)
        return [_export_run(client, entities, experiment_id, record, known.get(record["id"]), warn)
                for record in records]
    except exceptions.MlflowException as exc:
        raise NnexpError(f"MLflow store {tracking_uri}: {_first_line(exc.message)}") from None
    except Exception as exc:  # the database layer's errors (a locked or foreign file) reach us unwrapped
        if type(exc).__module__.split(".")[0] in ("sqlalchemy", "alembic", "sqlite3"):
            raise NnexpError(f"MLflow store {tracking_uri}: {_first_line(str(exc))}") from None
        raise


def check(tracking_uri: str) -> str | None:
    """Where a new experiment keeps artifacts: for a ``sqlite:`` store, ``mlartifacts`` beside
    the database (MLflow's default would be the current folder). Before any run is read:
    MissingExtra without MLflow, ConfigError for a URI that is none or a database whose
    folder is missing or cannot be written."""
    need("mlflow.tracking", "mlflow", "nnexp export mlflow")
    if tracking_uri.startswith("sqlite:"):  # MLflow's SQL store needs them, and mlflow-skinny does not bring them
        need("sqlalchemy", "mlflow", "an MLflow sqlite store")
        need("alembic", "mlflow", "an MLflow sqlite store")
    else:
        if "://" not in tracking_uri and not tracking_uri.startswith("databricks"):
            raise ConfigError(f"--tracking-uri {tracking_uri!r} is not a URI "
                              "(e.g. sqlite:///mlflow.db or http://host:5000)")
        return None
    path = tracking_uri[len("sqlite:"):]
    if not path.startswith("///") or path == "///:memory:":
        raise ConfigError(f"--tracking-uri {tracking_uri!r}: a sqlite store is sqlite:///relative/path.db "
                          "or sqlite:////absolute/path.db")
    database = Path(path[3:])
    check_file_target(database, f"--tracking-uri {tracking_uri!r}")
    return (database.parent.resolve() / "mlartifacts").as_uri()


def _exported(client, experiment_id: str) -> dict:
    """{nnexp run id: MLflow run} of the experiment's active runs that an export made."""
    found, token = {}, None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` != ''",
                                  max_results=1000, page_token=token)
        for run in page:
            found.setdefault(run.data.tags.get(RUN_ID_TAG), run)
        token = page.token
        if not token:
            return found


def _export_run(client, entities, experiment_id: str, record: dict, existing, warn) -> dict:
    summary = record.get("summary") or {}
    start_ms = _ms(summary.get("start_time"))
    tags = _tags(record)
    if existing is None:
        run = client.create_run(experiment_id, start_time=start_ms, run_name=_text(summary.get("name")),
                                tags={RUN_ID_TAG: record["id"]})
        mlflow_id, params, tags_before, history, latest = run.info.run_id, {}, {}, {}, {}
    else:
        mlflow_id = existing.info.run_id
        params, tags_before = dict(existing.data.params), dict(existing.data.tags)
        latest = dict(existing.data.metrics)
        history = {key: _points(client, mlflow_id, key) for key in existing.data.metrics}

    new_params = []
    for key, value in _keyed(record.get("params") or {}, warn, record["id"], "param").items():
        text = param_text(value)
        if len(text) > MAX_PARAM:
            warn(f"run {record['id']}: param {key} is {len(text):,} characters long; "
                 f"MLflow keeps the first {MAX_PARAM:,}")
            text = text[:MAX_PARAM]
        if key not in params:
            new_params.append(entities.Param(key, text))
        elif params[key] != text:
            warn(f"run {record['id']}: param {key} is {text!r} now, MLflow has {params[key]!r} "
                 "(MLflow never changes a param); kept")

    metrics = []
    rows = metric_rows(record)
    elapsed = 0.0
    for row in rows:
        seconds = row.values.get("seconds")
        elapsed += seconds if is_number(seconds) else 0.0
        stamp = start_ms + int(round(elapsed * 1000))
        for name, value in _keyed(row.values, warn, record["id"], "metric").items():
            if value not in history.get(name, {}).get(row.step, ()):
                metrics.append(entities.Metric(name, value, stamp, row.step))
    end_ms = _ended_ms(summary, start_ms)
    now_ms = int(time.time() * 1000)
    for name, value in _keyed(summary_metrics(record, rows), warn, record["id"], "metric").items():
        points = history.get(name)
        if not points:
            metrics.append(entities.Metric(name, value, end_ms, 0))
        elif latest.get(name) != value:
            metrics.append(entities.Metric(name, value, max(now_ms, end_ms), 0))  # newer: it becomes the latest

    gone = [k for k in _tag_keys(tags_before.get(TAGS_TAG)) if k not in tags]
    if NOTE_TAG in tags_before and NOTE_TAG not in tags:
        gone.append(NOTE_TAG)
    changed = [entities.RunTag(k, v) for k, v in tags.items() if tags_before.get(k) != v]
    for i in range(0, len(new_params), PARAMS_BATCH):
        client.log_batch(mlflow_id, params=new_params[i:i + PARAMS_BATCH])
    for i in range(0, len(changed), PARAMS_BATCH):
        client.log_batch(mlflow_id, tags=changed[i:i + PARAMS_BATCH])
    for i in range(0, len(metrics), METRICS_BATCH):
        client.log_batch(mlflow_id, metrics=metrics[i:i + METRICS_BATCH])
    for key in gone:
        client.delete_tag(mlflow_id, key)
    _log_files(client, mlflow_id, Path(record["path"]), record["id"], warn)
    status = STATUSES.get(tags["nnexp.status"], "FINISHED")
    if status == "RUNNING":
        client.update_run(mlflow_id, status=status)
    else:
        client.set_terminated(mlflow_id, status=status, end_time=end_ms)
    return {"id": record["id"], "mlflow_run_id": mlflow_id, "created": existing is None}


def _tags(record: dict) -> dict:
    """The MLflow tags of a record (see the module's docstring)."""
    summary = record.get("summary") or {}
    tags = {RUN_ID_TAG: record["id"], "nnexp.path": str(Path(record["path"]).resolve()),
            "nnexp.status": str(live_status(summary) or "unknown")}
    if summary.get("name") is not None:
        tags["mlflow.runName"] = _text(summary["name"])
    if summary.get("sweep"):
        tags["nnexp.sweep"] = str(summary["sweep"])
    if isinstance(summary.get("git_commit"), str):
        tags["mlflow.source.git.commit"] = summary["git_commit"]  # where MLflow's pages look for the commit
    own = [str(t) for t in summary.get("tags") or [] if isinstance(t, (str, int, float))]
    if own:
        tags[TAGS_TAG] = ",".join(own)
        for key in _tag_keys(tags[TAGS_TAG]):
            tags[key] = "true"
    if isinstance(summary.get("note"), str) and summary["note"].strip():
        tags[NOTE_TAG] = summary["note"]
    return tags


def _tag_keys(joined) -> list[str]:
    """The MLflow tag keys of the run's tags (comma-joined), those with a reserved name left out."""
    keys = [mlflow_key(t) for t in (joined or "").split(",") if t]
    return [k for k in keys if not k.startswith(RESERVED)]


def _keyed(values: dict, warn, run_id: str, what: str) -> dict:
    """``values`` under MLflow's names; of two names that become one, the first is kept."""
    out, origin = {}, {}
    for name, value in values.items():
        key = mlflow_key(name)
        if key in out:
            warn(f"run {run_id}: {what} {name!r} and {origin[key]!r} are both {key!r} in MLflow; "
                 f"{origin[key]!r} is kept")
            continue
        out[key], origin[key] = value, name
    return out


def _points(client, run_id: str, key: str) -> dict:
    """{step: {values logged at it}} of one metric of an MLflow run."""
    points: dict = {}
    for metric in client.get_metric_history(run_id, key):
        points.setdefault(metric.step, set()).add(metric.value)
    return points


def _log_files(client, run_id: str, folder: Path, nnexp_id: str, warn) -> None:
    """config.yaml and plots/'s regular files, copied through the store's safe reader first:
    a file of the run that is a link (to /etc/passwd, say) is not shipped."""
    with tempfile.TemporaryDirectory(prefix="nnexp-export-") as tmp:
        staged = Path(tmp)
        plots = folder / PLOTS
        names = [CONFIG]
        if plots.is_dir() and not plots.is_symlink():
            names += [f"{PLOTS}/{p.name}" for p in sorted(plots.iterdir())]
        count = 0
        for name in names:
            try:
                data = read_bytes(folder / name, MAX_TABLE_FILE)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if not (folder / name).is_dir():
                    warn(f"run {nnexp_id}: {name} is not exported ({exc.strerror or exc})")
                continue
            (staged / name).parent.mkdir(parents=True, exist_ok=True)
            (staged / name).write_bytes(data)
            count += 1
        if count:
            client.log_artifacts(run_id, str(staged))


def _once(warn):
    """``warn``, saying each message once: a name clash would otherwise be told at every row."""
    said = set()

    def once(message: str) -> None:
        if message not in said:
            said.add(message)
            warn(message)
    return once


def _ms(seconds) -> int:
    return int(seconds * 1000) if is_number(seconds) and math.isfinite(seconds) else int(time.time() * 1000)


def _ended_ms(summary: dict, start_ms: int) -> int:
    ended = summary.get("ended")
    try:
        return int(datetime.strptime(ended, TIMESTAMP_FORMAT).timestamp() * 1000)
    except (TypeError, ValueError):
        seconds = summary.get("total_seconds")
        return start_ms + (int(seconds * 1000) if is_number(seconds) and math.isfinite(seconds) else 0)


def _text(value) -> str | None:
    return None if value is None else str(value)


def _first_line(message) -> str:
    text = str(message).strip()
    return text.splitlines()[0] if text else "unknown error"
