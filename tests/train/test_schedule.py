"""One warm-up + cosine schedule for every trainer: it gives, float for float, both formulas it replaced."""

import itertools
import math

import pytest

from memory_mosaics.train.schedule import WarmupCosine


def lm_formula(step: int, lr: float, min_lr: float, warmup_iters: int, decay_iters: int) -> float:
    """Verbatim: the language models' WarmupCosine.__call__ before RegBench's shape was added."""
    if step < warmup_iters:
        return lr * (step + 1) / warmup_iters
    if step >= decay_iters:
        return min_lr
    progress = (step - warmup_iters) / max(1, decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def regbench_formula(
    step: int, total: int, lr: float, warmup_frac: float, warmup_start_lr: float, min_lr_frac: float
) -> float:
    """Verbatim: RegBench's learning_rate(step, total, cfg) before it used WarmupCosine."""
    warmup = math.ceil(warmup_frac * total)
    if step < warmup:
        return warmup_start_lr + step * (lr - warmup_start_lr) / warmup
    min_lr = min_lr_frac * lr
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(step, total) / total))


@pytest.mark.parametrize(
    "lr, min_lr, warmup_iters, decay_iters",
    [(5e-3, 1e-4, 2000, 80_000), (6e-4, 6e-5, 100, 1000), (1e-3, 0.0, 0, 50), (3e-4, 3e-5, 10, 10), (1.0, 0.1, 7, 3)],
)
def test_the_language_models_shape_is_unchanged(lr, min_lr, warmup_iters, decay_iters):
    s = WarmupCosine(lr, min_lr, warmup_iters, decay_iters)
    steps = sorted({*range(0, decay_iters + 20, max(1, decay_iters // 500)), warmup_iters - 1, warmup_iters})
    for step in (t for t in steps if t >= 0):
        assert s(step) == lm_formula(step, lr, min_lr, warmup_iters, decay_iters), step


@pytest.mark.parametrize(
    "total, lr, warmup_frac, warmup_start_lr, min_lr_frac",
    [
        (200, 2e-3, 0.1, 1e-6, 0.1),  # the CPU default
        (800, 5e-4, 0.1, 1e-6, 0.1),  # the authors' glue
        (52, 2.5e-4, 0.1, 1e-6, 0.1),
        (13, 1e-3, 0.3, 0.0, 0.0),
        (7, 3e-3, 0.0, 1e-6, 1.0),
        (5, 1e-3, 1.0, 1e-5, 0.5),
    ],
)
def test_regbench_shape_is_the_timm_schedule_it_replaced(total, lr, warmup_frac, warmup_start_lr, min_lr_frac):
    s = WarmupCosine(
        lr,
        min_lr_frac * lr,
        math.ceil(warmup_frac * total),
        total,
        warmup_start_lr=warmup_start_lr,
        cosine_from_zero=True,
    )
    for step in range(total + 3):
        assert s(step) == regbench_formula(step, total, lr, warmup_frac, warmup_start_lr, min_lr_frac), step


def test_regbench_shape_warms_up_from_its_start_then_decays_from_step_zero():
    s = WarmupCosine(1e-3, 1e-4, 20, 200, warmup_start_lr=1e-6, cosine_from_zero=True)
    assert s(0) == 1e-6 and s(10) == pytest.approx((1e-6 + 1e-3) / 2)
    assert 0.9e-3 < s(20) < 1e-3 and s(20) == pytest.approx(1e-4 + 0.45e-3 * (1 + math.cos(math.pi * 0.1)))
    assert s(200) == 1e-4
    assert all(a >= b for a, b in itertools.pairwise(s(t) for t in range(20, 201)))


def test_the_four_positional_fields_still_build_the_language_models_schedule():
    s = WarmupCosine(5e-3, 1e-4, 2000, 80_000)
    assert (s.warmup_start_lr, s.cosine_from_zero) == (None, False)
    assert s(0) == 5e-3 / 2000 and s(1999) == 5e-3 and s(80_000) == 1e-4
