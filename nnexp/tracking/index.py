"""A SQLite index of a run store, so that listing 10,000 runs takes well under a second.

The run folders stay the source of truth; the index (``<store>/.index.sqlite``)
is a cache of their records (see ``records.py``) that any process may throw
away and rebuild. Each row keeps the stat signature (mtime in ns and size) of
the folder's summary.json and metrics.csv and of the folder itself;
:meth:`RunIndex.sync` stats every folder and re-reads only those whose
signature changed, so a listing sees per-epoch changes without the trainer
writing to the index. The folder's mtime changes whenever a file in it is
replaced, which is how nnexp writes config.yaml and annotations.json (and
summary.json, which has its own entry because it is the file people edit by
hand); metrics.csv grows in place and needs its own: three stats per run.

A row keeps the record as three JSON texts: the listing's few summary fields
(``brief``), the whole summary, and the params and metrics (``rest``); a
listing parses only what it shows. A filter looks at each row before it is
parsed (a :class:`Selection`: its conditions searched for in the row's JSON
text, or its fields read with SQLite's JSON operators), so that a comparison
of 700 runs out of 10,000 parses about 700.

Several trainers and listings may use one store at once. SQLite's WAL mode
lets readers read while one process writes; every write is one short
transaction, made after the slow part (reading folders) is done, and waits up
to ``timeout`` seconds for a busy lock. A row is only trusted while its
signature matches the folder, so a lost race (a listing writing a record that
a trainer has just replaced) costs one re-read at the next listing, never a
wrong answer.

Whatever happens to the index file (read-only store, corrupt or foreign file,
lock held too long), a listing never fails because of it: a corrupt file is
rebuilt, and otherwise the records are read from the folders directly, with a
warning.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from ..errors import NnexpError
from ..values import is_number
from .records import RECORD_VERSION, brief, link_problem, make_record
from .run import METRICS, SUMMARY, DamagedRun, Run, RunObserver

INDEX_NAME = ".index.sqlite"
SCHEMA_VERSION = 2
RACY_NS = 2_000_000_000  # files changed this recently may change again within one mtime tick

# What a record's signature stats, in order: two files and the folder ("" is the folder itself).
SIGNATURE_FILES = (SUMMARY, METRICS, "")
MISSING = (-1, -1)  # the (mtime_ns, size) of a file that does not exist
_SUFFIXES = tuple(os.sep + name if name else "" for name in SIGNATURE_FILES)

# What a listing reads of each row: the whole record, the summary, or its brief fields.
RECORD, SUMMARY_ONLY, BRIEF = "record", "summary", "brief"
# SQLite's -> operator (3.38) returns a JSON value as JSON text, keeping true apart from 1.
_JSON_ARROW = sqlite3.sqlite_version_info >= (3, 38, 0)
_REJECTED = object()  # a row the selection's necessary conditions rule out
_LATE = object()  # a row the selection decides on once it is parsed whole

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,          -- the run folder's name
    summary_mtime INTEGER NOT NULL, summary_size INTEGER NOT NULL,
    metrics_mtime INTEGER NOT NULL, metrics_size INTEGER NOT NULL,
    folder_mtime INTEGER NOT NULL, folder_size INTEGER NOT NULL,
    start_time REAL,              -- summary start_time, for ordering
    error TEXT,                   -- why the folder is damaged (the JSON columns are NULL then)
    brief TEXT,                   -- the summary fields a listing shows, as JSON
    summary TEXT,                 -- the record's summary as JSON
    rest TEXT                     -- the record's params and metrics as JSON
) WITHOUT ROWID
"""
_SIGNATURE_COLUMNS = "summary_mtime, summary_size, metrics_mtime, metrics_size, folder_mtime, folder_size"
_COLUMNS = f"id, {_SIGNATURE_COLUMNS}, start_time, error, brief, summary, rest"
_UPSERT = f"INSERT OR REPLACE INTO runs ({_COLUMNS}) VALUES ({', '.join('?' * 12)})"
_SIG_LEN = 2 * len(SIGNATURE_FILES)


def _stderr_warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _format_version() -> int:
    """What ``PRAGMA user_version`` must say: a change of the table or of the
    record layout makes every older index stale."""
    return SCHEMA_VERSION * 1000 + RECORD_VERSION


