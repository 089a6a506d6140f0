"""Evaluation batches shared among forked processes (nnexp/nn/fast/forked.py)."""

import contextlib
import os
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from nnexp.nn.fast import build_fast_model as build_model
from nnexp.nn.fast import forked
from nnexp.nn.fast.threads import one_blas_thread
from nnexp.train import evaluate
from process_helpers import Children, reaped

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")


@pytest.fixture
def forking(monkeypatch):
    """Fork for any input size, with n processes (set .n); records the children's pids."""
    monkeypatch.setattr(forked, "MIN_VALUES", 0)
    monkeypatch.setattr(forked, "_in_ray", lambda: False)   # other tests may have started Ray
    state = Children()
    monkeypatch.setattr(forked, "workers", lambda: state.n)
    monkeypatch.setattr(forked.os, "fork", state.recording(os.fork))
    return state


@pytest.mark.parametrize("n", [2, 3])
def test_batches_come_back_in_order_from_several_processes(forking, n):
    forking.n = n
    x = np.arange(23 * 2, dtype=np.float32).reshape(23, 2)
    out = forked.map_batches(lambda xb: (os.getpid(), xb.sum(axis=1)), x, 5)   # 5 batches
    assert np.array_equal(np.concatenate([s for _, s in out]), x.sum(axis=1))
    pids = [p for p, _ in out]
    assert pids[0] == os.getpid()                     # the first run of batches stays here
    assert len(set(pids)) == n                        # the others ran in n - 1 children
    assert pids == sorted(pids, key=pids.index)       # each process has one contiguous run
    assert len(forking.pids) == n - 1 and all(reaped(p) for p in forking.pids)


def test_one_process_for_small_inputs_or_one_worker(monkeypatch):
    monkeypatch.setattr(forked, "workers", lambda: 2)
    assert forked.processes(10, forked.MIN_VALUES - 1) == 1
    assert forked.processes(10, forked.MIN_VALUES) == 2
    assert forked.processes(1, forked.MIN_VALUES) == 1            # one batch: nothing to share
    monkeypatch.setattr(forked, "workers", lambda: 1)
    assert forked.processes(10, forked.MIN_VALUES) == 1


def test_one_process_where_forking_is_not_safe(monkeypatch):
    monkeypatch.setattr(forked, "workers", lambda: 2)
    ray = types.SimpleNamespace(is_initialized=lambda: True)
    monkeypatch.setitem(sys.modules, "ray", ray)
    assert forked.processes(10, forked.MIN_VALUES) == 1      # connected to Ray: gRPC threads
    ray.is_initialized = lambda: False
    assert forked.processes(10, forked.MIN_VALUES) == 2      # Ray imported, not started
    monkeypatch.delattr(forked.os, "fork")
    assert forked.processes(10, forked.MIN_VALUES) == 1


def _bad_value_error():
    raise ValueError("bad batch")


def _key_error():
    raise KeyError("here")


@pytest.mark.parametrize("fail_at, fail, error, match", [
    # the last batch (a child's) raises: the child's traceback comes back
    (20, _bad_value_error, RuntimeError, "(?s)evaluation failed in worker process.*ValueError: bad batch"),
    # a child dies without sending anything
    (20, lambda: os._exit(3), RuntimeError, r"died without a result \(exit status 3\)"),
    # the first batch (this process's) raises: the children are stopped
    (0, _key_error, KeyError, "here"),
])
def test_errors_name_their_cause_and_leave_no_process(forking, fail_at, fail, error, match):
    def fn(xb):
        if xb[0, 0] == fail_at:
            fail()
        return xb

    x = np.arange(24, dtype=np.float32).reshape(24, 1)      # batches of 4 start at 0, 4, ..., 20
    with pytest.raises(error, match=match):
        forked.map_batches(fn, x, 4)
    assert forking.pids and all(reaped(p) for p in forking.pids)


CNN = [{"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
       {"type": "batchnorm"}, {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
       {"type": "conv2d", "out_channels": 8, "kernel_size": 3}, {"type": "relu"},
       {"type": "flatten"}, {"type": "dense", "units": 10}]


def test_predict_and_evaluate_are_bit_identical_in_any_number_of_processes(forking):
    rng = np.random.default_rng(0)
    model = build_model(CNN, input_shape=(1, 12, 12), rng=rng)
    model.layers[1].buffers["running_mean"][:] = rng.normal(size=8)
    x = rng.random((70, 1, 12, 12), dtype=np.float32)
    y = rng.integers(0, 10, 70)
    results = {}
    for n in (1, 2, 3):
        forking.n = n
        # one process means one core, one BLAS thread; forked batches run on one BLAS thread each
        with one_blas_thread() if n == 1 else contextlib.nullcontext():
            results[n] = (model.predict_proba(x, batch_size=16), *evaluate(model, x, y, batch_size=16))
    assert len(forking.pids) == 2 * (1 + 2)     # predict and evaluate: n = 2 forked once, n = 3 twice
    serial = np.concatenate([model.forward(x[s:s + 16], training=False) for s in range(0, 70, 16)])
    probs, loss, acc, eval_probs = results[1]
    assert probs.dtype == np.float32 and probs.shape == (70, 10)
    assert np.array_equal(probs.argmax(1), serial.argmax(1))
    for n in (2, 3):   # each batch the same shapes on one BLAS thread: the same bits on any kernel
        assert np.array_equal(results[n][0], probs)
        assert results[n][1] == loss and results[n][2] == acc
        assert np.array_equal(results[n][3], eval_probs)


KILLED_PARENT = """
import os, signal, sys, time
import numpy as np
from nnexp.nn.fast import forked
forked.MIN_VALUES, forked.workers = 0, lambda: 2
pidfile, main = sys.argv[1], os.getpid()

def fn(xb):
    if os.getpid() != main:                  # the child: say who it is, then work for long
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
        time.sleep(3600)
    else:                                    # this process: die once the child is at work
        while not os.path.exists(pidfile):
            time.sleep(0.01)
        os.kill(main, signal.SIGKILL)
    return xb

forked.map_batches(fn, np.zeros((4, 1), np.float32), 2)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")   # dead, not yet reaped
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_children_die_with_a_killed_parent(tmp_path):
    pidfile = tmp_path / "child.pid"
    proc = subprocess.run([sys.executable, "-c", KILLED_PARENT, str(pidfile)], timeout=600)
    assert proc.returncode == -9
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 120  # the child sleeps an hour: only the parent-death signal ends it sooner
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not _gone(child):
        os.kill(child, signal.SIGKILL)
        pytest.fail(f"child {child} still running 120 s after its parent was killed")
