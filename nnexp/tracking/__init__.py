"""Run tracking: run folders on disk (run, store), their records and index, sweeps' states, provenance, plots."""

from .index import IndexObserver, RunIndex
from .records import flatten_config, layers_text, make_record
from .run import METRIC_COLUMNS, DamagedRun, Run, RunObserver, live_status
from .store import RunInfo, RunNotFound, RunStore

__all__ = ["METRIC_COLUMNS", "DamagedRun", "IndexObserver", "Run", "RunIndex", "RunInfo", "RunNotFound",
           "RunObserver", "RunStore", "flatten_config", "layers_text", "live_status", "make_record"]
