"""Run tracking: run folders on disk (store), their records and index, provenance, plots."""

from .index import RunIndex
from .records import DamagedRun, flatten_config, layers_text, make_record
from .store import METRIC_COLUMNS, Run, RunInfo, RunNotFound, RunStore, atomic_write_text, live_status

__all__ = ["METRIC_COLUMNS", "DamagedRun", "Run", "RunIndex", "RunInfo", "RunNotFound", "RunStore",
           "atomic_write_text", "flatten_config", "layers_text", "live_status", "make_record"]
