"""Optimizers against hand-computed updates, the reference rules and the fast
engine's flat-block variants alike.

Every test uses the same tiny "model": one weight W (shape (1, 1), so weight
decay applies to it) and one bias b (shape (1,), so it never decays), both
float64 so that the comparison can be tight.  Step 1 has gradient 1.0 and
step 2 gradient 0.5 for both.
"""

import math

import numpy as np
import pytest

from nnexp.engines import ENGINES
from nnexp.nn import OPTIMIZER_SPECS, OPTIMIZERS, make_optimizer
from nnexp.nn.fast import FAST_OPTIMIZERS, build_fast_model
from nnexp.nn.fast.optim import _flush_constant, _flush_subnormals

W0, B0 = 2.0, 1.0
GRADS = [1.0, 0.5]  # gradient at step 1, step 2


def tiny_params(dtype=np.float64):
    W = np.array([[W0]], dtype=dtype)
    b = np.array([B0], dtype=dtype)
    return [("0.W", W, np.zeros_like(W)), ("0.b", b, np.zeros_like(b))]


def run(opt, lr, steps=2):
    """Take `steps` steps with the gradients in GRADS; return [(W, b) after each step]."""
    (_, W, gW), (_, b, gb) = opt.params
    out = []
    for g in GRADS[:steps]:
        gW[...] = g
        gb[...] = g
        opt.step(lr)
        out.append((W.item(), b.item()))
    return out


@pytest.fixture(params=sorted(ENGINES))
def O(request):
    """The optimizer classes of one engine, by name."""
    return ENGINES[request.param].optimizers


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-15)


def test_sgd(O):
    (w1, b1), (w2, b2) = run(O["sgd"](tiny_params()), lr=0.1)
    assert w1 == approx(2.0 - 0.1 * 1.0)        # 1.9
    assert w2 == approx(1.9 - 0.1 * 0.5)        # 1.85
    assert (b1, b2) == (approx(0.9), approx(0.85))


def test_sgd_weight_decay_is_coupled_l2_and_skips_biases(O):
    (w1, b1), (w2, b2) = run(O["sgd"](tiny_params(), weight_decay=0.1), lr=0.1)
    # d = g + wd * W = 1 + 0.1 * 2 = 1.2;   W = 2 - 0.1 * 1.2
    assert w1 == approx(1.88)
    # d = 0.5 + 0.1 * 1.88 = 0.688;          W = 1.88 - 0.1 * 0.688
    assert w2 == approx(1.88 - 0.0688)
    # the bias is not decayed: plain SGD values
    assert (b1, b2) == (approx(0.9), approx(0.85))


def test_momentum(O):
    (w1, b1), (w2, b2) = run(O["sgd"](tiny_params(), momentum=0.9), lr=0.1)
    # step 1: buf = 1;                 W = 2 - 0.1 * 1     = 1.9
    assert w1 == approx(1.9)
    # step 2: buf = 0.9 * 1 + 0.5 = 1.4;  W = 1.9 - 0.1 * 1.4 = 1.76
    assert w2 == approx(1.76)
    assert (b1, b2) == (approx(0.9), approx(1.0 - 0.1 - 0.14))


def test_nesterov(O):
    (w1, _), (w2, _) = run(O["sgd"](tiny_params(), momentum=0.9, nesterov=True), lr=0.1)
    # step 1: buf = 1;  W = 2 - 0.1 * (g + 0.9 * buf) = 2 - 0.1 * 1.9 = 1.81
    assert w1 == approx(1.81)
    # step 2: buf = 0.9 * 1 + 0.5 = 1.4;  W = 1.81 - 0.1 * (0.5 + 0.9 * 1.4) = 1.81 - 0.176
    assert w2 == approx(1.634)


def test_registry_defaults(O):
    assert set(O) == set(OPTIMIZERS) == set(OPTIMIZER_SPECS)
    m = O["momentum"](tiny_params())
    assert m.momentum == 0.9 and not m.nesterov
    n = O["nesterov"](tiny_params())
    assert n.momentum == 0.9 and n.nesterov
    # "nesterov" behaves exactly like sgd with momentum=0.9, nesterov=True
    assert run(n, 0.1) == run(O["sgd"](tiny_params(), momentum=0.9, nesterov=True), 0.1)
    for name, spec in OPTIMIZER_SPECS.items():  # spec defaults are the constructor defaults
        opt = O[name](tiny_params())
        for key, (typ, default) in spec.items():
            assert getattr(opt, key) == default, (name, key)


