"""summary.md and curves.png of run.sh's five models, from the files evaluate.sh copied and wrote here."""

import json
import statistics
import sys
from pathlib import Path

from memory_mosaics.experiments.figures import pyplot, save_figure

RES = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
MODELS = {
    "mosaic": "Memory Mosaic v1",
    "mosaic2": "Memory Mosaic v2 (random m)",
    "mosaic2_fixed": "Memory Mosaic v2 (fixed m)",
    "llama": "llama (RoPE)",
    "gpt": "GPT-2",
}
TIED = {"mosaic", "gpt"}  # v1 and GPT-2 tie the classifier to the token embedding; v2 and llama do not


OTHER = {"gpt": RES.parent / "lm_cpu_tinystories_800"}  # the same recipe and batches, trained before (not re-trained)


def load(name: str) -> dict:
    d = OTHER.get(name, RES) / name
    run = json.loads((d / "run.json").read_text())
    log = [json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()]
    ablation = d / "eval_valid_no_long_term.json"
    m = run["model"]
    head = 0 if name in TIED else m["vocab_size"] * m["n_embd"]
    return {
        "run": run,
        "train": [(r["step"], r["loss"]) for r in log if "loss" in r],
        "val": [(r["step"], r["val_loss"]) for r in log if "val_loss" in r],
        "tok_per_s": statistics.median(r["tok_per_s"] for r in log if "tok_per_s" in r),
        "body": run["params"] - head,  # outside the token embedding and the classifier
        "eval": json.loads((d / "eval_valid.json").read_text()),
        "no_long_term": json.loads(ablation.read_text()) if ablation.exists() else None,
    }


def extrapolation(corpus: str) -> dict[tuple[str, int], dict]:
    d = json.loads((RES / f"extrapolate_{corpus}" / "extrapolate.json").read_text())
    return {(r["label"], r["factor"]): r for r in d["models"]}


def curves(runs: dict[str, dict]) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in runs.items():
        steps, loss = zip(*r["train"], strict=True)
        a.plot(steps, loss, label=MODELS[name], lw=1)
        steps, loss = zip(*r["val"], strict=True)
        b.plot(steps, loss, "o-", label=MODELS[name], ms=3)
    a.set(title="training loss (every 10 steps)", xlabel="step", ylabel="loss", ylim=(2.5, 5))
    b.set(title="validation loss (8 batches of 16 windows)", xlabel="step", ylim=(2.5, 5))
    b.legend()
    save_figure(fig, RES / "curves.png")


def main() -> None:
    runs = {n: load(n) for n in MODELS}
    curves(runs)
    lines = [
        "| model | params outside the vocabulary matrices | total | validation loss (whole shard) | "
        "without long-term memory | tokens/s (1 thread, median) |",
        "|---|---|---|---|---|---|",
    ]
    for n, r in runs.items():
        nlt = f"{r['no_long_term']['loss']:.4f}" if r["no_long_term"] else ""
        lines.append(
            f"| {MODELS[n]} | {r['body'] / 1e6:.3f}M | {r['run']['params_total'] / 1e6:.2f}M | "
            f"{r['eval']['loss']:.4f} | {nlt} | {r['tok_per_s']:,.0f} |"
        )
    for corpus in ("tinystories", "wikitext2"):
        ex = extrapolation(corpus)
        factors = sorted({f for _, f in ex})
        lines += ["", f"Per-position loss, {corpus} (mean over the window; last 256 positions in brackets):", ""]
        lines += ["| model | " + " | ".join(f"{f}x ({256 * f})" for f in factors) + " |"]
        lines += ["|---|" + "---|" * len(factors)]
        for label in MODELS.values():
            cells = []
            for f in factors:
                r = ex.get((label, f))
                cells.append(f"{r['loss']:.3f} ({r['segment_loss'][-1]:.3f})" if r else "n/a")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    (RES / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
