"""Streaming generation: tokens/s for N new tokens with the memory state (prefill once, then one token at a time)
against re-running the full forward over the whole sequence for every new token (what the authors' code does).
A Memory Mosaic and its baseline (with its KV cache) are measured in the same run, taking turns for the streamed
generations (median of ``--repeats``), with the aten operations one streamed token dispatches (at batch 1 on a CPU,
dispatch costs about as much as compute). Prints JSON.

    python benchmarks/streaming.py --new-tokens 512
    python benchmarks/streaming.py --new-tokens 512 --pair mosaic2 llama    # v2 against its llama baseline
    python benchmarks/streaming.py --pair mosaic2 llama --positions 256 1024 4096   # + per-token cost along a stream

``--positions P …`` also measures the time of one streamed token at several positions of a long stream: each model
prefills the same P random tokens once, then, taking turns for ``--repeats`` turns, a copy of that state takes one
untimed step and ``--steps-per-position`` timed single-token steps (greedy). A cost that stays flat as P grows is a
state that does not grow; a KV cache (and v2's long-term memory) grows with P.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from dataclasses import fields

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from memory_mosaics.cli.types import device_name, positive
from memory_mosaics.generate import generate
from memory_mosaics.models import MODELS, LanguageModel, build_model
from memory_mosaics.state import LayerState, ModelState, PairStore


@torch.no_grad()
def recompute_greedy(model: LanguageModel, idx: torch.Tensor, n: int) -> torch.Tensor:
    """The baseline: every new token re-reads the whole sequence."""
    for _ in range(n):
        nxt = model(idx)[0][:, -1].argmax(-1, keepdim=True)
        idx = torch.cat([idx, nxt], dim=1)
    return idx


class OpCounter(TorchDispatchMode):
    """Counts the aten operations dispatched inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


@torch.no_grad()
def ops_per_token(model: LanguageModel, prompt: torch.Tensor) -> int:
    """aten operations of one streamed token after a prefill: at batch 1 on a CPU, dispatch costs as much as compute."""
    state, token = model.init_state(), prompt[:, :1]
    model(token.repeat(1, 5), state=state)
    model(token, state=state)  # the first step builds what the state keeps (and grows the pair stores to 10)
    with OpCounter() as counter:
        model(token, state=state)
    return counter.count


def timed(fn, *args, **kwargs) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    if out.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def stored_keys(state: ModelState) -> dict[str, int]:
    """The keys each store of the first layer holds (a window's store stays bounded, a KV cache grows)."""
    found: dict[str, int] = {}

    def walk(obj: object, name: str) -> None:
        if isinstance(obj, PairStore):
            found[name] = obj.length
        elif isinstance(obj, LayerState):
            for f in fields(obj):
                walk(getattr(obj, f.name), f"{name}.{f.name}" if name else f.name)

    walk(state.layers[0], "")
    return {name: n for name, n in found.items() if name.split(".")[-1] == "keys"}


