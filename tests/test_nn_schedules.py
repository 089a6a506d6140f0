"""Learning-rate schedules at known steps."""

import math

import pytest

from nnexp.nn import REQUIRED, SCHEDULE_SPECS, make_schedule


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-15)


def test_constant():
    lr = make_schedule("constant", 0.1, total_steps=100, steps_per_epoch=10)
    assert [lr(s) for s in (0, 50, 99, 1000)] == [0.1] * 4


def test_step_boundaries():
    # 10 steps per epoch, decay by 0.5 every 2 epochs = every 20 steps
    lr = make_schedule("step", 0.1, total_steps=60, steps_per_epoch=10,
                       step_epochs=2, gamma=0.5)
    assert lr(0) == approx(0.1)
    assert lr(19) == approx(0.1)     # last step of epoch 1
    assert lr(20) == approx(0.05)    # first step of epoch 2
    assert lr(39) == approx(0.05)
    assert lr(40) == approx(0.025)
    assert lr(59) == approx(0.025)


def test_step_default_gamma():
    lr = make_schedule("step", 1.0, total_steps=30, steps_per_epoch=10, step_epochs=1)
    assert [lr(0), lr(10), lr(20)] == [approx(1.0), approx(0.1), approx(0.01)]


def test_cosine():
    lr = make_schedule("cosine", 1.0, total_steps=100, steps_per_epoch=10, min_lr=0.1)
    assert lr(0) == approx(1.0)
    assert lr(50) == approx(0.55)                        # half way: (1 + 0.1) / 2
    assert lr(25) == approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2)
    assert lr(100) == approx(0.1)
    assert lr(150) == approx(0.1)                        # stays at min_lr afterwards


def test_onecycle_matches_pytorch_convention():
    # peak 1.0; start 1.0/25 = 0.04; end 0.04/1e4 = 4e-6
    # the peak is at step pct_start * total - 1 = 29, the end at step total - 1 = 99
    lr = make_schedule("onecycle", 1.0, total_steps=100, steps_per_epoch=10)
    assert lr(0) == approx(0.04)
    assert lr(29) == approx(1.0)
    assert lr(99) == approx(4e-6)
    assert lr(150) == approx(4e-6)
    # half way through each phase the cosine is at the mid-point
    assert lr(64) == approx((1.0 + 4e-6) / 2)            # (29 + 99) / 2 = 64
    assert lr(14.5) == approx((0.04 + 1.0) / 2)          # (0 + 29) / 2
    # strictly rising then strictly falling
    values = [lr(s) for s in range(100)]
    assert values.index(max(values)) == 29
    assert all(a < b for a, b in zip(values[:29], values[1:30]))
    assert all(a > b for a, b in zip(values[29:99], values[30:]))


def test_onecycle_options():
    lr = make_schedule("onecycle", 0.5, total_steps=200, steps_per_epoch=10,
                       pct_start=0.25, div_factor=10, final_div_factor=100)
    assert lr(0) == approx(0.05)
    assert lr(49) == approx(0.5)
    assert lr(199) == approx(0.0005)


def test_warmup_constant():
    # 1 epoch of warm-up = 10 steps: 0 at step 0, linear, full value from step 10
    lr = make_schedule("constant", 1.0, total_steps=100, steps_per_epoch=10, warmup_epochs=1)
    assert lr(0) == 0.0
    assert lr(5) == approx(0.5)
    assert lr(9) == approx(0.9)
    assert lr(10) == approx(1.0)
    assert lr(99) == approx(1.0)


def test_warmup_composes_with_cosine_and_step():
    cos = make_schedule("cosine", 1.0, total_steps=100, steps_per_epoch=10)
    warm = make_schedule("cosine", 1.0, total_steps=100, steps_per_epoch=10, warmup_epochs=0.5)
    assert warm(0) == 0.0
    assert warm(2) == approx(cos(2) * 2 / 5)     # 0.5 epoch = 5 steps
    assert warm(5) == approx(cos(5))
    assert warm(70) == approx(cos(70))
    step = make_schedule("step", 1.0, total_steps=100, steps_per_epoch=10,
                         step_epochs=1, gamma=0.5, warmup_epochs=2)
    assert step(10) == approx(0.5 * 10 / 20)     # decayed once, and half way through warm-up
    assert step(20) == approx(0.25)


