"""The store's run records held in memory, kept fresh by the folders' stat signatures.

The dashboard answers many small requests a second over a store that may
hold 10,000 runs. Reading the records through the index for each request
(``RunStore.records``) would stat every folder and parse every record's JSON
each time; here they are read once, at start, through the index (which
``RunIndex.sync`` brings up to date as ``nnexp runs`` does: that writes the
index's cache file, never a run folder), and then refreshed in the
background: every folder is stat-ed (the index's signature of summary.json,
metrics.csv and config.yaml) and only the changed ones are read again, with
``make_record``, the reader the index uses.

Requests never wait for a refresh: they read the last complete list, which
a refresh replaces in one assignment. A refresh runs at most every
``max_age`` seconds and only while requests keep coming (``touch``), so an
idle dashboard reads nothing. Run pages read their own folder directly and
are never stale; listings may be up to a refresh behind.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from pathlib import Path

from ..tracking import RunIndex, make_record
from ..tracking.index import RACY_NS, folder_names, signature
from ..tracking.run import DamagedRun
from ..values import is_number

logger = logging.getLogger(__name__)


def _order(record: dict) -> tuple[float, str]:
    """Oldest first, as listings order runs: by start time, then id."""
    start = record["summary"].get("start_time")
    return (float(start) if is_number(start) and math.isfinite(start) else 0.0, record["id"])


class StoreSnapshot:
    """Every readable run record of the store at ``root``, oldest first (``records``).

    ``version`` grows whenever the list changes, so that derived results can
    be cached against it (``cached``).
    """

    def __init__(self, root, max_age: float = 1.0):
        self.root = Path(root)
        self.max_age = float(max_age)
        self.records: list[dict] = []
        self.by_id: dict[str, dict] = {}
        self.version = 0
        self.refresh_seconds = 0.0  # how long the last refresh took
        self._entries: dict[str, tuple[tuple | None, dict]] = {}  # id -> (trusted signature or None, record)
        self._lock = threading.Lock()  # one refresh at a time
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()
        self._cache: dict = {}  # key -> (version, when computed, value)
        self._cache_lock = threading.Lock()
        self._key_locks: dict = {}

    # ------------------------------------------------------------ reading --

    def load(self) -> None:
        """Read every record through the store's index (fast when it is warm)."""
        with self._lock:
            t0 = time.perf_counter()
            signatures = self._signatures()  # before reading: a change during the read shows up next time
            records = RunIndex(self.root).sync(self._warn) if self.root.is_dir() else []
            now = time.time_ns()
            self._entries = {r["id"]: (_trusted(signatures.get(r["id"]), now), r) for r in records}
            self._publish(sorted(records, key=_order))
            self.refresh_seconds = time.perf_counter() - t0

    def hold(self, records: list[dict]) -> None:
        """Hold these records instead of the store's (an export of chosen runs: ``export.py``)."""
        with self._lock:
            self._entries = {}
            self._publish(sorted(records, key=_order))

    def refresh(self) -> bool:
        """Stat every folder, read the changed ones again; True if anything changed."""
        with self._lock:
            t0 = time.perf_counter()
            now = time.time_ns()
            entries, changed = {}, False
            for name, sig in self._signatures().items():
                old = self._entries.get(name)
                if old is not None and old[0] is not None and old[0] == sig:
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
                entries[name] = (_trusted(sig, now), record)
                changed = changed or old is None or old[1] != record
            changed = changed or entries.keys() != self._entries.keys()
            self._entries = entries
            if changed:
                self._publish(sorted((record for _, record in entries.values()), key=_order))
            self.refresh_seconds = time.perf_counter() - t0
            return changed

    def _signatures(self) -> dict[str, tuple]:
        """{folder name: signature} of every run folder (a non-hidden folder, not a
        symbolic link, with summary.json)."""
        try:
            names = folder_names(os.fspath(self.root), self._warn)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self._warn(f"cannot list run store {self.root}: {exc.strerror or exc}")
            return {}
        out = {}
        root = os.fspath(self.root)
        for name in names:
            try:
                sig = signature(os.path.join(root, name))
            except OSError:
                continue
            if sig is not None:
                out[name] = sig
        return out

    def _publish(self, records: list[dict]) -> None:
        self.records = records
        self.by_id = {r["id"]: r for r in records}
        self.version += 1

    def _warn(self, message: str) -> None:
        if message not in self._warned:  # a damaged run is named once, not at every refresh
            self._warned.add(message)
            logger.warning("%s", message)

    # ---------------------------------------------------------- derived --

    def cached(self, key, compute, at_most_every: float = 0.0, ttl: float | None = None):
        """``compute()``, remembered until the records change (``key`` names what it is).

        With ``at_most_every`` seconds, a result is kept that long even if the
        records changed meanwhile (a sweep's charts while its trials log epochs
        every second); with ``ttl``, never longer than that (a result that
        depends on more than the records: whether a process still runs).
        Concurrent requests for one key compute it once: the others wait for
        that result.
        """
        def fresh(found) -> bool:
            age = time.monotonic() - found[1]
            return (found[0] == self.version or age < at_most_every) and (ttl is None or age < ttl)

        with self._cache_lock:
            found = self._cache.get(key)
            if found is not None and fresh(found):
                return found[2]
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            with self._cache_lock:
                found = self._cache.get(key)
                if found is not None and fresh(found):
                    return found[2]
            version = self.version
            value = compute()
            with self._cache_lock:
                if len(self._cache) > 512:  # many distinct filters: forget them rather than grow
                    self._cache.clear()
                    self._key_locks.clear()
                self._cache[key] = (version, time.monotonic(), value)
            return value

    # -------------------------------------------------------- background --

    def touch(self) -> None:
        """A request came: refresh within ``max_age`` seconds if the refresher runs."""
        self._wanted.set()

    def start(self) -> None:
        """Refresh in a daemon thread while requests come (see ``touch``)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="nnexp-ui-refresh", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wanted.wait()
            if self._stop.is_set():
                return
            self._wanted.clear()
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 -- a failed refresh keeps the last list; the next may succeed
                logger.exception("refreshing the run list of %s failed", self.root)
            # A large store takes a while to stat: refresh no more often than ten times that.
            self._stop.wait(max(self.max_age, 10 * self.refresh_seconds))


def _trusted(sig: tuple | None, now_ns: int) -> tuple | None:
    """The signature to keep for a record read at ``now_ns``: None (read it again
    next time) if a file changed so recently that it may change again within one
    mtime tick with the same size (the index's rule, see ``RACY_NS``)."""
    if sig is None or any(sig[i] >= now_ns - RACY_NS for i in range(0, len(sig), 2)):
        return None
    return sig
