"""The whole experiment: train both nets on several seeds, evaluate, and collect everything the report needs.

Work is split into jobs (train + evaluate one seed; one chunk of a full-resolution curve) that run in a pool of
single-threaded worker processes: the nets are tiny, so one process per core beats intra-op threading.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from typing import Any

import torch
from tqdm import tqdm

from .data import TRAIN_COMBOS, VAL_COMBO, MoonsData
from .evaluate import GEN_STEPS, disentanglement, rollout_error
from .model import MoonsNet
from .train import MoonsTrainConfig, one_head_config, train_net

ACCURATE = 0.05  # "accurate prediction": mean absolute deviation over the next 25 steps below this
RATIO = 4.0  # the one-head net's error between max(p) and lcm(p) must stay at least this multiple of the three-head's
DISENTANGLED = 0.1  # largest distance of W_φ, W_ψ, W_z to a permutation for a net to count as disentangled
FIGURE_TRAIN_COMBO = TRAIN_COMBOS[5]  # (0.5, 1, 2.5), the training combination of the authors' plots


@dataclass
class MoonsEvalConfig:
    """How the nets are measured: the 25-step rollout error on fixed evaluation sequences."""

    sequences: int = 512  # sequences per curve (the paper's 512)
    seed: int = 1234  # the evaluation sequences, the same for every net and seed
    curve_stride: int = 1  # context lengths of the full curves (figure seed): 1, 1 + stride, ...
    curve_chunks: int = 6  # jobs per full curve, so the pool stays balanced


@dataclass
class MoonsRunConfig:
    """The whole experiment: which nets, which seeds, their recipes, the evaluation and the pool's size."""

    heads: list[int] = field(default_factory=lambda: [1, 3])
    seeds: list[int] = field(default_factory=lambda: list(range(10)))
    train: MoonsTrainConfig = field(default_factory=MoonsTrainConfig)  # the three-head net
    train_one_head: MoonsTrainConfig = field(default_factory=lambda: one_head_config(MoonsTrainConfig()))
    eval: MoonsEvalConfig = field(default_factory=MoonsEvalConfig)
    workers: int = 2


def key_contexts(data: MoonsData, combo: tuple[float, ...]) -> dict[str, int]:
    return {
        "max_p": round(max(data.periods_in_steps(combo))),
        "lcm": round(data.lcm_in_steps(combo)),
        "max_c": data.block_size - GEN_STEPS,
    }


def seed_contexts(data: MoonsData, combo: tuple[float, ...]) -> list[int]:
    """The context lengths evaluated for every seed: a coarse grid, a fine one between max(p) and lcm(p) (+ margin)."""
    k = key_contexts(data, combo)
    fine = range(max(1, k["max_p"] - 40), min(k["max_c"], k["lcm"] + 60) + 1, 3)
    points = {*range(1, k["max_c"] + 1, 25), *fine, *(round(p) for p in data.periods_in_steps(combo))}
    points |= {k["max_p"], k["lcm"], k["max_c"]}
    return sorted(points)


def eval_sequences(data: MoonsData, combo: tuple[float, ...], cfg: MoonsEvalConfig) -> torch.Tensor:
    gen = torch.Generator().manual_seed(cfg.seed + TRAIN_COMBOS.index(combo) if combo in TRAIN_COMBOS else cfg.seed)
    return data.sequences(combo, cfg.sequences, gen)


def net_from_state(n_heads: int, state: dict[str, list]) -> MoonsNet:
    net = MoonsNet(n_heads)
    net.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    return net


def _init_worker() -> None:
    torch.set_num_threads(1)


def train_job(n_heads: int, seed: int, train: MoonsTrainConfig, ev: MoonsEvalConfig) -> dict:
    """Train one net and measure it on the validation combination at ``seed_contexts``."""
    t0, c0 = time.perf_counter(), time.process_time()
    data = MoonsData()
    net, losses, rollout_losses = train_net(n_heads, seed, train, data)
    train_s = time.perf_counter() - t0
    contexts = seed_contexts(data, VAL_COMBO)
    errors = rollout_error(net, eval_sequences(data, VAL_COMBO, ev), contexts).tolist()
    k = key_contexts(data, VAL_COMBO)
    err = dict(zip(contexts, errors, strict=True))
    return {
        "heads": n_heads,
        "seed": seed,
        "losses": losses,
        "rollout_losses": rollout_losses,
        "state": {name: p.detach().tolist() for name, p in net.state_dict().items()},
        "val_contexts": contexts,
        "val_errors": errors,
        "val_error_at_max_p": err[k["max_p"]],
        "val_error_at_lcm": err[k["lcm"]],
        "val_max_error_after_max_p": max(e for c, e in err.items() if c >= k["max_p"]),
        "val_max_error_after_lcm": max(e for c, e in err.items() if c >= k["lcm"]),
        "val_min_error_before_lcm": min(e for c, e in err.items() if c < k["lcm"]),
        "first_accurate_context": next((c for c, e in err.items() if e < ACCURATE), None),
        "disentanglement": disentanglement(net),
        "train_seconds": train_s,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
    }


