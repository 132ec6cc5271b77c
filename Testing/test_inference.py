"""Whole-volume inference: agreement with a slice-by-slice reference, the fast path's accuracy,
geometry, progress and cancel, bounded memory, GPU fallbacks and clear refusals.

All on the oblique phantom and its tiny model with a fitted segmenter (``inference_phantom``). The
device pipeline's own tests (buffers copied back from a device, run on the CPU) are in
``test_device_pipeline.py``.
"""
import copy
import dataclasses
import os

import numpy as np
import pytest
import torch
from fixtures import TINY_ARCHITECTURE, TINY_NORMALIZATION
from inference_phantom import psnr, reference_translation, tiny_card

from sasan import bundle
from sasan.bundle import SASANModel
from sasan.config import crop_from_dict
from sasan.data.crop import crop_region, crop_volume
from sasan.data.geometry import (
    fit_to_square,
    restore_from_square,
    slicing_axis,
    to_slice_stack,
)
from sasan.data.preprocess import fit_intensity_map, normalize
from sasan.data.slices import context_stack
from sasan.data.volume import Volume
from sasan.inference import InferenceError, TranslationCancelled, translate_volume, volume_run
from sasan.inference import translation as inference_translation
from sasan.inference.fast_modules import InstanceNorm, optimize_for_inference
from sasan.inference.postprocess import keep_largest_foreground_component
from sasan.inference.prepared import PreparedNetworks
from sasan.inference.slicewise import context_indices, segment_slices
from sasan.inference.window import SliceWindow
from sasan.runtime import free_cpu_cores

TINY = TINY_ARCHITECTURE
CT_NORM, MR_NORM = TINY_NORMALIZATION["CT"], TINY_NORMALIZATION["MR"]


@pytest.fixture(scope="module")
def reference(tiny_model, phantom):
    return reference_translation(phantom[0], tiny_model, "CT", "MR")


@pytest.fixture(scope="module")
def fp32_result(tiny_model, phantom):
    return translate_volume(phantom[0], tiny_model, "MR", device="cpu", precision="fp32", threads=1)


def test_the_phantom_slices_along_its_last_array_axis(phantom):
    assert slicing_axis(phantom[0], "axial") == 2  # so the geometry tests below are not the trivial axis


def test_fast_modules_equal_the_stock_networks_in_fp32(tiny_model):
    x = torch.tanh(torch.randn(2, 3, 32, 32))
    with torch.no_grad():
        for name, module in tiny_model.networks.items():
            fast = optimize_for_inference(copy.deepcopy(module)).to(memory_format=torch.channels_last)
            for batch in (x[:1], x):  # one image and a batch (image by image on the CPU)
                if name.startswith("generator"):
                    maps = torch.softmax(torch.randn(batch.shape[0], 2, 32, 32), dim=1)
                    expected, got = module(batch, maps), fast(batch.contiguous(memory_format=torch.channels_last), maps)
                else:
                    expected, got = module(batch), fast(batch.contiguous(memory_format=torch.channels_last))
                for e, g in zip(expected if isinstance(expected, tuple) else [expected],
                                got if isinstance(got, tuple) else [got]):
                    # Folding batch norms reorders float32 sums: the rounding scales with the output (the
                    # fitted segmenter's logits reach ~40, and an H100 machine's CPU was 2.5e-5 off near 0).
                    torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5 * max(1.0, float(e.abs().max())))
    segmenter = optimize_for_inference(copy.deepcopy(tiny_model.segmenter("MR")))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in segmenter.modules())


@pytest.mark.parametrize("affine", [True, False])
def test_both_instance_norm_paths_equal_the_stock_one(affine):
    stock = torch.nn.InstanceNorm2d(5, affine=affine)
    if affine:
        torch.nn.init.uniform_(stock.weight, 0.5, 1.5), torch.nn.init.uniform_(stock.bias, -1.0, 1.0)
    fast = InstanceNorm.from_module(stock)
    x = (torch.randn(3, 5, 6, 7) * 3 + 2).contiguous(memory_format=torch.channels_last)
    expected = stock(x.contiguous())
    torch.testing.assert_close(fast.whole_batch(x), expected, rtol=1e-5, atol=1e-5)  # the GPU path
    torch.testing.assert_close(fast(x), expected, rtol=1e-5, atol=1e-5)  # image by image on the CPU
    assert fast(x).is_contiguous(memory_format=torch.channels_last)


