"""One translation run: the engine's own ``sasan translate`` in a child process, its outputs added to the scene.

The module (and ``TranslationLogic``) checks the request against the model card, writes the input volume into a
private temporary folder and starts, with Slicer's command-line Python::

    PythonSlicer -u -m sasan translate DIR/input.mha --model MODEL --to MR -o DIR/translated.mha
        [--segmentation DIR/segmentation.mha] [--attention DIR/attention] --device auto --progress-lines
        --report DIR/report.json

A thread reads the child's output lines into a queue; ``TranslationRun.poll`` (from the module's QTimer, or in
a loop by the blocking console API) reports its progress lines and logs the rest.  Once the child has ended
with success, ``report.json`` names its outputs; they are read back, put on the input's exact geometry and
added to the scene, all or nothing.  A cancel ends the whole process tree (``PythonSlicer`` is a launcher).
Whatever the outcome, the folder is removed.  torch is imported by the child only.

Volumes travel as MetaImage (``.mha``): the engine's writer keeps their geometry bit for bit, uncompressed.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Union

from sasan.card import ModelCard, read_card, request_problem
from sasan.config import LabelSpec
from sasan.data.io import check_finite, read_volume, write_volume
from sasan.data.volume import Volume
from sasan.progress import parse_progress_line

from . import environment
from .outcome import TranslationNodes
from .nodes import volume_from_node
from .processes import end_process_tree, engine_environment, python_executable
from .progress import RunCancelled, as_cancel_check
from .results import TranslationOutput, add_results_to_scene
from .segmentation import class_indices_to_values

logger = logging.getLogger(__name__)

INPUT_FILE = "input.mha"
TRANSLATED_FILE = "translated.mha"
SEGMENTATION_FILE = "segmentation.mha"
ATTENTION_FOLDER = "attention"
REPORT_FILE = "report.json"
LOG_TAIL = 40  # lines of the child's log kept to explain a failure
READER_TIMEOUT_S = 5.0
GRID_TOLERANCE = 1e-3  # mm: the attention maps come back as NIfTI, whose header holds float32 geometry
# A refusal as the engine's command logs it ("12:00:01 ERROR sasan: <one sentence>") before exiting with 2.
_LOGGED_ERROR = re.compile(r"^\d\d:\d\d:\d\d (?:ERROR|CRITICAL) \S+: (.+)$")


class TranslationError(ValueError):
    """The translation was refused or failed; the message says why in one sentence."""


@dataclass(frozen=True)
class TranslationCommand:
    """``program arguments...`` with ``environment`` set on top of the inherited variables, run in ``folder``
    (which holds the input and receives the outputs)."""

    program: str
    arguments: list[str]
    environment: dict[str, str]
    folder: Path


@dataclass(frozen=True)
class TranslationRequest:
    """What to translate with: ``TranslationLogic``'s arguments of that name, carried once through this module."""

    model_path: Union[str, Path]
    target: str = "MR"
    device: str = "auto"
    segment: bool = True
    attention: bool = True


def translation_command(
    folder: Path,
    request: TranslationRequest,
    engine_root: Path,
    program: Optional[str] = None,
    inherited: Mapping[str, str] = os.environ,
) -> TranslationCommand:
    """The child's command line for translating ``folder/input.mha`` (see the module docstring).

    ``engine_root``: the folder holding the ``sasan`` package, first on the child's ``PYTHONPATH``;
    ``program``: default ``PythonSlicer`` (this Python outside Slicer).
    """
    folder = Path(folder)
    arguments = ["-u", "-m", "sasan", "translate", str(folder / INPUT_FILE), "--model",
                 str(Path(request.model_path).resolve()), "--to", request.target, "-o", str(folder / TRANSLATED_FILE)]
    if request.segment:
        arguments += ["--segmentation", str(folder / SEGMENTATION_FILE)]
    if request.attention:
        arguments += ["--attention", str(folder / ATTENTION_FOLDER)]
    arguments += ["--device", request.device, "--progress-lines", "--report", str(folder / REPORT_FILE)]
    return TranslationCommand(program or python_executable(), arguments, engine_environment(engine_root, inherited),
                              folder)


