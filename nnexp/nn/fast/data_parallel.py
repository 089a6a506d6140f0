"""Data-parallel training: each batch cut into shards, computed by several processes.

Why processes: a training step of the benchmark CNN gets nothing from a second
core through threads (threads.py: every short NumPy call hands Python's
interpreter lock to the other thread), but two processes run side by side at
full speed (forked.py).  So with ``train.data_parallel: S`` a batch of n
images is cut into S shards of about n/S images; this process computes shard
0, forked worker processes the others, each with one BLAS thread, and the
batch's gradient is put together from the shards' gradients g_k (of shard k's
mean loss, over its n_k images):

    g = sum_k (n_k / n) g_k

the gradient of the batch's mean loss -- exactly so, in real numbers, for a
model without batch-norm or dropout.  With batch-norm each shard normalises
with its own statistics ("ghost batch norm"; PyTorch's DistributedDataParallel
without SyncBatchNorm does the same), and the running statistics become the
mean of the shards' updates, each made from the running statistics as they
were before the step:

    running = mean_k [(1 - momentum) running + momentum stat_k]

Dropout draws shard k's masks at step t from a generator seeded with
(seed, t, k), so no random state has to travel between processes or into
checkpoints.

Shared between this process and the workers (anonymous shared memory, made
before the fork): the parameters (FastSequential.share_memory; the optimizer's
in-place updates are seen by every worker), one area per shard 1..S-1 for its
gradients and batch-norm buffers, and the batch.  Each step a small message
goes each way through a pipe.

Results depend on S and the seed, never on how many processes compute the
shards: with fewer processes (one core, a sweep worker with one BLAS thread,
no ``os.fork``, a Ray worker) the same shards are computed one after the
other, each with one BLAS thread, to the same bits.  With S = 1 (the default)
the batch is computed as it is, in this process: training is as without this
module.
"""

from __future__ import annotations

import mmap
import os
import pickle
import traceback

import numpy as np

from ..layers import Dropout
from ..model import forward_backward
from .forked import can_fork, describe, kill, shared_array, start_child
from .threads import one_blas_thread, workers

__all__ = ["DataParallel"]

_DROPOUT_STREAM = 7   # spawn key of the dropout generators (make_rngs uses 0-2)


