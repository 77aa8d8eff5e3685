import json

import pytest
import torch

from memory_mosaics import GPT, GPTConfig, MemoryMosaic, MosaicConfig, load_pretrained


@pytest.fixture
def tiny():
    return dict(vocab_size=61, block_size=32, n_layer=2, n_head=4, n_embd=32)


@pytest.mark.parametrize("kind", ["mosaic", "gpt-rope"])
def test_save_and_load_round_trip(tmp_path, kind, tiny):
    model = (
        MemoryMosaic(MosaicConfig(**tiny, logit_scale=0.5, init="library"))
        if kind == "mosaic"
        else GPT(GPTConfig(**tiny, pos="rope"))
    )
    model.save_pretrained(tmp_path / "ck")
    loaded = load_pretrained(tmp_path / "ck")
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.lm_head.weight is loaded.wte.weight
    idx = torch.randint(0, tiny["vocab_size"], (2, 9))
    torch.testing.assert_close(loaded.eval()(idx)[0], model.eval()(idx)[0], rtol=0, atol=0)
    assert not list((tmp_path / "ck").glob("*.tmp"))


def test_load_errors_name_the_problem(tmp_path, tiny):
    MemoryMosaic(MosaicConfig(**tiny)).save_pretrained(tmp_path / "ck")
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        MemoryMosaic.from_pretrained(tmp_path / "ck", vocab_size=50257)
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        MemoryMosaic.from_pretrained(tmp_path / "ck", vocab_size=tiny["vocab_size"] + 1)
    MemoryMosaic.from_pretrained(tmp_path / "ck", vocab_size=tiny["vocab_size"] - 5)  # a padded embedding is fine
    with pytest.raises(ValueError, match="not a 'gpt' model"):
        GPT.from_pretrained(tmp_path / "ck")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_pretrained(tmp_path / "nowhere")
    # a config that disagrees with the weights
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    meta["config"]["vocab_size"] = 99
    (tmp_path / "ck" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        load_pretrained(tmp_path / "ck")


def test_saving_onto_a_file_is_refused_and_keeps_it(tmp_path, tiny):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(NotADirectoryError, match="it is a file"):
        MemoryMosaic(MosaicConfig(**tiny)).save_pretrained(target)
    assert target.read_text() == "mine"


def test_truncated_weights_are_refused(tmp_path, tiny):
    MemoryMosaic(MosaicConfig(**tiny)).save_pretrained(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        load_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json"):
        load_pretrained(tmp_path / "ck")
