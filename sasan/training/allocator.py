"""Keep freed memory inside the process, so that large CPU tensors do not page-fault on every allocation.

glibc serves allocations above its mmap threshold (at most 32 MB) with fresh ``mmap`` pages and returns
them to the system on ``free``: every new large tensor then pays a page fault per 4 KB page, and the kernel
zeroes each page first. A paper-size training step allocates such tensors by the hundred (activations of
64 channels at 256² are 16-67 MB); measured on a 2-core Xeon VM, concatenating two 17 MB tensors took
14.5 ms that way and 2.3 ms with the memory kept, and a whole 128² step about 15 % less CPU time.
``keep_freed_memory`` turns glibc's ``mmap`` use off and never trims the heap: freed blocks are reused.
The cost is that the process keeps its peak heap until it exits, which a training run reaches anyway.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1   # mallopt parameters, from glibc's malloc.h
_M_MMAP_MAX = -4
_applied = False


def keep_freed_memory() -> bool:
    """Tell glibc to serve every allocation from its heap and never give freed memory back to the system.

    Process-wide and lasting; the numbers computed are unchanged. Returns whether it applied (False off
    Linux or without glibc, where nothing is changed).
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not (mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1)):
        log.debug("mallopt refused the settings; the allocator is left as it is")
        return False
    _applied = True
    log.debug("glibc keeps freed memory in the process (no mmap, no trimming)")
    return True
