"""Chunks of a layer's work on several threads (nnexp/nn/fast/threads.py)."""

import threading

import numpy as np
import pytest

from nnexp.nn.fast import conv as conv_module
from nnexp.nn.fast import threads
from nnexp.nn.fast.conv import FastConv2D as Conv2D


def test_map_chunks_keeps_order_and_gives_each_worker_its_chunks(monkeypatch):
    monkeypatch.setattr(threads, "workers", lambda: 3)
    seen = []

    def fn(start, worker):
        seen.append((start, worker, threading.get_ident()))
        return start * 10

    starts = list(range(0, 70, 10))
    assert threads.map_chunks(fn, starts) == [s * 10 for s in starts]
    if threads._blas_controls() is None:
        pytest.skip("OpenBLAS's thread controls are not reachable here: everything ran in one thread")
    by_worker = {}
    for start, worker, ident in seen:
        by_worker.setdefault(worker, []).append((start, ident))
    assert sorted(by_worker) == [0, 1, 2]
    for worker, runs in by_worker.items():   # worker k: chunks k, k + 3, ..., in order, one thread
        assert [s for s, _ in runs] == starts[worker::3]
        assert len({ident for _, ident in runs}) == 1


def test_blas_thread_count_is_restored(monkeypatch):
    controls = threads._blas_controls()
    if controls is None:
        pytest.skip("OpenBLAS's thread controls are not reachable here")
    get, set_ = controls
    before = get()
    set_(2)                                 # as in a process started with two BLAS threads
    try:
        monkeypatch.setattr(threads, "workers", lambda: 2)
        inside = threads.map_chunks(lambda s, k: get(), [0, 1, 2, 3])
        assert inside == [1, 1, 1, 1]          # one BLAS thread while the chunks run
        assert threads.map_chunks(lambda s, k: get(), [0]) == [1]   # a lone chunk too: the same bits
        assert get() == 2
        with pytest.raises(ZeroDivisionError):  # and after an exception, too
            threads.map_chunks(lambda s, k: 1 / 0, [0, 1])
        assert get() == 2
    finally:
        set_(before)


@pytest.mark.parametrize("n_workers", [1, 2])
def test_chunks_run_with_small_ufunc_buffers_and_the_size_is_restored(monkeypatch, n_workers):
    monkeypatch.setattr(threads, "workers", lambda: n_workers)
    before = np.getbufsize()
    assert before != threads.SMALL_UFUNC_BUFFER
    assert threads.map_chunks(lambda s, k: 1 / 0, []) == []     # no chunks: nothing runs
    inside = threads.map_chunks(lambda s, k: np.getbufsize(), [0, 1, 2])
    assert inside == [threads.SMALL_UFUNC_BUFFER] * 3
    assert np.getbufsize() == before
    with pytest.raises(ZeroDivisionError):
        threads.map_chunks(lambda s, k: 1 / 0, [0, 1])
    assert np.getbufsize() == before


def test_small_ufunc_buffers_change_no_element_wise_result():
    """The buffer only decides how NumPy walks strided operands: the values are the same."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((6, 30, 40)).astype(np.float32)[:, ::2, 3:37]
    b = rng.standard_normal((6, 15, 34)).astype(np.float32)
    expected = [np.subtract(a, b), np.maximum(a, b.T[::-1].T), a * (a > b)]
    with threads.small_ufunc_buffers():
        got = [np.subtract(a, b), np.maximum(a, b.T[::-1].T), a * (a > b)]
    for e, g in zip(expected, got):
        assert e.tobytes() == g.tobytes()


def test_winograd_results_do_not_depend_on_the_thread_count(monkeypatch):
    """Forward, dL/dx, dL/dW and dL/db bit for bit the same with 1, 2 and 3 workers."""
    monkeypatch.setattr(conv_module, "WINOGRAD_CHUNK_BYTES", 1)   # one sample per chunk
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 8, 10, 9)).astype(np.float32)
    dout = rng.standard_normal((7, 6, 10, 9)).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        monkeypatch.setattr(threads, "workers", lambda n=n: n)
        layer = Conv2D(8, 6, 3, padding=1, rng=np.random.default_rng(0), algorithm="winograd")
        y = layer.forward(x).copy()
        dx = layer.backward(dout).copy()
        results.append((y, dx, layer.grads["W"].copy(), layer.grads["b"].copy(),
                        layer.forward(x, training=False).copy()))
    for other in results[1:]:   # every chunk on one BLAS thread, dL/dW summed in chunk order: exact
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
