"""Process group set-up under ``torchrun`` (or the test's spawner): rank, world size, device."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from memory_mosaics.devices import pick_device

INIT_METHOD_ENV = "MOSAIC_DIST_INIT_METHOD"  # a rendezvous other than torchrun's (the local spawner uses a file)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")  # noqa: RUF009 (immutable)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> Dist:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (set by torchrun); join the process group: NCCL on CUDA, else gloo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        init = os.environ.get(INIT_METHOD_ENV)  # None: torchrun's MASTER_ADDR / MASTER_PORT
        dist.init_process_group(backend=backend, init_method=init, rank=rank, world_size=world)
    return Dist(rank, local_rank, world, dev)


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(d: Dist, *values: float) -> list[float]:
    """Sum Python floats over processes (one collective)."""
    if not d.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()


def any_true(d: Dist, flag: bool) -> bool:
    return bool(all_sum(d, float(flag))[0]) if d.enabled else flag


def broadcast_object(d: Dist, obj: object) -> object:
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def _worker(rank: int, world: int, rendezvous: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        OMP_NUM_THREADS="1",
        **{INIT_METHOD_ENV: rendezvous},
    )
    torch.set_num_threads(1)
    fn(*args)


def spawn_local(world: int, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` in ``world`` local processes as torchrun would (CPU, gloo); for tests and quick checks.
    ``fn`` must be importable (a module-level function). The processes meet through a fresh file, not a TCP port: a
    port probed free can be taken by another program before the first process binds it."""
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(world, f"file://{tmp}/rendezvous", fn, args), nprocs=world, join=True)
