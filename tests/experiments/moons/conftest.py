import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """These nets are tiny: intra-op threads only add synchronisation (and stall when the cores are shared)."""