def test_fp32_volume_matches_the_slice_by_slice_reference(fp32_result, reference):
    translated, labels, maps, _ = reference
    np.testing.assert_allclose(fp32_result.translated.array, translated, atol=1e-3, rtol=1e-5)
    assert np.mean(fp32_result.segmentation.array == labels) >= 0.999
    got_maps = np.stack([m.array for m in fp32_result.attention]).astype(np.int16)
    assert np.abs(got_maps - np.round(maps * 255)).max() <= 1


def test_the_segmenter_is_decisive_on_the_phantom(fp32_result, phantom):
    # Guards the agreement test below against a model that labels everything alike.
    counts = np.bincount(fp32_result.segmentation.array.ravel(), minlength=3)
    assert np.all(counts > 20)
    assert np.mean(fp32_result.segmentation.array == phantom[1]) > 0.9


def test_bf16_fast_path_agrees_with_fp32(tiny_model, phantom, fp32_result):
    fast = translate_volume(phantom[0], tiny_model, "MR", device="cpu", precision="bf16", threads=1)
    assert fast.precision == "bf16"
    assert psnr(fp32_result.translated.array, fast.translated.array) >= 40.0
    assert np.mean(fast.segmentation.array == fp32_result.segmentation.array) >= 0.995


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs it)")
@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_the_gpu_agrees_with_the_cpu(tiny_model, phantom, fp32_result, precision):
    gpu = translate_volume(phantom[0], tiny_model, "MR", device="cuda", precision=precision)
    assert gpu.device.startswith("cuda")
    assert psnr(fp32_result.translated.array, gpu.translated.array) >= 40.0
    assert np.mean(gpu.segmentation.array == fp32_result.segmentation.array) >= 0.995
    cpu_maps = np.stack([m.array for m in fp32_result.attention]).astype(np.int16)
    errors = np.abs(np.stack([m.array for m in gpu.attention]).astype(np.int16) - cpu_maps)
    # bf16 keeps 8 significant bits: on an H100 its maps were up to 7 of 255 off (fp32: within 3)
    assert errors.max() <= (3 if gpu.precision == "fp32" else 12) and errors.mean() <= 1.5


def test_results_lie_on_the_input_grid(fp32_result, phantom):
    volume = phantom[0]
    outputs = [fp32_result.translated, fp32_result.segmentation, *fp32_result.attention]
    assert len(fp32_result.attention) == TINY["num_maps"]
    for output in outputs:
        assert output.same_geometry(volume, atol=0)
        assert np.array_equal(output.direction, volume.direction) and output.spacing == volume.spacing
    assert fp32_result.translated.array.dtype == np.float32
    assert fp32_result.segmentation.array.dtype == np.uint8 and fp32_result.segmentation.array.max() <= 2
    assert all(m.array.dtype == np.uint8 for m in fp32_result.attention)
    # The maps are a softmax over K: per voxel they sum to 255 up to rounding.
    total = sum(m.array.astype(int) for m in fp32_result.attention)
    assert np.abs(total - 255).max() <= TINY["num_maps"]
    low, high = MR_NORM["reference"]["low"], MR_NORM["reference"]["high"]
    assert low - 1e-3 <= fp32_result.translated.array.min() and fp32_result.translated.array.max() <= high + 1e-3


