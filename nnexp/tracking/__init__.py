"""Run tracking: run folders on disk (store), provenance, plots."""

from .store import METRIC_COLUMNS, Run, RunInfo, RunNotFound, RunStore, atomic_write_text, live_status

__all__ = ["METRIC_COLUMNS", "Run", "RunInfo", "RunNotFound", "RunStore", "atomic_write_text", "live_status"]
