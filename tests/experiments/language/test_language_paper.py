"""``mosaic paper ...`` on tiny models and tiny data: shapes of the outputs and files written, not the science."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from memory_mosaics.cli import main
from memory_mosaics.evaluate import window_loss
from memory_mosaics.experiments.language.attention import last_query_weights, peak_extent, peak_width
from memory_mosaics.experiments.language.common import EvalData, load_checkpoints
from memory_mosaics.experiments.language.ood import crossings, ood
from memory_mosaics.layers.features import merge_heads, split_heads
from memory_mosaics.models import GPT, GPTConfig, MemoryMosaic, MosaicConfig

torch.set_num_threads(1)

T = 16  # training context of the tiny runs
RUNS = {
    "mosaic_L1": ["--arch", "mosaic", "--n-layer", "1"],
    "gpt_L1": ["--arch", "gpt", "--n-layer", "1"],
    "mosaic_L2": ["--arch", "mosaic", "--n-layer", "2"],
    "gpt_L2": ["--arch", "gpt", "--n-layer", "2"],
    "rope_L1": ["--arch", "gpt", "--pos", "rope", "--n-layer", "1"],
    "alibi_L1": ["--arch", "gpt", "--pos", "alibi", "--n-layer", "1"],
}


def _text(rng: random.Random, n: int) -> str:
    words = ["the", "cat", "dog", "ran", "sat", "on", "a", "mat", "and", "saw", "Lily", "Tom", "said", "look"]
    stories = (" ".join(rng.choice(words) for _ in range(rng.randint(20, 50))) + "." for _ in range(n))
    return "\n<|endoftext|>\n".join(stories)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BPE dataset (vocabulary 280) and six runs of 4 steps: both archs at depths 1 and 2, GPT-RoPE, GPT-ALiBi."""
    root = tmp_path_factory.mktemp("paper_lm")
    rng = random.Random(0)
    (root / "train.txt").write_text(_text(rng, 60))
    (root / "val.txt").write_text(_text(rng, 20))
    argv = ["prepare", "--input", str(root / "train.txt"), "--val", str(root / "val.txt"), "--tokenizer", "bpe"]
    assert main([*argv, "--vocab-size", "280", "--out", str(root / "data"), "--no-progress"]) == 0
    common = ["--data", str(root / "data"), "--n-head", "2", "--n-embd", "8", "--block-size", str(T)]
    common += ["--batch-size", "2", "--max-iters", "4", "--eval-interval", "2", "--eval-batches", "1"]
    common += ["--log-interval", "1", "--ckpt-interval", "4", "--warmup-iters", "1", "--device", "cpu"]
    common += ["--threads", "1", "--no-progress", "--no-tensorboard"]
    for name, extra in RUNS.items():
        assert main(["train", "--out-dir", str(root / "runs" / name), *common, *extra]) == 0
    return root


def _files(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()}


def test_depth(tiny: Path) -> None:
    out = tiny / "out_depth"
    runs = [str(tiny / "runs" / n) for n in ("mosaic_L1", "gpt_L1", "mosaic_L2", "gpt_L2")]
    assert main(["paper", "depth", *runs, "--out", str(out)]) == 0
    assert {"depth.png", "depth.json", "depth.md"} <= _files(out)
    numbers = json.loads((out / "depth.json").read_text())
    assert sorted((r["kind"], r["n_layer"]) for r in numbers["runs"]) == [
        ("gpt-learned", 1),
        ("gpt-learned", 2),
        ("mosaic", 1),
        ("mosaic", 2),
    ]
    assert all(len(r["train_curve"]) == 4 and r["val_curve"][0][0] == 0 for r in numbers["runs"])
    assert numbers["config_differences"] == []  # same data, seed, batches and optimiser across architectures
    assert "| 2 | Memory Mosaic |" in (out / "depth.md").read_text()


def test_ood_per_position_and_crossing(tiny: Path) -> None:
    out = tiny / "out_ood"
    runs = [str(tiny / "runs" / "mosaic_L1"), f"Transformer={tiny / 'runs' / 'gpt_L1'}"]
    assert main(["paper", "ood", *runs, "--text", str(tiny / "val.txt"), "--max-windows", "4", "--out", str(out)]) == 0
    assert {"ood.png", "ood.json", "ood.md"} <= _files(out)
    numbers = json.loads((out / "ood.json").read_text())
    assert [m["label"] for m in numbers["models"]] == ["Memory Mosaic 1L", "Transformer"]
    assert all(len(m["per_position"]) == T and m["windows"] == 4 for m in numbers["models"])
    assert set(numbers["crossing"]) >= {"first_below", "below_from", "sign_changes"}


