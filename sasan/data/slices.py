"""2.5D training samples: each slice with its neighbours as channels, squared to the model's size.

Squaring happens per item (a few slices at a time) rather than up front, so a dataset of many
large volumes costs no more memory than the normalised stacks themselves.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from sasan.config import AugmentConfig
from sasan.data.augment import augment_slice
from sasan.data.geometry import fit_to_square

log = logging.getLogger(__name__)

IGNORE_LABEL = -1


def context_stack(stack: np.ndarray, index: int, context: int) -> np.ndarray:
    """The ``context`` slices of ``stack`` ``(n, h, w)`` centred on ``index`` -> ``(context, h, w)``.

    Beyond the first and last slice the edge slice is repeated.
    """
    if context < 1 or context % 2 == 0:
        raise ValueError(f"the context must be an odd number >= 1; got {context}")
    count = stack.shape[0]
    if not 0 <= index < count:
        raise IndexError(f"slice index {index} is outside a stack of {count} slices")
    half = context // 2
    indices = np.clip(np.arange(index - half, index + half + 1), 0, count - 1)
    return stack[indices]


class SliceDataset(Dataset):
    """Slices of normalised volumes as 2.5D samples for training.

    ``volumes``: normalised stacks ``(n, h, w)`` (slicing axis first); ``labels``: matching
    class-index stacks or None. Item ``i`` is a dict with ``image`` float32 ``(context, size, size)``,
    ``label`` int64 ``(size, size)`` (all -1, "ignore", without labels), ``has_label`` bool tensor
    and ``index`` = (volume, slice).

    Augmentation of item ``i`` in epoch ``e`` draws from a generator seeded by (seed, e, i), and
    ``epoch_order()`` is a permutation seeded by (seed, e): after ``set_epoch`` both replay exactly.
    With DataLoader workers, call ``set_epoch`` before creating the epoch's iterator.
    """

    def __init__(
        self,
        volumes: list[np.ndarray],
        labels: list[Optional[np.ndarray]],
        size: int,
        context: int = 3,
        skip_empty: bool = False,
        augment: Optional[AugmentConfig] = None,
        seed: int = 0,
    ) -> None:
        if len(volumes) != len(labels):
            raise ValueError(f"{len(volumes)} volumes but {len(labels)} label entries; pass None for unlabelled ones")
        if not volumes:
            raise ValueError("a slice dataset needs at least one volume")
        if context < 1 or context % 2 == 0:
            raise ValueError(f"the context must be an odd number >= 1; got {context}")
        if size < 1:
            raise ValueError(f"the slice size must be positive; got {size}")
        for number, (stack, label) in enumerate(zip(volumes, labels)):
            if stack.ndim != 3 or stack.shape[0] == 0:
                raise ValueError(f"volume {number}: expected a non-empty stack (n, h, w); got {stack.shape}")
            if label is not None and label.shape != stack.shape:
                raise ValueError(f"volume {number}: labels {label.shape} do not match the stack {stack.shape}")
        self.volumes = volumes
        self.labels = labels
        self.size = size
        self.context = context
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.items = self._list_items(skip_empty)

    def _list_items(self, skip_empty: bool) -> list[tuple[int, int]]:
        items = []
        for number, stack in enumerate(self.volumes):
            background = stack.min()
            for index in range(stack.shape[0]):
                if skip_empty and np.all(stack[index] == background):
                    continue
                items.append((number, index))
        if not items:
            raise ValueError("every slice is empty (all background); nothing to train on")
        skipped = sum(stack.shape[0] for stack in self.volumes) - len(items)
        if skipped:
            log.info("skipped %d empty slices of %d", skipped, skipped + len(items))
        return items

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose data order and augmentations are replayed."""
        self.epoch = int(epoch)

    def epoch_order(self) -> list[int]:
        """The shuffled item order of the current epoch (a sampler for the DataLoader)."""
        generator = torch.Generator().manual_seed(_mixed_seed(self.seed, self.epoch))
        return torch.randperm(len(self.items), generator=generator).tolist()

    def __getitem__(self, item: int) -> dict:
        number, index = self.items[item]
        stack = self.volumes[number]
        image = torch.from_numpy(fit_to_square(context_stack(stack, index, self.context), self.size, "image"))
        label_stack = self.labels[number]
        label = None
        if label_stack is not None:
            label = torch.from_numpy(fit_to_square(label_stack[index : index + 1], self.size, "label")[0]).long()
        if self.augment is not None:
            generator = torch.Generator().manual_seed(_mixed_seed(self.seed, self.epoch, item))
            image, label = augment_slice(image, label, self.augment, generator)
        return {
            "image": image,
            "label": label if label is not None else torch.full((self.size, self.size), IGNORE_LABEL, dtype=torch.long),
            "has_label": torch.tensor(label is not None),
            "index": (number, index),
        }


def _mixed_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from several integers (nearby inputs give unrelated streams)."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1, dtype=np.uint64)[0] >> 1)
