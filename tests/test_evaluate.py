"""The one evaluator: its windows, per-position losses, chunked streaming, and the model's own loss."""

import numpy as np
import pytest
import torch

from memory_mosaics import GPT, GPTConfig, MemoryMosaic, MosaicConfig
from memory_mosaics.evaluate import eval_starts, window_loss

TINY = dict(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=16)


def test_windows_are_consecutive_or_spread_over_the_stream() -> None:
    assert eval_starts(100, 10).tolist() == list(range(0, 90, 10))
    assert eval_starts(100, 10, max_windows=3).tolist() == [0, 40, 80]  # first, middle, last of the 9
    assert eval_starts(100, 10, max_windows=1).tolist() == [0]
    assert eval_starts(100, 10, max_windows=50).tolist() == list(range(0, 90, 10))
    starts = eval_starts(10_001, 10, max_windows=7)
    assert len(set(starts.tolist())) == 7 and starts[-1] == 9_990  # spread to the end, no window twice
    with pytest.raises(ValueError, match="fewer than"):
        eval_starts(10, 10)


@pytest.mark.parametrize("arch", ["mosaic", "gpt"])
def test_loss_is_the_models_own_and_the_mean_of_its_positions(arch: str) -> None:
    torch.manual_seed(0)
    model = MemoryMosaic(MosaicConfig(**TINY)) if arch == "mosaic" else GPT(GPTConfig(**TINY, pos="rope"))
    tokens = np.random.default_rng(0).integers(0, 37, 16 * 5 + 1)
    r = window_loss(model, tokens, 16, batch_size=2)
    assert r["windows"] == 5 and r["tokens"] == 80 and len(r["per_position"]) == 16
    assert r["loss"] == pytest.approx(float(np.mean(r["per_position"])), abs=1e-12)
    x = torch.from_numpy(tokens[:80].reshape(5, 16)).long()
    y = torch.from_numpy(tokens[1:81].reshape(5, 16)).long()
    with torch.no_grad():
        _, loss = model.eval()(x, y)
    assert r["loss"] == pytest.approx(float(loss), rel=1e-5)
    assert r["ppl"] == pytest.approx(np.exp(r["loss"]))


def test_model_mode_is_restored() -> None:
    model = MemoryMosaic(MosaicConfig(**TINY, dropout=0.1)).train()
    window_loss(model, np.arange(40) % 37, 16)
    assert model.training
    window_loss(model.eval(), np.arange(40) % 37, 16)
    assert not model.training


@pytest.mark.parametrize("chunk", [1, 5, 16])
def test_chunked_streaming_equals_one_forward(chunk: int) -> None:
    """Reading 8x the training length on a CPU streams windows in chunks: the same numbers."""
    torch.manual_seed(1)
    model = MemoryMosaic(MosaicConfig(**TINY))
    tokens = np.random.default_rng(1).integers(0, 37, 48 * 2 + 1)
    full = window_loss(model, tokens, 48, batch_size=2)
    streamed = window_loss(model, tokens, 48, batch_size=2, chunk=chunk)
    np.testing.assert_allclose(streamed["per_position"], full["per_position"], rtol=1e-5, atol=1e-6)


def test_a_document_masked_model_streams_its_windows_row_by_row() -> None:
    """Windows end their documents at different positions: each row streams alone, and gives the one-forward
    numbers (whose parallel form batches the documents)."""
    torch.manual_seed(2)
    model = MemoryMosaic(MosaicConfig(**TINY, doc_token=0))
    rng = np.random.default_rng(2)
    tokens = rng.integers(1, 37, 48 * 3 + 1)
    tokens[rng.choice(len(tokens), 9, replace=False)] = 0  # end-of-text tokens where they fall
    full = window_loss(model, tokens, 48, batch_size=3)
    streamed = window_loss(model, tokens, 48, batch_size=3, chunk=7)
    np.testing.assert_allclose(streamed["per_position"], full["per_position"], rtol=1e-5, atol=1e-6)
