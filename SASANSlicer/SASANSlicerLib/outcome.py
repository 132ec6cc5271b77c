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
    ``device``: where the run finished; ``notes``: what the engine had to change on the way (a GPU out of
    memory: the move to the CPU), for the user; ``seconds``: the run's wall time.
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
