"""Process group set-up under ``torchrun`` (or the test's spawner): rank, world size, device."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

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


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(name: str | torch.device, local_rank: int = 0) -> torch.device:
    """The device ``name`` means on this machine: "auto" picks cuda > mps > cpu, a bare "cuda" is this process's GPU
    (``local_rank``). A device this machine or this PyTorch build lacks is refused here, with a ValueError that says
    so, instead of failing deep inside PyTorch once the work has started."""
    if name == "auto":
        if torch.cuda.is_available():
            name = f"cuda:{local_rank}"
        else:
            return torch.device("mps" if _mps_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ValueError(f"device {name!r}: no CUDA device is usable here (PyTorch {torch.__version__}, {build})")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not _mps_available():
        raise ValueError(f"device {name!r}: MPS (Apple GPU) is not available here")
    return device


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
