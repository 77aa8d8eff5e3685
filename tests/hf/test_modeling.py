"""The transformers wrappers: same logits as ours, generate() = memory_mosaics.generate, left padding exact."""

import json

import pytest
import torch

pytest.importorskip("transformers")

from transformers import AutoModelForCausalLM, AutoTokenizer

import memory_mosaics.hf  # noqa: F401  (registers the Auto classes)
from memory_mosaics import checkpoints
from memory_mosaics.data.tokenizer import BPETokenizer
from memory_mosaics.generate import beam_search, generate
from memory_mosaics.hf import MosaicCache
from memory_mosaics.models import build_model

ARCHS = ["mosaic", "mosaic2", "gpt", "llama"]
V = 64


def tiny(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(arch, vocab_size=V, n_layer=1, n_embd=32, n_head=4, block_size=64).eval()


@pytest.fixture(scope="module", params=ARCHS)
def pair(request, tmp_path_factory):
    ours = tiny(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    ours.save_pretrained(folder)
    hf = AutoModelForCausalLM.from_pretrained(folder)
    hf.generation_config.pad_token_id = 0
    return ours, hf


def recompute_greedy(ours, idx: torch.Tensor, n: int) -> torch.Tensor:
    for _ in range(n):
        idx = torch.cat([idx, ours(idx)[0][:, -1].argmax(-1, keepdim=True)], 1)
    return idx


def test_folder_is_both(pair):
    ours, hf = pair
    assert type(hf).__name__.endswith("ForCausalLM") and hf.model.model_type == ours.model_type
    for name, p in ours.state_dict().items():
        assert torch.equal(p, hf.model.state_dict()[name]), name


def test_logits_equal(pair):
    ours, hf = pair
    x = torch.randint(1, V, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, ours(x)[0], rtol=0, atol=1e-5)
        out = hf(x, labels=x)
        ref = torch.nn.functional.cross_entropy(ours(x)[0][:, :-1].reshape(-1, V), x[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, ref)


def test_greedy_and_sampling_match_ours(pair):
    ours, hf = pair
    x = torch.randint(1, V, (2, 5))
    greedy = hf.generate(x, max_new_tokens=8, do_sample=False)
    assert torch.equal(greedy, generate(ours, x, 8, greedy=True))
    assert torch.equal(greedy, recompute_greedy(ours, x, 8))
    torch.manual_seed(7)
    sampled = hf.generate(x, max_new_tokens=8, do_sample=True, top_k=None, top_p=None, temperature=1.0)
    assert torch.equal(sampled, generate(ours, x, 8, seed=7))  # a fresh generator seeded 7 = the default one


def test_sampling_uses_the_seed(pair):
    ours, hf = pair
    x = torch.randint(1, V, (1, 4))
    torch.manual_seed(3)
    a = hf.generate(x, max_new_tokens=12, do_sample=True, top_k=None, top_p=None)
    assert torch.equal(a, generate(ours, x, 12, seed=3))


def test_beam_search_width_2(pair):
    ours, hf = pair
    x = torch.randint(1, V, (2, 4))
    out = hf.generate(x, max_new_tokens=6, num_beams=2, do_sample=False, length_penalty=1.0, early_stopping=False)
    assert torch.equal(out, beam_search(ours, x, 6, num_beams=2))


def test_left_padding_equals_each_row_alone(pair):
    ours, hf = pair
    rows = [torch.randint(1, V, (n,)) for n in (3, 6, 6, 1)]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :], mask[i, width - len(r) :] = r, 1
    out = hf.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    for i, r in enumerate(rows):
        assert torch.equal(out[i, width:], generate(ours, r[None], 5, greedy=True)[0, len(r) :]), i
    with torch.no_grad():  # and the logits of the real positions, without a cache
        logits = hf(ids, attention_mask=mask, use_cache=False).logits
        for i, r in enumerate(rows):
            torch.testing.assert_close(logits[i, width - len(r) :], ours(r[None])[0][0], rtol=0, atol=1e-5)


def test_padding_never_stored(pair):
    """A padded row's memory holds what the row alone would hold: the pad tokens' values do not matter."""
    _, hf = pair
    ids = torch.tensor([[5, 5, 5, 9, 8, 7], [1, 2, 3, 4, 5, 6]])
    other = ids.clone()
    other[0, :3] = torch.tensor([60, 61, 62])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [1] * 6])
    a = hf.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    b = hf.generate(other, attention_mask=mask, max_new_tokens=6, do_sample=False)
    assert torch.equal(a[:, 6:], b[:, 6:])
    with pytest.raises(ValueError, match="left padding"):
        hf(ids, attention_mask=torch.tensor([[1, 0, 1, 1, 1, 1], [1] * 6]))