def test_errors():
    with pytest.raises(ValueError, match="own warm-up"):
        make_schedule("onecycle", 1.0, 100, 10, warmup_epochs=1)
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("linear", 1.0, 100, 10)
    with pytest.raises(ValueError, match="step_epochs"):
        make_schedule("step", 1.0, 100, 10)
    with pytest.raises(ValueError, match="unknown option"):
        make_schedule("cosine", 1.0, 100, 10, gamma=0.5)
    with pytest.raises(ValueError, match="total_steps"):
        make_schedule("constant", 1.0, 0, 10)
    with pytest.raises(ValueError, match="min_lr"):
        make_schedule("cosine", 1.0, 100, 10, min_lr=2.0)


def test_specs():
    assert set(SCHEDULE_SPECS) == {"constant", "step", "cosine", "onecycle"}
    assert SCHEDULE_SPECS["step"]["step_epochs"] == (int, REQUIRED)
    assert SCHEDULE_SPECS["onecycle"]["pct_start"] == (float, 0.3)
    assert "warmup_epochs" not in SCHEDULE_SPECS["onecycle"]
    assert all("warmup_epochs" in SCHEDULE_SPECS[n] for n in ("constant", "step", "cosine"))


@pytest.mark.parametrize("warmup_epochs, steps_per_epoch, warmup_steps", [
    (0.5, 7, 4),     # 3.5 steps: rounded up
    (0.7, 7, 5),     # 4.9 steps
    (0.3, 7, 2),     # 2.1 steps: rounded down
    (1.3, 3, 4),     # 3.9 steps, over more than one epoch
])
def test_fractional_warmup_follows_the_formula_at_every_step(warmup_epochs, steps_per_epoch, warmup_steps):
    """S = round(warmup_epochs * steps_per_epoch) steps of warm-up (docs/math.md):
    lr(step) = cosine(step) * step / S for step < S, cosine(step) from step S on."""
    total = 4 * steps_per_epoch
    lr = make_schedule("cosine", 0.8, total_steps=total, steps_per_epoch=steps_per_epoch,
                       min_lr=0.1, warmup_epochs=warmup_epochs)

    def cosine(step):
        return 0.1 + 0.7 * (1 + math.cos(math.pi * step / total)) / 2

    for step in range(total):
        ramp = step / warmup_steps if step < warmup_steps else 1.0
        assert lr(step) == approx(cosine(step) * ramp), step
    assert lr(warmup_steps - 1) < cosine(warmup_steps - 1)   # the last step of the ramp is still below
    assert lr(warmup_steps) == approx(cosine(warmup_steps))  # the first one at the schedule's own value


@pytest.mark.parametrize("name", sorted(SCHEDULE_SPECS))
def test_the_declared_defaults_are_the_schedule_s_own(name):
    # the config validator fills in SCHEDULE_SPECS' defaults: passing them must change nothing
    required = {"step_epochs": 3}
    given = {k: required.get(k, default) for k, (_, default) in SCHEDULE_SPECS[name].items()}
    implied = {k: v for k, v in given.items() if k in required}
    explicit, default = make_schedule(name, 0.5, 60, 6, **given), make_schedule(name, 0.5, 60, 6, **implied)
    assert [explicit(s) for s in range(60)] == [default(s) for s in range(60)]


@pytest.mark.parametrize("total", range(4, 12))
def test_onecycle_starts_at_base_lr_over_div_factor_at_any_length(total):
    # from 4 steps on (pct_start * total >= 1) step 0 is the initial lr, also where a short
    # run puts the peak between steps 0 and 1 (as PyTorch's peak_step = pct_start * total - 1)
    lr = make_schedule("onecycle", 1.0, total, 1, pct_start=0.3, div_factor=25.0)
    assert lr(0) == approx(1.0 / 25.0)


@pytest.mark.parametrize("name, options, message", [
    ("step", {"step_epochs": 0}, "step_epochs must be a positive integer"),
    ("step", {"step_epochs": -2}, "step_epochs must be a positive integer"),
    ("cosine", {"min_lr": -0.1}, "min_lr must be in"),
    ("onecycle", {"pct_start": 1.0}, "pct_start must be in"),
    ("onecycle", {"pct_start": 1.5}, "pct_start must be in"),
    ("onecycle", {"pct_start": 0.0}, "pct_start must be in"),
    ("onecycle", {"final_div_factor": -10.0}, "must be positive"),
    ("onecycle", {"div_factor": 0.0}, "must be positive"),
])
def test_options_out_of_range_are_refused_when_the_schedule_is_made(name, options, message):
    with pytest.raises(ValueError, match=message):
        make_schedule(name, 1.0, 100, 10, **options)
