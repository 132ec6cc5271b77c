"""Histogram matching against hand-worked cases, and the U-Net applied to untranslated volumes."""
import numpy as np
import pytest
import torch
from torch import nn

from sasan.baselines import (
    BaselineError,
    UntranslatedSegmenter,
    histogram_match,
    histogram_matching,
    no_adaptation,
    reference_quantiles,
)
from sasan.config import CropConfig, NormalizationConfig
from sasan.data.volume import Volume

WINDOW_0_100 = NormalizationConfig(method="window", window=[0.0, 100.0])


# --- histogram matching ----------------------------------------------------------------------------
def test_distinct_values_take_the_reference_values_of_the_same_rank():
    source = np.array([3.0, 1.0, 2.0])
    assert histogram_match(source, np.array([10.0, 20.0, 40.0])).tolist() == [40.0, 10.0, 20.0]


def test_tied_values_share_the_quantile_of_their_mean_rank():
    # ranks 0,1 -> mean rank 0.5 of 3 -> fraction 1/6 -> reference position 0.5 -> between 10 and 10
    matched = histogram_match(np.array([[0, 0], [1, 1]]), np.array([10.0, 10.0, 20.0, 20.0]))
    assert matched.tolist() == [[10.0, 10.0], [20.0, 20.0]]
    assert matched.dtype == np.float32 and matched.shape == (2, 2)


def test_a_constant_volume_maps_to_the_reference_median():
    assert histogram_match(np.full(4, 7.0), np.array([0.0, 10.0, 20.0, 30.0])).tolist() == [15.0] * 4


def test_reference_quantiles_pool_all_volumes():
    quantiles = reference_quantiles([np.array([[0.0, 4.0]]), np.array([2.0, 1.0, 3.0])], count=5)
    np.testing.assert_allclose(quantiles, [0.0, 1.0, 2.0, 3.0, 4.0])
    # mapping through the quantile grid reproduces the pooled distribution for an equal-sized input
    np.testing.assert_allclose(histogram_match(np.array([50.0, -1.0, 7.0, 8.0, 9.0]), quantiles),
                               [4.0, 0.0, 1.0, 2.0, 3.0])


def test_matching_keeps_the_intensity_order_so_it_cannot_swap_two_tissues():
    # Tissue A darker than B in the source, brighter in the target: a monotonic map keeps A darker.
    source = np.array([0.0] * 50 + [100.0] * 50)          # A = 0, B = 100
    target = np.array([900.0] * 50 + [10.0] * 50)         # A = 900, B = 10
    matched = histogram_match(source, reference_quantiles([target]))
    assert matched[:50].max() < matched[50:].min()
    assert np.abs(matched[:50] - 900.0).min() > 400.0


@pytest.mark.parametrize("reference, message", [
    (np.array([3.0, 1.0]), "sorted"), (np.array([1.0]), "at least 2"), (np.ones((2, 2)), "1D")])
def test_bad_references_are_refused(reference, message):
    with pytest.raises(BaselineError, match=message):
        histogram_match(np.arange(4.0), reference)


def test_reference_quantiles_refuse_no_volumes_and_nan():
    with pytest.raises(BaselineError, match="at least one"):
        reference_quantiles([])
    with pytest.raises(BaselineError, match="NaN"):
        reference_quantiles([np.array([1.0, np.nan])])


# --- the U-Net on untranslated volumes -------------------------------------------------------------
class ChannelThreshold(nn.Module):
    """Class 1 where input channel ``channel`` is above 0 (normalised), else class 0: logits (B, 2, H, W)."""

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.channel = channel

    def forward(self, x):
        value = x[:, self.channel : self.channel + 1]
        return torch.cat([-value, value], dim=1)


def blocks_volume(direction=None) -> Volume:
    """A (5, 12, 16) volume with bright blocks that move from slice to slice along every axis."""
    rng = np.random.default_rng(0)
    array = np.where(rng.random((5, 12, 16)) > 0.5, 90.0, 10.0).astype(np.float32)
    return Volume(array, spacing=(0.8, 0.9, 2.5), origin=(4.0, -3.0, 7.0),
                  direction=np.eye(3) if direction is None else direction)


def test_centre_channel_segmentation_lands_on_the_input_grid():
    volume = blocks_volume()
    # image_size 16 = the padded square, so no resizing blurs the result: it must be exact
    segmenter = UntranslatedSegmenter(ChannelThreshold(1), image_size=16, context=3)
    result = segmenter(volume, WINDOW_0_100)
    assert result.same_geometry(volume) and result.array.dtype == np.uint8
    np.testing.assert_array_equal(result.array, (volume.array > 50).astype(np.uint8))


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_context_channels_hold_the_neighbouring_slices_with_edges_repeated(batch_size):
    volume = blocks_volume()
    previous = UntranslatedSegmenter(ChannelThreshold(0), image_size=16, context=3, batch_size=batch_size)
    expected = np.concatenate([volume.array[:1], volume.array[:-1]]) > 50
    np.testing.assert_array_equal(previous(volume, WINDOW_0_100).array, expected)


def test_slices_follow_the_axial_plane_of_a_permuted_direction():
    # i -> P, j -> S, k -> L: axial slices are planes of constant j (array axis 1)
    volume = blocks_volume(direction=np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    previous = UntranslatedSegmenter(ChannelThreshold(0), image_size=16, context=3)
    expected = np.concatenate([volume.array[:, :1], volume.array[:, :-1]], axis=1) > 50
    np.testing.assert_array_equal(previous(volume, WINDOW_0_100).array, expected)


def test_baseline_methods_normalise_as_told_and_histogram_matching_returns_its_matched_volume():
    volume = blocks_volume()
    segmenter = UntranslatedSegmenter(ChannelThreshold(1), image_size=16, context=3)
    plain = no_adaptation(segmenter, NormalizationConfig(method="window", window=[0.0, 15.0]))(volume)
    assert plain.translated is None and plain.segmentation.array.all()  # 10 and 90 both map above 0

    reference = np.linspace(-500.0, 500.0, 11)  # the matched volume straddles 0
    matched = histogram_matching(segmenter, NormalizationConfig(method="window", window=[-100.0, 100.0]),
                                 reference)(volume)
    np.testing.assert_array_equal(matched.translated.array, histogram_match(volume.array, reference))
    assert matched.translated.same_geometry(volume)
    np.testing.assert_array_equal(matched.segmentation.array, matched.translated.array > 0)



def test_baselines_crop_as_the_source_modality_does_and_leave_the_rest_unlabelled():
    volume = blocks_volume()
    volume.array[:, :, :3] = -1000.0  # "air" along one side: the foreground crop drops those columns
    segmenter = UntranslatedSegmenter(ChannelThreshold(1), image_size=16, context=3)
    crop = CropConfig(method="foreground", threshold=0.0, margin_mm=0.0)
    plain = no_adaptation(segmenter, NormalizationConfig(method="window", window=[0.0, 15.0]), crop)(volume)
    assert plain.segmentation.same_geometry(volume)
    assert not plain.segmentation.array[:, :, :3].any() and plain.segmentation.array[:, :, 3:].all()

    reference = np.linspace(-500.0, 500.0, 11)
    matched = histogram_matching(segmenter, NormalizationConfig(method="window", window=[-100.0, 100.0]),
                                 reference, crop)(volume)
    np.testing.assert_array_equal(matched.translated.array[:, :, 3:],
                                  histogram_match(volume.array[:, :, 3:], reference))
    assert np.all(matched.translated.array[:, :, :3] == -500.0) and not matched.segmentation.array[:, :, :3].any()
