import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Small ops run far faster on one thread than with OpenMP on a shared, busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