def test_a_cropped_translation_is_the_crop_translated_and_put_back_on_the_whole_grid(tiny_model, phantom):
    volume, labels = phantom
    crop = {"method": "foreground", "threshold": 100.0, "margin_mm": 0.0, "rows": [0.0, 1.0], "columns": [0.0, 1.0]}
    normalization = copy.deepcopy(tiny_model.card.normalization)
    normalization["CT"]["crop"] = crop
    cropping = SASANModel(dataclasses.replace(tiny_model.card, normalization=normalization), tiny_model.networks)
    result = translate_volume(volume, cropping, "MR", device="cpu", precision="fp32", threads=1)
    region = crop_region(volume, crop_from_dict(crop), slicing_axis(volume, "axial"))
    inside = np.zeros(volume.shape, bool)
    inside[region.slices] = True
    assert inside[labels > 0].all() and not inside.all()  # it keeps both regions and crops something
    alone = translate_volume(crop_volume(volume, region), tiny_model, "MR", device="cpu", precision="fp32", threads=1)
    for output, expected in zip((result.translated, result.segmentation, *result.attention),
                                (alone.translated, alone.segmentation, *alone.attention)):
        assert output.same_geometry(volume, atol=0)
        np.testing.assert_allclose(output.array[region.slices], expected.array, atol=1e-5)
    assert np.all(result.translated.array[~inside] == MR_NORM["reference"]["low"])
    assert not result.segmentation.array[~inside].any()
    assert not any(m.array[~inside].any() for m in result.attention)
    normalization["CT"]["crop"] = {**crop, "margin_mm": -1.0}
    broken = SASANModel(dataclasses.replace(tiny_model.card, normalization=normalization), tiny_model.networks)
    with pytest.raises(InferenceError, match="crop for CT is malformed: crop.margin_mm"):
        translate_volume(volume, broken, "MR", device="cpu")


def test_batches_and_a_model_file_give_the_same_volume(tiny_model, phantom, fp32_result, tmp_path):
    path = bundle.save(tmp_path / "tiny.safetensors", tiny_model.card, tiny_model.networks)
    batched = translate_volume(phantom[0], path, "MR", source="CT", device="cpu", precision="fp32", batch_size=3)
    assert batched.batch_size == 3
    np.testing.assert_allclose(batched.translated.array, fp32_result.translated.array, rtol=1e-5, atol=1e-3)
    assert np.mean(batched.segmentation.array == fp32_result.segmentation.array) >= 0.999


def test_the_callers_model_is_left_untouched(tiny_model, phantom):
    before = {name: copy.deepcopy(module.state_dict()) for name, module in tiny_model.networks.items()}
    translate_volume(phantom[0], tiny_model, "MR", device="cpu", precision="bf16")
    for name, module in tiny_model.networks.items():
        state = module.state_dict()
        assert all(torch.equal(state[key], value) for key, value in before[name].items())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in tiny_model.segmenter("MR").modules())


def test_progress_is_monotonic_and_reaches_one(tiny_model, phantom):
    calls = []
    translate_volume(phantom[0], tiny_model, "MR", device="cpu", batch_size=2,
                     progress=lambda fraction, message: calls.append((fraction, message)))
    fractions = [fraction for fraction, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions[0] == 0.0
    assert len(calls) >= 1 + 2 * 5  # a call per batch: 10 slices in batches of 2, translate and segment
    assert all(isinstance(message, str) and message for _, message in calls)


def test_cancel_half_way_raises_and_stops(tiny_model, phantom):
    seen = []
    with pytest.raises(TranslationCancelled):
        translate_volume(phantom[0], tiny_model, "MR", device="cpu",
                         progress=lambda fraction, message: seen.append(fraction),
                         cancel=lambda: bool(seen) and seen[-1] >= 0.5)
    assert 0.5 <= seen[-1] < 0.65  # stopped at the first batch boundary after half way


def test_segmenter_window_stays_bounded(tiny_model, monkeypatch):
    windows = []

    class RecordingWindow(SliceWindow):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            windows.append(self)

    monkeypatch.setattr(volume_run, "SliceWindow", RecordingWindow)
    long_volume = Volume(np.random.default_rng(0).normal(100, 80, (40, 9, 11)).astype(np.float32))
    result = translate_volume(long_volume, tiny_model, "MR", device="cpu", batch_size=2, attention=False)
    (window,) = windows
    assert window.peak <= 2 * 2 + 2 * (tiny_model.card.context // 2)
    assert len(window.slices) <= 2 * (tiny_model.card.context // 2) and result.attention is None


def test_window_gives_edge_replicated_context():
    window = SliceWindow(count=4, context=3)
    window.add(torch.arange(3.0).view(3, 1, 1).expand(3, 2, 2))
    assert window.ready_until() == 2
    with pytest.raises(IndexError):
        window.stacks(0, 3)
    window.add(torch.full((1, 2, 2), 3.0))
    assert window.ready_until() == 4
    stacks = window.stacks(0, 4)[:, :, 0, 0]
    assert stacks.tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]
    window.release_before(3)
    assert sorted(window.slices) == [2, 3]


def test_context_indices_repeat_the_edge_slices():
    assert context_indices(0, 4, 4, 3).tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]
    assert context_indices(1, 2, 2, 5).tolist() == [[0, 0, 1, 1, 1]]


def test_segment_slices_equals_the_slice_at_a_time_path(tiny_model, phantom):
    # The no-adaptation baseline of scripts/head_model/evaluate.py was written this way, with numpy helpers.
    volume, _ = phantom
    card = tiny_model.card
    axis = slicing_axis(volume, card.slicing_axis)
    imap = fit_intensity_map(volume.array, card.normalization_config("CT"))
    stack = normalize(to_slice_stack(volume.array, axis), imap)
    segmenter = tiny_model.segmenter("MR")
    expected = []
    with torch.no_grad():
        for index in range(len(stack)):
            square = fit_to_square(context_stack(stack, index, card.context), card.image_size, "image")
            logits = segmenter(torch.from_numpy(square)[None]).float()[0].numpy()
            expected.append(restore_from_square(logits, stack.shape[1:], "image").argmax(0))
    got = segment_slices(segmenter, torch.from_numpy(np.ascontiguousarray(stack)), context=card.context,
                         size=card.image_size, batch_size=1, device=torch.device("cpu"))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.stack(expected))


