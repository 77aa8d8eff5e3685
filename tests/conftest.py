import pytest
import torch

# Tests use tiny tensors: one thread avoids OpenMP synchronisation, which costs more than it saves at this size and
# stalls badly on a busy 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, whatever an earlier test left, and the count restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
