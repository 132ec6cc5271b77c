"""2.5D context stacks and the slice dataset: shapes, ignore labels, empty slices, exact replay per epoch."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sasan.config import AugmentConfig
from sasan.data.slices import IGNORE_LABEL, SliceDataset, context_stack


def numbered_stack(count: int = 4, height: int = 2, width: int = 3) -> np.ndarray:
    """Slice ``s`` is filled with the value ``s``."""
    return np.repeat(np.arange(count, dtype=np.float32), height * width).reshape(count, height, width)


def test_context_stack_replicates_the_edges():
    stack = numbered_stack()
    assert context_stack(stack, 0, 3)[:, 0, 0].tolist() == [0, 0, 1]
    assert context_stack(stack, 3, 3)[:, 0, 0].tolist() == [2, 3, 3]
    assert context_stack(stack, 1, 5)[:, 0, 0].tolist() == [0, 0, 1, 2, 3]
    assert context_stack(stack, 2, 1).shape == (1, 2, 3)
    with pytest.raises(ValueError, match="odd number"):
        context_stack(stack, 1, 2)
    with pytest.raises(IndexError, match="outside a stack of 4 slices"):
        context_stack(stack, 4, 3)


def test_items_have_the_documented_shapes_and_types():
    stack = np.random.default_rng(0).uniform(-1, 1, size=(3, 6, 4)).astype(np.float32)
    labels = np.random.default_rng(1).integers(0, 3, size=(3, 6, 4)).astype(np.uint8)
    dataset = SliceDataset([stack, stack], [labels, None], size=18, context=3)
    assert len(dataset) == 6
    item = dataset[1]
    assert item["image"].shape == (3, 18, 18) and item["image"].dtype == torch.float32
    assert item["label"].shape == (18, 18) and item["label"].dtype == torch.int64
    assert item["has_label"].item() is True and item["index"] == (0, 1)
    # Neighbours as channels, squared: slice s padded by one column each side (6 x 6), then tripled,
    # so pixel (r, c) lands on the centre of the 3 x 3 block (3r + 1, 3(c + 1) + 1).
    for channel, neighbour in enumerate([0, 1, 2]):
        np.testing.assert_allclose(item["image"][channel, 1::3, 4:16:3].numpy(), stack[neighbour], atol=1e-5)
    np.testing.assert_array_equal(item["label"][1::3, 4:16:3].numpy(), labels[1])
    assert (item["label"][:, :3] == 0).all() and (item["image"][1, :, :2] == stack[1].min()).all()
    unlabelled = dataset[4]
    assert unlabelled["has_label"].item() is False and unlabelled["index"] == (1, 1)
    assert (unlabelled["label"] == IGNORE_LABEL).all()


def test_skip_empty_drops_slices_that_are_all_background():
    stack = np.full((4, 3, 3), -1.0, np.float32)
    stack[1, 1, 1] = 0.5
    stack[3] = 0.2
    dataset = SliceDataset([stack], [None], size=3, skip_empty=True)
    assert [dataset[i]["index"] for i in range(len(dataset))] == [(0, 1), (0, 3)]
    assert len(SliceDataset([stack], [None], size=3, skip_empty=False)) == 4
    with pytest.raises(ValueError, match="every slice is empty"):
        SliceDataset([np.full((2, 3, 3), -1.0, np.float32)], [None], size=3, skip_empty=True)


def test_constructor_refuses_inconsistent_inputs():
    stack = np.zeros((2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="2 volumes but 1 label entries"):
        SliceDataset([stack, stack], [None], size=4)
    with pytest.raises(ValueError, match="do not match the stack"):
        SliceDataset([stack], [np.zeros((2, 3, 4), np.uint8)], size=4)
    with pytest.raises(ValueError, match="odd number"):
        SliceDataset([stack], [None], size=4, context=2)


def test_augmentation_replays_exactly_per_epoch():
    rng = np.random.default_rng(2)
    stack = rng.uniform(-1, 1, size=(5, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 2, size=(5, 8, 8)).astype(np.uint8)
    config = AugmentConfig(rotation_degrees=30.0, scale_range=[0.75, 1.0], flip_horizontal=True)
    first = SliceDataset([stack], [labels], size=8, augment=config, seed=4)
    resumed = SliceDataset([stack], [labels], size=8, augment=config, seed=4)
    first.set_epoch(3)
    resumed.set_epoch(3)
    assert first.epoch_order() == resumed.epoch_order()
    assert sorted(first.epoch_order()) == list(range(5))
    for i in range(len(first)):
        assert torch.equal(first[i]["image"], resumed[i]["image"])
        assert torch.equal(first[i]["label"], resumed[i]["label"])
    epoch_three = first[2]["image"]
    first.set_epoch(4)
    assert not torch.equal(first[2]["image"], epoch_three)
    orders = set()
    for epoch in range(6):
        first.set_epoch(epoch)
        orders.add(tuple(first.epoch_order()))
    assert len(orders) > 1


def test_batches_collate_through_a_dataloader():
    stack = np.random.default_rng(3).uniform(-1, 1, size=(4, 5, 5)).astype(np.float32)
    dataset = SliceDataset([stack], [None], size=16, context=3)
    batch = next(iter(DataLoader(dataset, batch_size=2, sampler=dataset.epoch_order())))
    assert batch["image"].shape == (2, 3, 16, 16)
    assert batch["label"].shape == (2, 16, 16)
    assert batch["has_label"].tolist() == [False, False]
    assert batch["index"][0].tolist() == [0, 0]
