"""What a training run shows: a progress bar with the loss terms and ETA (or progress reports), TensorBoard logs."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Optional

import torch

from ..progress import Progress
from .run_folder import TENSORBOARD_DIR

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5


def _grid(images: torch.Tensor, rows: int = 4) -> torch.Tensor:
    """(N, H, W) in [-1, 1] -> (1, rows * H, W) in [0, 1]: the first ``rows`` images stacked vertically."""
    images = images[:rows].float().clamp(-1, 1).add(1).div(2)
    return torch.cat(list(images), dim=1).unsqueeze(0)


class Feedback:
    """Progress bar (or ``progress`` reports) + TensorBoard writer (rank 0 only; a no-op elsewhere).

    With ``progress`` (e.g. ``sasan.progress.progress_line_printer()`` for a parent process), each step
    is reported there instead of on a bar, at most every ``PROGRESS_INTERVAL_S`` and always at the end.
    """

    def __init__(self, run_dir: Path, total_steps: int, start_step: int, enabled: bool = True,
                 log_every: int = 10, progress: Optional[Progress] = None) -> None:
        self.enabled, self.log_every, self.total_steps = enabled, log_every, total_steps
        self.progress, self._reported = progress, -math.inf
        self.bar = self.writer = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        self.writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD_DIR), purge_step=start_step or None)
        if progress is None:
            self.bar = tqdm(total=total_steps, initial=start_step, desc="training", unit="step", dynamic_ncols=True)

    def step(self, step: int, terms: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
        elif step == self.total_steps or time.monotonic() - self._reported >= PROGRESS_INTERVAL_S:
            self._reported = time.monotonic()
            self.progress(step / self.total_steps, f"step {step} of {self.total_steps}")
        if step % self.log_every == 0:
            if self.bar is not None:
                self.bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items()}, refresh=False)
            self.scalars(step, {f"loss/{k}": v for k, v in terms.items()})

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.enabled:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def images(self, step: int, batches: dict, outputs) -> None:
        """Centre channels of source, translated, reconstructed; attention maps; segmentations."""
        if not self.enabled:
            return
        for modality, batch in batches.items():
            centre = batch["image"].shape[1] // 2
            other = next(m for m in batches if m != modality)
            rows = [batch["image"][0, centre], outputs.fakes[other][0, centre].detach(),
                    outputs.reconstructions[modality][0, centre].detach()]
            self.writer.add_image(f"translation/{modality}_to_{other}", _grid(torch.stack(rows), 3), step)
            if modality in outputs.maps:
                maps = outputs.maps[modality][0].detach() * 2 - 1
                self.writer.add_image(f"attention/{modality}", _grid(maps, len(maps)), step)
            if modality in outputs.segmentations:
                classes = outputs.segmentations[modality].shape[1]
                prediction = outputs.segmentations[modality][0].argmax(0).float() / max(classes - 1, 1) * 2 - 1
                truth = batch["label"][0].clamp(min=0).float() / max(classes - 1, 1) * 2 - 1
                self.writer.add_image(f"segmentation/{modality}", _grid(torch.stack([truth, prediction]), 2), step)

    def close(self) -> None:
        if self.enabled:
            if self.bar is not None:
                self.bar.close()
            self.writer.close()
