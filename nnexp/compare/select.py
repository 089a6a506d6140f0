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
    """The records chosen by run references, a sweep and a filter (all that
    are given must hold), and the sweep's state when one was named.

    A filter name that no run among those of the references and the sweep
    has is a FilterError (exit 2) with the closest known name."""
    flt = parse(where) if where else None  # a syntax error before the store is read
    store = RunStore(store)
    sweep = find_sweep(store.root, sweep_ref) if sweep_ref else None
    listing = store.runs() if run_refs else None
    wanted = {store.find(ref, listing).id for ref in run_refs} if run_refs else None
    sweep_id = sweep["id"] if sweep else None
    if flt is None and sweep_id is None and wanted is None:
        return store.records(), None

    unknown = set(flt.names) if flt is not None else set()
    candidates = []  # whether keep saw a run of the references and the sweep

    def chosen(record: dict) -> bool:
        if wanted is not None and record["id"] not in wanted:
            return False
        if sweep_id is not None and (record.get("summary") or {}).get("sweep") != sweep_id:
            return False
        if flt is None:
            return True
        if not candidates:
            candidates.append(True)
        if unknown:
            unknown.intersection_update(unknown_names(flt, record))
        return flt.matches(record_lookup(record))

    fields = flt.fields() if flt is not None else {"summary": set(), "params": set(), "metrics": set()}
    if sweep_id is not None:
        fields["summary"].add("sweep")
    necessary = flt.necessary() if flt is not None else []
    if sweep_id is not None:
        necessary.append(([("summary", "sweep")], "==", sweep_id))
    records = store.records(selection=Selection(fields, chosen, necessary))
    if flt is not None and ((unknown and candidates) or not records):
        # A name no run the filter looked at has: a typo, or a field only runs ruled out
        # earlier have. Decide on all the runs of the references and the sweep.
        everything = [r for r in store.records()
                      if (wanted is None or r["id"] in wanted)
                      and (sweep_id is None or (r.get("summary") or {}).get("sweep") == sweep_id)]
        if everything:
            check_names(flt, known_names(everything))
    return records, sweep
