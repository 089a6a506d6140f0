"""Runs as TensorBoard event files (``nnexp export tensorboard DIR``), written with TensorBoard's own writer.

``DIR/<run id>/`` gets one event file per run, which TensorBoard shows as a run:

- a scalar per cell of metrics.csv at its row's step (the epoch for the trainer's rows,
  the logged step for a script's; see runs.py), timed from the run's start by its
  ``seconds`` column where it has one;
- the run's single values (test_accuracy, best_*, final_*, ...) as scalars at its last step,
  where the HParams view takes each run's metrics from;
- the flattened config as the run's hyper-parameters (numbers, text and true/false;
  null values left out), and the run's end as its status there (success, failure,
  running), for the HParams view.

TensorFlow is not needed. Exporting again replaces the run's event file (the ones an export
wrote, named ``*.nnexp``), so TensorBoard never shows a run's scalars twice.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from ..errors import ConfigError
from ..tracking import live_status
from ..values import is_number
from .runs import metric_rows, need, summary_metrics

SUFFIX = ".nnexp"  # the event files an export writes, and so may replace
SESSION_STATUS = {"completed": "STATUS_SUCCESS", "pruned": "STATUS_SUCCESS", "failed": "STATUS_FAILURE",
                  "running": "STATUS_RUNNING"}


def hparams(params: dict) -> dict:
    """The flattened config as the HParams plugin takes it: bools, numbers and text; no nulls."""
    out = {}
    for key, value in params.items():
        if isinstance(value, bool) or (is_number(value) and math.isfinite(value)) or isinstance(value, str):
            out[str(key)] = value
        elif value is not None:
            out[str(key)] = str(value)
    return out


def check(folder) -> Path:
    """``folder`` as a Path, before any run is read: MissingExtra without TensorBoard,
    ConfigError if it is a file."""
    need("tensorboard.summary.writer.event_file_writer", "tensorboard", "nnexp export tensorboard")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"cannot write event files into {folder}: it is a file, not a folder")
    return folder


def export_runs(records: list[dict], folder) -> list[Path]:
    """Write one event file per record under ``folder``; the run folders written."""
    writer_module = need("tensorboard.summary.writer.event_file_writer", "tensorboard",
                         "nnexp export tensorboard")
    event_pb2 = need("tensorboard.compat.proto.event_pb2", "tensorboard", "nnexp export tensorboard")
    summary_pb2 = need("tensorboard.compat.proto.summary_pb2", "tensorboard", "nnexp export tensorboard")
    hp_summary = need("tensorboard.plugins.hparams.summary_v2", "tensorboard", "nnexp export tensorboard")
    hp_metadata = need("tensorboard.plugins.hparams.metadata", "tensorboard", "nnexp export tensorboard")
    hp_data = need("tensorboard.plugins.hparams.plugin_data_pb2", "tensorboard", "nnexp export tensorboard")
    hp_api = need("tensorboard.plugins.hparams.api_pb2", "tensorboard", "nnexp export tensorboard")
    folder = check(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot make the folder {folder}: {exc.strerror or exc}") from None
    written = []
    for record in records:
        summary = record.get("summary") or {}
        start = summary.get("start_time")
        start = float(start) if is_number(start) and math.isfinite(start) else time.time()
        run_folder = folder / record["id"]
        run_folder.mkdir(exist_ok=True)
        old = [p for p in run_folder.glob(f"events.out.tfevents.*{SUFFIX}") if p.is_file()]
        writer = writer_module.EventFileWriter(str(run_folder), filename_suffix=SUFFIX)
        try:
            def event(step: int, wall_time: float, summary_proto) -> None:
                writer.add_event(event_pb2.Event(wall_time=wall_time, step=step, summary=summary_proto))

            event(0, start, hp_summary.hparams_pb(hparams(record.get("params") or {}), start_time_secs=start))
            rows = metric_rows(record)
            elapsed, last = 0.0, 0
            for row in rows:
                seconds = row.values.get("seconds")
                elapsed += seconds if is_number(seconds) else 0.0
                event(row.step, start + elapsed, _scalars(summary_pb2, row.values))
                last = max(last, row.step)
            singles = summary_metrics(record, rows)
            if singles:
                event(last, start + elapsed, _scalars(summary_pb2, singles))
            status = getattr(hp_api, SESSION_STATUS.get(live_status(summary), "STATUS_UNKNOWN"))
            end = hp_data.SessionEndInfo(status=status, end_time_secs=start + elapsed)
            event(last, start + elapsed, summary_pb2.Summary(value=[summary_pb2.Summary.Value(
                tag=hp_metadata.SESSION_END_INFO_TAG, tensor=hp_metadata.NULL_TENSOR,
                metadata=hp_metadata.create_summary_metadata(hp_data.HParamsPluginData(session_end_info=end)))]))
        finally:
            writer.close()
        for path in old:  # listed before the new file was made: only the earlier exports' files
            path.unlink(missing_ok=True)
        written.append(run_folder)
    return written


def _scalars(summary_pb2, values: dict):
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=str(name), simple_value=float(value))
                                      for name, value in values.items()])
