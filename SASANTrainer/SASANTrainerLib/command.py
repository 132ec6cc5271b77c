"""The background training process: which program, which arguments, which folder, which model file."""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

TRAIN_SCRIPT = Path(__file__).resolve().parent / "train.py"
MODEL_FILE_NAME = "model.safetensors"


@dataclass(frozen=True)
class TrainingCommand:
    """``program arguments...`` run in ``working_directory``; ``model_file`` is written on success."""

    program: str
    arguments: list[str]
    working_directory: Path
    model_file: Path


def python_executable() -> str:
    """Slicer's command-line Python (``PythonSlicer``, on the PATH inside Slicer), else this Python."""
    return shutil.which("PythonSlicer") or sys.executable


def training_command(
    config: Path,
    output: Path,
    resume: bool = False,
    steps: Optional[int] = None,
    device: Optional[str] = None,
    program: Optional[str] = None,
) -> TrainingCommand:
    """Train ``config`` into the run folder ``output``, then export ``output/model.safetensors``.

    Runs in the configuration's folder, so that relative data folders in it resolve as they do for
    ``sasan train`` started there (a shipped preset with relative data folders is refused: they would
    point inside the installation).  ``-u``: unbuffered output, so the log and progress arrive live.
    """
    from sasan.resources import check_shipped_preset_data_folders

    config, output = Path(config).resolve(), Path(output).resolve()
    if not config.is_file():
        raise ValueError(f"configuration file '{config}' does not exist")
    if config.suffix.lower() not in (".yaml", ".yml"):
        raise ValueError(f"'{config.name}' is not a YAML configuration (.yaml or .yml)")
    check_shipped_preset_data_folders(config)
    if output.exists() and not output.is_dir():
        raise ValueError(f"run folder '{output}' is a file")
    if output.is_dir() and any(output.iterdir()) and not resume:
        raise ValueError(f"run folder '{output}' is not empty: tick Resume to continue it, or choose another folder")
    model_file = output / MODEL_FILE_NAME
    arguments = ["-u", str(TRAIN_SCRIPT), str(config), "--output", str(output), "--export", str(model_file)]
    if resume:
        arguments.append("--resume")
    if steps is not None:
        arguments += ["--steps", str(steps)]
    if device:
        arguments += ["--device", device]
    return TrainingCommand(program or python_executable(), arguments, config.parent, model_file)

