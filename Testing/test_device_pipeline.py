"""The device pipeline, run on the CPU: results filled into buffers on "the device" and copied back into the
host arrays by a background thread, buffer by buffer, as on a GPU. They must equal the direct path's, lie on
the input's grid, and agree with the slow obvious reference within the agreement the GPU is held to.

On the CPU the engine writes straight into the host arrays (``output_chunk`` says None); these tests make
it take the device's way instead, on the oblique, anisotropic phantom of ``inference_phantom`` (it slices
along its last array axis, so every copy back lands in strided host memory).
"""
import threading

import numpy as np
import pytest
import torch
from inference_phantom import psnr, reference_translation

from sasan.inference import TranslationCancelled, translate_volume, volume_run
from sasan.inference.outputs import CopyBack, SliceSink


@pytest.fixture
def buffered(monkeypatch):
    """``buffered(chunk)``: from then on the CPU runs the device path with buffers of ``chunk`` slices; returns
    the list into which every copy back records its number of slices."""
    copies = []
    submit = CopyBack.submit

    def recording(self, source, destination):
        copies.append(len(source))
        submit(self, source, destination)

    def use(chunk):
        monkeypatch.setattr(volume_run, "output_chunk", lambda device, count, batch, slice_bytes: chunk)
        monkeypatch.setattr(CopyBack, "submit", recording)
        return copies

    return use


def outputs(result):
    return [result.translated, result.segmentation, *result.attention]


@pytest.mark.parametrize("chunk", [1, 3, 10])
def test_buffers_copied_back_give_exactly_the_direct_results(tiny_model, phantom, buffered, chunk):
    volume = phantom[0]
    direct = translate_volume(volume, tiny_model, "MR", device="cpu", precision="fp32", batch_size=2, threads=1)
    copies = buffered(chunk)
    result = translate_volume(volume, tiny_model, "MR", device="cpu", precision="fp32", batch_size=2, threads=1)
    count = volume.shape[2]  # the slicing axis
    assert len(copies) == len(outputs(result)) * -(-count // chunk) and max(copies) == min(chunk, count)
    for got, expected in zip(outputs(result), outputs(direct)):
        assert got.same_geometry(volume, atol=0) and got.array.dtype == expected.array.dtype
        np.testing.assert_array_equal(got.array, expected.array)


def test_the_device_path_in_bf16_agrees_with_the_reference(tiny_model, phantom, buffered):
    volume, _ = phantom
    translated, labels, maps, _ = reference_translation(volume, tiny_model, "CT", "MR")
    buffered(4)
    result = translate_volume(volume, tiny_model, "MR", device="cpu", precision="bf16", batch_size=3, threads=1)
    assert result.precision == "bf16"
    assert psnr(translated, result.translated.array) >= 40.0
    assert np.mean(result.segmentation.array == labels) >= 0.995
    errors = np.abs(np.stack([m.array for m in result.attention]).astype(np.int16) - np.round(maps * 255))
    assert errors.max() <= 12 and errors.mean() <= 1.5  # what the GPU's bf16 is held to against the CPU's fp32


def test_a_cancelled_device_run_leaves_no_copy_thread_behind(tiny_model, phantom, buffered):
    buffered(2)
    seen = []
    with pytest.raises(TranslationCancelled):
        translate_volume(phantom[0], tiny_model, "MR", device="cpu", threads=1,
                         progress=lambda fraction, message: seen.append(fraction),
                         cancel=lambda: bool(seen) and seen[-1] >= 0.5)
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("sasan-copy-back")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs it)")
def test_on_the_gpu_small_buffers_on_the_copy_stream_give_what_one_buffer_gives(tiny_model, phantom, buffered):
    volume = phantom[0]
    copies = buffered(10)
    whole = translate_volume(volume, tiny_model, "MR", device="cuda", precision="fp32", batch_size=2)
    buffered(3)
    small = translate_volume(volume, tiny_model, "MR", device="cuda", precision="fp32", batch_size=2)
    assert sorted(copies) == sorted([10] * 4 + [3, 3, 3, 1] * 4)
    for got, expected in zip(outputs(small), outputs(whole)):
        assert got.same_geometry(volume, atol=0)
        np.testing.assert_allclose(got.array.astype(np.float32), expected.array.astype(np.float32), atol=1e-4)
    cpu = translate_volume(volume, tiny_model, "MR", device="cpu", precision="fp32", threads=1)
    assert psnr(cpu.translated.array, small.translated.array) >= 40.0
    assert np.mean(cpu.segmentation.array == small.segmentation.array) >= 0.995


