"""``mosaic prepare``: turn a corpus into token shards for training."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "Tokenize a corpus (.txt, .jsonl or a Hugging Face dataset) into token shards + meta.json."

EPILOG = """examples:
  mosaic prepare --input ../shared/data/tinystories/train.txt --val ../shared/data/tinystories/valid_eot.txt \\
      --out runs/data/tinystories-gpt2
  mosaic prepare --input corpus/ --val-fraction 0.01 --tokenizer bpe --vocab-size 4096 --out runs/data/my-bpe4k
  mosaic prepare --hf-dataset tinystories --hf-val-split validation --out runs/data/ts   (needs network + [hf])
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    src = parser.add_argument_group("corpus")
    src.add_argument(
        "--input", action="append", default=[], metavar="PATH",
        help="a .txt or .jsonl file, a directory of them, or a glob; repeatable (read in the order given)",
    )  # fmt: skip
    src.add_argument("--val", action="append", default=[], metavar="PATH", help="validation files (like --input)")
    src.add_argument(
        "--val-fraction", type=float, default=None,
        help="carve every 1/F-th training document out as validation (default 0.01 when no --val is given)",
    )  # fmt: skip
    src.add_argument("--hf-dataset", metavar="NAME", help="a Hugging Face dataset (aliases: tinystories, simplewiki)")
    src.add_argument("--hf-config", metavar="NAME", help="its configuration, if it has several")
    src.add_argument("--hf-split", default="train", help="training split of the HF dataset (default: train)")
    src.add_argument("--hf-val-split", metavar="SPLIT", help="validation split of the HF dataset, e.g. validation")
    src.add_argument(
        "--doc-separator", default="<|endoftext|>",
        help="what separates documents in .txt files: a literal marker (backslash escapes allowed, e.g. '\\x00'), "
        "'blank-line', 'line' (one document per line) or 'file' (one document per file); default <|endoftext|>",
    )  # fmt: skip
    src.add_argument(
        "--format", choices=("auto", "txt", "jsonl"), default="auto",
        help="how to read inputs; auto: by extension (.jsonl/.ndjson = JSON lines, anything else = text)",
    )  # fmt: skip
    src.add_argument(
        "--text-field", "--jsonl-field", dest="text_field", default="text",
        help="JSON field holding the text (default: text); a line that is a bare JSON string is used as is",
    )  # fmt: skip
    tok = parser.add_argument_group("tokenizer")
    tok.add_argument("--tokenizer", choices=("gpt2", "bpe"), default="gpt2", help="GPT-2 BPE, or a BPE trained here")
    tok.add_argument("--vocab-size", type=int, help="vocabulary of the trained BPE (e.g. 4096), counting <|endoftext|>")
    tok.add_argument(
        "--gpt2-dir", metavar="DIR",
        help="folder with encoder.json + vocab.bpe (and/or tiktoken_cache/); default $MOSAIC_GPT2_DIR, else "
        "../shared/data/gpt2_tokenizer next to the repository or the working directory",
    )  # fmt: skip
    out = parser.add_argument_group("output")
    out.add_argument("--out", required=True, metavar="DIR", help="output directory (meta.json, train.bin, val.bin)")
    out.add_argument(
        "--dtype", choices=("auto", "uint16", "uint32"), default="auto",
        help="token id type; auto: uint16 when the vocabulary fits",
    )  # fmt: skip
    out.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from memory_mosaics.data.prepare import PrepareOptions, prepare
    from memory_mosaics.data.shards import ShardError
    from memory_mosaics.data.sources import CorpusError
    from memory_mosaics.data.tokenizer import TokenizerError

    val_fraction = args.val_fraction
    if val_fraction is None:
        val_fraction = 0.0 if (args.val or args.hf_val_split) else 0.01
    elif args.val or args.hf_val_split:
        print("mosaic prepare: error: give --val/--hf-val-split or --val-fraction, not both", file=sys.stderr)
        return 2
    opts = PrepareOptions(
        out=Path(args.out),
        inputs=args.input,
        val_inputs=args.val,
        val_fraction=val_fraction,
        hf_dataset=args.hf_dataset,
        hf_config=args.hf_config,
        hf_split=args.hf_split,
        hf_val_split=args.hf_val_split,
        separator=args.doc_separator,
        fmt=args.format,
        text_field=args.text_field,
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        gpt2_dir=args.gpt2_dir,
        dtype=args.dtype,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    t0 = time.perf_counter()
    try:
        meta = prepare(opts)
    except (CorpusError, ShardError, TokenizerError) as e:
        print(f"mosaic prepare: error: {e}", file=sys.stderr)
        return 1
    dt = time.perf_counter() - t0
    t = meta["tokenizer"]
    print(f"{args.out}: {t['kind']} tokenizer, vocab {t['vocab_size']}, eot {t['eot_id']}, {meta['dtype']}")
    for name, s in meta["splits"].items():
        print(f"  {name}: {s['tokens']:,} tokens, {s['documents']:,} documents, {len(s['sources'])} source(s)")
    print(f"  done in {dt:.1f} s")
    return 0
