"""Headless training inside Slicer's Python: ``sasan train`` behind Slicer's ``--python-script``.

    Slicer --no-main-window --python-script <modules>/SASANTrainerLib/train.py -- CONFIG.yaml --output DIR \
        [--export MODEL.safetensors] [--resume]

The arguments after ``--`` (or after the script when there is none) are ``sasan train``'s, and so is the exit
status (0 success, 2 bad input, 130 stopped). Outside Slicer run the engine directly: ``python -m sasan train``.
The script lives in ``SASANTrainerLib/`` because Slicer loads every ``.py`` file at the top of a module folder
as a module.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def script_arguments(argv: list[str]) -> list[str]:
    """The arguments meant for ``sasan train``: those after ``--`` if present, else all after the script."""
    return argv[argv.index("--") + 1:] if "--" in argv else argv[1:]


def engine_folder(script: Path) -> Path:
    """The folder holding the ``sasan`` package: the installed extension's scripted-modules folder, or the
    source tree's root."""
    for folder in (script.resolve().parents[1], script.resolve().parents[2]):
        if (folder / "sasan" / "__init__.py").is_file():
            return folder
    raise SystemExit(f"train.py: the SASAN engine (package 'sasan') was not found beside {script}")


def exit_with(status: int) -> None:
    """Leave with ``status``: through Slicer inside the application (which otherwise keeps running)."""
    slicer = sys.modules.get("slicer")
    if getattr(slicer, "app", None) is not None:
        slicer.util.exit(status)
    else:
        sys.exit(status)


if __name__ == "__main__":
    if importlib.util.find_spec("sasan") is None:
        sys.path.insert(0, str(engine_folder(Path(__file__))))
    from sasan.cli import main

    try:
        exit_status = main(["train", *script_arguments(sys.argv)])
    except SystemExit as request:  # argparse's --help and usage errors
        exit_status = request.code if isinstance(request.code, int) else int(request.code is not None)
    exit_with(exit_status)
