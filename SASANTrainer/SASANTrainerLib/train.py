"""Train a SASAN model without the GUI, in Slicer's Python or any Python with the engine's packages.

    Slicer --no-main-window --python-script SASANTrainer/SASANTrainerLib/train.py -- CONFIG.yaml [--resume] [--output DIR]
    PythonSlicer SASANTrainer/SASANTrainerLib/train.py CONFIG.yaml [--resume] [--output DIR] [--export MODEL.safetensors]
    python SASANTrainer/SASANTrainerLib/train.py CONFIG.yaml ...

Everything after ``--`` (or after the script when there is no ``--``) goes to ``sasan train``, except
``--export FILE``: once training succeeds, the run folder is written as the model file FILE
(``sasan export``).  The exit status is the engine's (0 success, 2 bad input, 130 interrupted).
The script lives in ``SASANTrainerLib/`` because Slicer would load any ``.py`` file at the top of a
module folder as a module.  Standard library only until the engine is found.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Optional

ENGINE_PACKAGE = "sasan"


def script_arguments(argv: list[str]) -> list[str]:
    """The arguments meant for this script: those after ``--`` if present, else all after the script."""
    if "--" in argv:
        return argv[argv.index("--") + 1:]
    return argv[1:]


def split_export(arguments: list[str]) -> tuple[list[str], Optional[str]]:
    """Take ``--export FILE`` (or ``--export=FILE``) out of ``arguments``: (rest, FILE or None)."""
    rest, export = [], None
    iterator = iter(arguments)
    for argument in iterator:
        if argument == "--export":
            export = next(iterator, None)
            if export is None:
                raise SystemExit("train.py: --export needs a model file name")
        elif argument.startswith("--export="):
            export = argument.split("=", 1)[1]
        else:
            rest.append(argument)
    return rest, export


def engine_roots(script_path: Path) -> list[Path]:
    """Folders that may hold the ``sasan`` package: the installed extension's scripted-modules folder
    (``<modules>/SASANTrainerLib/train.py``) and the source tree (``<repo>/SASANTrainer/SASANTrainerLib/train.py``)."""
    folder = script_path.resolve().parent
    return [folder.parent, folder.parent.parent]


def ensure_engine_importable(script_path: Path, package: str = ENGINE_PACKAGE) -> None:
    """Put the folder holding ``sasan`` first on ``sys.path`` unless it is importable already."""
    if importlib.util.find_spec(package) is not None:
        return
    for root in engine_roots(script_path):
        if (root / package / "__init__.py").is_file():
            sys.path.insert(0, str(root))
            return
    searched = ", ".join(str(root) for root in engine_roots(script_path))
    raise SystemExit(f"train.py: the SASAN engine (package '{package}') was not found; looked in {searched}")


def _option_value(arguments: list[str], option: str) -> Optional[str]:
    for index, argument in enumerate(arguments):
        if argument == option and index + 1 < len(arguments):
            return arguments[index + 1]
        if argument.startswith(option + "="):
            return argument.split("=", 1)[1]
    return None


def run(arguments: list[str]) -> int:
    """``sasan train`` with ``arguments``, then ``sasan export`` if ``--export`` was given; the exit status."""
    from sasan.cli import main

    train_arguments, export = split_export(arguments)
    status = main(["train", *train_arguments])
    if status != 0 or export is None or "-h" in train_arguments or "--help" in train_arguments:
        return status
    run_dir = _option_value(train_arguments, "--output")
    if run_dir is None:
        from sasan.config import load_config

        run_dir = load_config(train_arguments[0]).output
    return main(["export", run_dir, "-o", export, "--overwrite"])


def exit_with(status: int) -> None:
    """Leave with ``status``: through Slicer when running inside the application (which otherwise keeps
    running after the script), else as a plain Python process."""
    slicer = sys.modules.get("slicer")
    if getattr(slicer, "app", None) is not None:
        slicer.util.exit(status)
    else:
        sys.exit(status)


def _status_of(exit_request: SystemExit) -> int:
    code = exit_request.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    try:
        ensure_engine_importable(Path(__file__))
        exit_status = run(script_arguments(sys.argv))
    except SystemExit as request:  # argparse's --help and usage errors, a missing engine
        exit_status = _status_of(request)
    exit_with(exit_status)
