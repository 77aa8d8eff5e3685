"""``mosaic eval``: validation loss of a checkpoint on a token shard or a text file (overall and per position)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from memory_mosaics.cli.types import device_name, natural, positive

HELP = "validation loss of a checkpoint on a token shard or a text file (overall and per position)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint folder (ckpt-XXXXXXX) or a run folder (its newest checkpoint)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--data", metavar="DIR", help="a prepared dataset (default: the one the run trained on)")
    src.add_argument("--text", metavar="FILE", help="a .txt (documents separated by <|endoftext|>) or .jsonl file")
    parser.add_argument("--split", default="", help="split of --data (default: its validation split)")
    parser.add_argument(
        "--tokenizer", metavar="DIR", help="prepared dataset whose tokenizer reads --text (default: the checkpoint's)"
    )
    parser.add_argument("--context", type=natural, default=0, help="window length (default: the model's block_size)")
    parser.add_argument("--batch-size", type=positive, default=8, help="windows per forward")
    parser.add_argument("--max-windows", type=natural, default=0, help="evaluate at most this many windows (0 = all)")
    parser.add_argument("--per-position", metavar="CSV", help="write the mean loss at each position (Figure 8)")
    parser.add_argument("--json", metavar="FILE", help="write the result as JSON")
    parser.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda, cuda:N, mps")
    v2 = parser.add_argument_group("Memory Mosaic v2 (and llama --split)")
    v2.add_argument("--long-delay", type=natural, default=0, help="m at inference (default: the checkpoint's)")
    v2.add_argument(
        "--no-long-term",
        action="store_true",
        help="remove the long-term memory (the v2 paper's Table 2 ablation; mosaic2 only)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        result = _run(args)
    except (ValueError, OSError) as e:  # CheckpointError, ShardError and TokenizerError are ValueErrors
        print(f"mosaic eval: error: {e}", file=sys.stderr)
        return 2
    print(
        f"{result['source']}: loss {result['loss']:.4f}  ppl {result['ppl']:.2f}  ({result['tokens']:,} tokens in "
        f"{result['windows']} windows of {result['context']})"
    )
    return 0


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from memory_mosaics import checkpoints as ckpt_io
    from memory_mosaics.data.shards import TokenShard, default_val_split, read_meta
    from memory_mosaics.data.sources import encode_text
    from memory_mosaics.evaluate import window_loss

    for output in (args.per_position, args.json):  # a folder that cannot be made fails now, not after the work
        if output:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
    ckpt, model, ckpt_meta = ckpt_io.load_checkpoint(args.checkpoint, args.device)
    context = args.context or model.config.block_size
    inference = _inference_options(model, args)
    ckpt_io.check_context(ckpt, model, context)
    if args.text:
        path = Path(args.text)
        if not path.is_file():
            raise FileNotFoundError(f"no text file {path}")
        tokenizer = ckpt_io.checkpoint_tokenizer(ckpt, ckpt_meta, args.tokenizer)
        if args.tokenizer:
            ckpt_io.check_vocab(
                ckpt,
                model,
                ckpt_meta,
                read_meta(args.tokenizer),
                f"{args.tokenizer}/meta.json",
            )
        tokens, source = encode_text(path, tokenizer), str(path)
    else:
        data = args.data or ckpt_io.run_data_dir(ckpt)
        split = args.split or default_val_split(data)
        if split is None:
            raise ValueError(f"{data} has no validation split; name one with --split")
        shard = TokenShard.open(data, split)
        ckpt_io.check_vocab(ckpt, model, ckpt_meta, shard.meta, f"{data}/meta.json")
        tokens, source = shard.tokens, f"{data}:{split}"
    if len(tokens) <= context:
        raise ValueError(f"{source} has {len(tokens)} tokens, not enough for one window of {context} (+1)")
    result = {
        "source": source,
        "checkpoint": str(ckpt),
        **inference,
        **window_loss(model, tokens, context, args.batch_size, args.max_windows),
    }
    if args.per_position:
        with open(args.per_position, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["position", "loss"])
            w.writerows(enumerate(result["per_position"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _inference_options(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Apply --long-delay and --no-long-term to a model that has them; name the architecture that does not."""
    out: dict[str, Any] = {}
    if args.long_delay:
        if not hasattr(model.config, "long_delay"):
            raise ValueError(f"--long-delay: a {model.model_type} model has no long-term delay (mosaic2 and llama do)")
        model.config.long_delay = args.long_delay
    if hasattr(model.config, "long_delay"):
        out["long_delay"] = model.config.long_delay
    if args.no_long_term:
        if not hasattr(model, "use_long_term"):
            raise ValueError(f"--no-long-term: a {model.model_type} model has no long-term memory (mosaic2 has)")
        model.use_long_term = False
        out["long_term"] = False
    return out
