"""A rolling window of translated slices: the segmenter's 2.5D input without keeping the volume.

The segmenter of slice ``i`` needs translated slices ``i - h .. i + h`` (``h = context // 2``, the edge
slice repeated beyond the ends). Slices enter in order as the generator produces them and leave as
soon as no later segmenter input needs them, so the window holds at most about two batches plus
``2 h`` slices whatever the volume's length (``peak`` records the most it ever held).
"""
from __future__ import annotations

import torch

from .slicewise import context_indices


class SliceWindow:
    """Translated square slices ``(S, S)`` of a stack of ``count`` slices, indexed by slice number."""

    def __init__(self, count: int, context: int) -> None:
        if count < 1 or context < 1 or context % 2 == 0:
            raise ValueError(f"need count >= 1 and an odd context; got count {count}, context {context}")
        self.count, self.context = count, context
        self.half = context // 2
        self.slices: dict[int, torch.Tensor] = {}
        self.added = 0
        self.peak = 0

    def add(self, batch: torch.Tensor) -> None:
        """Append the next translated slices, batch (B, S, S), in slice order."""
        for image in batch:
            self.slices[self.added] = image
            self.added += 1
        self.peak = max(self.peak, len(self.slices))

    def ready_until(self) -> int:
        """One past the last slice whose whole context has been translated."""
        if self.added >= self.count:
            return self.count
        return max(0, self.added - self.half)

    def stacks(self, start: int, end: int) -> torch.Tensor:
        """Context stacks of slices ``start .. end - 1`` -> (end - start, context, S, S)."""
        if not 0 <= start < end <= self.ready_until():
            raise IndexError(f"slices {start}..{end - 1} are not ready (ready until {self.ready_until()})")
        rows = context_indices(start, end, self.count, self.context).tolist()
        return torch.stack([torch.stack([self.slices[n] for n in row]) for row in rows])

    def release_before(self, index: int) -> None:
        """Forget slices that no segmenter input from slice ``index`` on will need."""
        for number in [n for n in self.slices if n < index - self.half]:
            del self.slices[number]