@torch.no_grad()
def step_times(
    model: LanguageModel, state: ModelState, token: torch.Tensor, n: int
) -> tuple[list[float], torch.Tensor]:
    """Seconds of each of n greedy single-token steps that continue ``state`` from ``token``, and the next token."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        token = model(token, state=state)[0][:, -1].argmax(-1, keepdim=True)
        if token.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times, token


@torch.no_grad()
def per_token_at(models: dict[str, LanguageModel], position: int, args: argparse.Namespace, device) -> dict:
    """ms per streamed token after a prefill of ``position`` tokens, the models taking turns (see the docstring)."""
    tokens = torch.randint(0, args.vocab, (args.batch, position), device=device)
    prefilled: dict[str, tuple[ModelState, torch.Tensor]] = {}
    out: dict[str, dict] = {}
    for name, model in models.items():
        state = model.init_state()
        t, logits = timed(lambda m=model, s=state: m(tokens, state=s)[0])  # the prefill, in one chunk
        prefilled[name] = state, logits[:, -1].argmax(-1, keepdim=True)
        out[name] = {"prefill_s": t}
    steps: dict[str, list[list[float]]] = {name: [] for name in models}
    last: dict[str, ModelState] = {}
    for _ in range(args.repeats):
        for name, model in models.items():
            state, token = copy.deepcopy(prefilled[name][0]), prefilled[name][1]
            _, token = step_times(model, state, token, 1)  # untimed: rebuilds the per-state caches, grows the stores
            steps[name].append(step_times(model, state, token, args.steps_per_position)[0])
            last[name] = state
    for name in models:
        pooled = [1e3 * t for run in steps[name] for t in run]
        out[name] |= {
            "ms_per_token": statistics.median(pooled),
            "ms_per_token_mean": statistics.fmean(pooled),
            "ms_per_token_per_repeat": [1e3 * statistics.median(run) for run in steps[name]],
            "stored_keys_layer0": stored_keys(last[name]),  # after the last timed step
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--new-tokens", type=positive, default=512)
    p.add_argument("--prompt", type=positive, default=64, help="prompt length")
    p.add_argument("--batch", type=positive, default=1)
    p.add_argument("--layers", type=positive, default=4)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--device", default="cpu", type=device_name)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--repeats", type=positive, default=5, help="streamed generations per model (median; taken in turn)")
    p.add_argument(
        "--pair", nargs=2, default=["mosaic", "gpt"], choices=sorted(MODELS), metavar=("OURS", "BASELINE"),
        help="the two architectures (default: mosaic gpt; mosaic2 llama for v2)",
    )  # fmt: skip
    p.add_argument("--short-window", type=positive, default=256, help="Memory Mosaic v2: h")
    p.add_argument("--long-delay", type=positive, default=64, help="Memory Mosaic v2: m")
    p.add_argument(
        "--positions", type=positive, nargs="+", metavar="P",
        help="also the ms per streamed token after a prefill of P tokens, for each P (see above)",
    )  # fmt: skip
    p.add_argument("--steps-per-position", type=positive, default=64, help="timed tokens per turn and position")
    args = p.parse_args()
    torch.manual_seed(0)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    total = args.prompt + args.new_tokens
    block = max(total, max(args.positions) + args.steps_per_position + 1) if args.positions else total  # GPT's wpe
    shape = dict(vocab_size=args.vocab, block_size=block, n_layer=args.layers, n_head=args.heads, n_embd=args.d)
    v2 = dict(short_window=args.short_window, long_delay=args.long_delay)  # the others ignore them
    models = {name: build_model(name, **shape, **v2) for name in args.pair}
    prompt = torch.randint(0, args.vocab, (args.batch, args.prompt), device=device)
    report = {
        "benchmark": "streaming generation",
        "config": vars(args),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "results": {},
    }
    for model in models.values():
        model.to(device=device, dtype=dtype).eval()
        generate(model, prompt[:, :8], 8, greedy=True)  # warm-up
    n = args.batch * args.new_tokens
    # streamed generation: the models take turns, so a drift of a shared machine hits both alike
    stream_tps: dict[str, list[float]] = {name: [] for name in models}
    out_stream: dict[str, torch.Tensor] = {}
    for _ in range(args.repeats):
        for name, model in models.items():
            t, out_stream[name] = timed(generate, model, prompt, args.new_tokens, greedy=True)
            stream_tps[name].append(n / t)
    for name, model in models.items():
        t_full, out_full = timed(recompute_greedy, model, prompt, args.new_tokens)
        tps = statistics.median(stream_tps[name])
        report["results"][name] = {
            "stream_tokens_per_s": tps,
            "stream_tokens_per_s_per_repeat": stream_tps[name],
            "recompute_tokens_per_s": n / t_full,
            "speedup": tps * t_full / n,
            "aten_ops_per_token": ops_per_token(model, prompt),
            # greedy paths agree unless two logits tie within float error
            "same_tokens": bool(torch.equal(out_stream[name], out_full)) if dtype == torch.float32 else None,
        }
        print(json.dumps({name: report["results"][name]}), flush=True)
    ours, base = (report["results"][name] for name in args.pair)
    report[f"{args.pair[0]}_over_{args.pair[1]}_stream_tokens_per_s"] = (
        ours["stream_tokens_per_s"] / base["stream_tokens_per_s"]
    )
    if args.positions:
        per = report["per_token_by_position"] = {}
        for position in args.positions:
            per[str(position)] = per_token_at(models, position, args, device)
            print(json.dumps({"position": position, **per[str(position)]}), flush=True)
        a, b = args.pair
        report[f"{a}_over_{b}_ms_per_token_by_position"] = {
            pos: r[a]["ms_per_token"] / r[b]["ms_per_token"] for pos, r in per.items()
        }
        first, last = per[str(args.positions[0])], per[str(args.positions[-1])]
        report["ms_per_token_last_over_first_position"] = {
            name: last[name]["ms_per_token"] / first[name]["ms_per_token"] for name in models
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
