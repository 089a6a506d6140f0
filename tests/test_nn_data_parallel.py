"""train.data_parallel: batches cut into shards computed by forked workers (nnexp/nn/fast/data_parallel.py)."""

import os

import numpy as np
import pytest

from nnexp.nn import SoftmaxCrossEntropy, forward_backward
from nnexp.nn.batchnorm import BatchNorm as ReferenceBatchNorm
from nnexp.nn.fast import build_fast_model as build_model
from nnexp.nn.fast import data_parallel
from nnexp.nn.fast.batchnorm import FastBatchNorm as BatchNorm
from nnexp.nn.fast.data_parallel import DataParallel
from nnexp.nn.fast.optim import FastSGD as SGD
from process_helpers import Children, reaped

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")

CNN = [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"},
       {"type": "relu"}, {"type": "maxpool2d"},
       {"type": "dense", "units": 16}, {"type": "batchnorm"}, {"type": "relu"}, {"type": "dropout", "p": 0.3},
       {"type": "dense", "units": 10}]
MLP = [{"type": "flatten"}, {"type": "dense", "units": 12}, {"type": "tanh"}, {"type": "dense", "units": 10}]


@pytest.fixture
def processes(monkeypatch):
    """data_parallel's core count (set .n), forking allowed; records the workers' pids."""
    state = Children()
    monkeypatch.setattr(data_parallel, "workers", lambda: state.n)
    monkeypatch.setattr(data_parallel, "can_fork", lambda: True)   # other tests may have started Ray
    monkeypatch.setattr(data_parallel, "start_child", state.recording(data_parallel.start_child))
    return state


def model_and_batches(layers, shared=True, dtype=np.float32, n=24, steps=3):
    model = build_model(layers, input_shape=(1, 6, 6), rng=np.random.default_rng(0), dtype=dtype)
    if shared:
        model.share_memory()
    rng = np.random.default_rng(1)
    batches = [(rng.standard_normal((n, 1, 6, 6)).astype(dtype), rng.integers(0, 10, n)) for _ in range(steps)]
    return model, batches


def train_steps(layers, shards, steps=3, n=24):
    """Weights and buffers after a few SGD steps, with the per-step (loss, correct)."""
    model, batches = model_and_batches(layers, n=n, steps=steps)
    opt = SGD(model.parameters(), momentum=0.9)
    out = []
    with DataParallel(model, SoftmaxCrossEntropy(label_smoothing=0.1), shards, seed=3) as parallel:
        for step, (x, y) in enumerate(batches):
            out.append(parallel.step(x, y, step))
            opt.step(0.05)
    return model.state_dict(), out


@pytest.mark.parametrize("shards, n", [(2, 24), (3, 24), (3, 25)])
def test_the_number_of_processes_changes_no_bit(processes, shards, n):
    """Batch-norm, dropout, momentum: the shards computed one after the other in
    this process, or by 2 or 3 processes, give the same weights, running
    statistics and losses, bit for bit (a worker that read stale weights, or
    a shard that missed its statistics, would not)."""
    results = []
    for count in (1, 2, 3):
        processes.n = count
        results.append(train_steps(CNN, shards, n=n))
    assert len(processes.pids) == (min(shards, 2) - 1) + (min(shards, 3) - 1)
    assert all(reaped(pid) for pid in processes.pids)
    (ref_state, ref_out), *others = results
    for state, out in others:   # the same shards, each on one BLAS thread, combined in shard order: exact
        assert out == ref_out
        for key in ref_state:
            assert np.array_equal(state[key], ref_state[key]), key
    assert all(np.isfinite(loss) and 0 <= right <= n for loss, right in ref_out)


@pytest.mark.parametrize("shards, n", [(2, 11), (3, 11), (3, 2), (4, 1)])
def test_without_batchnorm_the_shards_give_the_batch_gradient(processes, shards, n):
    """g = sum_k (n_k / n) g_k is the whole batch's gradient (shards of unequal
    size; a batch smaller than the shard count, as an epoch's last batch can be,
    leaves the last shards empty)."""
    model, [(x, y)] = model_and_batches(MLP, n=n, steps=1, dtype=np.float64)
    loss_fn = SoftmaxCrossEntropy(label_smoothing=0.1)
    loss, right = forward_backward(model, loss_fn, x, y)
    whole = {name: g.copy() for name, _, g in model.parameters()}
    with DataParallel(model, loss_fn, shards) as parallel:
        shard_loss, shard_right = parallel.step(x, y, 0)
    assert shard_loss == pytest.approx(loss, rel=1e-12) and shard_right == right
    for name, _, g in model.parameters():
        np.testing.assert_allclose(g, whole[name], rtol=1e-10, atol=1e-13, err_msg=name)


