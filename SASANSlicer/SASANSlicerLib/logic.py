"""The public translation API: a volume node in, the translated volume, segmentation and attention nodes out.

The module's Logic and Widget use it, and so can scripts and Slicer's Python console::

    from SASANSlicerLib import TranslationLogic
    result = TranslationLogic().translate(getNode("CT"), "/path/to/model.safetensors", target="MR")
    result.volumeNode, result.segmentationNode, result.attentionNodes

Standard library only at import time: Slicer imports this while it starts, possibly before torch is
installed; the engine and the MRML glue are imported when a run starts.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from . import environment
from .progress import as_cancel_check, progress_callback, raise_if_cancelled

logger = logging.getLogger(__name__)

MODULE_DIR = Path(__file__).resolve().parent.parent  # SASANSlicer/ (source tree) or the scripted-modules folder


@dataclass
class TranslationNodes:
    """What one run added to the scene (and how it went).

    ``volumeNode``: the translated volume (new, or the given output volume, updated).
    ``segmentationNode``: one named, coloured segment per structure of the model card (None without).
    ``attentionNodes``: the K attention maps as scalar volumes with a heat colour table ([] without);
    ``attentionOverviewNode``: a label volume naming the strongest map per voxel.
    ``device``: where the run finished; ``notes``: what the engine had to change on the way (GPU out of
    memory: smaller batches, then the CPU), for the user; ``seconds``: the run's wall time.
    """

    volumeNode: object
    segmentationNode: Optional[object] = None
    attentionNodes: list = field(default_factory=list)
    attentionOverviewNode: Optional[object] = None
    device: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One status line: ``"Done in 12 s on cpu: 'CT (translated to MR)', 'CT segmentation', 8 attention
        maps."``, followed by the engine's notes."""
        outputs = [f"'{self.volumeNode.GetName()}'"]
        if self.segmentationNode is not None:
            outputs.append(f"'{self.segmentationNode.GetName()}'")
        if self.attentionNodes:
            outputs.append(f"{len(self.attentionNodes)} attention maps")
        text = f"Done in {self.seconds:.0f} s on {self.device or 'an unknown device'}: {', '.join(outputs)}."
        return " ".join([text, *(f"Note: {note}." for note in self.notes)])


def _ignore_progress(fraction: float, message: str) -> None:
    """Default ``progress``: reports go nowhere."""


class TranslationLogic:
    """Translates volume nodes with a SASAN model file; no GUI needed.

    ``processEvents``: called after every progress report (in Slicer's GUI ``slicer.app.processEvents``,
    so that the window stays responsive and a Cancel click arrives during the run).
    """

    def __init__(self, processEvents: Optional[Callable[[], None]] = None) -> None:
        self.processEvents = processEvents

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
        """Translate ``inputVolumeNode`` (a 3D scalar volume) to ``target`` and add the results beside it.

        ``device``: "auto" (a CUDA GPU if there is one), "cuda" or "cpu".  ``segment`` / ``attention``:
        also make the segmentation / the attention maps.  ``progress(fraction, message)`` is called after
        every batch (fraction 0..1); ``cancel`` is a callable (or ``CancelToken``) returning True to stop,
        read between batches.  ``outputVolumeNode``: receive the translation in this volume instead of a
        new one.  Results lie on the input's voxel grid, under its subject-hierarchy parent and transform.

        Raises ``RunCancelled`` when cancelled and otherwise a ``ValueError`` (``UnsupportedVolumeError``,
        the engine's ``InferenceError``, ``ModelFileError``) or ``ImportError`` (PyTorch missing) whose
        message says what is wrong; in every such case the scene is left exactly as it was.
        """
        if not modelPath:
            raise ValueError("select a model file")
        if outputVolumeNode is not None and outputVolumeNode is inputVolumeNode:
            raise ValueError("the output volume must not be the input volume")
        should_stop = as_cancel_check(cancel)
        environment.ensure_engine_importable(MODULE_DIR)
        from .nodes import volume_from_node
        from .results import add_results_to_scene

        started = time.monotonic()
        volume = volume_from_node(inputVolumeNode)  # refuses 2D, 4D, vector... before the model is opened
        environment.require_torch()
        from . import engine

        callback = progress_callback(progress or _ignore_progress, should_stop, self.processEvents)
        output = engine.translate(volume, Path(modelPath), target, device, segment, attention, callback, should_stop)
        raise_if_cancelled(should_stop)  # a cancel clicked during the last batch still counts
        nodes = add_results_to_scene(inputVolumeNode, output, target, outputVolumeNode)
        seconds = time.monotonic() - started
        logger.info("translated '%s' to %s on %s in %.1f s", inputVolumeNode.GetName(), target, output.device,
                    seconds)
        return TranslationNodes(volumeNode=nodes.volume, segmentationNode=nodes.segmentation,
                                attentionNodes=nodes.attention, attentionOverviewNode=nodes.attention_overview,
                                device=output.device, notes=output.notes, seconds=seconds)
