"""Choosing runs: by reference, by sweep and by filter (``nnexp runs``, ``compare``, ``ensemble --sweep``)."""

from __future__ import annotations

from ..tracking import RunStore
from ..tracking.sweeps import find_sweep
from .query import filter_records


def select_records(store, run_refs=(), sweep_ref=None, where=None) -> tuple[list[dict], dict | None]:
    """The records chosen by run references, a sweep and a filter (all that
    are given must hold), and the sweep's state when one was named."""
    store = RunStore(store)
    records = store.records()
    sweep = None
    if sweep_ref:
        sweep = find_sweep(store.root, sweep_ref)
        records = [r for r in records if (r.get("summary") or {}).get("sweep") == sweep["id"]]
    if run_refs:
        wanted = {store.resolve(ref).id for ref in run_refs}
        records = [r for r in records if r["id"] in wanted]
    if where:
        records = filter_records(records, where)
    return records, sweep