class _OutOfMemoryAbove(PreparedNetworks):
    """An engine that runs out of memory for batches larger than ``limit`` slices."""

    limit = 1

    def translate(self, stack):
        if stack.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().translate(stack)


def test_out_of_memory_halves_the_batch(tiny_model, phantom, fp32_result, monkeypatch):
    real_build = inference_translation.prepare_networks
    monkeypatch.setattr(inference_translation, "prepare_networks",
                        lambda *a, **k: _OutOfMemoryAbove(**vars(real_build(*a, **k))))
    result = translate_volume(phantom[0], tiny_model, "MR", device="cpu", precision="fp32", batch_size=8, threads=1)
    assert result.batch_size == 1 and result.device == "cpu"
    np.testing.assert_allclose(result.translated.array, fp32_result.translated.array, atol=1e-3, rtol=1e-5)


def test_out_of_memory_at_batch_one_finishes_on_the_cpu(tiny_model, phantom, monkeypatch):
    class AlwaysOutOfMemory(_OutOfMemoryAbove):
        limit = 0

    real_build = inference_translation.prepare_networks

    def build_on_a_full_device(*args, **kwargs):
        engine = real_build(*args, **kwargs)
        # "meta" stands in for a GPU: inputs are prepared there (shapes only) and every batch fails.
        return AlwaysOutOfMemory(**{**vars(engine), "device": torch.device("meta")})

    monkeypatch.setattr(inference_translation, "prepare_networks", build_on_a_full_device)
    result = translate_volume(phantom[0], tiny_model, "MR", device="cpu", precision="fp32", batch_size=2)
    assert result.device == "cpu" and result.batch_size == 1
    assert result.notes and "finished on the CPU" in result.notes[0]
    assert np.isfinite(result.translated.array).all()


@pytest.mark.parametrize("request_, message", [
    (dict(target="PET"), r"model 'tiny' does not translate to PET \(it offers CT -> MR, MR -> CT\)"),
    (dict(target="MR", source="MR"), "does not translate MR to MR"),
    (dict(target="CT"), r"has no segmenter for CT \(it has one for MR\): leave the segmentation out"),
    (dict(target="MR", precision="fp8"), "unknown precision"),
    (dict(target="MR", precision="fp16", device="cpu"), "fp16 is for GPUs"),
    (dict(target="MR", batch_size=0), "batch_size"),
    (dict(target="MR", threads=0), "threads"),
    (dict(target="MR", device="tpu"), "device"),
])
def test_impossible_requests_are_refused_clearly(tiny_model, phantom, request_, message):
    with pytest.raises(InferenceError, match=message):
        translate_volume(phantom[0], tiny_model, **request_)


def test_one_way_model_refuses_the_other_direction(tiny_model, phantom):
    one_way = SASANModel(tiny_card(directions=[["MR", "CT"]]), tiny_model.networks)
    with pytest.raises(InferenceError, match=r"does not translate to MR \(it offers MR -> CT\)"):
        translate_volume(phantom[0], one_way, "MR")


