"""Training throughput: a Memory Mosaic against its baseline, in one run (by default v1 against the GPT of (nearly)
equal parameter count; ``--pair mosaic2 llama`` compares Memory Mosaic v2 with its llama baseline of the same shape).

Speed: both models live in one process and take training steps in turn (Mosaic, GPT, Mosaic, ...), so a drift of a
shared machine hits both alike; tokens/s is the median over the timed steps, and the ratio is the median over pairs of
steps taken one after the other (a Mosaic step and the GPT step that follows it), so that a drift of the machine's
speed between repeats, which moves both models, does not enter it.
Memory: each model then runs alone in a fresh process, whose peak is that model's alone. On a CPU that peak is the
process's peak RSS with glibc's mmap threshold fixed at 64 KiB: glibc otherwise raises the threshold after large frees
and keeps freed activations in its heap, so RSS would measure allocator history more than live memory. The fixed
threshold returns every large tensor to the system at once, which costs page faults, so speed is measured apart, with
the allocator as a user has it. Prints JSON.

    python benchmarks/throughput.py                          # CPU, fp32, contexts 512 and 2048
    python benchmarks/throughput.py --device cuda --dtype bfloat16 --compile
    python benchmarks/throughput.py --pair mosaic2 llama      # v2 (h 256, m 64) against llama, same shape
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue
import resource
import statistics
import time
from collections.abc import Callable

import torch

from memory_mosaics.cli.types import device_name, positive
from memory_mosaics.models import MODELS, build_model, model_config
from memory_mosaics.ops import kernels


def fields(args: argparse.Namespace, context: int) -> dict[str, object]:
    """The shape every architecture of the run shares, and each one's own options (the others ignore them)."""
    return dict(
        vocab_size=args.vocab, block_size=context, n_layer=args.layers, n_head=args.heads, n_embd=args.d,
        pos=args.gpt_pos, short_window=args.short_window, long_delay=args.long_delay,
    )  # fmt: skip


def build_config(kind: str, args: argparse.Namespace, context: int) -> object:
    return model_config(kind, **fields(args, context))


