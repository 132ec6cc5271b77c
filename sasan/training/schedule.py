"""Learning-rate schedule of the paper: constant, then linear decay to zero."""
from __future__ import annotations

from typing import Callable


def constant_then_linear_decay(total_steps: int, decay_start: float) -> Callable[[int], float]:
    """Multiplier for ``LambdaLR``: 1 until ``decay_start * total_steps``, then linearly to 0 at the end."""
    start = int(round(decay_start * total_steps))
    span = max(total_steps - start, 1)

    def factor(step: int) -> float:
        return 1.0 if step < start else max(0.0, 1.0 - (step - start) / span)

    return factor