def check_request(request: TranslationRequest) -> ModelCard:
    """The model file's card, read once, if the model can do what is asked; else ``ModelFileError`` (missing or
    damaged file) or ``TranslationError`` (e.g. no segmenter for ``target``), each a ``ValueError``."""
    card = read_card(request.model_path)
    problem = request_problem(card, request.target, segment=request.segment, attention=request.attention)
    if problem:
        raise TranslationError(problem)
    return card


def start_translation(
    input_node,
    request: TranslationRequest,
    engine_root: Path,
    output_node=None,
    progress: Optional[Callable[[float, str], None]] = None,
    cancel: Optional[Callable[[], bool]] = None,
) -> TranslationRun:
    """Check the request, write the input and start the child; the returned run is then polled.

    Refusals come before anything starts: the volume (2D, 4D, vector, NaN voxels...), the model card, PyTorch.
    """
    volume = volume_from_node(input_node)  # refuses 2D, 4D, vector... before the model is opened
    check_finite(volume, f"volume '{input_node.GetName()}'")
    card = check_request(request)
    environment.require_torch()  # the child imports it
    folder = Path(tempfile.mkdtemp(prefix="sasan-translation-"))  # readable by this user only
    try:
        write_volume(volume, folder / INPUT_FILE)
        command = translation_command(folder, request, engine_root)
        return TranslationRun(command, input_node, volume, card.label_specs, request.target, output_node, progress,
                              cancel)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