def test_running_statistics_are_the_mean_of_the_shards_updates(processes):
    """Each shard normalises with its own statistics; the running mean and
    variance move to the mean of what each shard's update would have made them."""
    layers = [{"type": "flatten"}, {"type": "dense", "units": 5}, {"type": "batchnorm", "momentum": 0.3},
              {"type": "dense", "units": 10}]
    model, [(x, y)] = model_and_batches(layers, n=10, steps=1, dtype=np.float64)
    dense, bn = model.layers[1], model.layers[2]
    h = x.reshape(10, -1) @ dense.params["W"] + dense.params["b"]
    expected = {"running_mean": 0.0, "running_var": 0.0}
    for part in (h[:5], h[5:]):
        alone = BatchNorm(5, momentum=0.3, dtype=np.float64)
        alone.forward(part, training=True)
        for key in expected:
            expected[key] = expected[key] + alone.buffers[key] / 2
    with DataParallel(model, SoftmaxCrossEntropy(), 2) as parallel:
        parallel.step(x, y, 0)
    for key, value in expected.items():
        np.testing.assert_allclose(bn.buffers[key], value, rtol=1e-10, err_msg=key)
    assert len(processes.pids) == 1


def test_dropout_masks_depend_on_step_and_shard_only(processes):
    """Two identical halves get different masks (their gradients differ); the
    same step again gives the same masks; the model's own generator is left
    alone and given back."""
    layers = [{"type": "flatten"}, {"type": "dropout", "p": 0.5}, {"type": "dense", "units": 10}]
    model, [(x, y)] = model_and_batches(layers, n=4, steps=1, dtype=np.float64)
    x, y = np.concatenate([x[:2], x[:2]]), np.concatenate([y[:2], y[:2]])
    own = model.layers[1].rng
    state = own.bit_generator.state
    grads = []
    for _ in range(2):
        with DataParallel(model, SoftmaxCrossEntropy(), 2, seed=5) as parallel:
            parallel.step(x, y, 7)
            grads.append([g.copy() for g in parallel._areas[1][:2]] + [model.layers[2].grads["W"].copy()])
    assert all(np.array_equal(a, b) for a, b in zip(*grads))          # same (seed, step, shard): same masks
    half_g1, g = grads[0][0], grads[0][2]                              # g = g0 / 2 + g1 / 2 (equal halves)
    assert not np.allclose(g - half_g1, half_g1)                       # shards 0 and 1 drew different masks
    assert model.layers[1].rng is own and own.bit_generator.state == state


def test_one_shard_is_the_plain_step_and_needs_no_shared_memory():
    """Dropout from the model's own generator, as without data_parallel."""
    results = []
    for one_shard in (True, False):
        model, [(x, y)] = model_and_batches(CNN, shared=False, steps=1)
        loss_fn = SoftmaxCrossEntropy()
        with DataParallel(model, loss_fn, 1) as parallel:
            out = parallel.step(x, y, 0) if one_shard else forward_backward(model, loss_fn, x, y)
        results.append((out, model.state_dict(), [g.copy() for _, _, g in model.parameters()]))
    (out, state, grads), (plain_out, plain_state, plain_grads) = results
    assert out == plain_out   # one shard is forward_backward itself: exact
    assert all(np.array_equal(state[k], plain_state[k]) for k in state)
    assert all(np.array_equal(a, b) for a, b in zip(grads, plain_grads))


@pytest.mark.parametrize("shards", [0, -1, 1.5, True, "2"])
def test_bad_shard_counts_are_refused(shards):
    model, _ = model_and_batches(MLP, steps=0)
    with pytest.raises(ValueError, match="shards must be a positive integer"):
        DataParallel(model, SoftmaxCrossEntropy(), shards)


def test_weights_outside_shared_memory_are_refused():
    model, _ = model_and_batches(MLP, shared=False, steps=0)
    with pytest.raises(ValueError, match="share_memory"):
        DataParallel(model, SoftmaxCrossEntropy(), 2)


def test_share_memory_keeps_the_weights_and_a_forked_child_writes_them():
    model, _ = model_and_batches(CNN, shared=False, steps=0)
    before = model.state_dict()
    model.share_memory()
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    W = model.layers[0].params["W"]
    pid = os.fork()
    if pid == 0:
        W[...] = 7.0
        os._exit(0)
    os.waitpid(pid, 0)
    assert np.all(W == 7.0)


