"""The public translation API: a volume node in, the translated volume, segmentation and attention nodes out.

The module's Widget starts runs with it (``start``, then ``poll`` from a timer), and scripts and Slicer's Python
console translate with it (``translate`` blocks until done)::

    from SASANSlicerLib import TranslationLogic
    result = TranslationLogic().translate(getNode("CT"), "/path/to/model.safetensors", target="MR")
    result.volumeNode, result.segmentationNode, result.attentionNodes

The engine runs in a child process (``translation_process``).  Standard library only at import time: Slicer
imports this while it starts, possibly before the engine's packages are installed.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

from . import environment
from .outcome import TranslationNodes
from .progress import as_cancel_check

if TYPE_CHECKING:  # imports the engine
    from .translation_process import TranslationRun

POLL_INTERVAL_S = 0.05
MODULE_DIR = Path(__file__).resolve().parent.parent  # SASANSlicer/ (source tree) or the scripted-modules folder


class TranslationLogic:
    """Translates volume nodes with a SASAN model file, in a child process; no GUI needed."""

    def start(
        self,
        inputVolumeNode,
        modelPath: Union[str, Path],
        target: str = "MR",
        device: str = "auto",
        segment: bool = True,
        attention: bool = True,
        progress: Optional[Callable[[float, str], None]] = None,
        cancel: Optional[Callable[[], bool]] = None,
        *,
        outputVolumeNode=None,
    ) -> TranslationRun:
        """Start translating (see ``translate`` for the arguments) and return the run: call its ``poll()`` until
        it returns the ``TranslationNodes`` (the module does so from a timer), or its ``cancel()``.

        Refusals (volume, model card, PyTorch) are raised here, before any process starts.
        """
        if not modelPath:
            raise ValueError("select a model file")
        if outputVolumeNode is not None and outputVolumeNode is inputVolumeNode:
            raise ValueError("the output volume must not be the input volume")
        as_cancel_check(cancel)  # a cancel that is not callable is refused now, not at the first poll
        engine_root = environment.ensure_engine_importable(MODULE_DIR)
        from .translation_process import TranslationRequest, start_translation

        request = TranslationRequest(modelPath, target, device, segment, attention)
        return start_translation(inputVolumeNode, request, engine_root, outputVolumeNode, progress, cancel)

    def translate(
        self,
        inputVolumeNode,
        modelPath: Union[str, Path],
        target: str = "MR",
        device: str = "auto",
        segment: bool = True,
        attention: bool = True,
        progress: Optional[Callable[[float, str], None]] = None,
        cancel: Optional[Callable[[], bool]] = None,
        *,
        outputVolumeNode=None,
    ) -> TranslationNodes:
        """Translate ``inputVolumeNode`` (a 3D scalar volume) to ``target`` and add the results beside it;
        blocks until done.

        ``device``: "auto" (a CUDA GPU if there is one), "cuda", "cpu" (or "mps" on macOS).  ``segment`` /
        ``attention``: also make the segmentation / the attention maps.  ``progress(fraction, message)`` is
        called as the run goes (fraction 0..1); ``cancel`` is a callable (or ``CancelToken``) returning True to
        stop, read at every poll (20 a second).  ``outputVolumeNode``: receive the translation in this volume
        instead of a new one.  Results lie on the input's voxel grid, under its subject-hierarchy parent and
        transform.  The engine runs in a child process (``start``); this process never imports torch.

        Raises ``RunCancelled`` when cancelled and otherwise a ``ValueError`` (``UnsupportedVolumeError``,
        ``ModelFileError``, ``TranslationError``) or ``ImportError`` (PyTorch missing) whose message says what
        is wrong; in every such case the scene is left exactly as it was and no child process is left.
        """
        run = self.start(inputVolumeNode, modelPath, target, device, segment, attention, progress, cancel,
                         outputVolumeNode=outputVolumeNode)
        try:
            while (nodes := run.poll()) is None:
                time.sleep(POLL_INTERVAL_S)
        except BaseException:  # Ctrl-C in a console too: no child left running
            run.cancel()
            raise
        return nodes
