import contextlib
import importlib
import itertools
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memory_mosaics.models import GPT, GPTConfig, MemoryMosaic, MosaicConfig
from memory_mosaics.ops import kernels

from .conftest import TINY


def test_a_mosaic_block_has_the_weights_of_a_gpt2_block():
    """At the GPT-2-small shape with pmem_size = 3.5·d, the weight matrices of a block number exactly 12·d²."""
    d = 768
    with torch.device("meta"):
        mosaic = MemoryMosaic(MosaicConfig(n_layer=12, n_head=12, n_embd=d))
        gpt = GPT(GPTConfig(n_layer=12, n_head=12, n_embd=d))
    assert mosaic.config.pmem_size == 2688

    def matrix_weights(block):
        return sum(p.numel() for p in block.parameters() if p.dim() >= 2)

    for mb, gb in zip(mosaic.blocks, gpt.blocks, strict=True):
        assert matrix_weights(mb) == matrix_weights(gb) == 12 * d * d
    # what remains differs only by biases and per-head scalars (and GPT's 512 learned positions)
    extra = mosaic.num_params() - (gpt.num_params() - 0)
    assert abs(extra) < 12 * 13 * d


def test_causality_changing_the_future_never_changes_the_past(model, tiny):
    idx = torch.randint(0, tiny["vocab_size"], (2, 24))
    logits, _ = model(idx)
    for t in (0, 5, 17, 22):
        other = idx.clone()
        other[:, t + 1 :] = torch.randint(0, tiny["vocab_size"], other[:, t + 1 :].shape)
        torch.testing.assert_close(model(other)[0][:, : t + 1], logits[:, : t + 1])


@pytest.mark.parametrize("chunks", [[24], [10, 14], [1, 1, 5, 17]])
def test_prefill_then_steps_equals_one_forward(model, chunks, tiny):
    idx = torch.randint(0, tiny["vocab_size"], (3, 32))
    full, _ = model(idx)
    state = model.init_state()
    outs, pos = [], 0
    for n in chunks:
        outs.append(model(idx[:, pos : pos + n], state=state)[0])
        pos += n
    for t in range(pos, 32):
        outs.append(model(idx[:, t : t + 1], state=state)[0])
    assert (torch.cat(outs, 1) - full).abs().max() <= 1e-4
    assert state.position == 32


def _streaming_models() -> dict:
    """Built once (hypothesis draws many examples per model): look-aheads beyond 1 and averaged banks included."""
    torch.manual_seed(0)
    models = {f"mosaic-lookahead{s}": MemoryMosaic(MosaicConfig(**TINY, lookahead=s, pmem_count=s)) for s in (1, 2, 3)}
    models.update({f"gpt-{p}": GPT(GPTConfig(**TINY, pos=p)) for p in ("learned", "rope", "alibi")})
    return {name: m.eval() for name, m in models.items()}


STREAMING_MODELS = _streaming_models()


@st.composite
def chunkings(draw: st.DrawFn) -> list[int]:
    """A sequence length up to the training context, cut into chunks at any positions."""
    T = draw(st.integers(1, TINY["block_size"]))
    cuts = sorted(draw(st.sets(st.integers(1, T - 1), max_size=6))) if T > 1 else []
    bounds = [0, *cuts, T]
    return [b - a for a, b in itertools.pairwise(bounds)]


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(list(STREAMING_MODELS)), chunks=chunkings(), seed=st.integers(0, 2**16))
def test_any_chunking_streams_like_one_forward(name, chunks, seed):
    model = STREAMING_MODELS[name]
    idx = torch.randint(0, TINY["vocab_size"], (2, sum(chunks)), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        full, _ = model(idx)
        state, outs, pos = model.init_state(), [], 0
        for n in chunks:
            outs.append(model(idx[:, pos : pos + n], state=state)[0])
            pos += n
    assert (torch.cat(outs, 1) - full).abs().max() <= 1e-4
    assert state.position == idx.shape[1]


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(list(STREAMING_MODELS)), data=st.data(), seed=st.integers(0, 2**16))
def test_no_token_changes_an_earlier_logit(name, data, seed):
    T = data.draw(st.integers(2, TINY["block_size"]))
    t = data.draw(st.integers(0, T - 2))  # the last position whose logits must not move
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, TINY["vocab_size"], (2, T), generator=g)
    other = idx.clone()
    other[:, t + 1 :] = torch.randint(0, TINY["vocab_size"], (2, T - t - 1), generator=g)
    model = STREAMING_MODELS[name]
    with torch.no_grad():
        torch.testing.assert_close(model(other)[0][:, : t + 1], model(idx)[0][:, : t + 1])


