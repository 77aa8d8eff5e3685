"""The compressed-state baselines: causal language models, shared options applied or dropped, saved and loaded."""

import sys

import pytest
import torch

from memory_mosaics.models.recurrent import LSTMLM, RECURRENT, LSTMConfig, build_recurrent, recurrent_config

SHARED = dict(vocab_size=20, block_size=64, n_layer=2, n_head=4, n_embd=16, dropout=0.0, bias=False, pos="learned")


def test_lstm_is_a_causal_language_model():
    model = LSTMLM(LSTMConfig(vocab_size=20, n_layer=2, n_embd=16, hidden=24))
    x = torch.randint(0, 20, (2, 12))
    logits, loss = model(x, x)
    assert logits.shape == (2, 12, 20) and loss is not None and model.lm_head.weight is model.wte.weight
    y = x.clone()
    y[:, 8:] = (y[:, 8:] + 1) % 20
    assert torch.allclose(model(y)[0][:, :8], logits[:, :8])  # the future does not change the past
    assert not torch.allclose(model(y)[0][:, 8:], logits[:, 8:])
    with pytest.raises(NotImplementedError):
        model.init_state()


def _available(arch: str) -> str:
    if arch != "lstm":
        pytest.importorskip("transformers")
    return arch


@pytest.mark.parametrize("arch", list(RECURRENT))
def test_shared_options_are_applied_or_dropped(arch):
    _available(arch)
    config = recurrent_config(arch, **SHARED, init="library", logit_scale=0.25)
    assert not hasattr(config, "n_head") and not hasattr(config, "pos") and not hasattr(config, "bias")
    assert (config.init, config.logit_scale) == ("library", 0.25)
    model = build_recurrent(arch, **SHARED, init="library")
    assert model.model_type == arch and model.lm_head.weight is model.wte.weight
    assert abs(model.wte.weight.std().item() - 16**-0.5) < 0.05  # the library's N(0, 1/d) embedding


def test_the_lstm_drops_out_between_its_layers_only():
    assert build_recurrent("lstm", **{**SHARED, "dropout": 0.1}).lstm.dropout == 0.1
    assert build_recurrent("lstm", **{**SHARED, "dropout": 0.1, "n_layer": 1}).lstm.dropout == 0.0


@pytest.mark.parametrize(
    "arch, fields, message",
    [
        ("rwkv", {"n_layer": 1}, "rwkv needs n_layer >= 2"),
        ("lstm", {"init": "xavier"}, "init must be one of"),
        ("mamba", {"logit_scale": 0.0}, "logit_scale must be > 0"),
        ("gru", {}, "unknown recurrent architecture 'gru'"),
    ],
)
def test_configs_that_cannot_work_are_refused(arch, fields, message):
    with pytest.raises(ValueError, match=message):
        recurrent_config(arch, **{**SHARED, **fields})


def test_hf_baselines_explain_a_missing_transformers(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    with pytest.raises(ImportError, match="pip install transformers"):
        build_recurrent("rwkv", **SHARED)


@pytest.mark.parametrize("arch", list(RECURRENT))
def test_saved_and_loaded(arch, tmp_path):
    _available(arch)
    model = build_recurrent(arch, **SHARED).eval()
    model.save_pretrained(tmp_path)
    loaded = RECURRENT[arch].from_pretrained(tmp_path).eval()
    x = torch.randint(0, 20, (1, 10))
    assert loaded.config == model.config and torch.equal(loaded(x)[0], model(x)[0])
    assert f"{type(model).__name__}.from_pretrained" in (tmp_path / "README.md").read_text()