def test_rmsprop(O):
    eps = 1e-8
    (w1, _), (w2, _) = run(O["rmsprop"](tiny_params(), rho=0.9, eps=eps), lr=0.01)
    # step 1: v = 0.1 * 1^2 = 0.1;  W = 2 - 0.01 * 1 / (sqrt(0.1) + eps)
    assert w1 == approx(2.0 - 0.01 * 1.0 / (math.sqrt(0.1) + eps))
    # step 2: v = 0.9 * 0.1 + 0.1 * 0.5^2 = 0.115;  W -= 0.01 * 0.5 / (sqrt(0.115) + eps)
    assert w2 == approx(w1 - 0.01 * 0.5 / (math.sqrt(0.115) + eps))


def test_adam(O):
    eps = 1e-8
    (w1, b1), (w2, b2) = run(O["adam"](tiny_params(), beta1=0.9, beta2=0.999, eps=eps), lr=0.1)
    # step 1: m = 0.1 * 1 = 0.1, v = 0.001 * 1 = 0.001
    #         m_hat = 0.1 / (1 - 0.9) = 1,  v_hat = 0.001 / (1 - 0.999) = 1
    assert w1 == approx(2.0 - 0.1 * 1.0 / (1.0 + eps))
    # step 2: m = 0.9 * 0.1 + 0.1 * 0.5 = 0.14,  v = 0.999 * 0.001 + 0.001 * 0.25 = 0.001249
    #         m_hat = 0.14 / (1 - 0.9^2) = 0.14 / 0.19
    #         v_hat = 0.001249 / (1 - 0.999^2) = 0.001249 / 0.001999
    m_hat, v_hat = 0.14 / 0.19, 0.001249 / 0.001999
    assert w2 == approx(w1 - 0.1 * m_hat / (math.sqrt(v_hat) + eps))
    assert w2 == pytest.approx(1.9 - 0.0932180, abs=1e-7)  # the same, as a number
    assert (b1, b2) == (approx(w1 - 1.0), approx(w2 - 1.0))  # b starts 1 below W


def test_adam_coupled_weight_decay(O):
    [(w1, b1)] = run(O["adam"](tiny_params(), weight_decay=0.5), lr=0.1, steps=1)
    # d = g + 0.5 * W = 1 + 1 = 2; on step 1 Adam's step is lr * sign(d) whatever |d| is
    assert w1 == pytest.approx(1.9, abs=1e-7)
    assert b1 == pytest.approx(0.9, abs=1e-7)
    # ...but the moments see the decayed gradient d = 2 (bias: g = 1)
    opt = O["adam"](tiny_params(), weight_decay=0.5)
    run(opt, lr=0.1, steps=1)
    state = opt.state_dict()  # PyTorch's m: m_1 = (1 - b1) * d
    assert state["m.0.W"].item() == approx(0.1 * 2.0)
    assert state["m.0.b"].item() == approx(0.1 * 1.0)
    assert state["v.0.W"].item() == approx(0.001 * 4.0)


def test_adamw_decoupled_weight_decay(O):
    eps = 1e-8
    (w1, b1), (w2, b2) = run(O["adamw"](tiny_params(), weight_decay=0.1, eps=eps), lr=0.1)
    # step 1: W = 2 * (1 - 0.1 * 0.1) = 1.98, then the Adam step of test_adam (-0.1)
    assert w1 == approx(1.98 - 0.1 / (1.0 + eps))
    # step 2: W = w1 * 0.99, then the second Adam step of test_adam (g = 0.5, no decay in it)
    m_hat, v_hat = 0.14 / 0.19, 0.001249 / 0.001999
    assert w2 == approx(w1 * 0.99 - 0.1 * m_hat / (math.sqrt(v_hat) + eps))
    # the bias is not decayed: exactly Adam's bias trajectory
    (_, ab1), (_, ab2) = run(O["adam"](tiny_params(), eps=eps), lr=0.1)
    assert (b1, b2) == (approx(ab1), approx(ab2))
    assert O["adamw"](tiny_params()).weight_decay == 0.01