@pytest.mark.parametrize("kernels_on", [True, False])
def test_no_model_path_runs_a_naive_reference(model, tiny, kernels_on, monkeypatch):
    """The naive references are for tests only: training, evaluation and streaming run with every one of them broken,
    and no library module holds one under another name."""
    naive = {}
    for name in ("leaky", "peek", "retrieval"):
        module = importlib.import_module(f"memory_mosaics.ops.{name}")
        for attr in [a for a in vars(module) if a.endswith("_naive")]:
            naive[id(getattr(module, attr))] = f"{name}.{attr}"
            monkeypatch.setattr(module, attr, lambda *a, attr=attr, **k: pytest.fail(f"the model ran {attr}"))
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("memory_mosaics.") and module_name.split(".")[1] != "ops":  # ops exports them
            held = [naive[id(v)] for v in vars(module).values() if id(v) in naive]
            assert not held, f"{module_name} imports {held}"
    idx = torch.randint(0, tiny["vocab_size"], (2, 12))
    with contextlib.nullcontext() if kernels_on else kernels.disabled():
        model.train()
        model(idx, idx)[1].backward()
        model.eval()
        with torch.no_grad():
            model(idx)
            state = model.init_state()
            model(idx[:, :5], state=state)
            model(idx[:, 5:6], state=state)


def test_a_streamed_gpt_token_runs_the_step_form(tiny, monkeypatch):
    gpt = importlib.import_module("memory_mosaics.models.gpt")
    m = GPT(GPTConfig(**tiny, pos="alibi")).eval()
    idx = torch.randint(0, tiny["vocab_size"], (2, 9))
    full, _ = m(idx)
    state = m.init_state()
    steps = [m(idx[:, :4], state=state)[0]]
    monkeypatch.setattr(gpt, "retrieval", lambda *a, **k: pytest.fail("a streamed token ran the parallel form"))
    steps += [m(idx[:, t : t + 1], state=state)[0] for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)


def test_mosaic_streams_beyond_its_training_length(tiny):
    m = MemoryMosaic(MosaicConfig(**tiny)).eval()
    idx = torch.randint(0, tiny["vocab_size"], (1, 4 * tiny["block_size"]))
    full, _ = m(idx)
    state = m.init_state()
    steps = [m(idx[:, :20], state=state)[0]] + [m(idx[:, t : t + 1], state=state)[0] for t in range(20, idx.shape[1])]
    assert (torch.cat(steps, 1) - full).abs().max() <= 1e-4


def test_learned_positions_refuse_a_longer_context(tiny):
    m = GPT(GPTConfig(**tiny, pos="learned"))
    with pytest.raises(ValueError, match="learned positions"):
        m(torch.zeros(1, tiny["block_size"] + 1, dtype=torch.long))
    state = m.init_state()
    m(torch.zeros(1, tiny["block_size"], dtype=torch.long), state=state)
    with pytest.raises(ValueError, match="learned positions"):
        m(torch.zeros(1, 1, dtype=torch.long), state=state)


