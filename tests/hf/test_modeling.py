"""The transformers wrappers: same logits as ours, generate() = memory_mosaics.generate, left padding exact."""

import dataclasses
import json
import re

import pytest
import torch

pytest.importorskip("transformers")

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

import memory_mosaics.hf  # noqa: F401  (registers the Auto classes)
from memory_mosaics import checkpoints
from memory_mosaics.data.tokenizer import BPETokenizer
from memory_mosaics.generate import beam_search, generate
from memory_mosaics.hf import HF_CLASSES, MosaicCache
from memory_mosaics.models import build_model
from memory_mosaics.state import LayerState, ModelState, PairStore

ARCHS = ["mosaic", "mosaic2", "gpt", "llama"]
V = 64


def tiny(arch: str) -> torch.nn.Module:
    """A one-block model whose next token depends on the whole context: the matrices drawn at std 0.3, not GPT-2's
    0.02 (at which the last token alone decides the logits, so a wrong memory or a beam given another beam's state
    would go unseen)."""
    torch.manual_seed(0)
    model = build_model(arch, vocab_size=V, n_layer=1, n_embd=32, n_head=4, block_size=64).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    return model


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


def lengths_read(hf) -> list[int]:
    """Records the number of positions of each call of the library model under ``hf`` (a forward pre-hook)."""
    seen: list[int] = []
    hf.model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    return seen


def row_of(state: ModelState, r: int) -> dict:
    """Everything row ``r`` of a streaming state holds, by name: each tensor's row, each pair store's length and rows,
    the positions (the per-parameter caches are not per row)."""
    out: dict = {"position": state.position}

    def walk(obj, name: str) -> None:
        if isinstance(obj, torch.Tensor):
            out[name] = obj[r]
        elif isinstance(obj, PairStore):
            out[name + ".length"] = obj.length
            out[name] = None if obj.data is None else obj.data[r]
        elif isinstance(obj, LayerState):
            for f in dataclasses.fields(obj):
                walk(getattr(obj, f.name), f"{name}.{f.name}")
        elif isinstance(obj, list | tuple):
            for i, x in enumerate(obj):
                walk(x, f"{name}.{i}")
        elif isinstance(obj, int | float | bool) or obj is None:
            out[name] = obj

    for i, layer in enumerate(state.layers):
        walk(layer, f"layers.{i}")
    return out


def padded(rows: list[torch.Tensor], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :], mask[i, width - len(r) :] = r, 1
    return ids, mask


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


def test_cache_free_recomputation_gives_the_same_tokens(pair):
    """generate(use_cache=False) re-reads the whole sequence at every step (a full forward, no state): the streamed
    tokens equal it, greedy and seeded sampling, and it really does re-read what the cached run does not."""
    _, hf = pair
    x = torch.randint(1, V, (2, 5))
    seen = lengths_read(hf)
    cached = hf.generate(x, max_new_tokens=8, do_sample=False)
    assert seen == [5] + [1] * 7
    seen.clear()
    assert torch.equal(cached, hf.generate(x, max_new_tokens=8, do_sample=False, use_cache=False))
    assert seen == list(range(5, 13))
    kw = {"max_new_tokens": 8, "do_sample": True, "top_k": None, "top_p": None}
    torch.manual_seed(11)
    sampled = hf.generate(x, **kw)
    torch.manual_seed(11)
    assert torch.equal(sampled, hf.generate(x, use_cache=False, **kw))


def test_max_new_tokens(pair):
    _, hf = pair
    x = torch.randint(1, V, (2, 5))
    for n in (1, 3):
        assert hf.generate(x, max_new_tokens=n, do_sample=False).shape == (2, 5 + n)
        assert hf.generate(x, max_new_tokens=n, num_beams=2, do_sample=False).shape == (2, 5 + n)


def test_sampling_uses_the_seed(pair):
    ours, hf = pair
    x = torch.randint(1, V, (1, 4))
    torch.manual_seed(3)
    a = hf.generate(x, max_new_tokens=12, do_sample=True, top_k=None, top_p=None)
    assert torch.equal(a, generate(ours, x, 12, seed=3))
    torch.manual_seed(4)  # transformers' temperature, top-k and top-p processors are ours
    a = hf.generate(x, max_new_tokens=12, do_sample=True, temperature=1.3, top_k=20, top_p=0.8)
    assert torch.equal(a, generate(ours, x, 12, seed=4, temperature=1.3, top_k=20, top_p=0.8))


def test_beam_search_width_2(pair):
    ours, hf = pair
    torch.manual_seed(2)  # prompts whose beams swap in a way a cache not reordered would miss (checked, every arch)
    x = torch.randint(1, V, (3, 4))
    out = hf.generate(x, max_new_tokens=6, num_beams=2, do_sample=False, length_penalty=1.0, early_stopping=False)
    assert torch.equal(out, beam_search(ours, x, 6, num_beams=2))


def test_left_padding_equals_each_row_alone(pair):
    ours, hf = pair
    rows = [torch.randint(1, V, (n,)) for n in (3, 6, 6, 1)]
    ids, mask = padded(rows)
    width = ids.shape[1]
    seen = lengths_read(hf)
    out = hf.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    assert sorted(seen[:3]) == [1, 3, 6] and seen[3:] == [1] * 12  # the prompt per group; then one token per group
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


