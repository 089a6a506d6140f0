"""The store query: which runs, in what order, which page.

Every command that chooses runs (``nnexp runs``, ``compare``, ``diff``,
``tag``, ``rm``, ``ensemble --sweep``) and every listing of the dashboard
asks it the same way: a :class:`RunQuery` (run references, sweeps, a
``--where`` filter, tags, statuses, a search text, a sort and a page),
answered by :func:`select_runs` as a :class:`Chosen`.

The runs come from the store's index (``tracking/index.py``), which decides
on most runs before their records are parsed (an ``index.Selection``, built
only here): on a store of 10,000 runs, a filter that keeps 700 parses 700
records, not 10,000. The dashboard passes the records it holds in memory
instead, and the same conditions are tested on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..tracking import RunInfo, RunStore, live_status
from ..tracking.index import Selection
from ..tracking.sweeps import find_sweep
from ..values import is_missing, is_number
from .query import MISSING, check_names, known_names, parse, record_lookup, unknown_names

# Short names a query sorts by (the columns of ``nnexp runs``), and the summary field each stands for.
SORT_ALIASES = {"epochs": "epochs_completed", "val_acc": "final_val_accuracy", "test_acc": "test_accuracy",
                "train_s": "train_seconds", "started": "start_time"}
# Summary fields the tests of tags, status and text read (live_status reads pid and host).
_SUMMARY_FIELDS = {"tags": ("tags",), "statuses": ("status", "pid", "host"), "text": ("name",)}


@dataclass(frozen=True)
class RunQuery:
    """Which runs (every condition given must hold), in what order, which page.

    ``runs``: references (id, id prefix, name, ``latest``); ``sweeps``: sweep
    references (their runs together); ``where``: a filter (compare/query.py);
    ``tags``: tags a run has all of; ``statuses``: live statuses, any of;
    ``text``: a case-insensitive part of the id or name. ``sort``: a summary
    field, a ``--where`` name or a short name of SORT_ALIASES (None: oldest
    first, as the store lists runs); missing values sort last either way.
    ``offset`` and ``limit`` choose the page (``limit`` None: all).
    """

    runs: tuple[str, ...] = ()
    sweeps: tuple[str, ...] = ()
    where: str | None = None
    tags: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    text: str = ""
    sort: str | None = None
    descending: bool = False
    offset: int = 0
    limit: int | None = None

    def __post_init__(self):
        for name in ("runs", "sweeps", "tags", "statuses"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"RunQuery: {name} must be a tuple of strings, not {value!r}")
            object.__setattr__(self, name, tuple(v.strip() for v in value if v.strip()))
        object.__setattr__(self, "text", (self.text or "").strip().lower())
        object.__setattr__(self, "where", (self.where or "").strip() or None)
        if not (isinstance(self.offset, int) and self.offset >= 0):
            raise ConfigError(f"RunQuery: offset must be a whole number >= 0, not {self.offset!r}")
        if self.limit is not None and not (isinstance(self.limit, int) and self.limit >= 1):
            raise ConfigError(f"RunQuery: limit must be a whole number >= 1, not {self.limit!r}")

    @property
    def narrows(self) -> bool:
        """Whether any condition is given (else every run of the store is chosen)."""
        return bool(self.runs or self.sweeps or self.where or self.tags or self.statuses or self.text)


@dataclass
class Chosen:
    """The answer to a RunQuery: the page of records, how many matched in all,
    and the state of the first sweep named (None without one)."""

    records: list[dict]
    total: int
    sweep: dict | None = None


def select_runs(store, query: RunQuery = RunQuery(), records: list[dict] | None = None,
                find=find_sweep) -> Chosen:
    """The records of the store at ``store`` that ``query`` chooses, sorted and paged.

    ``records``: every record of the store, oldest first, already in memory
    (the dashboard's); without them the store's index is read. ``find(root,
    ref)`` gives a sweep's state (the dashboard's is cached). A reference
    that names no run is a RunNotFound, a sweep that names none a
    NnexpError, and a filter name that no run among those of the references
    and the sweeps has a FilterError (exit 2) with the closest known name.
    """
    flt = parse(query.where) if query.where else None  # a syntax error before the store is read
    store = RunStore(store)
    sweeps = [find(store.root, ref) for ref in query.sweeps]
    sweep = sweeps[0] if sweeps else None
    wanted = _referenced(store, query.runs, records) if query.runs else None
    sweep_ids = {s["id"] for s in sweeps} or None
    tags, statuses, text = set(query.tags), set(query.statuses), query.text

    def around(record: dict) -> bool:  # the conditions other than the filter
        summary = record["summary"]
        if wanted is not None and record["id"] not in wanted:
            return False
        if sweep_ids is not None and summary.get("sweep") not in sweep_ids:
            return False
        if tags and not tags <= set(_tags(summary)):
            return False
        if statuses and live_status(summary) not in statuses:
            return False
        return not text or text in record["id"].lower() or text in str(summary.get("name", "")).lower()

    unknown = set(flt.names) if flt is not None else set()
    candidates = []  # whether the filter saw a run the other conditions keep

    def chosen(record: dict) -> bool:
        if not around(record):
            return False
        if flt is None:
            return True
        if not candidates:
            candidates.append(True)
        if unknown:
            unknown.intersection_update(unknown_names(flt, record))
        return flt.matches(record_lookup(record))

    if records is not None:
        found = [r for r in records if chosen(r)] if query.narrows else list(records)
    elif not query.narrows:
        found = store.records()
    else:
        found = store.records(selection=_selection(flt, query, sweep_ids, chosen))
    if flt is not None and ((unknown and candidates) or not found):
        # A name no run the filter looked at has: a typo, or a field only runs ruled out
        # earlier have. Decide on all the runs the other conditions keep.
        everything = [r for r in (records if records is not None else store.records()) if around(r)]
        if everything:
            check_names(flt, known_names(everything))
    if query.sort is not None:
        found = _sorted(found, SORT_ALIASES.get(query.sort, query.sort), query.descending)
    elif query.descending:
        found = found[::-1]
    end = None if query.limit is None else query.offset + query.limit
    return Chosen(found[query.offset:end], len(found), sweep)


def _referenced(store: RunStore, refs: tuple[str, ...], records: list[dict] | None) -> set[str]:
    """The ids of the runs that ``refs`` name (RunNotFound for one that names none)."""
    listing = None if records is None else [RunInfo(Path(r["path"]), r["summary"], r["id"]) for r in records]
    listing = store.runs() if listing is None else listing
    return {store.find(ref, listing).id for ref in refs}


def _selection(flt, query: RunQuery, sweep_ids, chosen) -> Selection:
    """What the index tests before parsing a record: the fields ``chosen`` reads and
    the conditions every chosen run meets."""
    fields = flt.fields() if flt is not None else {"summary": set(), "params": set(), "metrics": set()}
    if sweep_ids is not None:
        fields["summary"].add("sweep")
    for name, keys in _SUMMARY_FIELDS.items():
        if getattr(query, name):
            fields["summary"].update(keys)
    necessary = flt.necessary() if flt is not None else []
    if sweep_ids is not None and len(sweep_ids) == 1:  # decided in the index before any record is parsed
        necessary.append(([("summary", "sweep")], "==", next(iter(sweep_ids))))
    return Selection(fields, chosen, necessary)


def _sorted(records: list[dict], field: str, descending: bool) -> list[dict]:
    keyed = [(_sort_key(_sort_value(r, field)), r) for r in records]
    present = [item for item in keyed if item[0] is not None]
    present.sort(key=lambda item: item[0], reverse=descending)
    return [r for _, r in present] + [r for key, r in keyed if key is None]  # missing values last


def _sort_value(record: dict, field: str):
    summary = record["summary"]
    if field == "status":
        return live_status(summary)
    if field in summary:
        return summary[field]
    if field in ("id", "path"):
        return record.get(field)
    return record_lookup(record)(field)


def _sort_key(value):
    """Numbers before text, each in its own order; None for a missing value (sorted last)."""
    if value is None or value is MISSING or is_missing(value):
        return None
    if is_number(value):
        return (0, float(value), "")
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    return (1, 0.0, str(value).lower())


def _tags(summary: dict) -> list[str]:
    tags = summary.get("tags")
    return [str(t) for t in tags] if isinstance(tags, list) else []