def signature(run_dir: str) -> tuple[int, ...] | None:
    """(mtime_ns, size) of summary.json, metrics.csv and the folder, flattened
    to 6 ints (-1, -1 for a missing file); None if ``run_dir`` has no
    summary.json.

    OSError other than a missing file (permissions) propagates.
    """
    run_dir = os.fspath(run_dir)
    try:
        st = os.stat(run_dir + _SUFFIXES[0])  # plain concatenation: os.path.join costs as much as the stat
    except FileNotFoundError:
        return None
    sig = [st.st_mtime_ns, st.st_size]
    for suffix in _SUFFIXES[1:]:
        try:
            st = os.stat(run_dir + suffix)
        except FileNotFoundError:
            sig += MISSING
            continue
        sig += (st.st_mtime_ns, st.st_size)
    return tuple(sig)


def folder_names(root: str, warn) -> list[str]:
    """The names of the store's folders that may be run folders: not hidden, and
    not symbolic links (one that leads to a run folder, maybe out of the store,
    is skipped with one ``warn(message)``). OSError of listing ``root`` propagates."""
    names = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if entry.is_symlink():
                if os.path.isfile(entry.path + _SUFFIXES[0]):
                    warn(f"skipping run {entry.name}: {link_problem(entry.path)}")
                continue
            names.append(entry.name)
    return names


def _trusted(sig: tuple[int, ...], now_ns: int) -> tuple[int, ...]:
    """The signature to store for a record read at ``now_ns``.

    File mtimes advance in clock ticks of a few ms, so a file rewritten twice
    within one tick with the same size (summary.json at epochs 1 and 2) keeps
    its signature. A file changed within RACY_NS of reading is therefore
    stored with an impossible mtime, which forces one more read later (the
    trick git uses for its index).
    """
    sig = list(sig)
    for i in range(0, len(sig), 2):
        if sig[i] >= now_ns - RACY_NS:
            sig[i] = -2
    return tuple(sig)


def _order(record: dict) -> tuple[float, str]:
    start = record["summary"].get("start_time")
    ok = is_number(start) and math.isfinite(start)
    return (float(start) if ok else 0.0, record["id"])


def _build(run_dir: str, run_id: str, sig: tuple[int, ...], now_ns: int) -> tuple[dict | None, tuple]:
    """Read one folder: (record or None, the index row for it)."""
    try:
        record = make_record(run_dir)
    except DamagedRun as exc:
        return None, (run_id, *_trusted(sig, now_ns), None, str(exc), None, None, None)
    start = _order(record)[0]
    # Kept apart so that a listing that shows only summaries parses only those.
    short = json.dumps(brief(record["summary"]), separators=(",", ":"), default=str)
    summary = json.dumps(record["summary"], separators=(",", ":"), default=str)
    rest = json.dumps({"params": record["params"], "metrics": record["metrics"]}, separators=(",", ":"))
    return record, (run_id, *_trusted(sig, now_ns), start, None, short, summary, rest)


def _part(record: dict, part: str) -> dict:
    """The ``part`` of a whole record that a listing asked for."""
    if part == RECORD:
        return record
    summary = brief(record["summary"]) if part == BRIEF else record["summary"]
    return {"id": record["id"], "path": record["path"], "summary": summary}


def _decode(texts: list[str]) -> list | None:
    """Parse JSON texts in one go: one json.loads over all of them joined into a
    JSON array is faster than a call each, and parsing dominates a warm
    listing. None if any text is invalid (a damaged index)."""
    try:
        values = json.loads("[" + ",".join(texts) + "]")
    except (ValueError, TypeError, RecursionError):
        return None
    return values if len(values) == len(texts) else None


def _decode_one(text) -> dict | None:
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