def test_ood_library_call_matches_the_command(tiny: Path) -> None:
    """The typed library function behind `mosaic paper ood` gives the command's numbers (no argparse involved)."""
    runs = [str(tiny / "runs" / "mosaic_L1"), f"Transformer={tiny / 'runs' / 'gpt_L1'}"]
    argv = ["paper", "ood", *runs, "--text", str(tiny / "val.txt"), "--max-windows", "4", "--smooth", "3"]
    assert main([*argv, "--out", str(tiny / "out_ood_cli")]) == 0
    with torch.no_grad():
        data = EvalData(text=tiny / "val.txt", max_windows=4)
        numbers = ood(load_checkpoints(runs), data, tiny / "out_ood_lib", context=0, smoothing=3)
    assert json.loads((tiny / "out_ood_cli" / "ood.json").read_text()) == json.loads(
        (tiny / "out_ood_lib" / "ood.json").read_text()
    )
    assert numbers["crossing"]["mosaic"] == "Memory Mosaic 1L" and numbers["crossing"]["gpt"] == "Transformer"


def test_paper_errors_name_the_command(tiny: Path, capsys) -> None:
    argv = ["paper", "ood", str(tiny / "runs" / "mosaic_L1"), "--text", str(tiny / "missing.txt")]
    assert main([*argv, "--out", str(tiny / "out_missing")]) == 2
    assert "mosaic paper ood: error: no text file" in capsys.readouterr().err


def test_prompts_side_by_side(tiny: Path) -> None:
    out = tiny / "out_prompts"
    prompts = tiny / "prompts.jsonl"
    rows = [{"prompt": "the cat sat", "paper_mosaic_nb18": "on the mat."}, {"prompt": "Lily saw | a dog"}]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = [str(tiny / "runs" / n) for n in ("mosaic_L1", "gpt_L1")]
    argv = ["paper", "prompts", *runs, "--prompts", str(prompts), "--max-new-tokens", "5", "--out", str(out)]
    assert main(argv) == 0
    assert {"prompts.json", "prompts.md", "prompts.jsonl"} <= _files(out)
    got = [json.loads(ln) for ln in (out / "prompts.jsonl").read_text().splitlines()]
    assert [set(r["completions"]) for r in got] == [{"Memory Mosaic 1L", "GPT 1L"}] * 2
    table = [ln for ln in (out / "prompts.md").read_text().splitlines() if ln.startswith("| ")]
    assert len(table) == 3 and "paper: Mosaic, 18 blocks" in table[0] and "\\|" in table[2]  # header + 2 prompts


def test_attention_figures(tiny: Path) -> None:
    out = tiny / "out_attention"
    runs = [str(tiny / "runs" / n) for n in ("mosaic_L1", "gpt_L1", "rope_L1", "alibi_L1")]
    assert main(["paper", "attention", *runs, "--max-windows", "3", "--out", str(out)]) == 0
    assert {"attention_train.png", "attention_extended.png", "attention_lambda.png", "attention.json"} <= _files(out)
    numbers = json.loads((out / "attention.json").read_text())
    for e in numbers["train_length"]:
        att = np.asarray(e["attention"])
        assert att.shape == (1, 2, T) and np.allclose(att.sum(-1), 1.0, atol=1e-4)
    mosaic = np.asarray(numbers["train_length"][0]["attention"])
    assert np.all(mosaic[..., -1] == 0)  # the pair of the last position is not stored yet (look-ahead 1)
    assert [e["kind"] for e in numbers["extended"]] == ["mosaic", "gpt-rope", "gpt-alibi"]  # learned cannot extend
    assert all(np.asarray(e["attention"]).shape == (1, 2, 3 * T) for e in numbers["extended"])
    heads = numbers["lambda"][0]["heads"]
    assert len(heads) == 2 and all(0 < h["lambda"] < 1 for h in heads)