def test_padded_positions_are_never_stored(pair):
    """Inspect the state after a left-padded prompt: each row holds exactly what it holds when it is read alone (the
    same number of stored pairs, the same keys, values and recurrent states), whatever the pad tokens are."""
    ours, hf = pair
    rows = [torch.randint(1, V, (n,)) for n in (2, 5, 5, 1)]
    for pad in (0, 63):
        ids, mask = padded(rows, pad)
        with torch.no_grad():
            cache = hf(ids, attention_mask=mask, use_cache=True).cache
        assert isinstance(cache, MosaicCache) and cache.seen == ids.shape[1] and len(cache.groups) == 3
        for i, r in enumerate(rows):
            (group,) = [(g, state) for g, state in cache.groups if i in g.tolist()]
            local = group[0].tolist().index(i)
            alone = ours.init_state()
            with torch.no_grad():
                ours(r[None], state=alone)
            got, want = row_of(group[1], local), row_of(alone, 0)
            assert got.keys() == want.keys() and got["position"] == len(r)
            stores = [k for k in want if k.endswith(".length")]
            assert stores and all(got[k] == want[k] for k in stores), (i, {k: (got[k], want[k]) for k in stores})
            for k, v in want.items():
                if isinstance(v, torch.Tensor):
                    torch.testing.assert_close(got[k], v, rtol=0, atol=1e-5, msg=f"row {i}: {k}")


def test_beam_search_with_left_padding(pair):
    """Beam search over a left-padded batch: generate() reorders the cache at every step, moving rows between padding
    groups; each row's result equals our beam search of that row alone."""
    ours, hf = pair
    rows = [torch.randint(1, V, (n,)) for n in (2, 5, 4)]
    ids, mask = padded(rows)
    reorders = []
    hf_reorder = MosaicCache.reorder_cache

    def spy(cache, beam_idx):
        reorders.append(beam_idx.tolist())
        return hf_reorder(cache, beam_idx)

    MosaicCache.reorder_cache = spy
    try:
        out = hf.generate(
            ids, attention_mask=mask, max_new_tokens=6, num_beams=2, do_sample=False, early_stopping=False
        )
    finally:
        MosaicCache.reorder_cache = hf_reorder
    assert any(idx != sorted(idx) or len(set(idx)) < len(idx) for idx in reorders[1:])  # beams did move
    for i, r in enumerate(rows):
        want = beam_search(ours, r[None], 6, num_beams=2)[0, len(r) :]
        assert torch.equal(out[i, ids.shape[1] :], want), i


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


@pytest.mark.parametrize("arch", ARCHS)
def test_auto_classes_registered(arch, tmp_path):
    tiny(arch).save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is HF_CLASSES[arch].config_class and config.model_type == checkpoints.HF_MODEL_TYPES[arch][0]
    assert type(AutoModelForCausalLM.from_config(config)) is HF_CLASSES[arch]
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (V, 32, 1)


def test_bad_folders_are_refused_clearly(tmp_path):
    """A wrong path, a file, a folder without a model, a model without weights, another architecture: each says so.
    (AutoModelForCausalLM reads config.json through AutoConfig before our code runs: its errors are transformers'.)"""
    missing = tmp_path / "no-such-folder"
    with pytest.raises(OSError, match=re.escape(str(missing))):
        AutoModelForCausalLM.from_pretrained(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(f"model folder {missing} does not exist")):
        HF_CLASSES["mosaic"].from_pretrained(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"has no config\.json"):
        HF_CLASSES["mosaic"].from_pretrained(tmp_path / "empty")
    tiny("mosaic").save_pretrained(tmp_path / "m")
    with pytest.raises(NotADirectoryError, match="is a file"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "m" / "config.json")
    with pytest.raises(ValueError, match="holds a 'mosaic' model, not a 'mosaic2' one"):
        HF_CLASSES["mosaic2"].from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights file"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "m")


@pytest.mark.parametrize("arch", ARCHS)
def test_config_json_is_ours_and_hf(tmp_path, arch):
    model = tiny(arch)
    model.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["model_type"] == checkpoints.HF_MODEL_TYPES[arch][0] and meta["arch"] == arch
    assert checkpoints.read_config(tmp_path)[0] == arch
    hf = AutoModelForCausalLM.from_pretrained(tmp_path)
    hf.save_pretrained(tmp_path / "again")
    with pytest.raises(ValueError, match="upload_folder"):
        hf.save_pretrained(tmp_path / "hub", push_to_hub=True)
    back = checkpoints.load_pretrained(tmp_path / "again")
    for name, p in model.state_dict().items():
        assert torch.equal(p, back.state_dict()[name])
    for folder in (tmp_path, tmp_path / "again"):  # a model card in every saved folder, training or not
        card = (folder / "README.md").read_text()
        assert f"{arch}: 1 blocks, d 32, 4 heads, vocab 64" in card
        assert f"| parameters | {model.num_params(non_embedding=False):,} (" in card


def test_import_without_transformers_says_what_to_install(monkeypatch):
    import importlib
    import sys

    for name in [m for m in sys.modules if m == "memory_mosaics.hf" or m.startswith("memory_mosaics.hf.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "transformers", None)  # what an install without the extra looks like
    with pytest.raises(ImportError, match=re.escape("pip install 'memory-mosaics[hf]'")):
        importlib.import_module("memory_mosaics.hf")


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
