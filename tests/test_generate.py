import pytest
import torch

from memory_mosaics.generate import beam_search, check_sampling, generate, sample_next
from memory_mosaics.models import GPT, GPTConfig, MemoryMosaic, MosaicConfig, build_model

SHAPE = dict(vocab_size=40, block_size=12, n_layer=2, n_head=2, n_embd=16)


def _models():
    return {
        "mosaic": MemoryMosaic(MosaicConfig(**SHAPE)).eval(),
        "gpt-learned": GPT(GPTConfig(**SHAPE)).eval(),
        "gpt-rope": GPT(GPTConfig(**SHAPE, pos="rope")).eval(),
    }


@pytest.fixture(params=list(_models()))
def model(request):
    return _models()[request.param]


def _logits_of(model, tokens):
    """Next-token log-probabilities by a full forward (cropped to the window of learned positions)."""
    if model.max_context is not None:
        tokens = tokens[:, -model.max_context :]
    with torch.no_grad():
        return model(tokens)[0][:, -1].log_softmax(-1)


def test_greedy_streaming_equals_recomputing_everything(model):
    prompt = torch.randint(0, 40, (3, 5))
    out = generate(model, prompt, 20, greedy=True)  # 25 tokens: past the GPT's 12 learned positions
    ref = prompt
    for _ in range(20):
        ref = torch.cat([ref, _logits_of(model, ref).argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ref)


def test_sampling_is_reproducible_with_a_seed(model):
    prompt = torch.randint(0, 40, (2, 4))
    a = generate(model, prompt, 10, temperature=0.9, top_k=10, top_p=0.9, seed=3)
    b = generate(model, prompt, 10, temperature=0.9, top_k=10, top_p=0.9, seed=3)
    assert torch.equal(a, b) and a.shape == (2, 14)


def test_filters():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    assert sample_next(logits, temperature=0.0).item() == 1
    g = torch.Generator().manual_seed(0)
    assert {sample_next(logits, top_k=1, generator=g).item() for _ in range(20)} == {1}
    assert {sample_next(logits, top_p=0.01, generator=g).item() for _ in range(20)} == {1}
    seen = {sample_next(logits, top_k=2, generator=g).item() for _ in range(200)}
    assert seen == {1, 3}
    probs = logits.softmax(-1)[0]  # mass of token 1 alone is 0.64 < 0.7: nucleus keeps {1, 3}
    assert probs[1] < 0.7 < probs[1] + probs[3]
    assert {sample_next(logits, top_p=0.7, generator=g).item() for _ in range(200)} == {1, 3}


def test_eos_stops_and_pads():
    m = _models()["mosaic"]
    prompt = torch.randint(0, 40, (1, 3))
    first = generate(m, prompt, 1, greedy=True)[0, -1].item()
    out = generate(m, prompt, 10, greedy=True, eos_token=first)
    assert out.shape == (1, 4) and out[0, -1].item() == first


def _brute_force_beam(model, prompt, steps, width):
    beams = [(0.0, prompt)]
    for _ in range(steps):
        cands = []
        for score, seq in beams:
            logp = _logits_of(model, seq[None])[0]
            cands += [(score + logp[t].item(), torch.cat([seq, torch.tensor([t])])) for t in range(logp.shape[0])]
        beams = sorted(cands, key=lambda c: -c[0])[:width]
    return beams[0][1]


def test_beam_search_matches_brute_force(model):
    prompts = torch.randint(0, 40, (2, 4))
    out = beam_search(model, prompts, 6, num_beams=2)
    for b in range(2):
        assert torch.equal(out[b], _brute_force_beam(model, prompts[b], 6, 2))


def test_beam_of_width_one_is_greedy(model):
    prompt = torch.randint(0, 40, (2, 4))
    assert torch.equal(beam_search(model, prompt, 8, num_beams=1), generate(model, prompt, 8, greedy=True))


def test_empty_prompt_is_refused(model):
    with pytest.raises(ValueError, match="non-empty"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 3)


@pytest.mark.parametrize(
    "settings, match",
    [
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
    ],
)
def test_meaningless_sampling_settings_are_refused(settings, match):
    with pytest.raises(ValueError, match=match):
        check_sampling(**{"temperature": 1.0, **settings})
    with pytest.raises(ValueError, match=match):
        sample_next(torch.zeros(1, 4), **settings)
    m = _models()["mosaic"]
    with pytest.raises(ValueError, match=match):
        generate(m, torch.zeros(1, 3, dtype=torch.long), 2, **settings)


def test_prompt_outside_the_vocabulary_is_refused(model):
    for bad in (SHAPE["vocab_size"], -1):
        with pytest.raises(ValueError, match=f"token id {bad} is outside"):
            generate(model, torch.tensor([[1, bad, 2]]), 2)
        with pytest.raises(ValueError, match=f"token id {bad} is outside"):
            beam_search(model, torch.tensor([[1, bad, 2]]), 2)


def test_token_counts(model):
    prompt = torch.randint(0, 40, (2, 3))
    assert torch.equal(generate(model, prompt, 0), prompt)
    assert torch.equal(beam_search(model, prompt, 0), prompt)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, prompt, -1)
    with pytest.raises(ValueError, match="num_beams"):
        beam_search(model, prompt, 3, num_beams=0)


def test_rows_that_end_leave_the_stream_of_a_document_masked_model() -> None:
    """A model that reads each document alone cannot stream rows whose documents end at different steps: rows that
    produced the end-of-text leave the stream, and each row continues as it does alone."""
    torch.manual_seed(4)
    model = build_model(
        "mosaic2", vocab_size=4, block_size=32, n_layer=1, n_head=2, n_embd=16, short_window=6, long_delay=3,
        doc_token=0,
    ).eval()  # fmt: skip
    prompts = torch.randint(1, 4, (6, 5), generator=torch.Generator().manual_seed(4))
    out = generate(model, prompts, 20, greedy=True, eos_token=0)
    ends = {int((row == 0).nonzero()[0]) for row in out[:, 5:] if (row == 0).any()}
    assert len(ends) >= 3  # rows end at several steps (and one does not end)
    for row, prompt in zip(out, prompts, strict=True):
        alone = generate(model, prompt[None], 20, greedy=True, eos_token=0)[0]
        assert torch.equal(row[: len(alone)], alone) and (row[len(alone) :] == 0).all()
