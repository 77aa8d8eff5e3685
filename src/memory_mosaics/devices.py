"""Devices and precision, for every command and trainer: which device a name means here, and the autocast that goes
with it (bf16 on CUDA, fp32 elsewhere)."""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "float32", "bfloat16", "float16")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(name: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
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


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (one of PRECISIONS) on ``device``; None means none (fp32). "auto" is bf16 on
    a CUDA device that supports it and fp32 elsewhere: CPU runs stay exact and simplest to compare."""
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {PRECISIONS}")
    return {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[object]:
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
