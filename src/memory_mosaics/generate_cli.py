"""``mosaic generate``: complete prompts with a checkpoint, using the library's streaming generation (the memory state
is filled once with the prompt, then grows one token at a time)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from memory_mosaics.cli.types import device_name, natural, positive
from memory_mosaics.data.sources import read_utf8

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
        choices=("greedy", "sample", "beam"),
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


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse sampling settings that mean nothing before the checkpoint is loaded (the counts are refused by their
    argparse types)."""
    from memory_mosaics.generate import check_sampling

    if args.mode == "sample":
        check_sampling(args.temperature, args.top_k, args.top_p)


def complete(model: Any, tokenizer: Any, prompt: str, args: argparse.Namespace) -> str:
    from memory_mosaics.generate import beam_search, generate

    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError(f"the prompt {prompt!r} encodes to no tokens")
    device = next(model.parameters()).device
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    eot = tokenizer.eot_id if args.stop_at_eot else None
    if args.mode == "beam":
        out = beam_search(model, idx, args.max_new_tokens, num_beams=args.beams, eos_token=eot)
    else:
        out = generate(
            model,
            idx,
            args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            greedy=args.mode == "greedy",
            seed=args.seed,
            eos_token=eot,
        )
    new = out[0, len(ids) :].tolist()
    if eot is not None and eot in new:
        new = new[: new.index(eot)]
    return tokenizer.decode(new)


def read_prompts(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Prompts from ``--prompt`` strings and a ``--prompts`` JSON-lines file, as rows with the text in ``--field``."""
    rows = [{args.field: p} for p in args.prompt]
    if args.prompts:
        path = Path(args.prompts)
        if not path.is_file():
            raise FileNotFoundError(f"no prompts file {path}")
        for n, line in enumerate(read_utf8(path).splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n} is not JSON: {e}") from e
            row = {args.field: row} if isinstance(row, str) else row
            if not isinstance(row, dict) or not isinstance(row.get(args.field), str):
                raise ValueError(f"{path}:{n} has no string field {args.field!r}")
            rows.append(row)
    if not rows:
        raise ValueError("no prompts: pass --prompt TEXT or --prompts FILE.jsonl")
    return rows


def run(args: argparse.Namespace) -> int:
    from memory_mosaics.train.evaluate import load_checkpoint, load_tokenizer_for

    try:
        check_arguments(args)
        rows = read_prompts(args)
        ckpt, model, meta = load_checkpoint(args.checkpoint, args.device)
        tokenizer = load_tokenizer_for(ckpt, meta, args.tokenizer)
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
                text = complete(model, tokenizer, row[args.field], args)
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
