"""``benchmarks/fresh_phantom.py`` takes its models as NAME=PATH and refuses anything else up front."""
import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from fresh_phantom import named_model  # noqa: E402


def test_a_model_is_named_and_its_file_must_exist(tmp_path):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")
    assert named_model(f"seed0={model}") == ("seed0", model)
    for bad in (str(model), f"={model}", f"seed0={tmp_path / 'missing.safetensors'}", f"seed0={tmp_path}"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=PATH"):
            named_model(bad)