def test_loss_ignores_minus_one_and_backpropagates(model, tiny):
    idx = torch.randint(0, tiny["vocab_size"], (2, 8))
    targets = idx.roll(-1, 1)
    targets[:, -1] = -1
    logits, loss = model(idx, targets)
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, tiny["vocab_size"]), targets[:, :-1].reshape(-1))
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert model.wte.weight.grad is not None and model.lm_head.weight is model.wte.weight


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MosaicConfig(n_embd=30, n_head=4), "divisible"),
        (lambda: GPTConfig(n_embd=30, n_head=4), "divisible"),
        (lambda: MosaicConfig(lookahead=0), "lookahead"),
        (lambda: MosaicConfig(persistent="ffn"), "persistent"),
        (lambda: MosaicConfig(pmem_size=0), "pmem_size"),
        (lambda: GPTConfig(pos="sinusoid"), "pos"),
        (lambda: GPTConfig(n_embd=12, n_head=4, pos="rope"), "even"),
        (lambda: MosaicConfig(dropout=1.0), "dropout"),
        (lambda: MosaicConfig(n_layer=0), "n_layer"),
        (lambda: MosaicConfig(logit_scale=0.0), "logit_scale"),
        (lambda: GPTConfig(init="xavier"), "init"),
    ],
)
def test_bad_configurations_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("shape", [(5,), (2, 0)], ids=["one-dimensional", "no-tokens"])
@pytest.mark.parametrize("kind", ["mosaic", "gpt"])
def test_bad_input_shape(tiny, kind, shape):
    m = MemoryMosaic(MosaicConfig(**tiny)) if kind == "mosaic" else GPT(GPTConfig(**tiny))
    with pytest.raises(ValueError, match="batch, time"):
        m(torch.zeros(shape, dtype=torch.long))


def test_accounting(tiny):
    m = MemoryMosaic(MosaicConfig(**tiny))
    g = GPT(GPTConfig(**tiny))
    assert m.num_params(non_embedding=False) - m.num_params() == tiny["vocab_size"] * tiny["n_embd"]
    assert g.num_params(non_embedding=False) - g.num_params() == (tiny["vocab_size"] + 32) * tiny["n_embd"]
    for model in (m, g):
        f512, f1024 = model.flops_per_token(512), model.flops_per_token(1024)
        assert f1024 - f512 == 12 * tiny["n_layer"] * tiny["n_embd"] * 512  # attention grows with the context
        assert f512 > 6 * model.num_params()


def test_optimizer_groups(tiny):
    m = MemoryMosaic(MosaicConfig(**tiny))
    opt = m.configure_optimizers(weight_decay=0.1, learning_rate=1e-3)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert any(p is m.blocks[0].persistent.P_k for p in decay["params"])
    assert any(p is m.blocks[0].contextual.key.leaky_key_beta for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == m.num_params(non_embedding=False)


@pytest.mark.parametrize("make", [MemoryMosaic, GPT])
def test_logit_scale_multiplies_the_logits(make, tiny):
    cfg = MosaicConfig if make is MemoryMosaic else GPTConfig
    torch.manual_seed(0)
    plain = make(cfg(**tiny)).eval()
    scaled = make(cfg(**tiny, logit_scale=0.25)).eval()
    scaled.load_state_dict(plain.state_dict())
    idx = torch.randint(0, tiny["vocab_size"], (2, 11))
    torch.testing.assert_close(scaled(idx)[0], 0.25 * plain(idx)[0])


def test_library_init_follows_the_authors_fan_in_rule():
    """The authors' Library: Linear N(0, 1/fan_in), residual projections N(0, 1/(fan_in·L)), the tied embedding takes
    the head's N(0, 1/d); GPT-2's rule is N(0, 0.02) everywhere."""
    torch.manual_seed(0)
    d, L = 256, 4
    m = MemoryMosaic(MosaicConfig(vocab_size=4000, n_layer=L, n_head=8, n_embd=d, init="library"))
    block = m.blocks[0]
    assert abs(block.contextual.key.W_k.weight.std().item() - d**-0.5) < 0.05 * d**-0.5
    assert abs(block.contextual.c_proj.weight.std().item() - (d * L) ** -0.5) < 0.05 * (d * L) ** -0.5
    assert abs(m.wte.weight.std().item() - d**-0.5) < 0.05 * d**-0.5
    assert m.lm_head.weight is m.wte.weight
    g = GPT(GPTConfig(vocab_size=4000, n_layer=L, n_head=8, n_embd=d))
    assert abs(g.blocks[0].mlp.c_fc.weight.std().item() - 0.02) < 0.001
