"""The llama baseline of v2: causal, streams like one forward, trains, round-trips through a checkpoint."""

import pytest
import torch

from memory_mosaics import load_pretrained
from memory_mosaics.generate import generate
from memory_mosaics.models import Llama, LlamaConfig, build_model

from .conftest import fit, stream

TINY = dict(vocab_size=41, block_size=32, n_layer=2, n_head=2, n_embd=16)


def test_causal_and_streams_like_one_forward() -> None:
    torch.manual_seed(0)
    model = Llama(LlamaConfig(**TINY)).eval()
    idx = torch.randint(0, 41, (2, 50))  # past block_size: RoPE has no limit
    with torch.no_grad():
        full, _ = model(idx)
        changed = idx.clone()
        changed[:, 30:] = 0
        assert torch.equal(model(changed)[0][:, :30], full[:, :30])
        state = model.init_state()
        parts = [model(idx[:, :20], state=state)[0]] + [model(idx[:, t : t + 1], state=state)[0] for t in range(20, 50)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-5)
    out = generate(model, idx[:1, :5], 8, greedy=True)
    assert out.shape == (1, 13)


def test_trains_and_round_trips(tmp_path) -> None:
    torch.manual_seed(1)
    model = build_model("llama", **TINY, ffn_hidden=40, pos="learned", init="gpt2")  # other archs' fields: dropped
    assert model.blocks[0].mlp.W1.out_features == 40 and model.lm_head.weight is not model.wte.weight
    idx = torch.randint(0, 41, (4, 25))
    losses = fit(model, idx)
    assert losses[-1] < losses[0] - 0.5
    model.save_pretrained(tmp_path / "ck")
    loaded = load_pretrained(tmp_path / "ck")
    assert isinstance(loaded, Llama) and loaded.config == model.config
    a, b = loaded.state_dict(), model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the same weights; MKL's sgemm may round the last bit differently for copies at other memory alignments
    torch.testing.assert_close(loaded.eval()(idx)[0], model.eval()(idx)[0], rtol=1e-5, atol=1e-6)


def test_odd_head_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="even head size"):
        LlamaConfig(**{**TINY, "n_embd": 18, "n_head": 2})


SPLIT = dict(TINY, split=True, short_window=4, long_delay=8, long_delay_min=5, long_delay_max=9)


def test_split_attention_sees_its_two_windows_only() -> None:
    """One block: a token at position 10 reaches positions 10-13 (short window 4) and 18 on (delay 8), not 14-17."""
    torch.manual_seed(2)
    model = Llama(LlamaConfig(**{**SPLIT, "n_layer": 1})).eval()
    idx = torch.randint(0, 41, (1, 30))
    changed = idx.clone()
    changed[0, 10] = (changed[0, 10] + 1) % 41
    with torch.no_grad():
        diff = (model(idx)[0] - model(changed)[0]).abs().amax(-1)[0]
    moved = [t for t in range(30) if diff[t] > 0]
    assert moved == [10, 11, 12, 13, *range(18, 30)]


@pytest.mark.parametrize("chunks", [[40], [1] * 40, [7, 1, 1, 31]])
def test_split_attention_streams_like_one_forward(chunks: list[int]) -> None:
    torch.manual_seed(3)
    model = Llama(LlamaConfig(**SPLIT)).eval()
    idx = torch.randint(0, 41, (2, 40))
    with torch.no_grad():
        full, _ = model(idx)
        streamed, _ = stream(model, idx, chunks)
    torch.testing.assert_close(streamed, full, rtol=1e-4, atol=1e-5)


def test_split_attention_trains_with_a_delay_per_step() -> None:
    torch.manual_seed(4)
    model = Llama(LlamaConfig(**SPLIT))
    delays = []

    def draw(step: int) -> None:
        model.sample_delay(torch.Generator().manual_seed(step))
        delays.append(model.delay)

    losses = fit(model, torch.randint(0, 41, (4, 25)), each_step=draw)
    assert losses[-1] < losses[0] - 0.5
    assert all(5 <= m <= 9 for m in delays) and len(set(delays)) > 1
    assert model.eval().delay == 8