def test_buffers_are_planned_from_the_device_and_its_free_memory(monkeypatch):
    assert volume_run.output_chunk(torch.device("cpu"), 300, 1, 10) is None  # straight into the host arrays
    meta = torch.device("meta")
    assert volume_run.output_chunk(meta, 300, 64, 10) == 75  # a quarter of the volume, so copies overlap compute
    assert volume_run.output_chunk(meta, 300, 100, 10) == 100 and volume_run.output_chunk(meta, 20, 64, 10) == 20
    slice_bytes = 512 * 512 * 13  # a 512² slice: translated float32, labels and 8 maps
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 ** 30, 2 ** 34))
    chunk = volume_run.output_chunk(torch.device("cuda"), 300, 64, slice_bytes)
    assert 1 < chunk < 75 and 3 * chunk * slice_bytes <= 0.2 * 2 ** 30  # held by the GPU's free memory
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 ** 20, 2 ** 34))
    assert volume_run.output_chunk(torch.device("cuda"), 300, 64, slice_bytes) == 1  # never none at all


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_sink_writes_every_slice_where_it_belongs(axis):
    values = torch.arange(4 * 5 * 6, dtype=torch.float32).view(4, 5, 6)
    stack = values.movedim(axis, 0)  # what the run produces, in slice order
    host = np.zeros((4, 5, 6), np.float32)
    copier = CopyBack(torch.device("cpu"), limit_bytes=1 << 20)
    sink = SliceSink(host, axis, chunk=2, device=torch.device("cpu"), copier=copier)
    with pytest.raises(IndexError, match="out of order"):
        sink.write(1, stack[1:2])
    sink.write(0, stack[:1])
    sink.write(1, stack[1:2])  # fills the first buffer of two slices
    assert not host[(slice(None),) * axis + (2,)].any()  # nothing of the next buffer is there yet
    sink.write(2, stack[2:3])
    sink.write_to_host_from_now_on()  # the run moved to the CPU: the half-filled buffer goes back now
    sink.write(3, stack[3:])
    copier.finish()
    np.testing.assert_array_equal(host, values.numpy())


def test_copy_back_holds_at_most_its_limit_of_waiting_buffers(monkeypatch):
    gate = threading.Event()
    copy = CopyBack._copy

    def held(self, *arguments):  # a copy that takes as long as the test wants
        gate.wait(10)
        copy(self, *arguments)

    monkeypatch.setattr(CopyBack, "_copy", held)
    copier = CopyBack(torch.device("cpu"), limit_bytes=2 * 16)
    destinations = [torch.zeros(4) for _ in range(3)]
    copier.submit(torch.full((4,), 1.0), destinations[0])
    copier.submit(torch.full((4,), 2.0), destinations[1])  # 2 x 16 bytes waiting: the limit
    third = threading.Thread(target=copier.submit, args=(torch.full((4,), 3.0), destinations[2]))
    third.start()
    third.join(0.3)
    assert third.is_alive()  # waits for the oldest copy before holding a third buffer
    gate.set()
    third.join(10)
    copier.finish()
    assert [float(d[0]) for d in destinations] == [1.0, 2.0, 3.0]


def test_a_failed_copy_back_is_raised_when_the_run_finishes():
    copier = CopyBack(torch.device("cpu"), limit_bytes=1 << 20)
    copier.submit(torch.ones(3), torch.zeros(4))
    with pytest.raises(RuntimeError):
        copier.finish()
