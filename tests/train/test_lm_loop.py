"""A few steps learn; Ctrl-C and kill -9 followed by --resume reproduce the uninterrupted run bit for bit."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from memory_mosaics import load_pretrained
from memory_mosaics.checkpoints import list_checkpoints, load_trainer_state, verify
from memory_mosaics.train import train
from memory_mosaics.train.log import read_log

from .conftest import tiny, train_losses


@pytest.mark.parametrize("arch", ["mosaic", "gpt", "llama"])
def test_few_steps_decrease_the_loss(dataset: Path, tmp_path: Path, arch: str) -> None:
    result = train(tiny(dataset, tmp_path / arch, arch=arch, max_iters=12, eval_interval=12, dropout=0.0))
    losses = [loss for _, loss in train_losses(result["records"])]
    assert losses[-1] < losses[0] - 0.3
    vals = [r["val_loss"] for r in result["records"] if "val_loss" in r]
    assert vals[-1] < vals[0]
    run = json.loads((tmp_path / arch / "run.json").read_text())
    assert run["model_type"] == arch and run["seed"] == 1337 and run["world_size"] == 1 and run["grad_accum"] == 2
    ckpts = list_checkpoints(tmp_path / arch)
    assert [c.name for c in ckpts] == ["ckpt-0000008", "ckpt-0000012"]  # keep_last=2
    verify(ckpts[-1])
    assert load_pretrained(ckpts[-1]).model_type == arch
    state = load_trainer_state(ckpts[-1])  # weights_only=True
    assert state["step"] == 12 and state["data"]["samples"] == 12 * 8


def test_same_seed_same_batches_across_architectures(dataset: Path, tmp_path: Path) -> None:
    """The batch order is a function of the seed alone (not of the model or of the RNG use)."""
    from memory_mosaics.data.shards import TokenShard
    from memory_mosaics.train.batches import BatchOrder

    tokens = TokenShard.open(dataset, "train").tokens
    a = BatchOrder(tokens, 32, 8, seed=5).micro_batch(3, 0, 1, 0, 8)[0]
    torch.manual_seed(123)
    torch.rand(10)
    b = BatchOrder(tokens, 32, 8, seed=5).micro_batch(3, 0, 1, 0, 8)[0]
    c = BatchOrder(tokens, 32, 8, seed=6).micro_batch(3, 0, 1, 0, 8)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_ctrl_c_then_resume_is_bit_identical(dataset: Path, tmp_path: Path) -> None:
    reference = train(tiny(dataset, tmp_path / "ref"))

    def ctrl_c(step: int, record: dict) -> None:
        if step == 5:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C does: the loop checkpoints at the end of the step

    first = train(tiny(dataset, tmp_path / "run"), callback=ctrl_c)
    assert first["interrupted"] and first["step"] == 5
    assert (tmp_path / "run" / "ckpt-0000005").is_dir()
    resumed = train(tiny(dataset, tmp_path / "run", resume=True))
    assert resumed["step"] == 8
    assert train_losses(read_log(tmp_path / "run")) == train_losses(reference["records"])
    ref_val = [(r["step"], r["val_loss"]) for r in reference["records"] if "val_loss" in r]
    assert [(r["step"], r["val_loss"]) for r in read_log(tmp_path / "run") if "val_loss" in r] == ref_val
    a = load_pretrained(tmp_path / "ref" / "ckpt-0000008").state_dict()
    b = load_pretrained(tmp_path / "run" / "ckpt-0000008").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "memory_mosaics.cli", "train", *args]


def _flags(data: Path, out: Path, **kw: object) -> list[str]:
    cfg = tiny(data, out, **kw)
    flags = []
    for k, v in cfg.to_dict().items():
        flag = "--" + k.replace("_", "-")
        if v is None:  # the command's own default (``--bias`` follows the architecture)
            continue
        if isinstance(v, bool):
            flags.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            flags += [flag, str(v)]
    return flags


def test_kill_9_then_resume_is_bit_identical(dataset: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kw = dict(max_iters=40, ckpt_interval=10, eval_interval=20, threads=1)
    reference = train(tiny(dataset, tmp_path / "ref", **kw))  # in-process, also one thread: the same arithmetic
    stderr = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(
        _cli(*_flags(dataset, tmp_path / "run", **kw)), env=env, stdout=subprocess.DEVNULL, stderr=stderr
    )
    log = tmp_path / "run" / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (tmp_path / "run" / "ckpt-0000010").is_dir() and log.is_file() and '"step": 13' in log.read_text():
            break
        time.sleep(0.005)
    died = proc.poll()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stderr.close()
    assert died in (None, 0), (tmp_path / "stderr.txt").read_text()  # it failed by itself: say why
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be killed")
    killed_at = max(s for s, _ in train_losses(read_log(tmp_path / "run")))
    subprocess.run(
        _cli(*_flags(dataset, tmp_path / "run", resume=True, **kw)), check=True, env=env, capture_output=True
    )
    assert killed_at < 40
    assert train_losses(read_log(tmp_path / "run")) == train_losses(reference["records"])


V2 = dict(arch="mosaic2", short_window=8, long_delay=4, long_delay_min=2, long_delay_max=12)


def test_mosaic_v2_trains_and_resumes_bit_for_bit(dataset: Path, tmp_path: Path) -> None:
    """The long-term delay is drawn per step from (seed, step): a resumed v2 run repeats the uninterrupted one."""
    reference = train(tiny(dataset, tmp_path / "ref", **V2, dropout=0.0, max_iters=12, eval_interval=12))
    losses = [loss for _, loss in train_losses(reference["records"])]
    assert losses[-1] < losses[0] - 0.3
    run = json.loads((tmp_path / "ref" / "run.json").read_text())
    assert run["model_type"] == "mosaic2" and run["model"]["persistent"] == "swiglu"
    first = train(tiny(dataset, tmp_path / "run", **V2, dropout=0.0, max_iters=12, eval_interval=12),
                  callback=lambda step, _: step == 5 and signal.raise_signal(signal.SIGINT))  # fmt: skip
    assert first["interrupted"]
    train(tiny(dataset, tmp_path / "run", **V2, dropout=0.0, max_iters=12, eval_interval=12, resume=True))
    assert train_losses(read_log(tmp_path / "run")) == train_losses(reference["records"])


def test_the_delay_is_a_function_of_seed_and_step() -> None:
    from memory_mosaics.models import MemoryMosaicV2, MosaicV2Config
    from memory_mosaics.train.engine import draw_delay

    model = MemoryMosaicV2(MosaicV2Config(vocab_size=11, n_layer=1, n_head=1, n_embd=4, long_delay_min=1))
    draws = []
    for step in range(50):
        draw_delay(model, 1337, step)
        draws.append(model.train_delay)
    again = []
    for step in range(50):
        draw_delay(model, 1337, step)
        again.append(model.train_delay)
    assert draws == again and len(set(draws)) > 20 and all(1 <= m <= 256 for m in draws)


@pytest.mark.parametrize("arch", ["mosaic", "mosaic2"])
def test_document_mask_trains_resumes_and_is_kept_by_the_checkpoint(dataset: Path, tmp_path: Path, arch: str) -> None:
    """--document-mask: the model reads each document alone (the data's EOT closes it), in training and after."""
    kw = dict(**(V2 if arch == "mosaic2" else {"arch": arch}), document_mask=True, dropout=0.0)
    reference = train(tiny(dataset, tmp_path / "ref", **kw, max_iters=8, eval_interval=8))
    run = json.loads((tmp_path / "ref" / "run.json").read_text())
    assert run["model"]["doc_token"] == 0
    plain = train(tiny(dataset, tmp_path / "plain", **{**kw, "document_mask": False}, max_iters=8, eval_interval=8))
    assert train_losses(plain["records"]) != train_losses(reference["records"])  # the mask changes what is read
    first = train(tiny(dataset, tmp_path / "run", **kw, max_iters=8, eval_interval=8),
                  callback=lambda step, _: step == 3 and signal.raise_signal(signal.SIGINT))  # fmt: skip
    assert first["interrupted"]
    train(tiny(dataset, tmp_path / "run", **kw, max_iters=8, eval_interval=8, resume=True))
    assert train_losses(read_log(tmp_path / "run")) == train_losses(reference["records"])
    model = load_pretrained(list_checkpoints(tmp_path / "ref")[-1])
    assert model.config.doc_token == 0
