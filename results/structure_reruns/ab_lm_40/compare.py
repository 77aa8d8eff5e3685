"""Compare the A/B runs of ab_lm.sh: training records (loss, lr, grad norm) exactly; validation losses (whole split)
to the tolerance of a different summation order; with the checkpoints still in runs/ab, weights and AdamW moments."""

import json
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ab")
for arch in ("mosaic", "gpt"):
    old, new = ([json.loads(line) for line in (root / s / arch / "log.jsonl").open()] for s in ("old", "new"))
    drop = ("tok_per_s", "elapsed_s", "eval_s", "val_loss", "val_ppl")
    same = all(
        {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
        for a, b in zip(old, new, strict=True)
    )
    val = max(abs(a["val_loss"] - b["val_loss"]) for a, b in zip(old, new, strict=True) if "val_loss" in a)
    line = f"{arch}: {len(old)} records, training records identical: {same}, largest validation difference {val:.1e}"
    ckpt = root / "old" / arch / "ckpt-0000040"
    if ckpt.is_dir():
        import torch

        from memory_mosaics import load_pretrained

        a, b = (load_pretrained(root / s / arch / "ckpt-0000040").state_dict() for s in ("old", "new"))
        sa, sb = (
            torch.load(root / s / arch / "ckpt-0000040" / "trainer.pt", weights_only=True)["optimizer"]["state"]
            for s in ("old", "new")
        )
        weights = all(torch.equal(a[k], b[k]) for k in a)
        moments = all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])
        line += f", weights identical: {weights}, AdamW moments identical: {moments}"
    print(line)
