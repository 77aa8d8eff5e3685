"""Training throughput: a Memory Mosaic against the GPT baseline of (nearly) equal parameter count, in one run.

Each (model, context) measurement runs in a fresh process, so peak memory is that model's alone; repeats alternate the
two models so that drifts of a shared machine affect both alike. Prints JSON.

    python benchmarks/throughput.py                          # CPU, fp32, contexts 512 and 2048
    python benchmarks/throughput.py --device cuda --dtype bfloat16 --compile
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time

import torch

from memory_mosaics.models import GPT, GPTConfig, MemoryMosaic, MosaicConfig


def build(kind: str, args: argparse.Namespace, context: int) -> torch.nn.Module:
    shape = dict(vocab_size=args.vocab, block_size=context, n_layer=args.layers, n_head=args.heads, n_embd=args.d)
    if kind == "mosaic":
        return MemoryMosaic(MosaicConfig(**shape))
    return GPT(GPTConfig(**shape, pos=args.gpt_pos))


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure(kind: str, args: argparse.Namespace, context: int, queue: mp.Queue) -> None:
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build(kind, args, context).to(device)
    opt = model.configure_optimizers(0.1, 1e-4, fused=device.type == "cuda")
    step_fn = model
    if args.compile:
        step_fn = torch.compile(model)
    x = torch.randint(0, args.vocab, (args.batch, context), device=device)
    y = torch.randint(0, args.vocab, (args.batch, context), device=device)
    amp = torch.autocast(device.type, dtype=getattr(torch, args.dtype), enabled=args.dtype != "float32")

    def step() -> None:
        with amp:
            _, loss = step_fn(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    base_rss = rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    queue.put(
        {
            "tokens_per_s": args.batch * context / statistics.median(times),
            "step_ms_median": 1000 * statistics.median(times),
            "peak_mib": peak,
            "rss_after_warmup_mib": base_rss,
            "params": model.num_params(non_embedding=False),
            "params_non_embedding": model.num_params(),
        }
    )


def run_isolated(kind: str, args: argparse.Namespace, context: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=measure, args=(kind, args, context, q))
    p.start()
    result = q.get()
    p.join()
    return result


def main() -> None:
    # glibc raises its mmap threshold after large frees and then keeps freed activations in the heap, so a process's
    # peak RSS would measure allocator history more than live memory; a fixed threshold returns big tensors at once.
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(1 << 16))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contexts", type=int, nargs="+", default=[512, 2048])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--gpt-pos", default="learned", help="position encoding of the GPT baseline")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per measurement")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="alternating measurements per model; the best is kept")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = p.parse_args()
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
    for context in args.contexts:
        runs: dict[str, list[dict]] = {"mosaic": [], "gpt": []}
        for _ in range(args.repeats):
            for kind in runs:
                runs[kind].append(run_isolated(kind, args, context))
        best = {kind: max(r, key=lambda m: m["tokens_per_s"]) for kind, r in runs.items()}
        best["mosaic_over_gpt_tokens_per_s"] = best["mosaic"]["tokens_per_s"] / best["gpt"]["tokens_per_s"]
        best["mosaic_over_gpt_peak_memory"] = best["mosaic"]["peak_mib"] / best["gpt"]["peak_mib"]
        report["results"][str(context)] = best
        print(json.dumps({"context": context, **best}), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