@dataclass
class Selection:
    """Which runs a listing wants, decided before their records are parsed.

    ``fields`` maps "summary", "params" and "metrics" to the keys ``keep``
    looks at; ``keep(record)`` is called with a record (id, path, summary,
    params, metrics) that holds at least those keys where the run has them,
    and says whether the run is wanted. Only wanted runs are parsed whole.
    ``necessary`` lists conditions every wanted run meets, ([(section, key),
    ...], op, literal): the value at one of the locations compares to the
    literal as ``op`` says (==, <, <=, >, >=). They are searched for in the
    rows' stored JSON text first, so that only the runs that may meet them
    are parsed and given to ``keep``.
    """

    fields: dict
    keep: Callable[[dict], bool]
    necessary: list = field(default_factory=list)  # (locations, op, literal): see Filter.necessary in compare/query.py


def _column(section: str) -> str:
    return "summary" if section == "summary" else "rest"


def _json_path(section: str, key: str) -> str:
    return f'$."{key}"' if section == "summary" else f'$.{section}."{key}"'


_NUMBER = re.compile(r"-?(?:Infinity|NaN|[0-9][0-9.eE+-]*)")


def _searchable(necessary) -> bool:
    """Whether the keys can be searched for as the index writes them (see _may_pass)."""
    return all(isinstance(key, str) for locations, _, _ in necessary for _, key in locations)


def _search_patterns(necessary) -> list[list[tuple]]:
    """The necessary conditions as what to look for in a row's JSON texts, as
    the index writes them (compact and ASCII: a key and its value are the
    text ``"key":value``): for each condition, (column, text before the
    value, op, literal) for each location (see _may_pass)."""
    conditions = []
    for locations, op, literal in necessary:
        options = []
        for section, key in locations:
            head = json.dumps(key) + ":"
            if isinstance(literal, str):
                options.append((_column(section), head + json.dumps(literal) if op == "==" else head + '"', None, None))
            else:
                options.append((_column(section), head, op, literal))
        conditions.append(options)
    return conditions


def _may_pass(patterns: list[list[tuple]], texts: dict) -> bool:
    """Whether a row ({column: JSON text}) may meet every necessary condition:
    False only when no location holds a value that meets it. A string may
    meet any ordered condition, and a match anywhere in the text counts
    (params and metrics share one text); the filter decides afterwards."""
    for options in patterns:
        for column, head, op, literal in options:
            text = texts.get(column)
            if text is None:
                continue
            if op is None:
                if head in text:
                    break
            elif head in text and _number_may_pass(text, head, op, literal):
                break
        else:
            return False
    return True


def _number_may_pass(text: str, head: str, op: str, literal) -> bool:
    """Whether a number written after ``head`` in ``text`` meets ``op literal``
    (Python writes floats so that they read back exactly)."""
    at = text.find(head)
    while at >= 0:
        match = _NUMBER.match(text, at + len(head))
        if match:
            try:
                value = float(match.group())
            except ValueError:
                value = None
            if value is not None and ((op == "==" and value == literal) or (op in (">", ">=") and value >= literal)
                                      or (op in ("<", "<=") and value <= literal)):
                return True
        at = text.find(head, at + len(head))
    return False


def _extracts(selection: Selection) -> list[tuple[str, str, str]] | None:
    """(section, key, JSON path) for each field of ``selection``; None where SQLite
    cannot extract them (too old, or a key no JSON path can name)."""
    if not _JSON_ARROW:
        return None
    out = []
    for section, keys in selection.fields.items():
        for key in sorted(keys):
            if not isinstance(key, str) or '"' in key or "\\" in key:
                return None
            out.append((section, key, _json_path(section, key)))
    return out


class IndexUnavailable(Exception):
    """The index file cannot be opened for reading (listings then read the folders)."""


