"""Where a sweep's trials run: what an executor is, and the local one.

An executor gets the driver's payloads (one per trial, see
``SweepRunner.payload``) and gives back events::

    events = executor.run(payloads, count, rungs)   # an iterator of TrialEvent
    for event in events: ...                         # (index, status, value, reason)
    executor.stop()    # stop the running trials -> their last events
    executor.close()   # free the workers

A trial's first event has the status ``running`` (it was handed out), its
last one the status it ended with. ``rungs`` (a pruning rule of
``pruning.py``, or None) answers halving decisions. The payloads may be
produced on demand (a model-based search asks for the next point when a
worker is free): such a source yields ``WAIT`` when it has nothing to hand
out until a running trial ends, and sets ``executor.on_demand``, so that an
executor takes payloads only as it can start them. The executor never writes a run's status: the trainer
records its own, and the driver records the end of a trial whose process
died (``Run.mark_stopped``).

:class:`LocalExecutor` trains on worker processes of this machine
(``worker.py``); ``ray_executor.RayExecutor`` on a Ray cluster.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Iterable, Iterator

from ..environment import process_environment
from ..tracking.run import INTERRUPTED, RUNNING
from .worker import worker_main

BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
STOP_GRACE_SECONDS = 30
STOPPED = "interrupted: the sweep was stopped"
WAIT = "wait"  # from a payload source: nothing to start until a running trial ends


@dataclass(frozen=True)
class TrialEvent:
    index: int  # the trial's index in the plan
    status: str  # running, or how it ended
    value: float | None = None  # the sweep's metric at the end, if it got one
    reason: str | None = None


class LocalExecutor:
    """Trials on worker processes of this machine, each with its own pipe (see worker.py)."""

    summary_fields: dict = {}  # what a trial's summary.json records of where it ran
    stopping = "stopping the workers"
    on_demand = False  # local workers always take payloads one at a time, as they free up

    def __init__(self, workers: int, threads: int, gpus: int = 0):
        self.workers, self.threads, self.gpus = workers, threads, gpus
        self.pool: _Pool | None = None
        self.busy: dict[int, int] = {}  # worker slot -> trial index

    def run(self, payloads: Iterable[dict], count: int, rungs) -> Iterator[TrialEvent]:
        """Hand out ``payloads`` (``count`` of them) as workers free up."""
        self.pool = pool = _Pool(min(self.workers, count), self.threads, self.gpus)
        payloads = iter(payloads)
        more = True
        while more or self.busy:
            for slot in pool.idle(self.busy):
                payload = next(payloads, None) if more else None
                if payload is None:
                    more = False
                    break
                if payload is WAIT:
                    break
                self.busy[slot] = payload["index"]
                pool.send(slot, ("trial", payload))
                yield TrialEvent(payload["index"], RUNNING)
            for slot, message in pool.events(self.busy):
                if message[0] == "rung":
                    _, index, epoch, value = message
                    pool.send(slot, ("decision", rungs.decide(epoch, value, index) if rungs else None))
                    continue
                del self.busy[slot]
                _, index, status, value, reason = message
                yield TrialEvent(index, status, value, reason)

    def stop(self) -> list[TrialEvent]:
        """Interrupt the running trials and wait for them to record it; a trial
        that does not answer in STOP_GRACE_SECONDS is killed and reported interrupted."""
        pool, busy = self.pool, self.busy
        if pool is None:
            return []
        pool.interrupt(busy)
        events = []
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while busy and time.monotonic() < deadline:
            for slot, message in pool.events(busy, timeout=0.5):
                if message[0] == "rung":
                    pool.send(slot, ("decision", "the sweep was stopped"))
                    continue
                index = busy.pop(slot)
                events.append(TrialEvent(index, message[2], message[3], message[4]))
        if busy:  # did not answer in time
            pool.kill_all()
        events += [TrialEvent(index, INTERRUPTED, None, STOPPED) for index in busy.values()]
        busy.clear()
        return events

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


class _Pool:
    """Worker processes, each with a duplex pipe; a dead worker is reported as
    a failed event for its trial and replaced."""

    def __init__(self, size: int, threads: int, gpus: int = 0):
        self.ctx = multiprocessing.get_context("spawn")
        self.threads, self.gpus = threads, gpus
        self.procs: list = [None] * size
        self.conns: list = [None] * size
        for slot in range(size):
            self._start(slot)

    def _start(self, slot: int) -> None:
        parent, child = self.ctx.Pipe()
        env = {**process_environment(), **{k: str(self.threads) for k in BLAS_ENV}}  # what the worker inherits
        if self.gpus:   # the workers take the GPUs in turn: slot k sees GPU k mod gpus as its only one
            env["CUDA_VISIBLE_DEVICES"] = str(slot % self.gpus)
        saved = {k: os.environ.get(k) for k in env}
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited: Ctrl-C goes to the driver only
        try:
            os.environ.update(env)
            proc = self.ctx.Process(target=worker_main, args=(child,), daemon=True)
            proc.start()
        finally:
            signal.signal(signal.SIGINT, old_int)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        self.procs[slot], self.conns[slot] = proc, parent

    def idle(self, busy: dict) -> list[int]:
        """Free worker slots; a worker that died while idle is replaced first."""
        free = [slot for slot in range(len(self.procs)) if slot not in busy]
        for slot in free:
            if not self.procs[slot].is_alive():
                self._start(slot)
        return free

    def send(self, slot: int, message) -> None:
        try:
            self.conns[slot].send(message)
        except OSError:
            pass  # the worker died; its sentinel reports it

    def events(self, busy: dict, timeout: float = 1.0):
        """(slot, message) pairs from busy workers; a dead worker yields a failed 'done'."""
        watched = {}
        for slot in busy:
            watched[self.conns[slot]] = slot
            watched[self.procs[slot].sentinel] = slot
        events = []
        for ready in wait(list(watched), timeout):
            slot = watched[ready]
            if any(s == slot for s, _ in events):
                continue
            conn = self.conns[slot]
            try:
                if conn.poll():
                    events.append((slot, conn.recv()))
                    continue
            except (EOFError, OSError):
                pass
            if not self.procs[slot].is_alive():
                code = self.procs[slot].exitcode
                events.append((slot, ("done", busy[slot], "failed", None,
                                      f"the worker process died (exit code {code})")))
                self._start(slot)
        return events

    def interrupt(self, busy: dict) -> None:
        for slot in busy:
            if self.procs[slot].is_alive():
                os.kill(self.procs[slot].pid, signal.SIGTERM)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("stop",))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
