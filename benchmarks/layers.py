"""Where a training step's time goes: forward + backward of each sub-layer of one block (and each pass alone), the
Memory Mosaic's against the GPT baseline's, on the same input in the same run. Prints JSON (milliseconds, best of
``--repeats``).

    python benchmarks/layers.py --threads 1

Pairs to compare: the contextual memory with the GPT's attention, the persistent memory with the GPT's MLP. The
persistent memory is further split into its key extractor (W_k, leaky average, normalisation) and its bank retrieval
(softmax over 3.5·d slots per head), with the matmul FLOPs of each sub-layer. The bank retrieval is timed on its CPU
kernel and on ``scaled_dot_product_attention`` (``*_sdpa``), the key path (leaky average, normalisation, scale) and
the value path (peek mixing, normalisation, scale) alone on their fused CPU kernels and on their eager forms
(``*_eager``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import torch

from memory_mosaics.cli.types import positive
from memory_mosaics.layers.features import merge_heads, split_heads
from memory_mosaics.models import GPT, GPTConfig, MemoryMosaic, MosaicConfig
from memory_mosaics.ops import kernels
from memory_mosaics.ops.leaky import scaled_leaky_keys
from memory_mosaics.ops.peek import peek_values


def time_fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Best wall times (ms) of y = fn(x) and of a backward pass from a fixed random output gradient, and of both."""
    grad = None
    best = {"ms": float("inf"), "forward_ms": float("inf"), "backward_ms": float("inf")}
    for i in range(repeats + 1):  # the first call warms up
        t0 = time.perf_counter()
        y = fn(x)
        t1 = time.perf_counter()
        if grad is None:
            grad = torch.randn_like(y)
        y.backward(grad)
        t2 = time.perf_counter()
        if i:
            for key, t in (("ms", t2 - t0), ("forward_ms", t1 - t0), ("backward_ms", t2 - t1)):
                best[key] = min(best[key], 1000 * t)
        x.grad = None
    return {key: round(t, 2) for key, t in best.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--context", type=positive, default=512)
    p.add_argument("--batch", type=positive, default=8)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--repeats", type=positive, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = dict(vocab_size=256, block_size=args.context, n_layer=1, n_head=args.heads, n_embd=args.d)
    mb = MemoryMosaic(MosaicConfig(**shape)).blocks[0]
    gb = GPT(GPTConfig(**shape)).blocks[0]
    pm = mb.persistent
    x = torch.randn(args.batch, args.context, args.d, requires_grad=True)
    keys = pm.key(x)[0].detach().requires_grad_()
    u = torch.randn(args.batch, args.context, args.d, requires_grad=True)  # a projection, split into heads below
    key, value = pm.key, mb.contextual.value

    def key_path(t: torch.Tensor) -> torch.Tensor:
        return merge_heads(scaled_leaky_keys(split_heads(t, args.heads), key.decay_rate, key.log_scale)[0])

    def value_path(t: torch.Tensor) -> torch.Tensor:
        return merge_heads(peek_values(split_heads(t, args.heads), value.coef, value.log_scale))

    eager = kernels.disabled()  # as a decorator: the wrapped forward builds the eager nodes, whose backward follows
    cases = {
        "mosaic_block": (mb, x),
        "gpt_block": (gb, x),
        "contextual_memory": (mb.contextual, x),
        "gpt_attention": (gb.attn, x),
        "persistent_memory": (pm, x),
        "gpt_mlp": (gb.mlp, x),
        "persistent_key_extractor": (lambda t: merge_heads(pm.key(t)[0]), x),
        "persistent_bank_retrieval": (lambda k: merge_heads(pm.retrieve(k)), keys),
        "persistent_bank_retrieval_sdpa": (eager(lambda k: merge_heads(pm.retrieve(k))), keys),
        "key_path": (key_path, u),
        "key_path_eager": (eager(key_path), u),
        "value_path": (value_path, u),
        "value_path_eager": (eager(value_path), u),
    }
    tokens, d, m = args.batch * args.context, args.d, pm.P_k.shape[2]
    flops = {  # matmul FLOPs of forward + backward (3× forward), without the flash backward's recomputation
        "persistent_bank_retrieval": 3 * 2 * tokens * 2 * m * d,
        "persistent_bank_retrieval_sdpa": 3 * 2 * tokens * 2 * m * d,
        "gpt_mlp": 3 * 2 * tokens * 8 * d * d,
        "persistent_key_extractor": 3 * 2 * tokens * d * d,
    }
    results = {}
    for name, (fn, inp) in cases.items():
        results[name] = time_fwd_bwd(fn, inp, args.repeats)
        ms = results[name]["ms"]
        if name in flops:
            results[name]["matmul_gflop"] = round(flops[name] / 1e9, 2)
            results[name]["gflop_per_s"] = round(flops[name] / ms / 1e6, 1)
    ratios = {
        "persistent_memory_over_gpt_mlp": results["persistent_memory"]["ms"] / results["gpt_mlp"]["ms"],
        "persistent_memory_over_gpt_mlp_forward": results["persistent_memory"]["forward_ms"]
        / results["gpt_mlp"]["forward_ms"],
        "persistent_memory_over_gpt_mlp_backward": results["persistent_memory"]["backward_ms"]
        / results["gpt_mlp"]["backward_ms"],
        "contextual_memory_over_gpt_attention": results["contextual_memory"]["ms"] / results["gpt_attention"]["ms"],
        "mosaic_block_over_gpt_block": results["mosaic_block"]["ms"] / results["gpt_block"]["ms"],
    }
    report = {
        "benchmark": "sub-layer forward + backward",
        "config": vars(args),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "results_ms": results,
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