def test_extrapolate_skips_learned_positions(tiny: Path) -> None:
    out = tiny / "out_extrapolate"
    runs = [str(tiny / "runs" / n) for n in ("mosaic_L1", "gpt_L1", "rope_L1", "alibi_L1")]
    argv = ["paper", "extrapolate", *runs, "--factors", "1", "3", "--chunk", str(T), "--max-windows", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    numbers = json.loads((out / "extrapolate.json").read_text())
    assert numbers["skipped"] == ["GPT 1L"]
    assert sorted((m["kind"], m["factor"]) for m in numbers["models"]) == sorted(
        (k, f) for k in ("mosaic", "gpt-rope", "gpt-alibi") for f in (1, 3)
    )
    assert all(len(m["per_position"]) == m["factor"] * T == len(m["segment_loss"]) * T for m in numbers["models"])
    assert main(["paper", "report", "--out", str(out)]) == 0
    assert "## Length extrapolation" in (out / "README.md").read_text()
    assert main(["paper", "extrapolate", str(tiny / "runs" / "gpt_L1"), "--out", str(out)]) == 2  # nothing to extend


def test_extrapolate_refuses_a_text_too_short_for_any_window(tiny: Path, capsys) -> None:
    short = tiny / "short.txt"
    short.write_text("Once upon a time")
    out = tiny / "out_short"
    argv = ["paper", "extrapolate", str(tiny / "runs" / "mosaic_L1"), "--text", str(short), "--out", str(out)]
    assert main(argv) == 2
    assert "too short for any window" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("model", ["mosaic", "learned", "rope", "alibi"])
def test_last_query_weights_reproduce_the_layer(model: str) -> None:
    """Weights recomputed from the layer's features, applied to its values, give the layer's own last output."""
    if model == "mosaic":
        m = MemoryMosaic(MosaicConfig(vocab_size=32, block_size=12, n_layer=1, n_head=2, n_embd=8))
    else:
        m = GPT(GPTConfig(vocab_size=32, block_size=12, n_layer=1, n_head=2, n_embd=8, pos=model))
    layer = (m.blocks[0].contextual if model == "mosaic" else m.blocks[0].attn).eval()
    x = torch.randn(3, 12, 8)
    w = last_query_weights(layer, x)
    v = layer.value(x) if model == "mosaic" else split_heads(layer.c_attn(x).split(8, dim=2)[2], 2)
    y = layer.c_proj(merge_heads(torch.einsum("bhi,bhid->bhd", w, v)[:, :, None]))[:, 0]
    torch.testing.assert_close(y, layer(x)[:, -1], atol=1e-5, rtol=1e-4)


def test_streamed_per_position_loss_equals_one_forward() -> None:
    m = MemoryMosaic(MosaicConfig(vocab_size=32, block_size=8, n_layer=2, n_head=2, n_embd=8)).eval()
    tokens = np.random.default_rng(0).integers(0, 32, 200)
    full = window_loss(m, tokens, 24, batch_size=3, max_windows=5)
    streamed = window_loss(m, tokens, 24, batch_size=3, max_windows=5, chunk=7)
    np.testing.assert_allclose(streamed["per_position"], full["per_position"], rtol=1e-5)
    assert streamed["windows"] == full["windows"] == 5


def test_crossings_and_peak_measures() -> None:
    mosaic, gpt = np.array([5.0, 4.0, 3.0, 2.0, 1.0]), np.array([4.0, 4.5, 2.5, 2.5, 2.0])
    assert crossings(mosaic, gpt) == {"first_below": 1, "below_from": 3, "sign_changes": [1, 2, 3]}
    assert crossings(gpt + 10, gpt)["below_from"] is None
    w = np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.15, 0.4, 0.0])  # the last position not stored (look-ahead)
    assert peak_width(w) == 1 and peak_extent(w) == 2


def test_attention_figures_refuse_v2_and_llama_by_name(tmp_path, capsys) -> None:
    from memory_mosaics.cli import main
    from memory_mosaics.models import MemoryMosaicV2, MosaicV2Config

    MemoryMosaicV2(MosaicV2Config(vocab_size=40, n_layer=1, n_head=2, n_embd=8)).save_pretrained(tmp_path / "v2")
    (tmp_path / "t.txt").write_text("hello")
    assert main(["paper", "attention", str(tmp_path / "v2"), "--text", str(tmp_path / "t.txt"),
                 "--out", str(tmp_path / "out")]) == 2  # fmt: skip
    assert "v1 Memory Mosaics and GPTs; not" in capsys.readouterr().err