def _fail_in_worker(loss_fn, how):
    """Make loss_fn.forward fail in any process but this one."""
    main, real = os.getpid(), loss_fn.forward

    def forward(logits, y):
        if os.getpid() != main:
            if how == "raise":
                raise ArithmeticError("bad shard")
            os._exit(3)
        return real(logits, y)
    loss_fn.forward = forward


@pytest.mark.parametrize("how, message", [
    ("raise", r"training failed in data-parallel worker process \d+:\n(.|\n)*ArithmeticError: bad shard"),
    ("exit", r"data-parallel worker process \d+ died without a result \(exit status 3\)"),
])
def test_a_failing_worker_is_reported_and_reaped(processes, how, message):
    model, [(x, y)] = model_and_batches(CNN, steps=1)
    loss_fn = SoftmaxCrossEntropy()
    _fail_in_worker(loss_fn, how)
    with DataParallel(model, loss_fn, 2) as parallel:
        with pytest.raises(RuntimeError, match=message):
            parallel.step(x, y, 0)
    assert len(processes.pids) == 1 and reaped(processes.pids[0])


def test_an_error_here_stops_the_workers(processes):
    model, [(x, y)] = model_and_batches(CNN, steps=1)
    loss_fn = SoftmaxCrossEntropy()
    main, real = os.getpid(), loss_fn.forward

    def forward(logits, labels):
        if os.getpid() == main and labels is not y[:12]:
            raise ArithmeticError("bad shard here")
        return real(logits, labels)
    loss_fn.forward = forward
    with pytest.raises(ArithmeticError, match="bad shard here"):
        with DataParallel(model, loss_fn, 2) as parallel:
            parallel.step(x, y, 0)
    assert len(processes.pids) == 1 and reaped(processes.pids[0])


def test_batches_must_not_grow(processes):
    model, [(x, y)] = model_and_batches(MLP, steps=1, n=8)
    with DataParallel(model, SoftmaxCrossEntropy(), 2) as parallel:
        parallel.step(x[:6], y[:6], 0)
        parallel.step(x[:3], y[:3], 1)             # smaller (an epoch's last batch): fine
        with pytest.raises(ValueError, match="must not grow"):
            parallel.step(x, y, 2)


@pytest.mark.parametrize("shards, sizes", [(3, [7, 4, 2, 1]), (4, [3, 2, 1])])
def test_running_statistics_when_a_batch_has_fewer_images_than_shards(processes, shards, sizes):
    """An epoch's last batch can be smaller than the shard count: the empty
    shards take no part, so the running statistics are the mean of the
    non-empty shards' updates -- computed here by plain BatchNorm layers, one
    per shard -- and the same bits with 1, 2 or 3 processes."""
    layers = [{"type": "batchnorm", "momentum": 0.3}, {"type": "flatten"}, {"type": "dense", "units": 10}]
    rng = np.random.default_rng(4)
    # batch-norm sees the images themselves, so its statistics do not depend on the weights
    batches = [(rng.standard_normal((n, 1, 6, 6)) * 2 + 1, rng.integers(0, 10, n)) for n in sizes]
    expected = {"running_mean": np.zeros(1), "running_var": np.ones(1)}
    for x, _ in batches:
        parts = [part for part in np.array_split(x, shards) if len(part)]   # sizes differ by at most 1
        updates = []
        for part in parts:
            alone = ReferenceBatchNorm(1, momentum=0.3, dtype=np.float64)
            alone.buffers = {key: value.copy() for key, value in expected.items()}
            alone.forward(part, training=True)
            updates.append(alone.buffers)
        expected = {key: sum(u[key] for u in updates) / len(updates) for key in expected}
    results = []
    for count in (1, 2, 3):
        processes.n = count
        model = build_model(layers, input_shape=(1, 6, 6), rng=np.random.default_rng(0), dtype=np.float64)
        model.share_memory()
        opt = SGD(model.parameters(), momentum=0.9)
        with DataParallel(model, SoftmaxCrossEntropy(), shards) as parallel:
            for step, (x, y) in enumerate(batches):
                parallel.step(x, y, step)
                opt.step(0.05)
        results.append(model.state_dict())
    bn = model.layers[0]
    for key, value in expected.items():
        np.testing.assert_allclose(bn.buffers[key], value, rtol=1e-10, err_msg=key)
    for state in results[:-1]:
        for key in state:
            assert np.array_equal(state[key], results[-1][key]), key
