"""A sweep's folder in the store: its files, its state, and finding sweeps.

    <store>/sweeps/<sweep-id>/
        spec.yaml      the spec as given
        plan.json      every trial (of a tpe sweep: proposed so far): index, run id, values, seed
        sweep.json     status, counts, best trial so far (replaced atomically)
        lock           held (flock) while a driver runs the sweep

The trials themselves are ordinary run folders of the store. The driver
(``nnexp/sweep/runner.py``) writes a sweep's folder through
:class:`SweepFolder`; the CLI, comparisons and ensembles read the states with
:func:`list_sweeps` and :func:`find_sweep`.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..atomic import atomic_write_text
from ..errors import NnexpError
from ..filelock import LockHeld, exclusive, is_locked
from ..timestamps import timestamp
from .reading import MAX_SWEEP_FILE, parse_json, read_bytes

SWEEPS = "sweeps"
SPEC = "spec.yaml"
PLAN = "plan.json"
STATE = "sweep.json"
LOCK = "lock"

RUNNING = "running"
DEAD = "dead"  # never written: how a listing shows a 'running' sweep whose driver is gone


class SweepLocked(NnexpError):
    """Another driver is running the sweep."""


class SweepFolder:
    """The folder of sweep ``sweep_id`` in the store at ``store``."""

    def __init__(self, store, sweep_id: str):
        self.id = sweep_id
        self.path = Path(store) / SWEEPS / sweep_id

    def make(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NnexpError(f"cannot create the sweep folder {self.path}: {exc.strerror or exc}") from None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the sweep's lock while a driver runs it; SweepLocked if another does."""
        try:
            with exclusive(self.path / LOCK, note=f"pid {os.getpid()} on {socket.gethostname()}"):
                yield
        except LockHeld as exc:
            raise SweepLocked(f"sweep {self.id} is already running ({exc.holder or 'another process'}); "
                              "wait for it to finish or stop it first") from None

    def is_running(self) -> bool:
        """Whether a driver holds the sweep's lock now."""
        return (self.path / LOCK).exists() and is_locked(self.path / LOCK)

    def write_spec(self, text: str) -> None:
        """Keep the spec as first given (running it again does not replace it)."""
        if not (self.path / SPEC).exists():
            atomic_write_text(self.path / SPEC, text)

    def write_plan(self, plan: list[dict]) -> None:
        atomic_write_text(self.path / PLAN, json.dumps(plan, indent=1, default=str) + "\n")

    def read_plan(self) -> list:
        """plan.json's entries; empty if it is missing or unreadable."""
        try:
            plan = parse_json(read_bytes(self.path / PLAN, MAX_SWEEP_FILE))
        except (OSError, ValueError):
            return []
        return plan if isinstance(plan, list) else []

    def write_state(self, state: dict) -> None:
        """sweep.json: ``state`` with the time, and the driver's process and host."""
        state = dict(state, updated=timestamp(), pid=os.getpid(), host=socket.gethostname())
        atomic_write_text(self.path / STATE, json.dumps(state, indent=2, default=str) + "\n")


def read_json(path) -> dict | None:
    """A JSON object from ``path``; None if it is missing, unreadable (see reading.py)
    or not an object."""
    try:
        data = parse_json(read_bytes(path, MAX_SWEEP_FILE))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def list_sweeps(store, warn=None) -> list[dict]:
    """The ``sweep.json`` of every sweep in the store, oldest update first; a
    'running' sweep whose driver is gone (its lock is free) shows as 'dead'."""
    root = Path(store) / SWEEPS
    if not root.is_dir():
        return []
    states = []
    for path in sorted(root.iterdir()):
        state = read_json(path / STATE)
        if state is None:
            if warn and path.is_dir():
                warn(f"skipping sweep {path.name}: unreadable {STATE}")
            continue
        if state.get("status") == RUNNING and not is_locked(path / LOCK):
            state["status"] = DEAD  # run the spec again to resume it
        states.append(state)
    return sorted(states, key=lambda s: str(s.get("updated", "")))


def find_sweep(store, ref: str) -> dict:
    """A sweep's state by id, unique id prefix, or name (the newest wins)."""
    states = list_sweeps(store)
    exact = [s for s in states if s.get("id") == ref]
    prefixed = [s for s in states if str(s.get("id", "")).startswith(ref)]
    named = [s for s in states if s.get("name") == ref]
    if exact or len(prefixed) == 1:
        return (exact or prefixed)[0]
    if named:
        return named[-1]
    if prefixed:
        raise NnexpError(f"sweep {ref!r} is ambiguous: {', '.join(s['id'] for s in prefixed[:5])}")
    known = ", ".join(s["id"] for s in states[-5:]) or "none"
    raise NnexpError(f"no sweep {ref!r} in {store} (recent: {known}; see 'nnexp sweeps --store {store}')")
