"""The llama baseline of v2: causal, streams like one forward, trains, round-trips through a checkpoint."""

import pytest
import torch

from memory_mosaics import load_pretrained
from memory_mosaics.generate import generate
from memory_mosaics.models import Llama, LlamaConfig, build_model

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
    opt = model.configure_optimizers(0.1, 3e-3)
    idx = torch.randint(0, 41, (4, 25))
    losses = []
    for _ in range(15):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0] - 0.5
    model.save_pretrained(tmp_path / "ck")
    loaded = load_pretrained(tmp_path / "ck")
    assert isinstance(loaded, Llama) and loaded.config == model.config
    torch.testing.assert_close(loaded.eval()(idx)[0], model.eval()(idx)[0], rtol=0, atol=0)


def test_odd_head_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="even head size"):
        LlamaConfig(**{**TINY, "n_embd": 18, "n_head": 2})
