"""One intra-op thread for these small-tensor tests: on a shared 2-core machine, two
threads contending with other processes made a training step 10-100x slower."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
