"""Generation through Hugging Face ``generate()`` (``memory_mosaics.hf``) against ours (``memory_mosaics.generate``),
greedy, same model, same prompt, taking turns in one run (median of ``--repeats``). Prints JSON with the ratio
``hf_over_ours_tokens_per_s`` (the goal: >= 0.8) and whether the tokens agree.

    python benchmarks/hf_generate.py --arch mosaic --new-tokens 256
    python benchmarks/hf_generate.py --arch mosaic2 --batch 4
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import memory_mosaics.hf  # noqa: F401  (registers the Auto classes)
from memory_mosaics.generate import generate
from memory_mosaics.hf import HF_CLASSES
from memory_mosaics.models import MODELS, build_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="mosaic", choices=sorted(MODELS))
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    block = a.prompt + a.new_tokens
    ours = build_model(a.arch, vocab_size=a.vocab, n_layer=a.layers, n_embd=a.d, n_head=a.heads, block_size=block)
    ours.eval()
    cls = HF_CLASSES[a.arch]
    hf = cls(cls.config_class(config=ours.config.__dict__.copy()), ours).eval()
    hf.generation_config.pad_token_id = None
    idx = torch.randint(0, a.vocab, (a.batch, a.prompt))

    def run_ours() -> torch.Tensor:
        return generate(ours, idx, a.new_tokens, greedy=True)

    def run_hf() -> torch.Tensor:
        return hf.generate(idx, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=False)

    times: dict[str, list[float]] = {"ours": [], "hf": []}
    outputs = {}
    for name, fn in (("ours", run_ours), ("hf", run_hf)):  # warm-up
        outputs[name] = fn()
    for _ in range(a.repeats):
        for name, fn in (("ours", run_ours), ("hf", run_hf)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    tps = {k: a.batch * a.new_tokens / statistics.median(v) for k, v in times.items()}
    report = {
        "benchmark": "hf_generate",
        "arch": a.arch,
        "shape": {"d": a.d, "heads": a.heads, "layers": a.layers, "vocab": a.vocab, "batch": a.batch},
        "prompt": a.prompt,
        "new_tokens": a.new_tokens,
        "repeats": a.repeats,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "tokens_per_s": tps,
        "hf_over_ours_tokens_per_s": tps["hf"] / tps["ours"],
        "same_tokens": bool(torch.equal(outputs["ours"], outputs["hf"])),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