def curve_job(n_heads: int, state: dict, combo: tuple[float, ...], contexts: list[int], ev: MoonsEvalConfig) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    data = MoonsData()
    errors = rollout_error(net_from_state(n_heads, state), eval_sequences(data, combo, ev), contexts).tolist()
    return {
        "heads": n_heads,
        "combo": list(combo),
        "contexts": contexts,
        "errors": errors,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
    }


def disentangled(result: dict) -> bool:
    d = result["disentanglement"]
    return d["score"] < DISENTANGLED and d["consistent"]


def converged(result: dict) -> bool:
    """Three heads: the disentangled solution (one moon per head, routed back consistently).
    One head: the first astronomer's solution, accurate from lcm(p) on."""
    if result["heads"] == 1:
        return result["val_max_error_after_lcm"] < ACCURATE
    return disentangled(result)


Job = tuple[Callable[..., dict], tuple[Any, ...]]  # a function of the pool and its arguments


def figure_contexts(data: MoonsData, stride: int) -> list[int]:
    """The context lengths of the figure seed's full curves: 1, 1 + stride, ..., and the key points of both curves
    whatever the stride."""
    full = list(range(1, data.block_size - GEN_STEPS + 1, stride))
    for combo in (FIGURE_TRAIN_COMBO, VAL_COMBO):
        full += [v for v in key_contexts(data, combo).values() if v not in full]
    return sorted(set(full))


def run_jobs(jobs: list[Job], follow_up: Callable[[dict], list[Job]], workers: int, bar: Any) -> list[dict]:
    """Run ``jobs``, and the jobs ``follow_up(result)`` adds after each result, in a pool of ``workers``
    single-threaded processes (in this process for one worker: tests, debugging); returns every result."""
    done: list[dict] = []

    def finish(result: dict) -> list[Job]:
        done.append(result)
        bar.update()
        return follow_up(result)

    if workers <= 1:
        queue = list(jobs)
        while queue:
            fn, fn_args = queue.pop(0)
            queue += finish(fn(*fn_args))
        return done
    ctx = get_context("spawn")  # fresh interpreters: no inherited thread pools
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
        pending = {pool.submit(fn, *fn_args) for fn, fn_args in jobs}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                pending |= {pool.submit(fn, *fn_args) for fn, fn_args in finish(fut.result())}
    return done


def run_all(cfg: MoonsRunConfig, progress: bool = True) -> dict:
    """Train every (net, seed), evaluate them, and the full curves of the first seed; returns the collected results."""
    data = MoonsData()
    t0 = time.perf_counter()
    figure_seed = cfg.seeds[0]
    full = figure_contexts(data, cfg.eval.curve_stride)
    n_chunks = max(1, cfg.eval.curve_chunks)
    chunks = [full[i::n_chunks] for i in range(n_chunks)]  # interleaved: equal cost
    # the figure seed first (its curves depend on it), the costlier three-head net before the one-head one
    order = sorted(((h, s) for h in cfg.heads for s in cfg.seeds), key=lambda hs: (hs[1] != figure_seed, -hs[0]))
    train_jobs: list[Job] = [
        (train_job, (h, s, cfg.train_one_head if h == 1 else cfg.train, cfg.eval)) for h, s in order
    ]
    bar = tqdm(total=len(order) + len(cfg.heads) * 2 * n_chunks, desc="moons jobs", disable=not progress)

    def follow_up(res: dict) -> list[Job]:
        """After a training job, the figure seed's full curves of that net."""
        if "state" not in res:
            return []
        bar.set_postfix(last=f"{res['heads']}h s{res['seed']} {'ok' if converged(res) else 'NOT converged'}")
        if res["seed"] != figure_seed:
            return []
        return [
            (curve_job, (res["heads"], res["state"], combo, part, cfg.eval))
            for combo in (FIGURE_TRAIN_COMBO, VAL_COMBO)
            for part in chunks
        ]

    done = run_jobs(train_jobs, follow_up, cfg.workers, bar)
    bar.close()
    results = [r for r in done if "state" in r]
    curve_parts = [r for r in done if "state" not in r]
    return {
        "results": sorted(results, key=lambda r: (r["heads"], r["seed"])),
        "curves": _curves(cfg.heads, curve_parts),
        "curve_seconds": sum(p["seconds"] for p in curve_parts),
        "curve_cpu_seconds": sum(p["cpu_seconds"] for p in curve_parts),
        "wall_seconds": time.perf_counter() - t0,
        "figure_seed": figure_seed,
        "config": _config_record(cfg, data),
    }


