"""``mosaic generate``: complete prompts with a checkpoint, using the library's streaming generation (the memory state
is filled once with the prompt, then grows one token at a time)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from memory_mosaics.cli.types import device_name, natural, positive

HELP = "complete prompts with a checkpoint (greedy, sampling or beam search; streaming generation)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint folder (ckpt-XXXXXXX) or a run folder (its newest checkpoint)")
    parser.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    parser.add_argument(
        "--prompts",
        metavar="JSONL",
        help="prompts, one JSON object per line (e.g. "
        "../shared/prompts/eldan_li_24.jsonl); other fields are copied to the output",
    )
    parser.add_argument("--field", default="prompt", help="the prompt's field in --prompts (default: prompt)")
    parser.add_argument(
        "--mode",
        choices=("greedy", "sample", "beam"),  # completion.DECODING_MODES (not imported: --help stays fast)
        default="beam",
        help="decoding (default: beam, width 2, as in the paper's Table 4)",
    )
    parser.add_argument("--beams", type=positive, default=2, help="beam width for --mode beam")
    parser.add_argument("--max-new-tokens", type=natural, default=60)
    parser.add_argument("--temperature", type=float, default=1.0, help="--mode sample")
    parser.add_argument("--top-k", type=int, default=None, help="--mode sample: keep the k most likely tokens")
    parser.add_argument("--top-p", type=float, default=None, help="--mode sample: nucleus mass")
    parser.add_argument("--seed", type=int, default=0, help="--mode sample: seed (reproducible samples)")
    parser.add_argument(
        "--stop-at-eot",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stop a completion at the end-of-text token",
    )
    parser.add_argument(
        "--tokenizer", metavar="DIR", help="prepared dataset whose tokenizer to use (default: the checkpoint's)"
    )
    parser.add_argument("--out", metavar="JSONL", help="write one JSON object per prompt: its fields + completion")
    parser.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda, cuda:N, mps")


def decoding(args: argparse.Namespace) -> Any:
    """The ``completion.Decoding`` the flags ask for (sampling settings that mean nothing are refused here)."""
    from memory_mosaics.completion import Decoding

    return Decoding(
        mode=args.mode,
        beams=args.beams,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        stop_at_eot=args.stop_at_eot,
    )


def run(args: argparse.Namespace) -> int:
    from memory_mosaics import checkpoints as ckpt_io
    from memory_mosaics.completion import complete, read_prompts

    try:
        decode = decoding(args)
        rows = [{args.field: p} for p in args.prompt] + (read_prompts(args.prompts, args.field) if args.prompts else [])
        if not rows:
            raise ValueError("no prompts: pass --prompt TEXT or --prompts FILE.jsonl")
        ckpt, model, meta = ckpt_io.load_checkpoint(args.checkpoint, args.device)
        tokenizer = ckpt_io.checkpoint_tokenizer(ckpt, meta, args.tokenizer)
        if tokenizer.vocab_size > model.config.vocab_size:
            raise ValueError(
                f"vocabulary mismatch: the tokenizer has {tokenizer.vocab_size} tokens but "
                f"{ckpt / 'config.json'} has vocab_size {model.config.vocab_size}"
            )
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        out = open(args.out, "w", encoding="utf-8") if args.out else None  # noqa: SIM115 (closed below)
        try:
            for row in rows:
                text = complete(model, tokenizer, row[args.field], decode)
                bold, plain = ("\x1b[1m", "\x1b[0m") if sys.stdout.isatty() else ("", "")
                print(f"{row[args.field]}{bold}{text}{plain}\n---")  # the completion in bold on a terminal
                if out is not None:
                    record = {
                        **row,
                        "completion": text,
                        "checkpoint": str(ckpt),
                        "model_type": model.model_type,
                        "mode": args.mode,
                    }
                    out.write(json.dumps(record) + "\n")
                    out.flush()
        finally:
            if out is not None:
                out.close()
    except (ValueError, FileNotFoundError) as e:
        print(f"mosaic generate: error: {e}", file=sys.stderr)
        return 2
    return 0
