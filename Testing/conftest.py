"""Shared pytest set-up: one torch thread (CI has 2 cores and runs tests in one process) and fixed seeds."""
import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    np.random.seed(0)
