"""Fused CPU kernels, built on first use and cached: the key and value paths (``ops/csrc/features_cpu.cpp``) and the
persistent memory's bank retrieval (``ops/csrc/bank_cpu.cpp``).

Eager PyTorch runs the key path (leaky average, normalisation, scale) and the value path (peek mixing, normalisation,
scale) as a dozen passes over (B, H, T, D) tensors each way; the kernels make one pass, forward and backward. The bank
kernel scores a tile of queries against the whole bank in cache, where ``scaled_dot_product_attention`` streams it
with an online softmax; it calls MKL's sgemm, so it is built only where PyTorch links MKL. The kernels serve fp32 CPU
tensors in the time-major layout of a projection's output; everything else (CUDA, half precision, other layouts) keeps
the eager forms, which also stand in when the kernels cannot be built (no C++ compiler, say: a warning says why, once).
``MEMORY_MOSAICS_KERNELS=0`` turns them off.

The first use compiles the extension with ``torch.utils.cpp_extension`` (about 40 s on two cores) into its cache
(``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``); later processes load it at once.
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

CSRC = Path(__file__).parent / "csrc"
ENV = "MEMORY_MOSAICS_KERNELS"

# vectorised reductions need reassociation; -ffast-math is avoided because it also assumes finite numbers
MATH_FLAGS = ["-O3", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"]
# CPU_CAPABILITY selects the matching at::vec::Vectorized (the bank kernel's exp), as in PyTorch's own build
ISA_FLAGS = {
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"],
    "AVX512": [
        *("-mavx2", "-mfma", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"),
        *("-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"),
    ],
}

_enabled = os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")
_module: ModuleType | None = None
_failure: str | None = None


def set_enabled(enabled: bool) -> bool:
    """Turn the fused kernels on or off for this process (tests compare both paths); returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, enabled
    return previous


@contextmanager
def disabled() -> Iterator[None]:
    """The eager forms inside this block: the nodes built in it, and so their backward passes, are the eager ones. As a
    decorator, ``disabled()(fn)``, it switches the kernels off around every call of ``fn``."""
    previous = set_enabled(False)
    try:
        yield
    finally:
        set_enabled(previous)


def _build_flags() -> tuple[str, list[str], list[str], list[str]]:
    """The extension's name, sources, compiler flags and linker flags. The instruction set is PyTorch's own choice for
    this CPU, and part of the name, so a cache shared by different machines never hands one a build it cannot run."""
    isa = torch.backends.cpu.get_cpu_capability() if platform.machine().lower() in ("x86_64", "amd64") else "DEFAULT"
    openmp = [] if sys.platform == "darwin" else ["-fopenmp"]  # Apple's clang has none: the kernels then use one thread
    sources, bank = [CSRC / "features_cpu.cpp"], []
    if torch.backends.mkl.is_available():  # the bank kernel's sgemm_ comes from the MKL inside libtorch_cpu
        sources, bank = [*sources, CSRC / "bank_cpu.cpp"], ["-DMEMORY_MOSAICS_BANK"]
    cflags = MATH_FLAGS + ISA_FLAGS.get(isa, []) + bank + openmp
    return f"memory_mosaics_kernels_{isa.lower()}", [str(p) for p in sources], cflags, openmp


def _build() -> ModuleType:
    from torch.utils import cpp_extension

    try:  # the ninja of the `ninja` package, when the venv's bin folder is not on PATH
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    except ImportError:
        pass
    name, sources, cflags, ldflags = _build_flags()
    try:
        built = any(Path(cpp_extension._get_build_directory(name, verbose=False)).glob(f"{name}*.so"))
    except Exception:  # a private helper: if it moves, say nothing rather than fail
        built = True
    if not built:
        print(
            "memory_mosaics: compiling the fused CPU kernels, once per machine (about 40 s on two cores) ...",
            file=sys.stderr,
        )
    return cpp_extension.load(name=name, sources=sources, extra_cflags=cflags, extra_ldflags=ldflags)


def extension() -> ModuleType | None:
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


# The kernels as PyTorch operators, so that torch.compile sees through them (shapes from the fake implementations)
# instead of breaking its graph at an unknown extension function.


