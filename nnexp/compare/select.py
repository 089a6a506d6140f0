"""Choosing runs: by reference, by sweep and by filter (``nnexp runs``, ``compare``, ``ensemble --sweep``)."""

from __future__ import annotations

from ..tracking import RunStore
from ..tracking.sweeps import find_sweep
from .query import filter_records


def select_records(store, run_refs=(), sweep_ref=None, where=None) -> tuple[list[dict], dict | None]:
    """The records chosen by run references, sweeps and a filter (all that
    are given must hold), and the (first) sweep's state when one was named.
    ``sweep_ref`` is one reference or a sequence of them (their runs together)."""
    store = RunStore(store)
    records = store.records()
    sweep = None
    refs = [sweep_ref] if isinstance(sweep_ref, str) else [r for r in (sweep_ref or ()) if r]
    if refs:
        states = [find_sweep(store.root, ref) for ref in refs]
        sweep, ids = states[0], {s["id"] for s in states}
        records = [r for r in records if (r.get("summary") or {}).get("sweep") in ids]
    if run_refs:
        wanted = {store.resolve(ref).id for ref in run_refs}
        records = [r for r in records if r["id"] in wanted]
    if where:
        records = filter_records(records, where)
    return records, sweep
