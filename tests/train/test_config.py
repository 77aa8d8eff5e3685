from memory_mosaics.train import TrainConfig


def test_init_and_logit_scale_reach_the_model_config() -> None:
    for arch in ("mosaic", "gpt"):
        cfg = TrainConfig(arch=arch, n_layer=1, n_head=2, n_embd=16, init="library", logit_scale=0.25).model_config(50)
        assert cfg.init == "library" and cfg.logit_scale == 0.25