class RunIndex:
    """The SQLite index of the run store at ``store_root``.

    sync(warn)       -> every valid record, oldest first (re-reads changed folders)
    rebuild(warn)    -> the same, after throwing the index's contents away
    upsert(run_dir)  -> (re)index one folder now; for writers, at status changes
    forget(run_ids)  -> drop the rows of removed folders

    A RunIndex holds no open connection between calls, so it is cheap to make
    and safe to use from several processes.
    """

    def __init__(self, store_root, timeout: float = 10.0):
        self.root = Path(store_root)
        self.path = self.root / INDEX_NAME
        if not (isinstance(timeout, (int, float)) and timeout >= 0):
            raise ValueError(f"RunIndex: timeout must be a number of seconds >= 0, got {timeout!r}")
        self.timeout = float(timeout)

    # ------------------------------------------------------------ reading --

    def sync(self, warn=None, force: bool = False, full: bool = True, brief: bool = False,
             selection: Selection | None = None) -> list[dict]:
        """Bring the index up to date with the folders and return every valid record.

        A run folder is a non-hidden directory (not a symbolic link: see
        folder_names) holding summary.json. Folders that are new or whose
        signature changed are read again (all of them with ``force``), rows
        of vanished folders are deleted, and damaged folders (and linked
        ones) are skipped with one ``warn(message)`` each. Records are
        sorted by (summary start_time, id); their ``path`` is under
        ``store_root`` as given. With ``full=False`` they hold only ``id``,
        ``path`` and ``summary``, which is all a run listing shows and about
        half the parsing; with ``brief`` too, the summary holds only the
        BRIEF_FIELDS of ``records.py``. With a ``selection``, only the runs it
        keeps are returned.
        """
        part = RECORD if full else (BRIEF if brief else SUMMARY_ONLY)
        warn = warn or _stderr_warn
        if not self.root.is_dir():
            if self.root.exists() and not self.root.is_dir():  # is_dir again: another process may just have made it
                raise NnexpError(f"run store {self.root} is not a directory")
            return []
        try:
            conn, writable = self._open(warn)
        except IndexUnavailable as exc:
            warn(f"run index {self.path} unavailable ({exc}); reading the run folders directly")
            conn, writable = None, False
        try:
            known = {}
            if conn is not None:
                try:
                    known = self._load(conn, part, selection)
                except sqlite3.DatabaseError as exc:  # opened, but its pages are damaged
                    conn.close()
                    conn, writable = self._reopen_damaged(exc, warn)
            records, changed, gone = self._scan(known, warn, force, part, selection,
                                                lambda names, whole: self._texts(conn, names, whole, part))
            if conn is not None and writable and (changed or gone):
                self._write(conn, changed, gone, warn)
            elif changed and conn is not None and not writable:
                warn(f"run index {self.path} is read-only: {len(changed)} changed run(s) read from "
                     "their folders and not saved")
        finally:
            if conn is not None:
                conn.close()
        records.sort(key=_order)
        return records

    def rebuild(self, warn=None) -> list[dict]:
        """Empty the index and index every folder again; returns sync's records."""
        warn = warn or _stderr_warn
        if self.root.is_dir():
            try:
                conn, writable = self._open(warn)
            except IndexUnavailable:
                conn, writable = None, False  # sync warns
            if conn is not None:
                try:
                    if writable:
                        self._transaction(conn, lambda c: c.execute("DELETE FROM runs"))
                except sqlite3.Error as exc:
                    warn(f"cannot clear run index {self.path} ({exc})")
                finally:
                    conn.close()
        return self.sync(warn, force=True)

    def _load(self, conn, part: str, selection: Selection | None) -> dict:
        """{id: (signature, error, summary JSON, rest JSON, verdict)} of every row.

        The verdict says what the ``selection`` makes of an unchanged row:
        None (no selection: take it), _REJECTED (it fails a necessary
        condition), _LATE (decide on the whole record, once parsed), or a
        partial record holding the selection's fields (decide on it now).
        JSON texts that are None are fetched later (``_texts``), for the rows
        that are taken.
        """
        n = 1 + _SIG_LEN
        if selection is not None and selection.necessary and _searchable(selection.necessary):
            return self._load_searching(conn, selection.necessary)
        extracts = _extracts(selection) if selection is not None else None
        if extracts is not None:
            wanted = "".join(f", {_column(section)} -> ?" for section, _, _ in extracts)
            try:
                rows = conn.execute(f"SELECT id, {_SIGNATURE_COLUMNS}, error{wanted} FROM runs",
                                    [path for _, _, path in extracts]).fetchall()
            except sqlite3.OperationalError as exc:
                if "JSON" not in str(exc):
                    raise
                rows = None  # a row SQLite's JSON parser refuses (a NaN Python wrote): parse them all here
            if rows is not None:
                return self._partials(rows, extracts)
        summary = "brief" if part == BRIEF and selection is None else "summary"
        rest = "rest" if part == RECORD or selection is not None else "NULL"
        rows = conn.execute(f"SELECT id, {_SIGNATURE_COLUMNS}, error, {summary}, {rest} FROM runs").fetchall()
        verdict = None if selection is None else _LATE
        return {row[0]: (row[1:n], row[n], row[n + 1], row[n + 2], verdict) for row in rows}

    @staticmethod
    def _partials(rows: list[tuple], extracts: list) -> dict:
        """Verdicts from the JSON texts SQLite extracted (after the signature and error)."""
        n = 1 + _SIG_LEN
        texts = [t for row in rows for t in row[n + 1:] if t is not None]
        values = iter(_decode(texts) or [None] * len(texts))  # a damaged text reads as null: the row is kept
        known = {}
        for row in rows:
            partial = {"id": row[0], "summary": {}, "params": {}, "metrics": {}}
            for (section, key, _), text in zip(extracts, row[n + 1:]):
                if text is not None:
                    partial[section][key] = next(values)
            known[row[0]] = (row[1:n], row[n], None, None, partial)
        return known

    @staticmethod
    def _load_searching(conn, necessary) -> dict:
        """Verdicts from searching each row's JSON text for the values the necessary
        conditions need (see _may_pass): _REJECTED or _LATE."""
        n = 1 + _SIG_LEN
        patterns = _search_patterns(necessary)
        columns = sorted({_column(section) for locations, _, _ in necessary for section, _ in locations})
        rows = conn.execute(f"SELECT id, {_SIGNATURE_COLUMNS}, error, {', '.join(columns)} FROM runs").fetchall()
        known = {}
        for row in rows:
            texts = dict(zip(columns, row[n + 1:]))
            verdict = _LATE if row[n] is not None or _may_pass(patterns, texts) else _REJECTED
            known[row[0]] = (row[1:n], row[n], texts.get("summary"), texts.get("rest"), verdict)
        return known

    def _texts(self, conn, names: list[str], whole: bool, part: str) -> dict:
        """{id: (summary JSON, rest JSON)} of the rows ``names`` (ids without a row
        are missing): the whole summary and the rest, or what ``part`` needs."""
        summary = "brief" if part == BRIEF and not whole else "summary"
        rest = "rest" if part == RECORD or whole else "NULL"
        rows = conn.execute(f"SELECT id, {summary}, {rest} FROM runs WHERE id IN (SELECT value FROM json_each(?))",
                            (json.dumps(names),)).fetchall()
        return {row[0]: (row[1], row[2]) for row in rows}

    def _reopen_damaged(self, exc, warn) -> tuple[sqlite3.Connection | None, bool]:
        """After a read failed: start a fresh index, or go on without one."""
        if _is_corrupt(exc):
            warn(f"run index {self.path} is damaged ({exc}); rebuilding it from the run folders")
            try:
                return self._recreate(), True
            except (OSError, sqlite3.Error) as exc2:
                warn(f"cannot rebuild run index {self.path} ({exc2}); reading the run folders directly")
                return None, False
        warn(f"run index {self.path} unreadable ({exc}); reading the run folders directly")
        return None, False

    def _scan(self, known: dict, warn, force: bool, part: str, selection: Selection | None, texts):
        """Stat every run folder; reuse known records whose signature matches.

        Returns (records, changed rows to write, ids of vanished folders).
        Rows are only deleted if they were in ``known`` (loaded before the
        scan), so a folder created by another process while this scan runs is
        never deleted from the index. ``texts(ids, whole)`` fetches the JSON of
        rows loaded without it.
        """
        now_ns = time.time_ns()
        root = os.fspath(self.root)
        try:
            names = sorted(folder_names(root, warn))
        except OSError as exc:
            raise NnexpError(f"cannot list run store {root}: {exc.strerror or exc}") from None
        records, changed, reused, seen = [], [], [], set()
        for name in names:
            run_dir = f"{root}{os.sep}{name}"
            try:
                sig = signature(run_dir)
            except OSError as exc:
                warn(f"skipping run {name}: cannot read its folder ({exc.strerror or exc})")
                continue
            if sig is None:
                continue  # not a run folder (or one being created): no summary.json yet
            seen.add(name)
            row = known.get(name)
            if row is not None and not force and row[0] == sig:
                verdict = row[4]
                if row[1] is not None:
                    warn(f"skipping {row[1]}")
                elif verdict is None or verdict is _LATE:
                    reused.append([name, sig, row[2], row[3], verdict is _LATE])
                elif verdict is not _REJECTED and selection.keep(dict(verdict, path=run_dir)):
                    reused.append([name, sig, None, None, False])
                continue
            self._read_folder(run_dir, name, sig, now_ns, part, selection, records, changed, warn)
        for whole in (False, True):  # fetch the JSON of rows loaded without it, for these only
            missing = [r[0] for r in reused if r[4] == whole and (r[2] is None or (r[3] is None and
                                                                                 (whole or part == RECORD)))]
            if missing:
                fetched = texts(missing, whole)
                for r in reused:
                    if r[0] in fetched and r[4] == whole:
                        r[2], r[3] = fetched[r[0]][0], fetched[r[0]][1] if r[3] is None else r[3]
        records += self._reuse(reused, root, now_ns, part, selection, changed, warn)
        gone = [run_id for run_id in known if run_id not in seen]
        return records, changed, gone

    def _read_folder(self, run_dir, name, sig, now_ns, part, selection, records, changed, warn) -> None:
        """Build a folder's record (appended to ``records`` if the selection keeps
        it) and its new index row."""
        record, new_row = _build(run_dir, name, sig, now_ns)
        if record is None and not os.path.isdir(run_dir):
            return  # removed (nnexp rm) between the stat and the read: gone, not damaged
        changed.append(new_row)
        if record is None:
            warn(f"skipping {new_row[8]}")
        elif selection is None or selection.keep(record):
            records.append(_part(record, part))

    def _reuse(self, reused: list[list], root: str, now_ns: int, part: str, selection, changed: list,
               warn) -> list[dict]:
        """Records from the index rows of unchanged folders: [name, sig, summary
        JSON, rest JSON, late] each; the selection decides on the ``late`` ones
        here, once they are parsed whole. A row whose JSON does not parse (an
        index damaged by a crash) is rebuilt from its folder."""
        needs_rest = [part == RECORD or r[4] for r in reused]
        summaries = _decode([r[2] for r in reused])
        rests = _decode([r[3] if need else "null" for r, need in zip(reused, needs_rest)]) if any(needs_rest) \
            else needs_rest
        if summaries is None or rests is None:  # rare: find the bad rows one by one
            summaries = [_decode_one(r[2]) for r in reused]
            rests = [_decode_one(r[3]) if need else None for r, need in zip(reused, needs_rest)]
        records = []
        for (name, sig, _, _, late), summary, rest, need in zip(reused, summaries, rests, needs_rest):
            run_dir = f"{root}{os.sep}{name}"
            if not isinstance(summary, dict) or (need and not isinstance(rest, dict)):
                self._read_folder(run_dir, name, sig, now_ns, part, selection, records, changed, warn)
                continue
            record = {"id": name, "path": run_dir, "summary": summary}
            if need:
                record.update(rest)
            if late:
                if not selection.keep(record):
                    continue
                record = _part(record, part)
            records.append(record)
        return records

    # ------------------------------------------------------------ writing --

    def upsert(self, run_dir) -> None:
        """Index the run folder ``run_dir`` (inside this store) now.

        For writers, at the moments a listing should see at once (run start,
        end). A damaged folder is stored as such. Raises sqlite3.Error,
        OSError or IndexUnavailable if the index cannot be written; callers
        treat that as best effort.
        """
        run_dir = os.fspath(run_dir)
        name = os.path.basename(os.path.normpath(run_dir))
        sig = signature(run_dir)  # before reading: a change during the read shows up next time
        if sig is None:
            return
        _, row = _build(run_dir, name, sig, time.time_ns())
        conn, writable = self._open(_stderr_warn)
        try:
            if not writable:
                raise sqlite3.OperationalError(f"run index {self.path} is read-only")
            self._transaction(conn, lambda c: c.execute(_UPSERT, row))
        finally:
            conn.close()

    def forget(self, run_ids) -> None:
        """Delete the rows of runs whose folders were removed (by ``nnexp rm``); best
        effort like upsert: sqlite3.Error, OSError or IndexUnavailable propagate,
        and a row left behind is deleted by the next listing anyway."""
        ids = [(run_id,) for run_id in run_ids]
        if not ids or not self.path.exists():
            return
        conn, writable = self._open(_stderr_warn)
        try:
            if writable:
                self._transaction(conn, lambda c: c.executemany("DELETE FROM runs WHERE id = ?", ids))
        finally:
            conn.close()

    def _write(self, conn, changed: list[tuple], gone: list[str], warn) -> None:
        def write(c):
            c.executemany(_UPSERT, changed)
            c.executemany("DELETE FROM runs WHERE id = ?", [(run_id,) for run_id in gone])

        try:
            self._transaction(conn, write)
        except sqlite3.Error as exc:  # busy too long, disk full, read-only: the listing is still right
            warn(f"run index {self.path} not updated ({exc}); the listing is read from the run folders")

    def _transaction(self, conn, body) -> None:
        """Run ``body(conn)`` in one short write transaction."""
        conn.execute("BEGIN IMMEDIATE")  # take the write lock now (waits up to timeout), not mid-way
        try:
            body(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # ------------------------------------------------------------ opening --

    def _open(self, warn) -> tuple[sqlite3.Connection, bool]:
        """A connection to an index in the current format, and whether it is writable.

        A corrupt or foreign file is deleted and made again (with a warning);
        an index that cannot be written (read-only store) is opened read-only
        if it exists and has the current format. Raises IndexUnavailable
        when neither works.
        """
        try:
            return self._open_writable_retrying(), True
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc):
                warn(f"run index {self.path} is damaged ({exc}); rebuilding it from the run folders")
                try:
                    return self._recreate(), True
                except (OSError, sqlite3.Error) as exc2:
                    raise IndexUnavailable(f"cannot rebuild it: {exc2}") from None
            first = exc
        try:
            return self._open_read_only(), False
        except sqlite3.Error:
            raise IndexUnavailable(str(first)) from None

    def _open_writable_retrying(self) -> sqlite3.Connection:
        """_open_writable, tried again for up to ``timeout`` seconds while SQLite
        says "database is locked".  SQLite's busy wait does not cover every
        case: a connection opening while the last one closes (and resets the
        WAL) or while another switches a new file to WAL mode can get
        SQLITE_BUSY at once; the concurrent-writers test saw it about once in
        ten runs under load."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return self._open_writable()
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _open_writable(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != _format_version() or not self._has_table(conn):
                self._create(conn)
            # No fsync: the index is a cache. Closing the last connection to a
            # WAL database checkpoints it, and with fsync that would make every
            # writer (a run start) wait for the disk. After a power cut the file
            # may be stale (signatures catch that) or corrupt (rebuilt, see
            # _open and _reuse).
            conn.execute("PRAGMA synchronous=OFF")
        except BaseException:
            conn.close()
            raise
        return conn

    def _create(self, conn) -> None:
        """Make the table in the current format, dropping any older one.

        Several processes may get here at once on a new store: BEGIN
        IMMEDIATE serialises them and the version check inside lets only the
        first one do the work.
        """
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch {self.path} to WAL mode (got {mode})")
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] != _format_version() or not self._has_table(conn):
                conn.execute("DROP TABLE IF EXISTS runs")
                conn.execute(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {_format_version():d}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @staticmethod
    def _has_table(conn) -> bool:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone() is not None

    def _open_read_only(self) -> sqlite3.Connection:
        """The index of a store this process cannot write.

        ``immutable=1`` reads the file without the WAL's shared-memory file,
        which cannot be created in a read-only folder. Reading a file that
        another process is changing this way may miss its latest commits;
        that is harmless here, because a row is only used while its signature
        matches the folder.
        """
        if not self.path.is_file():
            raise sqlite3.OperationalError("no index file")
        uri = f"file:{quote(os.path.abspath(self.path))}?mode=ro&immutable=1"
        conn = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None)
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] != _format_version() or not self._has_table(conn):
                raise sqlite3.OperationalError("index in an older format")
        except BaseException:
            conn.close()
            raise
        return conn

    def _recreate(self) -> sqlite3.Connection:
        """Delete a damaged index file and make a new, empty one."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.remove(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass
        return self._open_writable()


