"""How nnexp writes times: one format for the timestamps in summaries, sweep
states and reports, and one for the time part of run ids."""

from __future__ import annotations

import time

#: local time with its UTC offset, e.g. 2026-11-25T04:48:04+0100 (ISO 8601, sorts as text within one zone)
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
#: the first part of a run folder's name, e.g. 20261125-044804
RUN_ID_FORMAT = "%Y%m%d-%H%M%S"


def timestamp(seconds: float | None = None) -> str:
    """``seconds`` since the epoch (default: now) in TIMESTAMP_FORMAT."""
    return time.strftime(TIMESTAMP_FORMAT, time.localtime(seconds))


def run_id_stamp(seconds: float | None = None) -> str:
    """``seconds`` since the epoch (default: now) in RUN_ID_FORMAT."""
    return time.strftime(RUN_ID_FORMAT, time.localtime(seconds))
