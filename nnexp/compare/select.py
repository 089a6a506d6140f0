"""Choosing runs: by reference, by sweep and by filter (``nnexp runs``, ``compare``,
``tag``, ``rm``, ``ensemble --sweep``).

The choice is made inside the store's index, before records are parsed
(see ``Selection`` in nnexp/tracking/index.py): on a store of 10,000 runs,
a filter that keeps 700 parses 700 records, not 10,000.
"""

from __future__ import annotations

from ..tracking import RunStore
from ..tracking.index import Selection
from ..tracking.sweeps import find_sweep
from .query import check_names, known_names, parse, record_lookup, unknown_names


def select_records(store, run_refs=(), sweep_ref=None, where=None) -> tuple[list[dict], dict | None]:
    """The records chosen by run references, sweeps and a filter (all that
    are given must hold), and the (first) sweep's state when one was named.
    ``sweep_ref`` is one reference or a sequence of them (their runs together).

    A filter name that no run among those of the references and the sweeps
    has is a FilterError (exit 2) with the closest known name."""
    flt = parse(where) if where else None  # a syntax error before the store is read
    store = RunStore(store)
    refs = [sweep_ref] if isinstance(sweep_ref, str) else [r for r in (sweep_ref or ()) if r]
    sweeps = [find_sweep(store.root, ref) for ref in refs]
    sweep = sweeps[0] if sweeps else None
    listing = store.runs() if run_refs else None
    wanted = {store.find(ref, listing).id for ref in run_refs} if run_refs else None
    sweep_ids = {s["id"] for s in sweeps} or None
    if flt is None and sweep_ids is None and wanted is None:
        return store.records(), None

    unknown = set(flt.names) if flt is not None else set()
    candidates = []  # whether keep saw a run of the references and the sweep

    def chosen(record: dict) -> bool:
        if wanted is not None and record["id"] not in wanted:
            return False
        if sweep_ids is not None and (record.get("summary") or {}).get("sweep") not in sweep_ids:
            return False
        if flt is None:
            return True
        if not candidates:
            candidates.append(True)
        if unknown:
            unknown.intersection_update(unknown_names(flt, record))
        return flt.matches(record_lookup(record))

    fields = flt.fields() if flt is not None else {"summary": set(), "params": set(), "metrics": set()}
    if sweep_ids is not None:
        fields["summary"].add("sweep")
    necessary = flt.necessary() if flt is not None else []
    if sweep_ids is not None and len(sweep_ids) == 1:   # decided in the index before any record is parsed
        necessary.append(([("summary", "sweep")], "==", next(iter(sweep_ids))))
    records = store.records(selection=Selection(fields, chosen, necessary))
    if flt is not None and ((unknown and candidates) or not records):
        # A name no run the filter looked at has: a typo, or a field only runs ruled out
        # earlier have. Decide on all the runs of the references and the sweep.
        everything = [r for r in store.records()
                      if (wanted is None or r["id"] in wanted)
                      and (sweep_ids is None or (r.get("summary") or {}).get("sweep") in sweep_ids)]
        if everything:
            check_names(flt, known_names(everything))
    return records, sweep