def test_zero_lr_updates_moments_but_not_params(O):
    opt = O["adam"](tiny_params())
    [(w1, b1)] = run(opt, lr=0.0, steps=1)
    assert (w1, b1) == (W0, B0)
    assert opt.t == 1 and opt.state_dict()["m.0.W"].item() == approx(0.1)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_float32_stays_float32_and_state_round_trip(name, O):
    rng = np.random.default_rng(0)

    def params():
        W = rng.standard_normal((3, 4)).astype(np.float32)
        b = rng.standard_normal(4).astype(np.float32)
        return [("0.W", W, np.zeros_like(W)), ("0.b", b, np.zeros_like(b))]

    opt = make_optimizer(name, params(), optimizers=O)
    grads = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(3)]
    for g in grads[:2]:
        opt.params[0][2][...] = g
        opt.params[1][2][...] = g[0]
        opt.step(np.float64(0.01))  # an np.float64 lr must not upcast anything
    for _, p, g in opt.params:
        assert p.dtype == np.float32
    for bufs in opt.state.values():
        assert all(b.dtype == np.float32 for b in bufs)

    # a second optimizer restored from state_dict continues identically
    clone = make_optimizer(name, [(n, p.copy(), g.copy()) for n, p, g in opt.params], optimizers=O)
    clone.load_state_dict(opt.state_dict())
    for o in (opt, clone):
        o.params[0][2][...] = grads[2]
        o.params[1][2][...] = grads[2][0]
        o.step(0.01)
    for (_, p, _), (_, q, _) in zip(opt.params, clone.params):   # element-wise updates, no BLAS: exact
        np.testing.assert_array_equal(p, q)


def test_load_state_dict_checks_keys_and_shapes(O):
    opt = O["adam"](tiny_params())
    state = opt.state_dict()
    assert set(state) == {"t", "m.0.W", "m.0.b", "v.0.W", "v.0.b"}
    with pytest.raises(ValueError, match="missing keys"):
        opt.load_state_dict({k: v for k, v in state.items() if k != "m.0.W"})
    bad = dict(state, **{"v.0.b": np.zeros(3)})
    with pytest.raises(ValueError, match=r"v\.0\.b"):
        opt.load_state_dict(bad)


def test_flush_subnormals():
    c = _flush_constant(np.float32)
    a = np.array([1e-40, -1e-42, 1e-45, 0.0, 0.5, -3e-5, 1e-20], dtype=np.float32)
    before = a.copy()
    _flush_subnormals(a, c)
    np.testing.assert_array_equal(a[:4], 0.0)
    np.testing.assert_array_equal(a[4:], before[4:])  # normal values untouched


def test_fast_adam_state_never_goes_subnormal():
    # A weight whose gradient becomes exactly 0 (a dead unit): m decays by 0.9
    # per step and would get stuck among the slow subnormal numbers.
    W = np.ones((2, 2), dtype=np.float32)
    g = np.full_like(W, 1e-3)
    opt = FAST_OPTIMIZERS["adam"]([("W", W, g)])
    opt.step(1e-3)
    g[...] = 0
    tiny = np.finfo(np.float32).tiny
    for _ in range(1500):
        opt.step(1e-3)
        for buf in (opt.state["m"][0], opt.state["v"][0]):
            assert not np.any((buf != 0) & (np.abs(buf) < tiny))
    assert np.all(opt.state["m"][0] == 0)


