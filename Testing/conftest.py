"""Shared pytest set-up: one torch thread (CI has 2 cores and runs tests in one process) and fixed seeds."""
import numpy as np
import pytest
import torch
from inference_phantom import fitted_tiny_model, oblique_phantom

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="module")
def phantom():
    """(volume, labels) of the oblique, anisotropic inference phantom (``inference_phantom.oblique_phantom``)."""
    return oblique_phantom()


@pytest.fixture(scope="module")
def tiny_model(phantom):
    """A tiny SASAN model file fitted to ``phantom`` (``inference_phantom.fitted_tiny_model``)."""
    return fitted_tiny_model(*phantom)
