"""The suite's loop: matched bodies, the engine's training step on task batches, scoring only the scored positions."""

import math

import pytest
import torch

from memory_mosaics.experiments.longctx.baselines import ARCHS, make_model
from memory_mosaics.experiments.longctx.common import IGNORE
from memory_mosaics.experiments.longctx.fewshot import FewShot
from memory_mosaics.experiments.longctx.run import SuiteConfig, evaluate, run_suite, train_model
from memory_mosaics.experiments.longctx.tasks import FewShotTask, MQARTask
from memory_mosaics.models.sizes import body_params

V2 = {"short_window": 8, "long_delay": 4, "long_delay_min": 4, "long_delay_max": 8}
FIELDS = {"vocab_size": 64, "block_size": 32, "n_layer": 1, "n_head": 2, "n_embd": 32}


@pytest.mark.parametrize("width", [32, 64])
def test_bodies_are_matched_to_v1(width):
    target = body_params(make_model("mosaic", {**FIELDS, "n_embd": width}, V2)[0])
    for name in set(ARCHS) - {"mamba", "rwkv"}:  # those need transformers: their own test
        model = make_model(name, {**FIELDS, "n_embd": width}, V2)[0]
        assert abs(body_params(model) - target) / target < 0.02, name
    assert make_model("mosaic2-fixed", FIELDS, V2)[1]["long_delay_max"] == 4
    assert make_model("mosaic2", FIELDS, V2)[1]["long_delay_max"] == 8


def tiny_mqar() -> MQARTask:
    return MQARTask([(16, 2), (32, 4)], [(16, 2), (32, 4), (64, 8)], vocab_size=32, seed=1)


def test_training_learns_mqar_and_the_untrained_model_is_at_chance():
    task = tiny_mqar()
    cfg = SuiteConfig(steps=60, batch_size=16, lr=1e-2, warmup_steps=5, eval_sequences=64, progress=False)
    torch.manual_seed(0)
    model, _ = make_model("mosaic", {**FIELDS, "vocab_size": 32}, V2)
    before = evaluate(model, task, cfg, torch.device("cpu"))
    assert all(r["accuracy"] < 0.25 for r in before)  # 16 possible values: chance is 1/16
    trained = train_model(model, task, cfg, torch.device("cpu"), "mosaic")
    after = evaluate(model, task, cfg, torch.device("cpu"))
    assert trained["curve"][-1]["loss"] < trained["curve"][0]["loss"]
    assert after[0]["accuracy"] > 0.9 and after[2]["accuracy"] > 0.6  # also on the longer cell it never saw
    assert [r["scored"] for r in after] == [64 * 2, 64 * 4, 64 * 8]  # one scored position per key


def test_scoring_counts_only_scored_positions():
    """A model that predicts every next input token right but the values gets accuracy 0."""

    class Echo(torch.nn.Module):
        max_context = None

        def forward(self, idx):
            out = torch.full((*idx.shape, 32), -1e4)
            out.scatter_(2, idx.roll(-1, 1).unsqueeze(-1), 0.0)  # the next input token (filler after a query)
            return out, None

        def train(self, mode=True):
            return self

    task = tiny_mqar()
    cfg = SuiteConfig(eval_sequences=8, progress=False)
    rows = evaluate(Echo(), task, cfg, torch.device("cpu"))  # type: ignore[arg-type]
    assert all(r["accuracy"] == 0.0 and r["sequence_accuracy"] == 0.0 for r in rows)
    batch = task.eval_batch(0, 0, 4)
    assert (batch.targets != IGNORE).sum() == 8


def test_v2_draws_its_delay_per_step_and_gpt_stops_at_its_positions(tmp_path):
    task = FewShotTask(FewShot(n_pool=8, item_len=2, n_item_tokens=16, n_labels=4), 2, (1,), (0, 1, 3))
    cfg = SuiteConfig(
        models=["mosaic2", "mosaic2-fixed", "gpt"],
        widths=[16],
        n_layer=1,
        n_head=2,
        steps=4,
        batch_size=4,
        eval_sequences=4,
        short_window=4,
        long_delay=2,
        long_delay_min=2,
        long_delay_max=4,
        progress=False,
    )
    results = run_suite(task, cfg)
    gpt = next(r for r in results["runs"] if r["model"] == "gpt")
    assert [r["accuracy"] is None for r in gpt["eval"]] == [False, False, True]
    assert "learned positions" in gpt["eval"][2]["note"]
    torch.manual_seed(0)
    model, _ = make_model("mosaic2", {**FIELDS, "vocab_size": task.vocab_size}, V2)
    train_model(model, task, cfg, torch.device("cpu"), "v2")
    assert 4 <= model.train_delay <= 8  # engine.step drew m for the step