def test_a_translation_uses_the_cores_it_is_given_whatever_the_load(tiny_model, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (7.0, 7.0, 7.0))  # other processes keep every core busy
    volume = Volume(np.linspace(-100, 300, 2 * 6 * 5, dtype=np.float32).reshape(2, 6, 5))
    before = torch.get_num_threads()
    assert translate_volume(volume, tiny_model, "MR", device="cpu", attention=False).threads == 3
    assert translate_volume(volume, tiny_model, "MR", device="cpu", attention=False, threads=1).threads == 1
    assert torch.get_num_threads() == before
    assert free_cpu_cores() == 1  # what the demo's training runs, which share the machine on purpose, go by


def test_the_seconds_are_split_into_phases(fp32_result):
    timings = fp32_result.timings
    assert set(timings) == {"prepare", "slices", "finish"} and min(timings.values()) >= 0
    assert sum(timings.values()) == pytest.approx(fp32_result.seconds, abs=1e-6)


def test_cuda_without_a_gpu_is_refused(tiny_model, phantom, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InferenceError, match="no GPU available"):
        translate_volume(phantom[0], tiny_model, "MR", device="cuda")


@pytest.mark.parametrize("array, message", [
    (np.full((3, 8, 8), np.nan, np.float32), "NaN or infinite"),
    (np.zeros((0, 8, 8), np.float32), "empty"),
    (np.zeros((3, 8, 8), bool), "not image intensities"),
])
def test_unusable_volumes_are_refused(tiny_model, array, message):
    with pytest.raises(InferenceError, match=message):
        translate_volume(Volume(array), tiny_model, "MR", segment=False)


def test_arrays_torch_cannot_share_translate_like_their_plain_copies(tiny_model, phantom):
    volume = phantom[0]
    ct = volume.array.astype(np.int16)
    backwards = np.ascontiguousarray(ct[::-1])[::-1]  # the same values, a negative stride
    read_only = ct.copy()
    read_only.flags.writeable = False
    big_endian = ct.astype(">i2")

    def translated(array):
        result = translate_volume(volume.with_array(array), tiny_model, "MR", device="cpu", precision="fp32", threads=1)
        return [result.translated.array, result.segmentation.array, *(m.array for m in result.attention)]

    expected = translated(ct)
    for array in (backwards, read_only, big_endian):
        for got, wanted in zip(translated(array), expected):
            np.testing.assert_array_equal(got, wanted)


def test_a_single_slice_volume_translates(tiny_model):
    volume = Volume(np.linspace(-100, 300, 1 * 6 * 5, dtype=np.float32).reshape(1, 6, 5))
    result = translate_volume(volume, tiny_model, "MR", device="cpu")
    assert result.translated.shape == (1, 6, 5) and result.segmentation.shape == (1, 6, 5)


# --- the card's post-processing -------------------------------------------------------------------------

