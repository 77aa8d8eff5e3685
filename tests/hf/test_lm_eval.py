"""lm-evaluation-harness reads a checkpoint through its ``hf`` model type, offline, on local tasks written here."""

import json

import pytest
import torch

pytest.importorskip("lm_eval")

import lm_eval
from lm_eval.tasks import TaskManager

import memory_mosaics.hf  # noqa: F401  (registers the Auto classes)
from memory_mosaics import checkpoints
from memory_mosaics.data.tokenizer import BPETokenizer
from memory_mosaics.generate import generate
from memory_mosaics.models import build_model

TASKS = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: {kind}
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
target_delimiter: ""
"""
CHOICE = 'doc_to_choice: "{{choices}}"\nmetric_list:\n  - metric: acc\n'
GENERATE = (
    "generation_kwargs:\n  until: ['.']\n  max_gen_toks: 6\n  do_sample: false\nmetric_list:\n  - metric: exact_match\n"
)


@pytest.mark.parametrize("arch", ["mosaic", "mosaic2", "gpt", "llama"])
def test_lm_eval_loglikelihood_and_generate_until(tmp_path, monkeypatch, arch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tok = BPETokenizer.train(["the cat sat on the mat. a dog ran to the cat. " * 30], 300, show_progress=False)
    tok.save(tmp_path / "tokenizer.json")
    torch.manual_seed(0)
    model = build_model(arch, vocab_size=tok.vocab_size, n_layer=1, n_embd=32, n_head=4, block_size=64)
    with torch.no_grad():  # tokens that depend on the whole context (at GPT-2's init the last token decides)
        for p in model.parameters():
            if p.dim() == 2 and p is not model.wte.weight:
                p.normal_(0.0, 0.3)
    meta = {"tokenizer": tok.to_meta()}
    ckpt = checkpoints.save_training(tmp_path / "run", 1, model.eval(), {}, meta, 1, print, tmp_path)
    docs = [
        {"question": "the cat sat on the", "choices": [" mat", " dog"], "answer": 0},
        {"question": "a dog ran to the", "choices": [" sat", " cat"], "answer": 1},
    ]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    gen = [{"question": "the cat", "answer": " sat on the mat"}, {"question": "a dog ran to the", "answer": " cat"}]
    (tmp_path / "gen.jsonl").write_text("".join(json.dumps(d) + "\n" for d in gen))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    ll = TASKS.format(name="mm_toy_choice", data=tmp_path / "docs.jsonl", kind="multiple_choice") + CHOICE
    (tasks / "choice.yaml").write_text(ll)
    gu = TASKS.format(name="mm_toy_generate", data=tmp_path / "gen.jsonl", kind="generate_until") + GENERATE
    (tasks / "generate.yaml").write_text(gu)
    out = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={ckpt},dtype=float32",
        tasks=["mm_toy_choice", "mm_toy_generate"],
        task_manager=TaskManager(include_path=str(tasks), include_defaults=False),  # not its thousands of YAMLs
        device="cpu",
        batch_size=2,
    )
    choice, generated = out["results"]["mm_toy_choice"], out["results"]["mm_toy_generate"]
    assert 0.0 <= choice["acc,none"] <= 1.0 and 0.0 <= generated["exact_match,none"] <= 1.0
    # the log-likelihoods lm_eval used are the model's own
    context = tok.encode(docs[0]["question"])
    cont = tok.encode(docs[0]["question"] + docs[0]["choices"][0])[len(context) :]
    ids = torch.tensor([context + cont])
    with torch.no_grad():
        logp = model(ids)[0].log_softmax(-1)[0, len(context) - 1 : -1].gather(1, torch.tensor(cont)[:, None])
    first = next(s for s in out["samples"]["mm_toy_choice"] if s["doc_id"] == 0)["resps"][0][0][0]
    assert abs(float(first) - float(logp.sum())) < 1e-4
    # what lm_eval generated (a left-padded batch of 2, up to '.' or 6 tokens) is our greedy continuation of each prompt
    samples = out["samples"]["mm_toy_generate"]
    assert sorted(s["doc_id"] for s in samples) == [0, 1]
    assert len({len(tok.encode(g["question"])) for g in gen}) == 2  # the batch of two is padded
    assert any(s["resps"][0][0] for s in samples)
    for s in samples:
        context = tok.encode(gen[s["doc_id"]]["question"])
        ours = generate(model, torch.tensor([context]), 6, greedy=True, eos_token=tok.eot_id)[0, len(context) :]
        ours = ours[: (ours == tok.eot_id).nonzero()[0, 0] if bool((ours == tok.eot_id).any()) else None]
        assert s["resps"][0][0] == tok.decode(ours.tolist()).split(".")[0], s["doc_id"]
