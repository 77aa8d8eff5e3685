import pytest
import torch

# Tests use tiny tensors: one thread avoids OpenMP synchronisation, which costs more than it saves at this size and
# stalls badly on a busy 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
