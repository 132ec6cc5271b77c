"""Intensity maps: hand-worked percentile and window cases, exact inverse, degenerate volumes, the card form,
and the tensor versions that inference runs on its device."""
import json

import numpy as np
import pytest
import torch

from sasan.config import NormalizationConfig
from sasan.data.preprocess import (
    IntensityMap,
    NormalizationError,
    average_intensity_map,
    denormalize,
    denormalize_tensor,
    fit_intensity_map,
    normalize,
    normalize_tensor,
)

PERCENTILE = NormalizationConfig(method="percentile", percentiles=[2.0, 98.0])


def test_percentile_map_by_hand():
    array = np.arange(101, dtype=np.float32).reshape(1, 1, 101)  # percentiles are the values themselves
    imap = fit_intensity_map(array, PERCENTILE)
    assert (imap.method, imap.low, imap.high) == ("percentile", 2.0, 98.0)
    clipped = np.clip(array, 2, 98)
    assert imap.mean == pytest.approx(clipped.mean()) and imap.std == pytest.approx(clipped.std())
    out = normalize(array, imap)
    assert out.dtype == np.float32 and out.shape == array.shape
    np.testing.assert_allclose(out[0, 0, [0, 2, 50, 98, 100]], [-1, -1, 0, 1, 1], atol=1e-6)
    # The paper's steps spelled out: z-score, then [zlow, zhigh] -> [-1, 1].
    z, zlow, zhigh = (clipped - imap.mean) / imap.std, (2 - imap.mean) / imap.std, (98 - imap.mean) / imap.std
    np.testing.assert_allclose(out, 2 * (z - zlow) / (zhigh - zlow) - 1, atol=1e-6)
    assert out.min() >= -1 and out.max() <= 1


def test_denormalize_inverts_inside_the_clip_range():
    array = np.random.default_rng(0).normal(100, 30, size=(4, 5, 6)).astype(np.float32)
    imap = fit_intensity_map(array, PERCENTILE)
    back = denormalize(normalize(array, imap), imap)
    inside = (array >= imap.low) & (array <= imap.high)
    np.testing.assert_allclose(back[inside], array[inside], atol=1e-3)
    np.testing.assert_allclose(back[array > imap.high], imap.high, atol=1e-3)


def test_window_map_by_hand():
    imap = fit_intensity_map(np.zeros((2, 2, 2)), NormalizationConfig(method="window", window=[-1000.0, 1000.0]))
    assert (imap.low, imap.high, imap.mean, imap.std) == (-1000.0, 1000.0, 0.0, 1.0)
    np.testing.assert_allclose(normalize(np.array([-2000, -1000, 0, 500, 3000]), imap), [-1, -1, 0, 0.5, 1], atol=1e-6)
    np.testing.assert_allclose(denormalize(np.array([-1.0, 0.25]), imap), [-1000, 250], atol=1e-3)


def test_mask_restricts_the_statistics():
    array = np.concatenate([np.zeros(100), np.arange(1, 101)]).astype(np.float32)
    mask = array > 0
    imap = fit_intensity_map(array, NormalizationConfig(percentiles=[0.0, 100.0]), mask=mask)
    assert (imap.low, imap.high) == (1.0, 100.0)
    assert imap.mean == pytest.approx(50.5)
    with pytest.raises(NormalizationError, match="no voxels"):
        fit_intensity_map(array, PERCENTILE, mask=np.zeros_like(mask))


def test_constant_volume_maps_to_minus_one_and_back_without_dividing_by_zero():
    array = np.full((3, 4, 5), 7.0, np.float32)
    with np.errstate(all="raise"):
        imap = fit_intensity_map(array, PERCENTILE)
        out = normalize(array, imap)
        back = denormalize(out, imap)
    np.testing.assert_array_equal(out, -1.0)
    np.testing.assert_allclose(back, 7.0)
    assert all(np.isfinite(v) for v in imap.to_dict().values() if isinstance(v, float))


def test_coinciding_percentiles_fall_back_to_the_full_range():
    array = np.zeros(1000, np.float32)
    array[:5] = [10, 20, 30, 40, 50]  # 99.5% zeros: the 2nd and 98th percentiles are both 0
    imap = fit_intensity_map(array, PERCENTILE)
    assert (imap.low, imap.high) == (0.0, 50.0)
    assert normalize(np.array([50.0]), imap)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
@pytest.mark.parametrize("imap", [IntensityMap("window", -1000.0, 1000.0),
                                  IntensityMap("percentile", 13.7, 911.3, mean=300.0, std=150.0)])
def test_the_tensor_versions_compute_the_numpy_values_bit_for_bit(imap, dtype):
    array = np.random.default_rng(0).normal(400, 900, size=(3, 17, 19)).astype(dtype)
    original = array.copy()
    normalized = normalize_tensor(torch.from_numpy(array), imap)
    assert normalized.dtype == torch.float32 and np.array_equal(normalized.numpy(), normalize(array, imap))
    assert np.array_equal(array, original)  # the input is left as it was (float32 converts to itself)
    beyond = normalized * 1.2  # the inverse clips what lies past [-1, 1]
    assert np.array_equal(denormalize_tensor(beyond, imap).numpy(), denormalize(beyond.numpy(), imap))
    assert np.array_equal(beyond.numpy(), normalized.numpy() * np.float32(1.2))


def test_integer_volumes_fit_without_a_float_copy_and_alike():
    ct = np.random.default_rng(1).integers(-1024, 3071, size=(4, 6, 7)).astype(np.int16)
    for config in (PERCENTILE, NormalizationConfig(method="window", window=[-200.0, 400.0])):
        assert fit_intensity_map(ct, config) == fit_intensity_map(ct.astype(np.float32), config)


def test_refuses_non_finite_volumes():
    with pytest.raises(NormalizationError, match="NaN or infinite"):
        fit_intensity_map(np.array([1.0, np.nan, 3.0]), PERCENTILE)


def test_dict_round_trip_is_json_safe_and_validated():
    imap = fit_intensity_map(np.arange(50, dtype=np.float32), PERCENTILE)
    text = json.dumps(imap.to_dict())
    rebuilt = IntensityMap.from_dict(json.loads(text))
    assert rebuilt == imap
    with pytest.raises(NormalizationError, match="exactly the keys"):
        IntensityMap.from_dict({"method": "window", "low": 0.0})
    with pytest.raises(NormalizationError, match="low < high"):
        IntensityMap.from_dict({"method": "window", "low": 1.0, "high": 1.0, "mean": 0.0, "std": 1.0})
    with pytest.raises(NormalizationError, match="unknown normalisation method"):
        IntensityMap("zscore", 0.0, 1.0)


def test_average_intensity_map():
    maps = [IntensityMap("percentile", 0.0, 100.0, 40.0, 20.0), IntensityMap("percentile", 10.0, 300.0, 60.0, 40.0)]
    average = average_intensity_map(maps)
    assert (average.low, average.high, average.mean, average.std) == (5.0, 200.0, 50.0, 30.0)
    assert denormalize(np.array([1.0]), average)[0] == pytest.approx(200.0)
    with pytest.raises(NormalizationError, match="different methods"):
        average_intensity_map([maps[0], IntensityMap("window", -1.0, 1.0)])
    with pytest.raises(NormalizationError, match="empty"):
        average_intensity_map([])
