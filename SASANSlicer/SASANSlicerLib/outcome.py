"""What one translation run added to the scene: the record the public API returns.

Standard library only: ``logic`` (imported while Slicer starts) returns it, and ``results`` fills it in.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class TranslationNodes:
    """What one run added to the scene (and how it went).

    ``volumeNode``: the translated volume (new, or the given output volume, updated).
    ``segmentationNode``: one named, coloured segment per structure of the model card (None without).
    ``attentionNodes``: the K attention maps as scalar volumes with a heat colour table ([] without);
    ``attentionOverviewNode``: a label volume naming the strongest map per voxel.
    ``device``: where the run finished; ``notes``: what the user should know about the run, the input check's
    ``warning`` first (the input does not look like the scans the model was trained on), then what the engine had
    to change on the way (a GPU out of memory: the move to the CPU); ``seconds``: the run's wall time.
    """

    volumeNode: object
    segmentationNode: Optional[object] = None
    attentionNodes: list = field(default_factory=list)
    attentionOverviewNode: Optional[object] = None
    device: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    warning: str = ""

    def summary(self) -> str:
        """One status line: ``"Done in 12 s on cpu: 'CT (translated to MR)', 'CT segmentation', 8 attention
        maps."``, after the input check's warning (``"Warning: the input does not look like ..."``) and followed by
        the engine's other notes."""
        outputs = [f"'{self.volumeNode.GetName()}'"]
        if self.segmentationNode is not None:
            outputs.append(f"'{self.segmentationNode.GetName()}'")
        if self.attentionNodes:
            outputs.append(f"{len(self.attentionNodes)} attention maps")
        text = f"Done in {self.seconds:.0f} s on {self.device or 'an unknown device'}: {', '.join(outputs)}."
        warning = [f"Warning: {self.warning}."] if self.warning else []
        return " ".join([*warning, text, *(f"Note: {note}." for note in self.notes if note != self.warning)])
