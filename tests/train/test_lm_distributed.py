"""DDP on CPU (gloo): 2 processes with the same global batch follow the 1-process loss trajectory."""

import shutil
from pathlib import Path

import pytest

from memory_mosaics.distributed import spawn_local
from memory_mosaics.train import train
from memory_mosaics.train.log import read_log

from .conftest import tiny, train_losses

# Memory Mosaic v2 at block 32: m is drawn per optimiser step from (seed, step) in [2, 12], so a process that drew
# another m than its peer (or than the single process) would follow another loss trajectory
V2 = dict(short_window=8, long_delay=4, long_delay_min=2, long_delay_max=12)
# document-wise masking runs the blocks once per group of documents in one forward: DDP and FSDP must take that too
CASES = {
    "mosaic": dict(arch="mosaic"),
    "mosaic2": dict(arch="mosaic2", **V2),
    "llama": dict(arch="llama"),
    "mosaic-documents": dict(arch="mosaic", document_mask=True),
    "mosaic2-documents": dict(arch="mosaic2", **V2, document_mask=True),
}


@pytest.mark.parametrize("case", ["mosaic", "mosaic2", "llama", "mosaic-documents"])
def test_two_processes_equal_one(dataset: Path, tmp_path: Path, case: str) -> None:
    # dropout on: masks are drawn per global micro-batch, so they match too (same micro-batch size: 1x2x4 vs 2x1x4)
    kw = dict(**CASES[case], max_iters=4, eval_interval=4, ckpt_interval=4, threads=1)
    one = train(tiny(dataset, tmp_path / "one", **kw))
    spawn_local(2, train, tiny(dataset, tmp_path / "two", **kw))
    two = read_log(tmp_path / "two")
    a, b = train_losses(one["records"]), train_losses(two)
    assert [s for s, _ in a] == [s for s, _ in b] == [1, 2, 3, 4]
    assert [x for _, x in b] == pytest.approx([x for _, x in a], rel=1e-5, abs=1e-6)
    va = [r["val_loss"] for r in one["records"] if "val_loss" in r]
    vb = [r["val_loss"] for r in two if "val_loss" in r]
    assert vb == pytest.approx(va, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("case", ["mosaic", "mosaic2", "mosaic2-documents"])
def test_fsdp_two_processes_equal_one_and_resume(dataset: Path, tmp_path: Path, case: str) -> None:
    kw = dict(**CASES[case], max_iters=4, eval_interval=2, ckpt_interval=2, micro_batch_size=2, threads=1)
    one = train(tiny(dataset, tmp_path / "one", **kw))  # micro_batch_size as each process
    spawn_local(2, train, tiny(dataset, tmp_path / "two", fsdp=True, **kw))
    full = read_log(tmp_path / "two")
    assert [x for _, x in train_losses(full)] == pytest.approx([x for _, x in train_losses(one["records"])], rel=1e-5)
    # resume the sharded run from its step-2 checkpoint (gathered full weights + FQN-keyed AdamW state)
    shutil.rmtree(tmp_path / "two" / "ckpt-0000004")
    spawn_local(2, train, tiny(dataset, tmp_path / "two", fsdp=True, resume=True, **kw))
    resumed = train_losses(read_log(tmp_path / "two"))
    assert [s for s, _ in resumed] == [1, 2, 3, 4]
    assert [x for _, x in resumed] == pytest.approx([x for _, x in train_losses(full)], rel=1e-6)