class TranslationRun:
    """A started translation: its child process, the thread reading the child's output, and what to add where.

    ``poll()`` until it returns the added nodes; ``cancel()`` at any time.  ``process`` is the child (with
    ``PythonSlicer``, the launcher: the engine runs in its child).
    """

    def __init__(self, command: TranslationCommand, input_node, input_volume: Volume, labels: list[LabelSpec],
                 target: str, output_node=None, progress: Optional[Callable[[float, str], None]] = None,
                 cancel: Optional[Callable[[], bool]] = None) -> None:
        self.command = command
        self._input_node, self._input_volume, self._labels = input_node, input_volume, labels
        self._target, self._output_node = target, output_node
        self._progress = progress or (lambda fraction, message: None)
        self._should_stop = as_cancel_check(cancel)
        self._cancelled = False
        self._nodes: Optional[TranslationNodes] = None
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._log: deque[str] = deque(maxlen=LOG_TAIL)
        self._started = time.monotonic()
        logger.info("starting %s %s", command.program, " ".join(command.arguments))
        try:
            self.process = subprocess.Popen(
                [command.program, *command.arguments], cwd=str(command.folder),
                env={**os.environ, **command.environment}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace",
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))  # no console window on Windows
        except OSError as error:
            raise TranslationError(f"could not start the translation process '{command.program}' "
                                   f"({error.strerror or error})") from None
        self._reader = threading.Thread(target=self._read_output, name="SASAN translation output", daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        for line in self.process.stdout:  # until every process holding the pipe has ended
            self._lines.put(line.rstrip("\r\n"))

    def poll(self) -> Optional[TranslationNodes]:
        """Report the child's progress since the last call; None while it runs, then the nodes it added (the
        same ones on every later call).

        Raises ``RunCancelled`` after ``cancel()`` or once the ``cancel`` check says so (also when it says so
        during a progress report), ``TranslationError`` when the child failed, or what adding the nodes raised;
        in each case the child and its folder are gone and the scene is as it was.
        """
        if self._nodes is not None:
            return self._nodes
        try:
            self._raise_if_cancelled()
            ended = not self._reader.is_alive() and self.process.poll() is not None  # then every line is queued
            self._report_lines()
            self._raise_if_cancelled()
            if not ended:
                return None
            nodes = self._add_results()
        except BaseException:
            self._close()
            raise
        self._close()
        self._nodes = nodes
        return nodes

    def cancel(self) -> None:
        """End the child and every process it started, now, and remove the run's folder; nothing is added.  The
        next ``poll`` raises ``RunCancelled``.  Does nothing once the nodes are added."""
        if self._nodes is None:
            self._cancelled = True
            self._close()

    def _raise_if_cancelled(self) -> None:
        if self._cancelled or self._should_stop():
            raise RunCancelled("cancelled by the user")

    def _report_lines(self) -> None:
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return
            report = parse_progress_line(line)
            if report is not None:
                self._progress(report.fraction, report.message)
            elif line.strip():
                self._log.append(line)
                logger.info("translation process: %s", line)

    def _add_results(self) -> TranslationNodes:
        status = self.process.returncode
        if status != 0:
            raise TranslationError(failure_message(status, list(self._log)))
        output = read_outputs(self.command.folder, self._input_volume, self._labels)
        nodes = add_results_to_scene(self._input_node, output, self._target, self._output_node)
        nodes.seconds = time.monotonic() - self._started
        logger.info("translated '%s' to %s on %s in %.1f s", self._input_node.GetName(), self._target, nodes.device,
                    nodes.seconds)
        return nodes

    def _close(self) -> None:
        """End the process tree (while the child is not yet reaped its pid cannot be another process's), let the
        reader finish, remove the folder.  Safe to call again."""
        if self.process.poll() is None:
            end_process_tree(self.process.pid)
            self.process.wait()
        self._reader.join(timeout=READER_TIMEOUT_S)  # a process that escaped the tree may hold the pipe open
        if not self._reader.is_alive():
            self.process.stdout.close()
        shutil.rmtree(self.command.folder, ignore_errors=True)
        if self.command.folder.exists():
            logger.warning("could not remove the translation's temporary folder %s", self.command.folder)


def failure_message(status: int, log: list[str]) -> str:
    """Why the child failed, in one sentence: the error it logged (a refusal, e.g. "no GPU available: ..."),
    else how it ended and its last line (a crash's exception)."""
    for line in reversed(log):
        match = _LOGGED_ERROR.match(line)
        if match:
            return match.group(1)
    how = f"was ended by signal {-status}" if status < 0 else f"failed with exit status {status}"
    return f"the translation process {how}: {log[-1] if log else 'it printed nothing'}"


def _on_grid(volume: Volume, reference: Volume, what: str) -> Volume:
    """``volume``'s voxels on ``reference``'s exact geometry, once its grid is checked to be the same."""
    if not volume.same_geometry(reference, atol=GRID_TOLERANCE):
        raise TranslationError(f"{what} ({volume.shape} voxels) came back off the input's voxel grid "
                               f"({reference.shape} voxels)")
    return reference.with_array(volume.array)


def read_outputs(folder: Path, reference: Volume, labels: list[LabelSpec]) -> TranslationOutput:
    """The outputs ``report.json`` in ``folder`` names, on ``reference``'s exact geometry: the translated volume,
    the segmentation as the label values of ``labels`` (the child writes class indices), the uint8 attention maps;
    with the device, the engine's notes and its input check's warning."""
    try:
        report = json.loads((Path(folder) / REPORT_FILE).read_text(encoding="utf-8"))
        files = report["files"]
        image = _on_grid(read_volume(files["translated"]), reference, "the translated image")
        segmentation = None
        if files["segmentation"]:
            classes = _on_grid(read_volume(files["segmentation"], dtype=None), reference, "the segmentation")
            segmentation = classes.with_array(class_indices_to_values(classes.array, labels))
        maps = [_on_grid(read_volume(path, dtype=None), reference, f"attention map {index}")
                for index, path in enumerate(files["attention"], start=1)]
        return TranslationOutput(image=image, segmentation=segmentation, labels=labels, attention=maps,
                                 device=str(report["device"]), notes=[str(note) for note in report["notes"]],
                                 warning=str(report.get("warning") or ""))  # engines before the input check: none
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise TranslationError(f"the translation's outputs could not be read back ({error})") from None