def test_constructor_errors(O):
    with pytest.raises(ValueError, match="empty"):
        O["sgd"]([])
    with pytest.raises(ValueError, match="momentum"):
        O["sgd"](tiny_params(), momentum=1.5)
    with pytest.raises(ValueError, match="Nesterov"):
        O["sgd"](tiny_params(), nesterov=True)
    with pytest.raises(ValueError, match="beta2"):
        O["adam"](tiny_params(), beta2=1.0)
    with pytest.raises(ValueError, match="eps"):
        O["rmsprop"](tiny_params(), eps=0)
    with pytest.raises(ValueError, match="weight_decay"):
        O["adamw"](tiny_params(), weight_decay=-1)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("adagrad", tiny_params(), optimizers=O)
    with pytest.raises(ValueError, match="unknown option"):
        make_optimizer("sgd", tiny_params(), optimizers=O, beta1=0.9)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_packed_model_updates_exactly_like_separate_arrays(name, weight_decay):
    # FastSequential stores all parameters back to back, and the fast optimizers
    # then update them as one flat array in blocks; the numbers must not change at all.
    model = build_fast_model([{"type": "dense", "units": 300}, {"type": "relu"},
                         {"type": "dense", "units": 7}],
                        input_shape=(250,), rng=np.random.default_rng(0))  # 75,000 > one block
    params = model.parameters()
    assert len({id(p.base) for _, p, _ in params}) == 1  # views of one buffer
    separate = [(n, p.copy(), g.copy()) for n, p, g in params]
    opts = [make_optimizer(name, params, optimizers=FAST_OPTIMIZERS, weight_decay=weight_decay),
            make_optimizer(name, separate, optimizers=FAST_OPTIMIZERS, weight_decay=weight_decay)]
    rng = np.random.default_rng(1)
    for _ in range(3):
        for (_, _, g1), (_, _, g2) in zip(params, separate):
            g1[...] = g2[...] = rng.standard_normal(g1.shape).astype(np.float32)
        for opt in opts:
            opt.step(0.01)
    for (_, p1, _), (_, p2, _) in zip(params, separate):
        np.testing.assert_array_equal(p1, p2)
    s1, s2 = opts[0].state_dict(), opts[1].state_dict()
    for key in s1:
        np.testing.assert_array_equal(s1[key], s2[key])


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fast_rules_follow_the_reference(name, weight_decay):
    """Each fast optimizer against the reference rule it replaces, over many steps
    of a packed model's parameters (float64: agreement to rounding)."""
    model = build_fast_model([{"type": "dense", "units": 40}, {"type": "relu"}, {"type": "dense", "units": 7}],
                             input_shape=(30,), rng=np.random.default_rng(0), dtype=np.float64)
    fast_params = model.parameters()
    ref_params = [(n, p.copy(), g.copy()) for n, p, g in fast_params]
    fast = make_optimizer(name, fast_params, optimizers=FAST_OPTIMIZERS, weight_decay=weight_decay)
    ref = make_optimizer(name, ref_params, weight_decay=weight_decay)
    rng = np.random.default_rng(1)
    for step in range(25):
        for (_, _, g1), (_, _, g2) in zip(fast_params, ref_params):
            g1[...] = g2[...] = rng.standard_normal(g1.shape)
        lr = 0.01 * (1 + step % 3)   # a changing learning rate, as a schedule gives
        fast.step(lr)
        ref.step(lr)
    for (n, p1, _), (_, p2, _) in zip(fast_params, ref_params):
        np.testing.assert_allclose(p1, p2, rtol=1e-10, atol=1e-12, err_msg=n)
    s1, s2 = fast.state_dict(), ref.state_dict()
    assert set(s1) == set(s2)
    for key in s1:
        np.testing.assert_allclose(s1[key], s2[key], rtol=1e-10, atol=1e-14, err_msg=key)


def test_each_optimizer_keeps_the_state_of_its_rule(O):
    # a checkpoint stores exactly these buffers: plain SGD none, SGD with momentum one per parameter
    assert set(O["sgd"](tiny_params()).state_dict()) == {"t"}
    assert set(O["sgd"](tiny_params(), momentum=0.9).state_dict()) == {"t", "buf.0.W", "buf.0.b"}
    assert set(O["rmsprop"](tiny_params()).state_dict()) == {"t", "v.0.W", "v.0.b"}


def test_a_grad_that_is_not_an_array_is_refused(O):
    W = np.ones((2, 2))
    with pytest.raises(ValueError, match="'0.W' and its grad must be arrays"):
        O["sgd"]([("0.W", W, [[0.0, 0.0], [0.0, 0.0]])])
    with pytest.raises(ValueError, match="'0.W' and its grad must be arrays"):
        O["sgd"]([("0.W", [[1.0, 1.0], [1.0, 1.0]], np.zeros((2, 2)))])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_parameter_that_is_a_strided_view_updates_like_a_plain_array(name):
    # the weights of a non-contiguous view (a transpose) with a contiguous gradient: not one flat block
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((4, 3)) for _ in range(3)]
    W = rng.standard_normal((3, 4)).T
    plain = [("W", W.copy(), np.zeros((4, 3)))]
    strided = [("W", W, np.zeros((4, 3)))]
    for params, optimizers in ((plain, OPTIMIZERS), (strided, FAST_OPTIMIZERS)):
        opt = make_optimizer(name, params, optimizers=optimizers)
        for g in grads:
            params[0][2][...] = g
            opt.step(0.01)
    np.testing.assert_allclose(strided[0][1], plain[0][1], rtol=1e-12, atol=1e-15)
