"""The run folder's names and default place, in one module that imports nothing heavy."""
import subprocess
import sys

import pytest

from sasan.training import run_folder
from sasan.training.run_folder import default_run_folder, read_run_config
from sasan.training.trainer import Trainer

from .tiny import tiny_config


def test_the_default_run_folder_is_the_configurations_output():
    config = tiny_config(output="runs/tiny")
    assert str(default_run_folder(config)) == "runs/tiny"
    assert str(default_run_folder(config, segmenter=True)) == "runs/tiny_segmenter"


def test_a_run_folder_holds_only_its_own_names(tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_config(training={"steps": 1, "pretrain_attention_steps": 0, "segmenter_steps": 0,
                                  "checkpoint_every": 1}), run).fit()
    assert {p.name for p in run.iterdir()} <= run_folder.RUN_FILES
    assert read_run_config(run).name == "test_tiny"
    with pytest.raises(FileNotFoundError, match="is not a SASAN run folder \\(no config.yaml\\)"):
        read_run_config(tmp_path)


def test_the_names_are_read_without_torch():
    """The Slicer modules read them before torch may be installed."""
    code = ("import sys; import sasan.training.run_folder as r; "
            "assert 'torch' not in sys.modules and 'yaml' not in sys.modules; print(r.STOP_FILE)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "STOP", done.stderr