class DataParallel:
    """step(x, y, step) -> (mean loss, correct): forward and backward of a batch
    cut into ``shards`` shards, the model's gradients (and batch-norm running
    statistics) as described above.  Use it as a context manager, or call
    close(): it stops the worker processes.

    The model's parameters must be in shared memory (``model.share_memory()``,
    before the optimizer is made) when shards > 1.
    """

    def __init__(self, model, loss_fn, shards: int = 1, seed: int = 0) -> None:
        if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
            raise ValueError(f"DataParallel: shards must be a positive integer, got {shards!r}")
        self.model, self.loss_fn, self.shards, self.seed = model, loss_fn, int(shards), int(seed)
        self._workers: list[tuple[int, object, object]] = []   # (pid, command writer, result reader)
        self._status: dict[int, int] = {}                      # pid -> exit status, once stopped
        self._started = False
        if self.shards == 1:
            return
        if not all(_in_shared_memory(p) for _, p, _ in model.parameters()):
            raise ValueError("DataParallel: the model's parameters are not in shared memory; "
                             "call model.share_memory() before making the optimizer")
        # (layer's dict, key, the model's own array) of every gradient and buffer
        self._slots = [(layer.grads, name, g) for layer in model.layers for name, g in layer.grads.items()]
        self._slots += [(layer.buffers, name, b) for layer in model.layers
                        for name, b in getattr(layer, "buffers", {}).items()]
        self._n_grads = sum(len(layer.grads) for layer in model.layers)
        # shard k's arrays for each slot; shard 0 uses the model's own
        self._areas = [[a for _, _, a in self._slots]]
        self._areas += [[shared_array(a.shape, a.dtype) for _, _, a in self._slots] for _ in range(1, self.shards)]
        self._dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]
        self._dropout_rngs = [layer.rng for layer in self._dropouts]
        self._x = self._y = None      # the batch, shared with the workers (made at the first step)

    # -- one step -----------------------------------------------------------

    def step(self, x: np.ndarray, y: np.ndarray, step: int) -> tuple[float, int]:
        if self.shards == 1:
            return forward_backward(self.model, self.loss_fn, x, y)
        n = len(x)
        # n_k differ by at most 1, the larger ones first: shard 0 is never empty
        sizes = [n // self.shards + (k < n % self.shards) for k in range(self.shards)]
        bounds = np.cumsum([0] + sizes)
        jobs = [(k, int(a), int(b)) for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])) if b > a]
        self._share_batch(x, y)
        if not self._started:
            self._start_workers()
        for k, _, _ in jobs[1:]:    # every shard starts from the running statistics as they are
            for own, area in zip(self._areas[0][self._n_grads:], self._areas[k][self._n_grads:]):
                np.copyto(area, own)
        processes = len(self._workers) + 1
        for p, (pid, writer, _) in enumerate(self._workers, start=1):
            try:
                pickle.dump((step, jobs[p::processes]), writer, protocol=pickle.HIGHEST_PROTOCOL)
                writer.flush()
            except BrokenPipeError as exc:
                self._died(pid, exc)
        try:
            with one_blas_thread():
                results = [(k, *self._compute(k, self._x[a:b], self._y[a:b], step)) for k, a, b in jobs[::processes]]
        finally:
            self._bind(0)
        for pid, _, reader in self._workers:
            results += self._receive(pid, reader)
        return self._combine(jobs, dict((k, (loss, right)) for k, loss, right in results), n)

    def _share_batch(self, x: np.ndarray, y: np.ndarray) -> None:
        if self._x is None:
            self._x, self._y = shared_array(x.shape, x.dtype), shared_array(y.shape, np.int64)
        if x.shape[1:] != self._x.shape[1:] or len(x) > len(self._x) or x.dtype != self._x.dtype:
            raise ValueError(f"DataParallel: a batch of shape {x.shape} ({x.dtype}) after batches of "
                             f"shape {self._x.shape} ({self._x.dtype}); batches must not grow or change")
        self._x[:len(x)], self._y[:len(y)] = x, y

    def _compute(self, k: int, x: np.ndarray, y: np.ndarray, step: int) -> tuple[float, int]:
        """Shard k: forward and backward with its own gradient and buffer arrays."""
        self._bind(k)
        for layer in self._dropouts:
            layer.rng = np.random.default_rng(
                np.random.SeedSequence(self.seed, spawn_key=(_DROPOUT_STREAM, step, k)))
        return forward_backward(self.model, self.loss_fn, x, y)

    def _bind(self, k: int) -> None:
        """Point the layers' gradient and buffer entries at shard k's arrays."""
        for (d, name, _), array in zip(self._slots, self._areas[k]):
            d[name] = array

    def _combine(self, jobs, results: dict, n: int) -> tuple[float, int]:
        """g = sum_k (n_k / n) g_k into the model's gradients, buffers the
        shards' mean, and the batch's (mean loss, correct)."""
        sizes = {k: b - a for k, a, b in jobs}
        own = self._areas[0]
        for i, g in enumerate(own[:self._n_grads]):
            g *= sizes[0] / n
            for k, _, _ in jobs[1:]:
                part = self._areas[k][i]
                part *= sizes[k] / n
                g += part
        for i, b in enumerate(own[self._n_grads:], start=self._n_grads):
            for k, _, _ in jobs[1:]:
                b += self._areas[k][i]
            b /= len(jobs)
        loss = sum(sizes[k] * results[k][0] for k, _, _ in jobs) / n
        return loss, sum(results[k][1] for k, _, _ in jobs)

    # -- the worker processes ------------------------------------------------

    def _start_workers(self) -> None:
        """min(shards, cores) - 1 workers; none where forking is not possible."""
        self._started = True
        count = min(self.shards, workers()) - 1 if can_fork() else 0
        for _ in range(count):
            from_parent, to_child = os.pipe()     # (read end, write end)
            from_child, to_parent = os.pipe()
            inherited = [fd for _, w, r in self._workers for fd in (w.fileno(), r.fileno())] + [to_child, from_child]

            def body(inbox=from_parent, outbox=to_parent, inherited=inherited):
                for fd in inherited:      # the other ends: EOF must reach the right process
                    os.close(fd)
                self._serve(inbox, outbox)

            pid = start_child(body)
            os.close(from_parent)
            os.close(to_parent)
            self._workers.append((pid, os.fdopen(to_child, "wb"), os.fdopen(from_child, "rb")))

    def _serve(self, inbox: int, outbox: int) -> None:
        """A worker's life: compute the shards each message names, answer, until EOF."""
        with os.fdopen(inbox, "rb") as commands, os.fdopen(outbox, "wb") as answers, \
                np.errstate(over="ignore", invalid="ignore"):   # a diverging loss is the parent's to report
            while True:
                try:
                    step, jobs = pickle.load(commands)
                except EOFError:
                    return
                try:
                    answer = (True, [(k, *self._compute(k, self._x[a:b], self._y[a:b], step)) for k, a, b in jobs])
                except BaseException:
                    answer = (False, traceback.format_exc())
                pickle.dump(answer, answers, protocol=pickle.HIGHEST_PROTOCOL)
                answers.flush()
                if not answer[0]:
                    return

    def _receive(self, pid: int, reader) -> list:
        try:
            ok, value = pickle.load(reader)
        except (EOFError, pickle.UnpicklingError) as exc:
            self._died(pid, exc)
        if not ok:
            self.close()
            raise RuntimeError(f"training failed in data-parallel worker process {pid}:\n{value}")
        return value

    def _died(self, pid: int, exc: BaseException):
        self.close()
        raise RuntimeError(f"data-parallel worker process {pid} died without a result "
                           f"({describe(self._status[pid])})") from exc

    def close(self) -> None:
        """Stop the workers (they are idle between steps: nothing is lost) and
        give the dropout layers their generators back."""
        while self._workers:
            pid, writer, reader = self._workers.pop()
            for f in (writer, reader):
                try:
                    f.close()
                except OSError:
                    pass
            self._status[pid] = kill(pid)
        for layer, rng in zip(getattr(self, "_dropouts", []), getattr(self, "_dropout_rngs", [])):
            layer.rng = rng

    def __enter__(self) -> DataParallel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _in_shared_memory(a: np.ndarray) -> bool:
    while isinstance(a.base, np.ndarray):
        a = a.base
    base = a.base.obj if isinstance(a.base, memoryview) else a.base   # np.frombuffer keeps a memoryview
    return isinstance(base, mmap.mmap)
