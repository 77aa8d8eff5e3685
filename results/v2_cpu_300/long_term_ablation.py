"""v2 with its long-term memory removed at inference (the paper's Table 2 ablation), on the whole validation shard."""

import json
import sys

import numpy as np
import torch

from memory_mosaics.checkpoints import load_checkpoint
from memory_mosaics.data.shards import TokenShard
from memory_mosaics.evaluate import window_loss

torch.set_num_threads(2)
run, data = sys.argv[1], sys.argv[2]
ckpt, model, _ = load_checkpoint(run, "cpu")
tokens = np.asarray(TokenShard.open(data, "val").tokens)
out = {}
for on in (True, False):
    model.use_long_term = on
    r = window_loss(model, tokens, 256, batch_size=16)
    out["with long-term memory" if on else "long-term memory removed"] = r["loss"]
print(json.dumps({"checkpoint": str(ckpt), **out}, indent=2))
