"""The dashboard's view of the store: its records in memory, refreshed in the
background, and the answers derived from them, cached.

The dashboard answers many small requests a second over a store that may
hold 10,000 runs. Reading the records through the index for each request
would stat every folder and parse every record's JSON each time; the
index's ``HeldRecords`` reads them once and then re-reads only the folders
whose signature changed. Here that refresh runs in a background thread,
at most every ``max_age`` seconds and only while requests keep coming
(``touch``), so an idle dashboard reads nothing.

Requests never wait for a refresh: they read the last complete list, which
a refresh replaces in one assignment. Run pages read their own folder
directly and are never stale; listings may be up to a refresh behind.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from ..tracking.index import HeldRecords

logger = logging.getLogger(__name__)


class StoreSnapshot:
    """Every readable run record of the store at ``root``, oldest first (``records``).

    ``version`` grows whenever the list changes, so that derived results can
    be cached against it (``cached``).
    """

    def __init__(self, root, max_age: float = 1.0):
        self.root = Path(root)
        self.max_age = float(max_age)
        self.refresh_seconds = 0.0  # how long the last refresh took
        self._warned: set[str] = set()
        self._held = HeldRecords(self.root, self._warn)
        self._lock = threading.Lock()  # one refresh at a time
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cache: dict = {}  # key -> (version, when computed, value)
        self._cache_lock = threading.Lock()
        self._key_locks: dict = {}

    @property
    def records(self) -> list[dict]:
        return self._held.records

    @property
    def by_id(self) -> dict[str, dict]:
        return self._held.by_id

    @property
    def version(self) -> int:
        return self._held.version

    def load(self) -> None:
        """Read every record through the store's index."""
        self._timed(self._held.load)

    def hold(self, records: list[dict]) -> None:
        """Hold these records instead of the store's (an export of chosen runs: ``export.py``)."""
        with self._lock:
            self._held.hold(records)

    def refresh(self) -> bool:
        """Read the changed folders again; True if anything changed."""
        return self._timed(self._held.refresh)

    def _timed(self, read):
        with self._lock:
            t0 = time.perf_counter()
            try:
                return read()
            finally:
                self.refresh_seconds = time.perf_counter() - t0

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

