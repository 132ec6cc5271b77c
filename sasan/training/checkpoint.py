"""Checkpoints: written atomically (temp file, fsync, rename), read without unpickling code.

A checkpoint is a plain dict of tensors, numbers, strings and lists; ``torch.load(weights_only=True)``
refuses anything else, so a checkpoint cannot run code either. A run killed at any moment leaves either
the previous or the new file, never a torn one.
"""
from __future__ import annotations

import logging
import pickle
import random
import re
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..atomic import atomic_file, failure_reason
from .run_folder import CHECKPOINT_DIR

log = logging.getLogger(__name__)

_NAME = re.compile(r"^step_(\d{8})\.ckpt$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not belong to this run."""


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:08d}.ckpt"


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``state`` for ``step`` atomically, then delete all but the newest ``keep`` checkpoints.

    A failure (disk full, quota, ...) raises ``CheckpointError`` naming the file and keeps the older ones.
    """
    path = checkpoint_path(run_dir, step)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(f"cannot write checkpoint {path} ({failure_reason(error)})") from None
    try:
        with atomic_file(path, message=lambda file, reason: f"cannot write checkpoint {file} ({reason}); the run "
                                                            "can resume from its previous checkpoint") as temporary:
            with open(temporary, "wb") as stream:
                torch.save(state, stream)
    except OSError as error:
        raise CheckpointError(str(error)) from None
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary files are ignored)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def discard_partial_checkpoints(run_dir: Path) -> None:
    """Delete temporary files left by a process killed while writing a checkpoint."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if folder.is_dir():
        for partial in folder.glob(".step_*.tmp"):
            log.info("removing %s, left by an interrupted checkpoint write", partial.name)
            partial.unlink(missing_ok=True)


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's state; ``CheckpointError`` (one line) for a damaged or foreign file."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, i.e. running the file's code: never.
        raise CheckpointError(f"cannot read checkpoint {path}: it is not made of tensors, numbers and strings "
                              "only, as SASAN's are (refused without running any of it)") from None
    except Exception as error:
        reason = (str(error).strip().splitlines() or [f"{type(error).__name__}: empty or cut short"])[0]
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from None


def capture_rng() -> dict[str, Any]:
    """Every random state a training step may draw from."""
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_pos": random.getstate()[2], "numpy": np.random.get_state()[1].tolist(),
             "numpy_pos": int(np.random.get_state()[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
