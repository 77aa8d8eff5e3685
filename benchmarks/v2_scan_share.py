"""Memory Mosaic v2 training: the share of a training step (forward, backward, AdamW) that goes to the gated scan
(``ops.gated.gated_keys``, the key extractor of both memories in every block), to decide whether a fused CPU kernel
for it pays.

Two measurements, at the shape of ``benchmarks/throughput.py --pair mosaic2 llama``:
  * the scan alone: ``gated_keys`` forward and backward on inputs of the shape it gets in the model, times the number
    of calls per step (two memories per block), against the whole v2 step;
  * the scan removed: the same v2 model with ``gated_keys`` replaced by a stand-in that costs almost nothing (the
    keys are Norm(W_φ x), gradients still reaching W_g and W_λ through zero weights), taking training steps in turn
    with the real v2 and with llama. Its ratio to llama bounds what any scan kernel could give: a kernel still reads
    and writes what the stand-in reads and writes.
Ratios are medians over rounds of consecutive steps (v2, v2 without the scan, llama), as in throughput.py. Every time
is taken on two clocks: wall time, and this process's CPU time (``time.process_time``). On a machine that other work
shares, wall time counts the other work's turns on the cores too; with one thread (``--threads 1``) CPU time counts
only this process's own work, so it is the steadier measure there (with several threads it also counts the threads'
spin-waiting). Prints JSON.

    python benchmarks/v2_scan_share.py                    # contexts 512 and 2048, 4 blocks, d 256, 8 heads, batch 8
    python benchmarks/v2_scan_share.py --threads 1        # on a shared machine: read the "cpu" clock
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import add_shape_arguments, trainer  # the same model, data and AdamW step as the throughput benchmark

from memory_mosaics.cli.types import positive
from memory_mosaics.models import mosaic_v2
from memory_mosaics.ops.gated import gated_keys


def free_scan(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, state=None, chunk: int = 0):
    """A stand-in for ``gated_keys`` with no recurrence: Norm(x), the gates entering with weight 0 (so their
    projections still get a gradient, as in the real step)."""
    gates = (0 * (a + b)).unsqueeze(-1)
    u = x + gates
    return F.normalize(u, dim=-1), (u[:, :, -1], a[:, :, -1])


@contextlib.contextmanager
def scan_replaced():
    mosaic_v2.gated_keys = free_scan
    try:
        yield
    finally:
        mosaic_v2.gated_keys = gated_keys


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(fn: Callable[[], object]) -> dict[str, float]:
    """Seconds of fn() on both clocks: wall, and this process's CPU time (see the docstring)."""
    t0 = {name: clock() for name, clock in CLOCKS.items()}
    fn()
    return {name: clock() - t0[name] for name, clock in CLOCKS.items()}


def scan_alone_ms(args: argparse.Namespace, context: int) -> dict[str, dict[str, float]]:
    """ms of one ``gated_keys`` call, forward and forward + backward, on inputs laid out as in the model (views of
    (B, T, H, ...) projections), on each clock; median of ``--op-repeats``."""
    B, H, D = args.batch, args.heads, args.d // args.heads
    x = torch.randn(B, context, H, D).transpose(1, 2).requires_grad_()
    a = torch.randn(B, context, H).transpose(1, 2).requires_grad_()
    b = torch.randn(B, context, H).transpose(1, 2).requires_grad_()
    grad = torch.randn(B, H, context, D)
    forward, both = [], []
    for _ in range(args.op_repeats):
        forward.append(timed(lambda: gated_keys(x, a, b)))
        both.append(timed(lambda: torch.autograd.backward(gated_keys(x, a, b)[0], grad)))
        x.grad = a.grad = b.grad = None
    return {
        clock: {
            "forward_ms": 1e3 * statistics.median(t[clock] for t in forward),
            "forward_backward_ms": 1e3 * statistics.median(t[clock] for t in both),
        }
        for clock in CLOCKS
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shape_arguments(p)
    p.add_argument("--short-window", type=positive, default=256, help="h")
    p.add_argument("--long-delay", type=positive, default=64, help="m")
    p.add_argument("--steps", type=positive, default=4, help="timed rounds (one step of each model, in turn)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--op-repeats", type=positive, default=9, help="timings of the scan alone (median)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = p.parse_args()
    if args.d % args.heads:
        p.error(f"--d ({args.d}) must be divisible by --heads ({args.heads})")
    # what throughput.trainer reads
    args.device, args.dtype, args.compile, args.gpt_pos = "cpu", "float32", False, "learned"
    report: dict[str, object] = {
        "benchmark": "v2 gated scan share of a training step",
        "config": vars(args),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "results": {},
    }
    calls = 2 * args.layers  # one gated_keys per memory, two memories per block
    for context in args.contexts:
        steps = {
            "mosaic2": trainer("mosaic2", args, context)[1],
            "mosaic2_free_scan": trainer("mosaic2", args, context)[1],
            "llama": trainer("llama", args, context)[1],
        }
        times: dict[str, list[dict[str, float]]] = {name: [] for name in steps}
        for i in range(args.warmup + args.steps):
            for name, step in steps.items():
                with scan_replaced() if name == "mosaic2_free_scan" else contextlib.nullcontext():
                    t = timed(step)
                if i >= args.warmup:
                    times[name].append(t)
        alone = scan_alone_ms(args, context)
        result: dict[str, object] = {"scan_calls_per_step": calls}
        for clock in CLOCKS:
            v2, free, llama = ([t[clock] for t in times[k]] for k in steps)
            step_ms = {name: 1e3 * statistics.median(t[clock] for t in ts) for name, ts in times.items()}
            result[clock] = {
                "step_ms": step_ms,
                "step_ms_per_round": {name: [1e3 * t[clock] for t in ts] for name, ts in times.items()},
                "scan_alone_per_call": alone[clock],
                # the scan's share of a v2 step, two ways: its calls timed alone, and what removing it saves
                "scan_alone_share_of_step": calls * alone[clock]["forward_backward_ms"] / step_ms["mosaic2"],
                "scan_removed_saves_share": statistics.median(1 - f / v for v, f in zip(v2, free, strict=True)),
                # tokens/s ratios to llama (paired per round): as it is, and the bound with a scan that costs nothing
                "mosaic2_over_llama_tokens_per_s": statistics.median(ll / v for v, ll in zip(v2, llama, strict=True)),
                "mosaic2_free_scan_over_llama_tokens_per_s": statistics.median(
                    ll / f for f, ll in zip(free, llama, strict=True)
                ),
            }
        report["results"][str(context)] = result  # type: ignore[index]
        print(json.dumps({"context": context, **result}), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
