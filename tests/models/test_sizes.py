"""Bodies matched by the width knob."""

import pytest

from memory_mosaics.models import build_model
from memory_mosaics.models.sizes import WIDTH_FIELD, body_params, build_any, match_body

FIELDS = dict(vocab_size=50, block_size=64, n_layer=2, n_head=4, n_embd=32)


def test_the_body_leaves_out_the_vocabulary_and_the_positions():
    gpt = build_model("gpt", **FIELDS, pos="learned")
    assert body_params(gpt) == gpt.num_params(non_embedding=True)  # tied head counted once, positions out
    lstm = build_any("lstm", {**FIELDS, "hidden": 32})
    assert body_params(lstm) == sum(p.numel() for p in lstm.lstm.parameters()) + 2 * 32  # + final LayerNorm


@pytest.mark.parametrize("arch", sorted(WIDTH_FIELD))
def test_match_body_solves_the_width_knob(arch):
    if arch in ("mamba", "rwkv"):
        pytest.importorskip("transformers")
    target = body_params(build_model("mosaic", **FIELDS))
    fields = match_body(arch, FIELDS, target)
    knob = WIDTH_FIELD[arch]
    body = body_params(build_any(arch, fields))
    assert abs(body - target) / target < 0.02
    for other in (fields[knob] - 1, fields[knob] + 1):  # no other width is closer
        assert abs(body_params(build_any(arch, {**fields, knob: other})) - target) >= abs(body - target)
    assert match_body("mosaic", FIELDS, target) == FIELDS  # no knob: unchanged
