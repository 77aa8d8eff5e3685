"""Device choice: a device this machine or this PyTorch build lacks is refused by name, before any work."""

import pytest
import torch

from memory_mosaics.devices import pick_device


def test_cpu_and_auto() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    assert pick_device("auto").type in {"cpu", "cuda", "mps"}


@pytest.mark.parametrize("name", ["gpu", "cuda:x", ""])
def test_an_unknown_device_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="unknown device"):
        pick_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="no CUDA device is usable here"):
        pick_device(name)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
def test_mps_without_mps_is_refused() -> None:
    with pytest.raises(ValueError, match="MPS"):
        pick_device("mps")


def test_a_gpu_index_beyond_the_machine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("cuda") == torch.device("cuda", 0)
    assert pick_device("auto") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="has 1 CUDA device"):
        pick_device("cuda:1")
    with pytest.raises(ValueError, match="has 1 CUDA device"):  # torchrun with more processes than GPUs
        pick_device("auto", local_rank=1)
