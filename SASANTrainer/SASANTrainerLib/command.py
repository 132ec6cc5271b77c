"""The background training process: ``PythonSlicer -m sasan train``, its arguments, folder and environment.

The engine's own command line does the work (train, write a checkpoint and stop on a STOP file, export
the model file, report progress as lines); this module only builds the call.  The engine is imported when
a command is built (the module's packages are installed by then), not while Slicer starts.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

RUNS_FOLDER = Path.home() / "SASAN" / "runs"


@dataclass(frozen=True)
class TrainingCommand:
    """``program arguments...`` run in ``working_directory`` with ``environment`` (the variables to set on
    top of the inherited ones); it trains into ``run_folder`` and writes ``model_file`` on success."""

    program: str
    arguments: list[str]
    working_directory: Path
    environment: dict[str, str]
    run_folder: Path
    model_file: Path


def python_executable() -> str:
    """Slicer's command-line Python (``PythonSlicer``, on the PATH inside Slicer), else this Python."""
    return shutil.which("PythonSlicer") or sys.executable


def new_run_folder(parent: Path = RUNS_FOLDER, now: Optional[float] = None) -> Path:
    """A run folder that does not exist yet: ``<parent>/run-<date>-<time>`` (``-2``, ``-3``... if taken)."""
    name = time.strftime("run-%Y%m%d-%H%M%S", time.localtime(now))
    folder, number = Path(parent) / name, 1
    while folder.exists():
        number += 1
        folder = Path(parent) / f"{name}-{number}"
    return folder


def training_command(
    config: Path,
    output: Path,
    engine_root: Path,
    resume: bool = False,
    steps: Optional[int] = None,
    device: Optional[str] = None,
    program: Optional[str] = None,
    inherited: Mapping[str, str] = os.environ,
) -> TrainingCommand:
    """``sasan train CONFIG --output OUTPUT --export OUTPUT/model.safetensors --progress-lines``.

    ``engine_root``: the folder holding the ``sasan`` package (beside the scripted modules once installed),
    put first on the child's ``PYTHONPATH`` so that ``-m sasan`` finds it.  Runs in the configuration's
    folder, so that relative data folders in it resolve as they do for ``sasan train`` started there (a
    shipped preset with relative data folders is refused: they would point inside the installation).
    ``-u`` and ``PYTHONUNBUFFERED``: the log and the progress lines arrive as they are written.
    """
    from sasan.resources import check_shipped_preset_data_folders
    from sasan.training.run_folder import MODEL_FILE

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
    model_file = output / MODEL_FILE
    arguments = ["-u", "-m", "sasan", "train", str(config), "--output", str(output), "--export", str(model_file),
                 "--progress-lines"]
    if resume:
        arguments.append("--resume")
    if steps is not None:
        arguments += ["--steps", str(steps)]
    if device:
        arguments += ["--device", device]
    python_path = os.pathsep.join(p for p in (str(Path(engine_root).resolve()), inherited.get("PYTHONPATH")) if p)
    environment = {"PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"}
    return TrainingCommand(program or python_executable(), arguments, config.parent, environment, output, model_file)
