"""Fused CPU kernels for the key and value paths (``ops/csrc/features_cpu.cpp``), built on first use and cached.

Eager PyTorch runs the key path (leaky average, normalisation, scale) and the value path (peek mixing, normalisation,
scale) as a dozen passes over (B, H, T, D) tensors each way; the kernels make one pass, forward and backward. They serve
fp32 CPU tensors in the time-major layout of a projection's output; everything else (CUDA, half precision, other
layouts) keeps the eager forms, which also stand in when the kernels cannot be built (no C++ compiler, say: a warning
says why, once). ``MEMORY_MOSAICS_KERNELS=0`` turns them off.

The first use compiles the extension with ``torch.utils.cpp_extension`` (about 40 s on two cores) into its cache
(``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``); later processes load it at once.
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

SOURCE = Path(__file__).parent / "csrc" / "features_cpu.cpp"
ENV = "MEMORY_MOSAICS_KERNELS"

# vectorised reductions need reassociation; -ffast-math is avoided because it also assumes finite numbers
MATH_FLAGS = ["-O3", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"]
ISA_FLAGS = {
    "AVX2": ["-mavx2", "-mfma"],
    "AVX512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"],
}

_enabled = os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")
_module: ModuleType | None = None
_failure: str | None = None


def set_enabled(enabled: bool) -> bool:
    """Turn the fused kernels on or off for this process (tests compare both paths); returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, enabled
    return previous


def _build_flags() -> tuple[str, list[str], list[str]]:
    """The extension's name, compiler flags and linker flags. The instruction set is PyTorch's own choice for this CPU,
    and part of the name, so a cache shared by different machines never hands one a build it cannot run."""
    isa = torch.backends.cpu.get_cpu_capability() if platform.machine().lower() in ("x86_64", "amd64") else "DEFAULT"
    openmp = [] if sys.platform == "darwin" else ["-fopenmp"]  # Apple's clang has none: the kernels then use one thread
    return f"memory_mosaics_features_{isa.lower()}", MATH_FLAGS + ISA_FLAGS.get(isa, []) + openmp, openmp


def _build() -> ModuleType:
    from torch.utils import cpp_extension

    try:  # the ninja of the `ninja` package, when the venv's bin folder is not on PATH
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    except ImportError:
        pass
    name, cflags, ldflags = _build_flags()
    try:
        built = any(Path(cpp_extension._get_build_directory(name, verbose=False)).glob(f"{name}*.so"))
    except Exception:  # a private helper: if it moves, say nothing rather than fail
        built = True
    if not built:
        print("memory_mosaics: compiling the fused CPU kernels, once per machine (about a minute) ...", file=sys.stderr)
    return cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=cflags, extra_ldflags=ldflags)


def features_cpu() -> ModuleType | None:
    """The compiled kernels, or None where they are turned off or could not be built."""
    global _module, _failure
    if not _enabled or _failure is not None:
        return None
    if _module is None:
        try:
            _module = _build()
        except Exception as error:  # no compiler, no ninja, a failed build: the eager forms still work
            _failure = f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"
            warnings.warn(
                f"memory_mosaics: the fused CPU kernels could not be built ({_failure}); the eager forms run instead "
                f"(set {ENV}=0 to skip the attempt)",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
    return _module


def applies(x: Tensor, *params: Tensor | None) -> bool:
    """Whether the kernels serve ``x`` (B, H, T, D) with these per-head parameters and state: fp32 on the CPU, x laid
    out (B, T, H, D) in memory. Builds the kernels on first use."""
    return (
        _enabled
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and all(p is None or (p.device.type == "cpu" and p.dtype == torch.float32) for p in params)
        and x.transpose(1, 2).is_contiguous()
        and features_cpu() is not None
    )
