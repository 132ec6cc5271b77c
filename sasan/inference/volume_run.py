"""One translation's slice loop, every step on the networks' device, results copied back once.

Per batch of slices along the slicing axis: the source slices (and their context neighbours) go to the device
in their own number type, and there are normalised with the source's intensity map, stacked into 2.5D
context stacks (edge slices repeated), padded and resized to the model's square, translated; the centre
slices are resized back onto the slice grid and mapped into the target's units, the attention maps resized
and quantised to 0..255, the segmenter's logits resized and reduced to labels. Nothing in the loop waits for
the device: the results go to ``SliceSink`` buffers that a background thread copies into the host arrays as
they fill (on the CPU they are the host arrays), so reading, computing and writing overlap on a GPU.

Progress is reported after every batch and the cancel flag read before every batch; a cancelled run raises
``TranslationCancelled``. When the device runs out of memory the batch is halved and retried; at one
slice per batch the run continues on the CPU and says so in ``notes``.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional

import numpy as np
import torch

from sasan.data.geometry import fit_to_square_tensor, restore_from_square_tensor, to_slice_stack
from sasan.data.preprocess import IntensityMap, denormalize_tensor, normalize_tensor
from sasan.data.volume import Volume
from sasan.progress import Progress

from .errors import TranslationCancelled
from .outputs import CopyBack, SliceSink
from .prepared import PreparedNetworks
from .slicewise import labels_on_grid
from .window import SliceWindow

log = logging.getLogger(__name__)

# Source voxels go to the device in these types as they are (half the bytes of float32 for a CT); others
# (float64, uint16, int64, non-native byte order) become float32 on the host first, as ``normalize`` reads them.
_DEVICE_TYPES = {np.dtype(kind) for kind in (np.uint8, np.int8, np.int16, np.int32, np.float16, np.float32)}
# Device buffers: at least this many per output over a volume, so copies back overlap the compute; all of
# them together take at most this share of the free GPU memory (the batch's activations plan for a half).
_CHUNKS_PER_VOLUME = 4
_OUTPUT_MEMORY_SHARE = 0.15


def output_chunk(device: torch.device, count: int, batch: int, slice_bytes: int) -> Optional[int]:
    """Slices per device buffer of each output for a volume of ``count`` slices (``slice_bytes`` for one
    slice of every output together), or None on the CPU, where results go straight into the host arrays."""
    if device.type == "cpu":
        return None
    chunk = max(batch, -(-count // _CHUNKS_PER_VOLUME))
    if device.type == "cuda":  # a buffer being filled and two waiting for their copy, for every output
        free, _ = torch.cuda.mem_get_info(device)
        chunk = min(chunk, max(1, int(free * _OUTPUT_MEMORY_SHARE) // (3 * slice_bytes)))
    return min(chunk, count)


class VolumeRun:
    """The slice loop over ``volume`` along ``axis``; after ``execute`` the results are in ``translated``,
    ``segmentation`` (or None) and ``attention`` (K arrays, or None), all in the volume's array order."""

    def __init__(self, volume: Volume, axis: int, networks: PreparedNetworks, source_map: IntensityMap,
                 target_map: IntensityMap, image_size: int, batch: int, *, segment: bool, num_maps: int,
                 report: Progress, cancel: Optional[Callable[[], bool]]) -> None:
        self.source = to_slice_stack(volume.array, axis)
        self.count, self.height, self.width = self.source.shape
        self.networks = networks
        self.source_map, self.target_map = source_map, target_map
        self.image_size = image_size
        self.half = networks.context // 2
        self.batch = batch
        self.report, self.cancel = report, cancel
        self.notes: list[str] = []
        self.translated = np.empty(volume.shape, np.float32)
        self.segmentation = np.empty(volume.shape, np.uint8) if segment else None
        self.attention = [np.empty(volume.shape, np.uint8) for _ in range(num_maps)] if num_maps else None
        self.window = SliceWindow(self.count, networks.context) if segment else None
        self.done, self.total = 0, self.count * (2 if segment else 1)

        hosts = [self.translated] + ([self.segmentation] if segment else []) + (self.attention or [])
        slice_bytes = self.height * self.width * sum(host.itemsize for host in hosts)
        device = networks.device
        chunk = output_chunk(device, self.count, batch, slice_bytes)
        self.copier = None if chunk is None else CopyBack(device, limit_bytes=2 * chunk * slice_bytes)
        sinks = [SliceSink(host, axis, chunk, device, self.copier) for host in hosts]
        self.translated_sink = sinks.pop(0)
        self.label_sink = sinks.pop(0) if segment else None
        self.map_sinks = sinks

    def execute(self) -> None:
        try:
            with torch.inference_mode():
                translated = segmented = 0
                while translated < self.count:
                    self._check_cancel()
                    translated = self._translate_batch(translated)
                    if self.window is not None:
                        segmented = self._segment_ready(segmented)
        finally:
            if self.copier is not None:
                self.copier.finish()

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise TranslationCancelled("translation cancelled; no result was produced")

    def _advance(self, slices: int, message: str) -> None:
        self.done += slices
        self.report(self.done / self.total, message)

    def _translate_batch(self, start: int) -> int:
        """Translate slices ``start ..`` (one batch); returns one past the last translated slice."""
        shape = (self.height, self.width)
        while True:
            end = min(self.count, start + self.batch)
            try:
                centre, maps = self.networks.translate(self._source_stacks(start, end))
                images = denormalize_tensor(restore_from_square_tensor(centre, shape, "image")[:, 0], self.target_map)
                levels = None if not self.map_sinks else self._attention_levels(maps)
                break
            except torch.OutOfMemoryError:
                if not self._recover_from_out_of_memory():
                    raise
        self.translated_sink.write(start, images)
        for index, sink in enumerate(self.map_sinks):
            sink.write(start, levels[:, index])
        if self.window is not None:
            self.window.add(centre[:, 0])
        self._advance(end - start, f"translated {end} of {self.count} slices")
        return end

    def _source_stacks(self, start: int, end: int) -> torch.Tensor:
        """Normalised, squared 2.5D stacks of slices ``start .. end - 1`` -> (B, context, S, S) on the device."""
        low, high = max(0, start - self.half), min(self.count, end + self.half)
        device = self.networks.device
        slab = normalize_tensor(_host_tensor(self.source[low:high]).to(device, non_blocking=True), self.source_map)
        offsets = torch.arange(-self.half, self.half + 1, device=device)
        rows = (torch.arange(start, end, device=device)[:, None] + offsets).clamp_(0, self.count - 1) - low
        return fit_to_square_tensor(slab[rows], self.image_size, "image")

    def _attention_levels(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps (B, K, S, S) in 0..1 -> (B, K, h, w) uint8 0..255 on the slice grid, one map after another in
        memory (they are written as K volumes); quantised in place, as nothing reads the maps afterwards."""
        restored = restore_from_square_tensor(maps.contiguous(), (self.height, self.width), "image")
        return restored.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)

    def _segment_ready(self, start: int) -> int:
        """Segment full batches of slices whose context is translated (all the rest at the end)."""
        shape = (self.height, self.width)
        while start < self.window.ready_until():
            ready = self.window.ready_until()
            if ready - start < self.batch and ready < self.count:
                break
            self._check_cancel()
            end = min(ready, start + self.batch)
            try:
                labels = labels_on_grid(self.networks.segment(self.window.stacks(start, end)), shape)
            except torch.OutOfMemoryError:
                if not self._recover_from_out_of_memory():
                    raise
                continue
            self.label_sink.write(start, labels)
            start = end
            self.window.release_before(start)
            self._advance(len(labels), f"segmented {end} of {self.count} slices")
        return start

    def _recover_from_out_of_memory(self) -> bool:
        """Halve the batch, or at one slice per batch move to the CPU; False when nothing is left to try."""
        if self.networks.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.batch > 1:
            self.batch //= 2
            log.warning("GPU out of memory: retrying with %d slices per batch", self.batch)
            return True
        if self.networks.device.type == "cpu":
            return False
        message = f"{self.networks.device} ran out of memory even at one slice per batch; finished on the CPU"
        log.warning(message)
        self.notes.append(message)
        self.networks = self.networks.moved_to_cpu()
        for sink in [self.translated_sink, self.label_sink, *self.map_sinks]:
            if sink is not None:
                sink.write_to_host_from_now_on()
        return True


def _host_tensor(slab: np.ndarray) -> torch.Tensor:
    """Source slices as a CPU tensor sharing their memory where torch can (a type of ``_DEVICE_TYPES``, writeable,
    no negative strides), else as a copy (float32 where the type is not one of those)."""
    kind = slab.dtype if slab.dtype in _DEVICE_TYPES else np.dtype(np.float32)
    if kind != slab.dtype or not slab.flags.writeable or min(slab.strides) < 0:
        slab = np.array(slab, dtype=kind)
    return torch.from_numpy(slab)