def _curves(heads: list[int], curve_parts: list[dict]) -> dict[tuple[int, tuple[float, ...]], list[tuple[int, float]]]:
    """The chunks of every full curve joined: (net, combination) -> [(context, error)], by context."""
    curves = {}
    for h in heads:
        for combo in (FIGURE_TRAIN_COMBO, VAL_COMBO):
            parts = [p for p in curve_parts if p["heads"] == h and tuple(p["combo"]) == combo]
            curves[(h, combo)] = sorted((c, e) for p in parts for c, e in zip(p["contexts"], p["errors"], strict=True))
    return curves


def _config_record(cfg: MoonsRunConfig, data: MoonsData) -> dict[str, Any]:
    """The resolved configuration, as the report's config.json records it."""
    return {
        "heads": cfg.heads,
        "seeds": cfg.seeds,
        "train": asdict(cfg.train),
        "train_one_head": asdict(cfg.train_one_head),
        "eval": asdict(cfg.eval),
        "workers": cfg.workers,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "data": {
            "block_size": data.block_size,
            "steps_per_unit": data.steps_per_unit,
            "train_combos": [list(c) for c in data.train_combos],
            "val_combo": list(data.val_combo),
            "figure_train_combo": list(FIGURE_TRAIN_COMBO),
        },
    }


def acceptance(out: dict) -> dict:
    """The issue's acceptance, on the full validation curves of the figure seed."""
    data = MoonsData()
    k = key_contexts(data, VAL_COMBO)
    e1 = dict(out["curves"].get((1, VAL_COMBO), []))
    e3 = dict(out["curves"].get((3, VAL_COMBO), []))
    acc: dict = {"max_p": k["max_p"], "lcm": k["lcm"]}
    if e3:
        acc["three_head_error_at_max_p"] = e3[k["max_p"]]
        acc["three_head_max_error_after_max_p"] = max(e for c, e in e3.items() if c >= k["max_p"])
        acc["three_head_ok"] = acc["three_head_max_error_after_max_p"] < ACCURATE
    if e1:
        acc["one_head_error_at_max_p"] = e1[k["max_p"]]
        acc["one_head_error_at_lcm"] = e1[k["lcm"]]
        acc["one_head_min_error_before_lcm"] = min(e for c, e in e1.items() if c < k["lcm"])
        acc["one_head_first_accurate_context"] = next((c for c, e in sorted(e1.items()) if e < ACCURATE), None)
        acc["one_head_ok"] = acc["one_head_min_error_before_lcm"] >= ACCURATE and (
            acc["one_head_first_accurate_context"] is not None
        )
    if e1 and e3:
        between = [c for c in e3 if k["max_p"] <= c < k["lcm"] and c in e1]
        acc["min_ratio_between"] = min(e1[c] / max(e3[c], 1e-12) for c in between)
        acc["ratio_ok"] = acc["min_ratio_between"] >= RATIO
    seeds = {}
    for h in sorted({r["heads"] for r in out["results"]}):
        rs = [r for r in out["results"] if r["heads"] == h]
        seeds[h] = {
            "converged": sum(converged(r) for r in rs),
            "accurate_after_max_p": sum(r["val_max_error_after_max_p"] < ACCURATE for r in rs),
            "accurate_after_lcm": sum(r["val_max_error_after_lcm"] < ACCURATE for r in rs),
            "of": len(rs),
        }
    acc["seeds"] = seeds
    acc["all_ok"] = all(acc.get(key, True) for key in ("three_head_ok", "one_head_ok", "ratio_ok")) and all(
        v["converged"] == v["of"] for v in seeds.values()
    )
    return acc
