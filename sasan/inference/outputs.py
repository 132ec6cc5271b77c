"""Where a translation's results land: the output arrays on the host, filled slice by slice in order.

A ``SliceSink`` is one output volume (the translated image, the labels, one attention map) seen as a stack of
slices along the slicing axis. On the CPU its writes go straight into the host array. On another device
(``chunk`` set) they fill a buffer of ``chunk`` slices there, and each full buffer is copied back once, by
a ``CopyBack`` thread, while the next slices compute: the results stay on the device until that one copy.

``CopyBack`` runs the copies in order on a thread of its own and, on a GPU, on a CUDA stream of its own
after an event recorded where the buffer was finished, so the compute stream never waits for the host. It
holds at most ``limit_bytes`` of buffers at a time (a finished buffer waits for the oldest copy beyond that).
"""
from __future__ import annotations

import collections
import concurrent.futures
from typing import Optional

import numpy as np
import torch


class CopyBack:
    """Copies of finished device buffers into host tensors, in order, on a background thread."""

    def __init__(self, device: torch.device, limit_bytes: int) -> None:
        self.device = device
        self.limit_bytes = limit_bytes
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sasan-copy-back")
        self.pending: collections.deque[tuple[concurrent.futures.Future, int]] = collections.deque()

    def submit(self, source: torch.Tensor, destination: torch.Tensor) -> None:
        """Copy ``source`` (finished by the work queued so far on the current stream) into ``destination``."""
        size = source.numel() * source.element_size()
        while self.pending and self.pending_bytes() + size > self.limit_bytes:
            self.pending.popleft()[0].result()  # bounds the device memory that waits for its copy
        event = None
        if self.stream is not None:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self.device))
        self.pending.append((self.executor.submit(self._copy, source, destination, event), size))

    def pending_bytes(self) -> int:
        return sum(size for future, size in self.pending if not future.done())

    def _copy(self, source: torch.Tensor, destination: torch.Tensor, event: Optional[torch.cuda.Event]) -> None:
        if self.stream is None:
            destination.copy_(source)
            return
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            self.stream.wait_event(event)
            destination.copy_(source)  # into pageable memory: returns once the copy is complete

    def finish(self) -> None:
        """Wait for every copy (raising the first copy's error, if any) and stop the thread."""
        try:
            while self.pending:
                self.pending.popleft()[0].result()
        finally:
            self.executor.shutdown(wait=True)


class SliceSink:
    """One output volume ``host`` (array order) written as a stack of slices along ``axis``, in slice order."""

    def __init__(self, host: np.ndarray, axis: int, chunk: Optional[int], device: torch.device,
                 copier: Optional[CopyBack]) -> None:
        self.stack = torch.from_numpy(host).movedim(axis, 0)  # a view: writes land in ``host``
        self.count = self.stack.shape[0]
        self.chunk, self.device, self.copier = chunk, device, copier
        self.written = 0  # slices written so far; the next write starts here
        self.buffer: Optional[torch.Tensor] = None
        self.buffer_start = 0

    def write(self, start: int, values: torch.Tensor) -> None:
        """Slices ``start .. start + len(values) - 1``: ``values`` ``(B, h, w)`` on any device."""
        if start != self.written or start + len(values) > self.count:
            raise IndexError(f"slices {start}..{start + len(values) - 1} written out of order "
                             f"({self.written} written of {self.count})")
        if self.chunk is None:
            self.stack[start : start + len(values)].copy_(values)
        else:
            self._write_buffered(start, values)
        self.written += len(values)

    def _write_buffered(self, start: int, values: torch.Tensor) -> None:
        while len(values):
            if self.buffer is None:
                self.buffer_start = start
                shape = (min(self.chunk, self.count - start), *self.stack.shape[1:])
                self.buffer = torch.empty(shape, dtype=self.stack.dtype, device=self.device)
            offset = start - self.buffer_start
            taken = min(len(values), len(self.buffer) - offset)
            self.buffer[offset : offset + taken].copy_(values[:taken])
            start, values = start + taken, values[taken:]
            if offset + taken == len(self.buffer):
                self._copy_back(len(self.buffer))

    def _copy_back(self, filled: int) -> None:
        if filled:
            self.copier.submit(self.buffer[:filled], self.stack[self.buffer_start : self.buffer_start + filled])
        self.buffer = None

    def write_to_host_from_now_on(self) -> None:
        """Copy back what the current buffer holds and write straight into the host array from here on
        (the run moved to the CPU)."""
        if self.buffer is not None:
            self._copy_back(self.written - self.buffer_start)
        self.chunk = None