def build(kind: str, args: argparse.Namespace, context: int) -> torch.nn.Module:
    return build_model(kind, **fields(args, context))


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def trainer(kind: str, args: argparse.Namespace, context: int) -> tuple[torch.nn.Module, Callable[[], None]]:
    """A model and a function that takes one timed training step (forward, backward, AdamW) on fixed random tokens."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build(kind, args, context).to(device)
    opt = model.configure_optimizers(0.1, 1e-4, fused=device.type == "cuda")
    step_fn = torch.compile(model) if args.compile else model
    x = torch.randint(0, args.vocab, (args.batch, context), device=device)
    y = torch.randint(0, args.vocab, (args.batch, context), device=device)
    amp = torch.autocast(device.type, dtype=getattr(torch, args.dtype), enabled=args.dtype != "float32")

    def step() -> None:
        with amp:
            _, loss = step_fn(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return model, step


def measure_speed(args: argparse.Namespace, context: int, queue: mp.Queue) -> None:
    steps = {kind: trainer(kind, args, context)[1] for kind in args.pair}
    if args.compare_eager:  # a third model, the same Mosaic with its CPU kernels off, taking its steps in turn too
        steps[f"{args.pair[0]}_eager"] = kernels.disabled()(trainer(args.pair[0], args, context)[1])
    times: dict[str, list[float]] = {kind: [] for kind in steps}
    for i in range(args.warmup + args.steps):
        for kind, step in steps.items():
            t0 = time.perf_counter()
            step()
            if i >= args.warmup:
                times[kind].append(time.perf_counter() - t0)
    queue.put({kind: [args.batch * context / t for t in ts] for kind, ts in times.items()})


def measure_memory(kind: str, args: argparse.Namespace, context: int, queue: mp.Queue) -> None:
    model, step = trainer(kind, args, context)
    for _ in range(args.warmup):
        step()
    base_rss = rss_mib()
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.memory_steps):
        step()
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if args.device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    queue.put(
        {
            "peak_mib": peak,
            "rss_after_warmup_mib": base_rss,
            "params": model.num_params(non_embedding=False),
            "params_non_embedding": model.num_params(),
        }
    )


def run_isolated(target: Callable, *args: object, env: dict[str, str] | None = None) -> dict:
    """Run target(*args, queue) in a fresh process (with extra environment variables) and return what it puts."""
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=target, args=(*args, q))
        p.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    while True:  # a child that dies (out of memory, a crash) puts nothing: waiting on the queue alone would hang
        try:
            result = q.get(timeout=1.0)
            break
        except queue.Empty:
            if not p.is_alive() and q.empty():
                code = p.exitcode
                why = f"killed by signal {-code}, out of memory?" if code is not None and code < 0 else f"exit {code}"
                raise SystemExit(f"{target.__name__} failed in its own process ({why}); see its output above") from None
    p.join()
    return result


def add_shape_arguments(p: argparse.ArgumentParser) -> None:
    """The training shape this benchmark and v2_scan_share.py share (their defaults: issue #23's 4 blocks, d 256)."""
    p.add_argument("--contexts", type=int, nargs="+", default=[512, 2048])
    p.add_argument("--batch", type=positive, default=8)
    p.add_argument("--layers", type=positive, default=4)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--vocab", type=int, default=4096)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shape_arguments(p)
    p.add_argument(
        "--pair", nargs=2, default=["mosaic", "gpt"], choices=sorted(MODELS), metavar=("OURS", "BASELINE"),
        help="the two architectures (default: mosaic gpt; mosaic2 llama for v2)",
    )  # fmt: skip
    p.add_argument("--gpt-pos", default="learned", help="position encoding of the GPT baseline")
    p.add_argument("--short-window", type=positive, default=256, help="Memory Mosaic v2: h")
    p.add_argument("--long-delay", type=positive, default=64, help="Memory Mosaic v2: m")
    p.add_argument(
        "--steps", type=positive, default=8, help="timed training steps per model and repeat (taken in turn)"
    )
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=positive, default=2, help="speed runs, each in a fresh process; steps are pooled")
    p.add_argument("--memory-steps", type=positive, default=2, help="steps after warm-up in each memory process")
    p.add_argument("--device", default="cpu", type=device_name)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    p.add_argument(
        "--compare-eager",
        action="store_true",
        help="also time the Memory Mosaic with its CPU kernels off, in turn with the other two (speed only)",
    )
    args = p.parse_args()
    for context in args.contexts:  # refuse an impossible shape here, not in a child process
        try:
            for kind in args.pair:
                build_config(kind, args, context)
        except ValueError as e:
            p.error(f"context {context}: {e}")
    report = {
        "benchmark": "training throughput",
        "config": vars(args),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": mp.cpu_count(),
        "results": {},
    }
    if args.device == "cuda":
        report["gpu"] = torch.cuda.get_device_name()
    memory_env = {} if args.device == "cuda" else {"MALLOC_MMAP_THRESHOLD_": str(1 << 16)}
    for context in args.contexts:
        runs = [run_isolated(measure_speed, args, context) for _ in range(args.repeats)]
        result: dict[str, object] = {}
        ours, base = args.pair
        for kind in args.pair:
            pooled = [tps for run in runs for tps in run[kind]]
            result[kind] = {
                "tokens_per_s": statistics.median(pooled),
                "step_ms_median": 1000 * args.batch * context / statistics.median(pooled),
                **run_isolated(measure_memory, kind, args, context, env=memory_env),
            }
        paired = [m / g for run in runs for m, g in zip(run[ours], run[base], strict=True)]
        result[f"{ours}_over_{base}_tokens_per_s"] = statistics.median(paired)
        result["ratio_per_repeat"] = [statistics.median(run[ours]) / statistics.median(run[base]) for run in runs]
        if args.compare_eager:
            eager = [e / g for run in runs for e, g in zip(run[f"{ours}_eager"], run[base], strict=True)]
            result[f"{ours}_eager"] = {
                "tokens_per_s": statistics.median(tps for run in runs for tps in run[f"{ours}_eager"])
            }
            result[f"{ours}_eager_over_{base}_tokens_per_s"] = statistics.median(eager)
        result[f"{ours}_over_{base}_peak_memory"] = result[ours]["peak_mib"] / result[base]["peak_mib"]
        report["results"][str(context)] = result
        print(json.dumps({"context": context, **result}), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