class HeldRecords:
    """The store's records held in memory, for a process that answers many
    requests a second (the dashboard): read once through the index
    (``load``), then kept fresh by the folders' signatures (``refresh``), with
    the index's own rules: the same folders, signatures, trust of recently
    changed files and order. Only changed folders are read again.

    ``records`` (oldest first) and ``by_id`` are replaced in one assignment
    each, so a reader in another thread sees a complete list; ``version``
    grows whenever the list changes.
    """

    def __init__(self, store_root, warn):
        self.root = Path(store_root)
        self.records: list[dict] = []
        self.by_id: dict[str, dict] = {}
        self.version = 0
        self._warn = warn
        self._entries: dict[str, tuple[tuple, dict]] = {}  # id -> (trusted signature, record)

    def load(self) -> None:
        """Read every record through the index (fast when it is warm)."""
        signatures = self._signatures()  # before reading: a change during the read shows up next time
        records = RunIndex(self.root).sync(self._warn) if self.root.is_dir() else []
        now_ns = time.time_ns()
        self._entries = {r["id"]: (_trusted(signatures.get(r["id"], MISSING * 3), now_ns), r) for r in records}
        self._publish(records)

    def hold(self, records: list[dict]) -> None:
        """Hold these records (a subset of the store's) until the next ``refresh``."""
        self._entries = {}
        self._publish(sorted(records, key=_order))

    def refresh(self) -> bool:
        """Stat every folder, read the changed ones again; True if anything changed."""
        now_ns = time.time_ns()
        entries, changed = {}, False
        for name, sig in self._signatures().items():
            old = self._entries.get(name)
            if old is not None and old[0] == sig:
                entries[name] = old
                continue
            try:
                record = make_record(self.root / name)
            except DamagedRun as exc:
                self._warn(f"skipping {exc}")
                continue
            except OSError as exc:  # vanished or unreadable while being read
                self._warn(f"skipping run {name}: {exc.strerror or exc}")
                continue
            record["path"] = os.path.join(os.fspath(self.root), name)
            entries[name] = (_trusted(sig, now_ns), record)
            changed = changed or old is None or old[1] != record
        changed = changed or entries.keys() != self._entries.keys()
        self._entries = entries
        if changed:
            self._publish(sorted((record for _, record in entries.values()), key=_order))
        return changed

    def _signatures(self) -> dict[str, tuple]:
        """{folder name: signature} of every run folder (see ``folder_names``)."""
        root = os.fspath(self.root)
        try:
            names = folder_names(root, self._warn)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self._warn(f"cannot list run store {root}: {exc.strerror or exc}")
            return {}
        out = {}
        for name in names:
            try:
                sig = signature(f"{root}{os.sep}{name}")
            except OSError:
                continue
            if sig is not None:
                out[name] = sig
        return out

    def _publish(self, records: list[dict]) -> None:
        self.records = records
        self.by_id = {r["id"]: r for r in records}
        self.version += 1


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    """True for a file that is not (or no longer) a valid SQLite database."""
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
        return True
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


class IndexObserver(RunObserver):
    """Re-indexes a run of the store at ``store_root`` at each of its status
    changes, so that listings and sweeps see the change at once (per-epoch
    writes are left to the listings, which notice them by the files' mtimes).

    Best effort: a broken or locked index must never stop a training run, so
    a failure is one warning per process and the listings read the folder.
    """

    warned = False  # class-wide: one warning per process, however many runs

    def __init__(self, store_root):
        self.root = Path(store_root)

    def status_changed(self, run: Run, status: str) -> None:
        self.reindex(run.path)

    def reindex(self, run_dir) -> None:
        """(Re)index the store's folder ``run_dir`` now, best effort."""
        try:
            RunIndex(self.root, timeout=2.0).upsert(run_dir)
        except Exception as exc:  # noqa: BLE001 - any failure here only delays a listing
            if not IndexObserver.warned:
                IndexObserver.warned = True
                print(f"warning: cannot update the run index of {self.root} ({exc}); "
                      "listings will still find the run", file=sys.stderr)