class _FixedLayoutSegmenter(torch.nn.Module):
    """Logits (B, 3, S, S) drawing the same layout on every slice, whatever the input: a main region of
    label 1 (columns < 40 %) touching label 2 (columns 40-55 %), and a separate blob of label 1 (rows and
    columns 80-95 %), which stacks into a column of its own through the volume."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-1]
        position = torch.arange(size, dtype=torch.float32) / size
        rows, cols = position[:, None].expand(size, size), position[None, :].expand(size, size)
        classes = torch.zeros(size, size, dtype=torch.long)
        classes[cols < 0.4] = 1
        classes[(cols >= 0.4) & (cols < 0.55)] = 2
        classes[(rows >= 0.8) & (rows < 0.95) & (cols >= 0.8) & (cols < 0.95)] = 1
        logits = torch.nn.functional.one_hot(classes, 3).permute(2, 0, 1).to(x.dtype) * 10.0
        return logits.expand(x.shape[0], -1, -1, -1)


def _layout_model(tiny_model, **postprocessing) -> SASANModel:
    card = dataclasses.replace(tiny_model.card, postprocessing=postprocessing)
    return SASANModel(card, {**tiny_model.networks, "segmenter.MR": _FixedLayoutSegmenter()})


def test_card_postprocessing_drops_the_isolated_blob_and_keeps_the_main_component(tiny_model):
    volume = Volume(np.linspace(-100, 300, 4 * 20 * 20, dtype=np.float32).reshape(4, 20, 20))
    plain = translate_volume(volume, _layout_model(tiny_model), "MR", device="cpu", attention=False,
                             precision="fp32").segmentation.array
    blob = np.zeros(plain.shape, bool)
    blob[:, 15:, 15:] = True
    assert (plain[:, 16:19, 16:19] == 1).all()             # off by default: the blob (80-95 % of 20) is there
    assert set(np.unique(plain[:, :, :8])) == {1}           # and so is the main region, labels 1 ...
    assert set(np.unique(plain[:, :, 8:11])) >= {2}         # ... and 2
    cleaned = translate_volume(volume, _layout_model(tiny_model, largest_foreground_component=True), "MR",
                               device="cpu", attention=False, precision="fp32").segmentation.array
    assert not cleaned[blob].any()
    np.testing.assert_array_equal(cleaned[~blob], plain[~blob])


def test_largest_foreground_component_by_hand():
    labels = np.zeros((3, 4, 5), np.uint8)
    labels[0:2, 0:2, 0:2] = 1
    labels[0, 0, 2] = 2                                     # touches the 2x2x2 block by a face: kept, as label 2
    labels[2, 3, 4] = 1                                     # alone in a corner
    labels[2, 2, 2] = 2                                     # touches the block only by an edge: not face-connected
    expected = labels.copy()
    expected[2, 3, 4] = expected[2, 2, 2] = 0
    assert keep_largest_foreground_component(labels) == 2
    np.testing.assert_array_equal(labels, expected)
    assert keep_largest_foreground_component(labels) == 0  # one component left: nothing changes
    np.testing.assert_array_equal(labels, expected)
    with pytest.raises(ValueError, match="3D"):
        keep_largest_foreground_component(np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize("bf16_faster, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_precision_on_the_cpu_follows_the_measured_speed_not_the_cpu_flag(monkeypatch, bf16_faster, expected):
    import sasan.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(runtime, "cpu_bf16_is_faster", lambda: bf16_faster)
    assert runtime.resolve_precision("auto", torch.device("cpu")) == expected
    assert runtime.resolve_precision("bf16", torch.device("cpu")) == torch.bfloat16  # asked for: given


def test_the_bf16_speed_probe_is_skipped_without_the_instructions(monkeypatch):
    import sasan.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(runtime, "_bf16_time_ratio", lambda: pytest.fail("measured without the instructions"))
    runtime.cpu_bf16_is_faster.cache_clear()
    try:
        assert runtime.cpu_bf16_is_faster() is False
    finally:
        runtime.cpu_bf16_is_faster.cache_clear()


def test_the_bf16_measurement_is_kept_per_machine_so_every_process_agrees(monkeypatch, tmp_path):
    import json

    import sasan.runtime as runtime

    monkeypatch.setenv("SASAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    ratios = iter([0.5])  # one measurement only: the second process reads it back
    monkeypatch.setattr(runtime, "_bf16_time_ratio", lambda: next(ratios))
    record = tmp_path / "cache" / "cpu_precision.json"
    try:
        for _ in range(2):
            runtime.cpu_bf16_is_faster.cache_clear()  # a new process
            assert runtime.cpu_bf16_is_faster() is True
        kept = json.loads(record.read_text())
        assert kept["bf16_time_ratio"] == 0.5 and kept["machine"]["torch"] == torch.__version__
        # a record of another machine (or torch) is measured again and replaced
        record.write_text(json.dumps({**kept, "machine": {"cpu": "another CPU", "torch": torch.__version__}}))
        monkeypatch.setattr(runtime, "_bf16_time_ratio", lambda: 1.4)
        runtime.cpu_bf16_is_faster.cache_clear()
        assert runtime.cpu_bf16_is_faster() is False
        assert json.loads(record.read_text())["machine"] == kept["machine"]
    finally:
        runtime.cpu_bf16_is_faster.cache_clear()


def test_the_bf16_time_ratio_is_measured_on_real_convolutions():
    from sasan.runtime import _bf16_time_ratio

    ratio = _bf16_time_ratio(rounds=3)
    assert 0.05 < ratio < 20  # a real timing ratio, whichever way this CPU leans