def test_runs_are_reproducible():
    task = tiny_mqar()
    cfg = SuiteConfig(
        models=["llama", "lstm"],
        widths=[16],
        n_layer=1,
        n_head=2,
        steps=3,
        batch_size=4,
        eval_sequences=8,
        progress=False,
    )
    a, b = run_suite(task, cfg), run_suite(task, cfg)
    assert [r["eval"] for r in a["runs"]] == [r["eval"] for r in b["runs"]]
    assert [r["curve"] for r in a["runs"]] == [r["curve"] for r in b["runs"]]


def test_hf_baselines_explain_a_missing_transformers(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    with pytest.raises(ImportError, match="pip install transformers"):
        make_model("mamba", FIELDS, V2)


@pytest.mark.parametrize("name", ["mamba", "rwkv"])
def test_hf_baselines_are_matched_causal_and_train(name):
    pytest.importorskip("transformers")
    fields = {**FIELDS, "n_layer": 2}
    target = body_params(make_model("mosaic", fields, V2)[0])
    model, resolved = make_model(name, fields, V2)
    assert (
        abs(body_params(model) - target) / target < 0.02
        and resolved["inner"] == model.backbone.config.intermediate_size
    )
    x = torch.randint(0, 64, (2, 20))
    y = x.clone()
    y[:, 12:] = (y[:, 12:] + 1) % 64
    model.eval()
    assert torch.allclose(model(x)[0][:, :12], model(y)[0][:, :12], atol=1e-6)
    task = tiny_mqar()
    cfg = SuiteConfig(steps=2, batch_size=4, eval_sequences=4, progress=False)
    trained = train_model(model, task, cfg, torch.device("cpu"), name)
    assert all(torch.isfinite(torch.tensor(c["loss"])) for c in trained["curve"])
    assert evaluate(model, task, cfg, torch.device("cpu"))[2]["accuracy"] is not None  # reads past its training length


def tiny_needles():
    from memory_mosaics.experiments.longctx.needle import Haystack
    from memory_mosaics.experiments.longctx.tasks import NeedleTask

    return NeedleTask(Haystack.noise(16), 32, (1, 2), n_needles=2, n_keys=8, n_values=8, seed=3)


def test_finetune_batches_are_their_own_and_at_their_length():
    task = tiny_needles()
    ft = task.finetune_batch(64, 0, 0, 4)
    assert ft.inputs.shape == (4, 64) and int(ft.scored.sum()) == 4
    assert not torch.equal(ft.inputs, task.eval_batch(1, 0, 4).inputs)
    assert torch.equal(ft.inputs, task.finetune_batch(64, 0, 0, 4).inputs)  # seeded
    assert not torch.equal(ft.inputs, task.finetune_batch(64, 1, 0, 4).inputs)


def test_the_finetune_starts_from_the_trained_model_and_leaves_it_alone():
    from memory_mosaics.experiments.longctx.run import _train, finetune

    task = tiny_needles()
    cfg = SuiteConfig(steps=3, batch_size=4, eval_sequences=8, finetune_len=64, finetune_steps=[2], progress=False)
    torch.manual_seed(0)
    model, _ = make_model("llama", {**FIELDS, "vocab_size": task.vocab_size}, V2)
    _, run = _train(model, task, cfg, torch.device("cpu"), "llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned, losses = finetune(run, task, cfg, 2)
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the trained model is untouched
    assert any(not torch.equal(v, tuned.state_dict()[k]) for k, v in before.items())
    # the optimiser state carried over: one more step of Adam, not a first step from fresh moments
    step = next(iter(run.optimizer.state.values()))["step"]
    assert float(step) == 3


def test_run_suite_records_the_finetune_at_its_test_point():
    task = tiny_needles()
    kw = dict(models=["mosaic", "gpt"], widths=[16], n_layer=1, n_head=2, steps=2, batch_size=4, eval_sequences=8)
    cfg = SuiteConfig(**kw, finetune_len=64, finetune_steps=[1, 2], progress=False)
    results = run_suite(task, cfg)
    mosaic, gpt = results["runs"]
    assert [r["steps"] for r in mosaic["finetune"]] == [0, 1, 2]
    assert mosaic["finetune"][0]["accuracy"] == mosaic["eval"][1]["accuracy"]  # 0 steps: the trained model, at 64
    assert all(r["seq_len"] == 64 and r["accuracy"] is not None for r in mosaic["finetune"])
    assert all(r["accuracy"] is None for r in gpt["finetune"])  # 32 learned positions cannot read 64 tokens
    with pytest.raises(ValueError, match="not one of the test lengths"):
        run_suite(task, SuiteConfig(**kw, finetune_len=48, finetune_steps=[1], progress=False))
    with pytest.raises(ValueError, match="no context-extension fine-tune"):
        run_suite(tiny_mqar(), SuiteConfig(**kw, finetune_len=64, finetune_steps=[1], progress=False))
    with pytest.raises(ValueError, match="needs finetune_len"):
        SuiteConfig(finetune_steps=[1])
