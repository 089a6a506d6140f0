"""Learning-rate schedules: ``make_schedule(...)`` returns ``lr(step)``.

``step`` counts optimizer steps from 0 (the first update uses ``lr(0)``);
``total_steps`` is the number of updates in the whole run and
``steps_per_epoch`` converts the epoch-valued options to steps.

==============  ==============================================================
name            lr(step)
==============  ==============================================================
``constant``    base_lr
``step``        base_lr * gamma ** floor(epoch / step_epochs),
                epoch = floor(step / steps_per_epoch)
``cosine``      min_lr + (base_lr - min_lr) * (1 + cos(pi * s / total_steps)) / 2,
                s = min(step, total_steps)    (PyTorch's CosineAnnealingLR)
``onecycle``    PyTorch's OneCycleLR (two phases, cosine annealing): from
                base_lr/div_factor up to base_lr (the peak) at step
                pct_start*total_steps - 1, then down to
                base_lr/div_factor/final_div_factor at step total_steps - 1
==============  ==============================================================

Warm-up (every schedule except ``onecycle``, which has its own): with
W = round(warmup_epochs * steps_per_epoch) steps, the schedule's value is
multiplied by step / W for step < W -- a linear ramp from 0 at step 0 to the
schedule's own value at step W (the same convention as Hugging Face's
``get_*_schedule_with_warmup``).  The underlying schedule keeps running on the
global step clock, so warm-up composes with any of them unchanged.
"""

from __future__ import annotations

import math
from typing import Callable

from .specs import REQUIRED

__all__ = ["make_schedule", "SCHEDULE_SPECS"]

#: name -> {keyword: (python type, default or REQUIRED)}
SCHEDULE_SPECS: dict[str, dict[str, tuple]] = {
    "constant": {"warmup_epochs": (float, 0.0)},
    "step": {"step_epochs": (int, REQUIRED), "gamma": (float, 0.1),
             "warmup_epochs": (float, 0.0)},
    "cosine": {"min_lr": (float, 0.0), "warmup_epochs": (float, 0.0)},
    "onecycle": {"pct_start": (float, 0.3), "div_factor": (float, 25.0),
                 "final_div_factor": (float, 1e4)},
}


def _cos_anneal(start: float, end: float, pct: float) -> float:
    """Cosine from ``start`` (pct = 0) to ``end`` (pct = 1)."""
    return end + (start - end) / 2.0 * (1.0 + math.cos(math.pi * pct))


def make_schedule(name: str, base_lr: float, total_steps: int, steps_per_epoch: int,
                  warmup_epochs: float = 0.0, **kw) -> Callable[[int], float]:
    """Return ``lr(step) -> float`` for schedule ``name`` (see the module docstring)."""
    if name not in SCHEDULE_SPECS:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULE_SPECS)}")
    spec = SCHEDULE_SPECS[name]
    unknown = sorted(set(kw) - set(spec))
    if unknown:
        raise ValueError(f"schedule {name!r} got unknown option(s) {unknown}; "
                         f"allowed: {sorted(spec)}")
    opts = {k: kw.get(k, default) for k, (_, default) in spec.items() if k != "warmup_epochs"}
    missing = sorted(k for k, v in opts.items() if v is REQUIRED)
    if missing:
        raise ValueError(f"schedule {name!r} needs option(s) {missing}")

    base_lr = float(base_lr)
    if not (base_lr > 0 and math.isfinite(base_lr)):
        raise ValueError(f"base_lr must be a positive number, got {base_lr}")
    if int(total_steps) < 1 or int(steps_per_epoch) < 1:
        raise ValueError(f"total_steps and steps_per_epoch must be >= 1, "
                         f"got {total_steps} and {steps_per_epoch}")
    total_steps, steps_per_epoch = int(total_steps), int(steps_per_epoch)
    warmup_epochs = float(warmup_epochs)
    if not (warmup_epochs >= 0 and math.isfinite(warmup_epochs)):
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    if name == "onecycle" and warmup_epochs > 0:
        raise ValueError("onecycle has its own warm-up (pct_start); warmup_epochs "
                         "cannot be combined with it")

    if name == "constant":
        def sched(step: int) -> float:
            return base_lr

    elif name == "step":
        step_epochs, gamma = opts["step_epochs"], float(opts["gamma"])
        if isinstance(step_epochs, bool) or int(step_epochs) != step_epochs or step_epochs < 1:
            raise ValueError(f"step: step_epochs must be a positive integer, got {step_epochs}")
        if not (0 < gamma and math.isfinite(gamma)):
            raise ValueError(f"step: gamma must be positive, got {gamma}")
        step_epochs = int(step_epochs)

        def sched(step: int) -> float:
            epoch = step // steps_per_epoch
            return base_lr * gamma ** (epoch // step_epochs)

    elif name == "cosine":
        min_lr = float(opts["min_lr"])
        if not (0 <= min_lr <= base_lr):
            raise ValueError(f"cosine: min_lr must be in [0, base_lr={base_lr}], got {min_lr}")

        def sched(step: int) -> float:
            pct = min(step, total_steps) / total_steps
            return _cos_anneal(base_lr, min_lr, pct)

    else:  # onecycle, following torch.optim.lr_scheduler.OneCycleLR
        pct_start = float(opts["pct_start"])
        div_factor = float(opts["div_factor"])
        final_div_factor = float(opts["final_div_factor"])
        if not (0 < pct_start < 1):
            raise ValueError(f"onecycle: pct_start must be in (0, 1), got {pct_start}")
        if not (div_factor > 0 and final_div_factor > 0):
            raise ValueError("onecycle: div_factor and final_div_factor must be positive")
        initial_lr = base_lr / div_factor
        final_lr = initial_lr / final_div_factor
        peak_step = pct_start * total_steps - 1  # float, as in PyTorch
        last_step = total_steps - 1

        def sched(step: int) -> float:
            step = min(step, last_step)
            if step <= peak_step:
                pct = step / peak_step if peak_step > 0 else 1.0
                return _cos_anneal(initial_lr, base_lr, pct)
            span = last_step - peak_step
            pct = (step - peak_step) / span if span > 0 else 1.0
            return _cos_anneal(base_lr, final_lr, pct)

    warmup_steps = round(warmup_epochs * steps_per_epoch)
    if warmup_steps <= 0:
        return sched

    def warmed(step: int) -> float:
        lr = sched(step)
        return lr * (step / warmup_steps) if step < warmup_steps else lr

    return warmed
