import time

import pytest
import torch

from memory_mosaics.experiments.induction import TaskConfig, make_batch, run_comparison


def test_batches_place_recurring_bigrams():
    task = TaskConfig(vocab_size=32, seq_len=64, n_pairs=4, occurrences=4)
    x, y, scored = make_batch(task, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == scored.shape == (8, 64)
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert scored.sum(1).eq(4 * 3).all()  # each pair scored at its 2nd, 3rd and 4th occurrence
    for b in range(8):
        for t in scored[b].nonzero().flatten().tolist():  # the same trigger is always followed by the same target
            earlier = (x[b, :t] == x[b, t]).nonzero().flatten()
            assert len(earlier) and (y[b, earlier] == y[b, t]).all()


def test_task_must_fit_and_score_something():
    with pytest.raises(ValueError, match="does not fit"):
        make_batch(TaskConfig(vocab_size=32, seq_len=16, n_pairs=4, occurrences=4), 1, torch.Generator())
    with pytest.raises(ValueError, match="score anything"):
        TaskConfig(occurrences=1)


def test_one_block_memory_mosaic_is_an_induction_head_and_one_block_gpt_is_not():
    """Section 3: one block of contextual memory solves the induction task; a one-block transformer cannot."""
    t0 = time.perf_counter()
    results = run_comparison(steps=300, seed=0)
    print(
        f"\none-block Memory Mosaic accuracy {results['mosaic']['accuracy']:.3f}, "
        f"one-block GPT accuracy {results['gpt']['accuracy']:.3f} ({time.perf_counter() - t0:.0f} s for both)"
    )
    assert results["mosaic"]["accuracy"] >= 0.95
    assert results["gpt"]["accuracy"] <= 0.5


def test_the_shared_builder_gives_the_weights_of_the_configs_it_replaced():
    from memory_mosaics.experiments.induction import build_models
    from memory_mosaics.models import GPT, GPTConfig, MemoryMosaic, MosaicConfig

    task = TaskConfig()
    common = dict(vocab_size=task.vocab_size, block_size=task.seq_len, n_layer=1, n_head=4, n_embd=64)
    torch.manual_seed(0)
    old = {
        "mosaic": MemoryMosaic(MosaicConfig(**common, persistent="none", bias=False)),
        "gpt": GPT(GPTConfig(**common, pos="learned", bias=False)),
    }
    torch.manual_seed(0)
    new = build_models(task)
    assert list(new) == ["mosaic", "gpt"]
    for name, model in new.items():
        assert model.config == old[name].config
        pairs = zip(old[name].state_dict().values(), model.state_dict().values(), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)
