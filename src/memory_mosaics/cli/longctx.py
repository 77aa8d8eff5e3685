"""``mosaic longctx {mqar,needle,fewshot}``: the long-context recall and in-context learning suite (issue #24).

Each task family trains every architecture (Memory Mosaic v1, v2 with a random and a fixed long-term delay m, GPT-2,
llama with RoPE, an LSTM; Mamba and RWKV of Hugging Face ``transformers`` when asked for) with bodies matched to
v1's, on generated sequences (no downloads), and scores them where the task asks: MQAR over a grid of (sequence
length, key-value pairs), needles and variable tracking at 1×, 2×, 4×, 8× the training length, few-shot
classification with anonymous labels against the number of shots. ``--preset cpu`` (the default) is sized for 2 CPU
cores, ``--preset gpu`` for one GPU; any flag given overrides the preset. Each run writes a results folder:
config.json (every option and seed), results.json, results.md and the plot."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from memory_mosaics.cli.types import device_name, natural, out_folder, positive

HELP = "long-context recall and in-context learning: MQAR, needles / variable tracking, few-shot (issue #24)"
MODELS = ("mosaic", "mosaic2", "mosaic2-fixed", "gpt", "llama", "lstm")
EXTRA_MODELS = ("mamba", "rwkv")  # transformers' pure-PyTorch paths: slow on a CPU, so only when asked for

# preset -> task -> option defaults (the flags' None); options common to the tasks under "*"
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "cpu": {
        "*": {"n_layer": 2, "n_head": 4, "batch_size": 32, "lr": 3e-3, "warmup_steps": 30, "eval_sequences": 256},
        "mqar": {
            "widths": [64, 128],
            "steps": 400,
            "lengths": [64, 128, 256, 512],
            "pairs": [4, 8, 16, 32, 64],
            "vocab_size": 512,
        },
        "needle": {
            "widths": [64],
            "steps": 400,
            "train_len": 256,
            "multiples": [1, 2, 4, 8],
            "needles": 4,
            "hops": 1,  # vt: a chain of two assignments needs two lookups, what 2 blocks can chain
            "finetune_multiple": 4,
            "finetune_steps": [1, 2, 8],
        },
        "fewshot": {"widths": [64], "steps": 400, "train_shots": [1, 2, 3, 4], "test_shots": [0, 1, 2, 4, 8, 16]},
    },
    "gpu": {
        "*": {"n_layer": 4, "n_head": 8, "batch_size": 64, "lr": 1e-3, "warmup_steps": 200, "eval_sequences": 1024},
        "mqar": {
            "widths": [64, 128, 256],
            "steps": 4000,
            "lengths": [64, 128, 256, 512],
            "pairs": [4, 8, 16, 32, 64],
            "vocab_size": 8192,
        },
        "needle": {
            "widths": [256],
            "steps": 4000,
            "train_len": 256,
            "multiples": [1, 2, 4, 8],
            "needles": 8,
            "finetune_multiple": 4,
            "finetune_steps": [1, 2, 8],
        },
        "fewshot": {"widths": [256], "steps": 4000, "train_shots": [1, 2, 4, 8], "test_shots": [0, 1, 2, 4, 8, 16, 32]},
    },
}
# defaults that no preset changes
FIXED = {
    "micro_batch_size": None,
    "weight_decay": 0.1,
    "grad_clip": 1.0,
    "eval_batch_size": 32,
    "short_window": 32,
    "long_delay": 16,
    "long_delay_min": 16,
    "long_delay_max": 32,
    "queries": 1,
    "key_len": 1,
    "value_len": 1,
    "hops": 2,
    "noise_vocab": 256,
    "classes": 4,
    "item_len": 4,
    "item_tokens": 128,
    "labels": 16,
    "pool": 64,
    "noise": 0.25,
    "finetune_multiple": None,
    "finetune_steps": [],
    "finetune_lr": None,
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="option defaults: cpu (2 cores) or gpu")
    p.add_argument("--out", type=out_folder, help="results folder (default runs/longctx_<task>)")
    p.add_argument(
        "--models",
        nargs="+",
        choices=MODELS + EXTRA_MODELS,
        default=list(MODELS),
        help="architectures to train (default: all but mamba and rwkv, which need transformers)",
    )
    p.add_argument("--widths", nargs="+", type=positive, help="n_embd of every model; each width is a separate run")
    p.add_argument("--n-layer", type=positive, help="blocks (LSTM layers)")
    p.add_argument("--n-head", type=positive, help="heads per memory / attention")
    p.add_argument("--steps", type=positive, help="optimiser steps per model")
    p.add_argument("--batch-size", type=positive, help="sequences per optimiser step")
    p.add_argument("--micro-batch-size", type=positive, help="sequences per forward (gradient accumulation)")
    p.add_argument("--lr", type=float, help="peak learning rate (warm-up, then cosine to lr/10)")
    p.add_argument("--warmup-steps", type=natural, help="linear warm-up steps")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 0.1)")
    p.add_argument("--grad-clip", type=float, help="gradient-norm clip, 0 = off (default 1)")
    p.add_argument("--eval-sequences", type=positive, help="test sequences per evaluation point")
    p.add_argument("--eval-batch-size", type=positive, help="sequences per evaluation forward (default 32)")
    p.add_argument("--short-window", type=positive, help="v2's short-term window h (default 32)")
    p.add_argument(
        "--long-delay", type=positive, help="v2's long-term delay m at inference; fixed m's in training (16)"
    )
    p.add_argument("--long-delay-min", type=positive, help="v2 (random m) draws m per step from [min, max] (16)")
    p.add_argument("--long-delay-max", type=positive, help="see --long-delay-min (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation (and of v2's m per step)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of every generated sequence, training and test")
    p.add_argument("--device", type=device_name, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        default="auto",
        help="autocast dtype (auto: bf16 on CUDA, fp32 elsewhere)",
    )
    p.add_argument("--threads", type=natural, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="task", metavar="TASK", required=True)
    m = sub.add_parser(
        "mqar",
        help="multi-query associative recall over a (length, pairs) grid (Zoology)",
        description="MQAR as Zoology defines it: trained on a mixture of the grid's cells, scored on each.",
    )
    _common(m)
    m.add_argument("--lengths", nargs="+", type=positive, help="sequence lengths of the grid (cpu: 64 128 256 512)")
    m.add_argument(
        "--pairs", nargs="+", type=positive, help="key-value pairs of the grid (cells with length >= 4·pairs)"
    )
    m.add_argument("--vocab-size", type=positive, help="keys from the first half, values from the second (cpu: 512)")
    m.add_argument("--random-filler", action="store_true", help="random tokens between queries instead of token 0")
    n = sub.add_parser(
        "needle",
        help="needle retrieval / variable tracking at 1x-8x the training length (RULER)",
        description="Needles or variable-tracking chains in a haystack of real text or noise.",
    )
    _common(n)
    n.add_argument("--kind", choices=["needle", "vt"], default="needle", help="needles, or variable tracking")
    n.add_argument("--train-len", type=positive, help="training sequence length (cpu: 256)")
    n.add_argument("--multiples", nargs="+", type=positive, help="test lengths, in training lengths (1 2 4 8)")
    n.add_argument(
        "--haystack",
        default="noise",
        help="'noise', or a dataset folder from `mosaic prepare` whose text fills the haystack",
    )
    n.add_argument("--haystack-split", default="train", help="the split of --haystack to read")
    n.add_argument("--noise-vocab", type=positive, help="vocabulary of the noise haystack (default 256)")
    n.add_argument("--needles", type=positive, help="needles (chains for vt) per sequence (cpu: 4)")
    n.add_argument("--queries", type=positive, help="needles (chains) asked about at the end (default 1)")
    n.add_argument("--key-len", type=positive, help="tokens per needle key (default 1)")
    n.add_argument("--value-len", type=positive, help="tokens per needle value (default 1)")
    n.add_argument(
        "--hops", type=positive, help="vt: assignments after the first in each chain (presets: cpu 1, gpu 2)"
    )
    n.add_argument(
        "--finetune-multiple",
        type=positive,
        help="context extension: after training, fine-tune at this multiple of the training length, one of "
        "--multiples (presets: 4, i.e. 1024 tokens)",
    )
    n.add_argument(
        "--finetune-steps",
        nargs="*",
        type=positive,
        help="fine-tune step counts, each from the trained model (presets: 1 2 8; none given: no fine-tune)",
    )
    n.add_argument("--finetune-lr", type=float, help="constant fine-tune lr (default: the schedule's last, lr/10)")
    f = sub.add_parser(
        "fewshot",
        help="few-shot classification with anonymous labels, accuracy against shots",
        description="C classes of noisy items with labels re-drawn per sequence, k shots, one query.",
    )
    _common(f)
    f.add_argument("--classes", type=positive, help="classes per sequence, C (default 4)")
    f.add_argument("--train-shots", nargs="+", type=positive, help="shots per class in training, drawn per step")
    f.add_argument("--test-shots", nargs="+", type=natural, help="shots per class at test (beyond training too)")
    f.add_argument("--item-len", type=positive, help="tokens per item (default 4)")
    f.add_argument("--item-tokens", type=positive, help="item vocabulary (default 128)")
    f.add_argument("--labels", type=positive, help="label tokens, C drawn per sequence (default 16)")
    f.add_argument("--pool", type=positive, help="classes in the fixed pool (default 64)")
    f.add_argument("--noise", type=float, help="probability that an item token is redrawn (default 0.25)")


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """The options: the flags given, else the preset's, else the fixed defaults. A preset's fine-tune multiple that
    the test lengths given do not include becomes the longest of them (a given one is checked instead)."""
    preset = {**FIXED, **PRESETS[args.preset]["*"], **PRESETS[args.preset][args.task]}
    opts = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    for k, v in preset.items():
        if opts.get(k) is None:
            opts[k] = v
    if getattr(args, "finetune_multiple", 0) is None and opts["finetune_multiple"] not in opts["multiples"]:
        opts["finetune_multiple"] = max(opts["multiples"])
    return opts


def build_task(o: dict[str, Any]) -> Any:
    from memory_mosaics.experiments.longctx import mqar
    from memory_mosaics.experiments.longctx.fewshot import FewShot
    from memory_mosaics.experiments.longctx.needle import Haystack
    from memory_mosaics.experiments.longctx.tasks import FewShotTask, MQARTask, NeedleTask

    if o["task"] == "mqar":
        cells = mqar.grid(tuple(o["lengths"]), tuple(o["pairs"]))
        if not cells:
            raise ValueError("no (length, pairs) cell has length >= 4·pairs")
        return MQARTask(cells, cells, o["vocab_size"], o["data_seed"], o["random_filler"])
    if o["task"] == "needle":
        hay = (
            Haystack.noise(o["noise_vocab"])
            if o["haystack"] == "noise"
            else Haystack.from_shard(o["haystack"], o["haystack_split"])
        )
        return NeedleTask(
            hay,
            o["train_len"],
            tuple(o["multiples"]),
            o["kind"],
            o["needles"],
            o["queries"],
            o["key_len"],
            o["value_len"],
            o["hops"],
            seed=o["data_seed"],
        )
    fs = FewShot(o["pool"], o["item_len"], o["item_tokens"], o["labels"], o["noise"], pool_seed=o["data_seed"])
    return FewShotTask(fs, o["classes"], tuple(o["train_shots"]), tuple(o["test_shots"]), o["data_seed"])


def configure(o: dict[str, Any]) -> tuple[Any, Any]:
    """The task and the suite's configuration from the resolved options; a ValueError names what is wrong."""
    from memory_mosaics.experiments.longctx.run import SuiteConfig

    task = build_task(o)
    fields = (
        "widths",
        "n_layer",
        "n_head",
        "steps",
        "batch_size",
        "micro_batch_size",
        "lr",
        "warmup_steps",
        "weight_decay",
        "grad_clip",
        "eval_sequences",
        "eval_batch_size",
        "seed",
        "short_window",
        "long_delay",
        "long_delay_min",
        "long_delay_max",
        "device",
        "dtype",
        "finetune_steps",
        "finetune_lr",
    )
    ft_len = o["train_len"] * o["finetune_multiple"] if o["finetune_steps"] else None
    if ft_len is not None and o["finetune_multiple"] not in o["multiples"]:
        raise ValueError(f"--finetune-multiple {o['finetune_multiple']} is not one of --multiples {o['multiples']}")
    cfg = SuiteConfig(
        models=list(o["models"]),
        progress=not o["no_progress"],
        finetune_len=ft_len,
        **{k: o[k] for k in fields},
    )
    return task, cfg


def run(args: argparse.Namespace) -> int:
    import torch

    from memory_mosaics.experiments.longctx.run import run_suite

    o = resolve(args)
    try:
        task, cfg = configure(o)
    except (ValueError, FileNotFoundError) as e:  # refused before any work: one line, no traceback
        print(f"mosaic longctx {o['task']}: error: {e}", file=sys.stderr)
        return 2
    out = Path(o["out"] or f"runs/longctx_{task.name}")
    threads = torch.get_num_threads()
    if o["threads"]:
        torch.set_num_threads(o["threads"])
    t0 = time.perf_counter()
    try:
        results = run_suite(
            task, cfg, out, extra={"command": {k: (str(v) if isinstance(v, Path) else v) for k, v in o.items()}}
        )
    finally:
        torch.set_num_threads(threads)
    print((out / "results.md").read_text())
    print(f"{len(results['runs'])} runs in {time.perf_counter() - t0:.0f} s; results in {out}")
    return 0
