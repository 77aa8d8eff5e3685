"""Memory Mosaic v2 streaming: the step cost of each contextual memory alone, per layer and per token, along a stream.

``benchmarks/streaming.py --positions`` times whole streamed tokens (every block, both memories, the SwiGLU, the
head); this script takes one v2 block's two memories apart. For each position P it prefills each memory's streaming
state (a ``WindowedState``) with P tokens in one chunk, then, the two memories taking turns for ``--repeats`` turns, a
copy of that state takes one untimed step and ``--steps`` timed single-token steps. A step is what
``WindowedMemory`` does for a streamed token once the block has projected it (the block's joined projection is made
before the clock starts, as it is shared and does not depend on P): the gated-key step, the completed value, the
append to the store, the windowed retrieval with its bandwidth β(n), and, for the short-term memory, the drop of the
pairs its window can no longer reach. ``retrieval_us`` times the windowed retrieval alone on the pairs the last step
read. The short-term memory's store stays below twice its window h, so its cost should not move with P; the long-term
memory reads pairs 0 … t-m, like a KV cache, so its cost grows. Each time is taken in wall time and, as ``*_cpu``, in
this process's CPU time (``time.process_time``), which other work on a shared machine does not inflate when the
benchmark runs on one thread (the default). Prints JSON.

    python benchmarks/v2_memory_step.py                                   # P = 256, 1024, 4096, 16384; 1 thread
    python benchmarks/v2_memory_step.py --positions 256 4096 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time

import torch

from memory_mosaics.cli.types import positive
from memory_mosaics.models import build_model
from memory_mosaics.models.mosaic_v2 import MosaicV2Block, WindowedMemory
from memory_mosaics.ops.windowed import windowed_retrieval_step
from memory_mosaics.state import WindowedState

MEMORIES = ("short_term", "long_term")


def projections(memory: WindowedMemory, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """W_φ h, W_g h, W_λ h, W_ψ h: what the block's joined projection hands the memory for a streamed token."""
    return tuple(lin(h) for lin in memory.projections())


def window(memory: WindowedMemory, state: WindowedState, delay: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys and values the query of the last step read (pairs lo … hi-1, absolute), as ``WindowedMemory._stream``
    slices them; the short-term memory may have dropped the oldest of them since (one pair fewer then)."""
    last = state.seen - 1
    lo = state.first if memory.window is None else max(state.first, last - memory.window + 1)
    hi = max(last - delay + 1, lo)
    keys = state.keys.data[:, :, : state.values.length]
    return keys[:, :, lo - state.first : hi - state.first], state.values.data[:, :, lo - state.first : hi - state.first]


@torch.no_grad()
def measure(block: MosaicV2Block, h: torch.Tensor, position: int, args: argparse.Namespace) -> dict[str, dict]:
    """µs per step of each memory after a prefill of ``position`` tokens (the memories taking turns)."""
    delays = {"short_term": 1, "long_term": args.long_delay}
    memories = {name: getattr(block, name) for name in MEMORIES}
    prefilled, out = {}, {}
    for name, memory in memories.items():
        state = WindowedState()
        t0 = time.perf_counter()
        memory(h[:, :position], delays[name], state)
        out[name] = {"prefill_s": time.perf_counter() - t0}
        prefilled[name] = state
    n_steps = 1 + args.steps
    tokens = [h[:, position + i : position + i + 1] for i in range(n_steps)]
    proj = {name: [projections(m, x) for x in tokens] for name, m in memories.items()}
    steps: dict[str, list[float]] = {name: [] for name in memories}
    reads: dict[str, list[float]] = {name: [] for name in memories}
    steps_cpu: dict[str, list[float]] = {name: [] for name in memories}
    reads_cpu: dict[str, list[float]] = {name: [] for name in memories}
    stored: dict[str, list[int]] = {name: [] for name in memories}
    read_pairs: dict[str, list[int]] = {name: [] for name in memories}
    for _ in range(args.repeats):
        for name, memory in memories.items():
            state = copy.deepcopy(prefilled[name])
            memory(tokens[0], delays[name], state, proj[name][0])  # untimed: builds the state's caches, grows the store
            for x, p in zip(tokens[1:], proj[name][1:], strict=True):
                t0, c0 = time.perf_counter(), time.process_time()
                memory(x, delays[name], state, p)
                steps[name].append(time.perf_counter() - t0)
                steps_cpu[name].append(time.process_time() - c0)
                stored[name].append(state.keys.length)
            keys, values = window(memory, state, delays[name])
            read_pairs[name].append(keys.shape[2])
            query = torch.nn.functional.normalize(torch.randn_like(keys[:, :, :1]), dim=-1)
            params = state.cache.get(memory, h.dtype, memory.bandwidth_parameters)
            for _ in range(args.steps):
                t0, c0 = time.perf_counter(), time.process_time()
                windowed_retrieval_step(query, keys, values, *params)
                reads[name].append(time.perf_counter() - t0)
                reads_cpu[name].append(time.process_time() - c0)
    for name in memories:
        out[name] |= {
            "step_us": 1e6 * statistics.median(steps[name]),
            "step_us_mean": 1e6 * statistics.fmean(steps[name]),
            "step_us_per_repeat": [
                1e6 * statistics.median(steps[name][i : i + args.steps]) for i in range(0, len(steps[name]), args.steps)
            ],
            "retrieval_us": 1e6 * statistics.median(reads[name]),
            "step_us_cpu": 1e6 * statistics.median(steps_cpu[name]),
            "retrieval_us_cpu": 1e6 * statistics.median(reads_cpu[name]),
            "stored_pairs_min_max": [min(stored[name]), max(stored[name])],
            "pairs_read_by_last_step": read_pairs[name][-1],
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--positions", type=positive, nargs="+", default=[256, 1024, 4096, 16384], metavar="P")
    p.add_argument("--steps", type=positive, default=200, help="timed single-token steps per memory, turn and position")
    p.add_argument("--repeats", type=positive, default=3, help="turns per position (the memories take turns)")
    p.add_argument("--batch", type=positive, default=1)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--short-window", type=positive, default=256, help="h")
    p.add_argument("--long-delay", type=positive, default=64, help="m (at inference)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: PyTorch's default)")
    args = p.parse_args()
    if args.d % args.heads:
        p.error(f"--d ({args.d}) must be divisible by --heads ({args.heads})")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(
        "mosaic2", vocab_size=64, block_size=max(args.positions), n_layer=1, n_head=args.heads, n_embd=args.d,
        short_window=args.short_window, long_delay=args.long_delay,
    ).eval()  # fmt: skip
    block = model.blocks[0]
    with torch.no_grad():  # the block's input: normalised embeddings of random tokens
        h = block.ln_1(model.wte(torch.randint(0, 64, (args.batch, max(args.positions) + 1 + args.steps))))
    report: dict[str, object] = {
        "benchmark": "v2 memory step along a stream",
        "config": vars(args),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "results": {},
    }
    results: dict[str, dict] = report["results"]  # type: ignore[assignment]
    for position in args.positions:
        results[str(position)] = measure(block, h, position, args)
        print(json.dumps({"position": position, **results[str(position)]}), flush=True)
    first, last = results[str(args.positions[0])], results[str(args.positions[-1])]
    for key in ("step_us", "retrieval_us", "step_us_cpu", "retrieval_us_cpu"):
        report[f"{key}_last_over_first_position"] = {m: last[m][key] / first[m][key] for m in MEMORIES}
    report["long_over_short_step_us"] = {
        pos: r["long_term"]["step_us"] / r["short_term"]["step_us"] for pos, r in results.items()
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
