"""Checkpoints written under the module names of version 0.1 (a block's ``attn`` and ``mlp``) still load."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import memory_mosaics
from memory_mosaics.models import MemoryMosaic
from memory_mosaics.models.legacy import upgrade_state_dict
from memory_mosaics.ops import kernels

FIXTURES = Path(__file__).parent / "fixtures"
KINDS = ["mosaic_v0_1", "mosaic_v0_1_mlp", "mosaic_v0_1_none"]


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("load", [memory_mosaics.load_pretrained, MemoryMosaic.from_pretrained])
def test_a_v0_1_checkpoint_gives_the_logits_it_gave(name, load):
    """On the fused CPU kernels (where they are built) and on the eager forms, each against what the same path gave in
    version 0.1: to float32 rounding, not bit for bit, since another CPU takes other vector paths in MKL and oneDNN
    (CI's did); a wrong name or a lost tensor moves logits by 1e-2 and more."""
    folder = FIXTURES / name
    assert any(".attn." in k for k in load_file(str(folder / "model.safetensors")))  # the fixture holds the old names
    model = load(folder).eval()
    assert not any(".attn." in k or ".mlp." in k for k in model.state_dict())
    saved = json.loads((folder / "logits.json").read_text())
    idx = torch.tensor(saved["idx"])
    with torch.no_grad():
        if kernels.extension() is not None:
            torch.testing.assert_close(model(idx)[0], torch.tensor(saved["logits"]), rtol=1e-5, atol=1e-6)
        with kernels.disabled():
            torch.testing.assert_close(model(idx)[0], torch.tensor(saved["logits_eager"]), rtol=1e-5, atol=1e-6)


def test_upgrade_renames_a_mosaic_block_and_nothing_else():
    t = torch.zeros(1)
    old = {
        "wte.weight": t,
        "blocks.0.attn.key.W_k.weight": t,
        "blocks.11.mlp.P_k": t,
        "blocks.1.mlp.c_proj.bias": t,
        "blocks.2.contextual.attn.x": t,  # only a block's own sub-module is renamed
    }
    assert list(upgrade_state_dict("mosaic", old)) == [
        "wte.weight",
        "blocks.0.contextual.key.W_k.weight",
        "blocks.11.persistent.P_k",
        "blocks.1.persistent.c_proj.bias",
        "blocks.2.contextual.attn.x",
    ]
    new = upgrade_state_dict("mosaic", old)
    assert upgrade_state_dict("mosaic", new) == new  # today's names are left alone
    gpt = {"blocks.0.attn.c_attn.weight": t, "blocks.0.mlp.c_fc.weight": t}  # a GPT block keeps attn and mlp
    assert upgrade_state_dict("gpt", gpt) == gpt