def test_cache_reorder_across_groups(pair):
    """Beams reorder rows; a row moved from one padding group to another keeps its own memory."""
    ours, hf = pair
    ids = torch.tensor([[0, 0, 7, 8], [1, 2, 3, 4]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    with torch.no_grad():
        out = hf(ids, attention_mask=mask, use_cache=True)
        cache = out.cache
        assert isinstance(cache, MosaicCache) and len(cache.groups) == 2
        cache.reorder_cache(torch.tensor([1, 0, 0]))
        step = hf(torch.tensor([[9], [9], [9]]), cache=cache).logits[:, -1]
    alone = [ours(torch.tensor([r]))[0][0, -1] for r in ([1, 2, 3, 4, 9], [7, 8, 9], [7, 8, 9])]
    torch.testing.assert_close(step, torch.stack(alone), rtol=0, atol=1e-5)


def test_config_json_is_ours_and_hf(tmp_path):
    model = tiny("llama")
    model.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["model_type"] == "memory_mosaics_llama" and meta["arch"] == "llama"
    assert checkpoints.read_config(tmp_path)[0] == "llama"
    hf = AutoModelForCausalLM.from_pretrained(tmp_path)
    hf.save_pretrained(tmp_path / "again")
    back = checkpoints.load_pretrained(tmp_path / "again")
    for name, p in model.state_dict().items():
        assert torch.equal(p, back.state_dict()[name])


def test_training_checkpoint_has_tokenizer_and_card(tmp_path):
    tok = BPETokenizer.train(["the cat sat on the mat. " * 20, "a dog ran. " * 20], 300, show_progress=False)
    tok.save(tmp_path / "tokenizer.json")
    model = tiny("mosaic")
    meta = {"tokenizer": tok.to_meta(), "splits": {"train": {"tokens": 100, "sources": ["toy.txt"]}}}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.jsonl").write_text(json.dumps({"step": 3, "val_loss": 2.5}) + "\n")
    ckpt = checkpoints.save_training(tmp_path / "run", 3, model, {"tokens": 12}, meta, 2, print, tmp_path)
    checkpoints.verify(ckpt)
    hf_tok = AutoTokenizer.from_pretrained(ckpt)
    text = "the cat ran"
    assert hf_tok(text)["input_ids"] == tok.encode(text)
    assert hf_tok.decode(tok.encode(text)) == text and hf_tok.eos_token_id == tok.eot_id
    card = (ckpt / "README.md").read_text()
    assert "2.5000 at step 3" in card and "toy.txt" in card and "1 blocks, d 32" in card
    hf = AutoModelForCausalLM.from_pretrained(ckpt)
    assert hf.generation_config.eos_token_id == tok.eot_id


def test_stopping_at_eos_and_by_criteria(pair):
    from transformers import StoppingCriteria, StoppingCriteriaList

    ours, hf = pair
    x = torch.randint(1, V, (3, 4))
    free = generate(ours, x, 10, greedy=True)
    eos = int(free[0, 6])  # a token row 0 produces: it stops there
    out = hf.generate(x, max_new_tokens=10, do_sample=False, eos_token_id=eos, pad_token_id=eos)
    ref = generate(ours, x, 10, greedy=True, eos_token=eos)
    assert torch.equal(out, ref[:, : out.shape[1]]) and bool((ref[:, out.shape[1] :] == eos).all())

    class AfterThree(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), input_ids.shape[1] >= 7, dtype=torch.bool)

    out = hf.generate(x, max_new_tokens=10, do_sample=False, stopping_criteria=StoppingCriteriaList([AfterThree()]))
    assert torch.equal(out, free[:, :7])