@torch.library.custom_op("memory_mosaics::keys_forward", mutates_args=())
def keys_forward(x: Tensor, decay: Tensor, scale: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Keys, norms ‖k̄_t‖ + ε (B, T, H) and the last k̄ (B, H, D) for x (B, T, H, D), decays λ_h and scales s_h."""
    k, norm, last = extension().keys_forward(x, decay, scale, state)
    return k, norm, last


@keys_forward.register_fake
def _(x: Tensor, decay: Tensor, scale: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    B, T, H, D = x.shape
    return torch.empty_like(x), x.new_empty(B, T, H), x.new_empty(B, H, D)


@torch.library.custom_op("memory_mosaics::keys_backward", mutates_args=())
def keys_backward(
    grad: Tensor,
    k: Tensor,
    norm: Tensor,
    decay: Tensor,
    scale: Tensor,
    state: Tensor | None,
    grad_last: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """dL/dx, dL/dβ and dL/dlog s per (sequence, head) in fp64, and dL/dstate (empty without a state)."""
    g_x, g_beta, g_log_scale, g_state = extension().keys_backward(grad, k, norm, decay, scale, state, grad_last)
    return g_x, g_beta, g_log_scale, g_state


@keys_backward.register_fake
def _(grad, k, norm, decay, scale, state, grad_last):
    B, _, H, _ = k.shape
    per_head = k.new_empty(B, H, dtype=torch.float64)
    return torch.empty_like(k), per_head, per_head.clone(), k.new_empty(state.shape if state is not None else (0,))


@torch.library.custom_op("memory_mosaics::values_forward", mutates_args=())
def values_forward(u: Tensor, coef: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """Values and norms ‖m_t‖ + ε (B, T, H) for projections u (B, T, H, D), mixing weights c_h and scales r_h."""
    v, norm = extension().values_forward(u, coef, scale)
    return v, norm


@values_forward.register_fake
def _(u: Tensor, coef: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    return torch.empty_like(u), u.new_empty(u.shape[:3])


@torch.library.custom_op("memory_mosaics::values_backward", mutates_args=())
def values_backward(
    grad: Tensor, u: Tensor, v: Tensor, norm: Tensor, coef: Tensor, scale: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """dL/du, and dL/dc and dL/dlog r per (sequence, head) in fp64."""
    g_u, g_coef, g_log_scale = extension().values_backward(grad, u, v, norm, coef, scale)
    return g_u, g_coef, g_log_scale


@values_backward.register_fake
def _(grad, u, v, norm, coef, scale):
    per_head = u.new_empty(u.shape[0], u.shape[2], dtype=torch.float64)
    return torch.empty_like(u), per_head, per_head.clone()


@torch.library.custom_op("memory_mosaics::bank_forward", mutates_args=())
def bank_forward(q: Tensor, P_k: Tensor, P_v: Tensor) -> tuple[Tensor, Tensor]:
    """y = softmax(q P_kᵀ) P_v (N, H, D) and the log-normalisers (H, N), for queries (N, H, D) and a bank (H, m, D)."""
    y, lse = extension().bank_forward(q, P_k, P_v)
    return y, lse


@bank_forward.register_fake
def _(q: Tensor, P_k: Tensor, P_v: Tensor) -> tuple[Tensor, Tensor]:
    N, H, D = q.shape
    return q.new_empty(N, H, D), q.new_empty(H, N)


@torch.library.custom_op("memory_mosaics::bank_backward", mutates_args=())
def bank_backward(
    grad: Tensor, q: Tensor, P_k: Tensor, P_v: Tensor, y: Tensor, lse: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """dL/dq, dL/dP_k and dL/dP_v."""
    g_q, g_pk, g_pv = extension().bank_backward(grad, q, P_k, P_v, y, lse)
    return g_q, g_pk, g_pv


@bank_backward.register_fake
def _(grad, q, P_k, P_v, y, lse):
    return q.new_empty(q.shape), torch.empty_like(P_k), torch.empty_like(P_v)


def has_bank() -> bool:
    """Whether the bank kernel was built (it needs PyTorch's MKL)."""
    return hasattr(extension(), "bank_forward")


def applies(x: Tensor, *params: Tensor | None) -> bool:
    """Whether the kernels serve ``x`` (B, H, T, D) with these per-head parameters and state: fp32 on the CPU, x laid
    out (B, T, H, D) in memory. Builds the kernels on first use."""
    return (
        _enabled
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and all(p is None or (p.device.type == "cpu" and p.dtype == torch.float32) for p in params)
        and x.transpose(1, 2).is_contiguous()
        and extension() is not None
    )
