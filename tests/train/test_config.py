import re

import pytest

from memory_mosaics.train import TrainConfig


def test_init_and_logit_scale_reach_the_model_config() -> None:
    for arch in ("mosaic", "gpt"):
        cfg = TrainConfig(arch=arch, n_layer=1, n_head=2, n_embd=16, init="library", logit_scale=0.25).model_config(50)
        assert cfg.init == "library" and cfg.logit_scale == 0.25


def test_bias_defaults_to_the_architectures_own() -> None:
    """v1 and GPT-2 have biases, v2 and llama none (as their papers); --bias / --no-bias overrides either."""
    small = dict(n_layer=1, n_head=2, n_embd=16)
    assert {a: TrainConfig(arch=a, **small).model_config(50).bias for a in ("mosaic", "gpt", "mosaic2", "llama")} == {
        "mosaic": True,
        "gpt": True,
        "mosaic2": False,
        "llama": False,
    }
    assert TrainConfig(arch="llama", bias=True, **small).model_config(50).bias
    assert not TrainConfig(arch="mosaic", bias=False, **small).model_config(50).bias


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("max_iters", 0, "--max-iters must be >= 1"),
        ("warmup_iters", -1, "--warmup-iters must be >= 0"),
        ("eval_batches", -2, "--eval-batches must be >= 0"),
        ("weight_decay", -0.1, "--weight-decay must be >= 0"),
        ("lr", -1.0, "--lr must be > 0"),
        ("lr", 0.0, "--lr must be > 0"),
        ("beta2", 1.0, "--beta2 must be in [0, 1)"),
        ("min_lr", 1.0, "must not exceed --lr"),
    ],
)
def test_impossible_settings_are_refused_by_flag_name(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(**{field: value})
