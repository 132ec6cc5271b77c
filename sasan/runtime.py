"""Where and how fast to run: the device, the number precision, CPU threads and the batch size.

One place for these choices, shared by training, inference and the baselines.

Choices measured on a 2-core AMD EPYC (Zen 4, AVX512-bf16, no AMX) at 256², paper widths:
bf16 convolutions run at about 200 GFLOP/s against about 80 for fp32, but on an Intel Xeon VM with the
same ``avx512_bf16`` flag and no AMX bf16 ran at half fp32's speed: precision ``auto`` on the CPU takes
bf16 only where it was measured faster on this machine (``cpu_bf16_is_faster``), never without native
bf16 dot products (emulated bf16 is slower than fp32). One image per batch is the CPU default (larger batches were not faster
per slice); on a GPU the batch is sized from free memory. Threads default to the cores this process
may run on (``available_cpu_cores``): a translation uses what it is given. ``free_cpu_cores`` (those
cores minus the machine's load) is for callers that share the machine on purpose, such as the demo's
training runs: measured on 2 cores, 2 torch threads beside another busy process ran slower than 1, but
the load average lags and also counts short-lived work, so a translation guessing from it kept one
thread while a second core was there for it, at half the speed.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import os
import platform
import statistics
import time
from typing import Iterator, Optional

import torch

from sasan.atomic import atomic_file
from sasan.resources import cache_folder

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class DeviceError(ValueError):
    """A device, precision, thread count or batch size that cannot be used here, said plainly."""


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Upper bound on live activation channels per slice at full resolution in any of the networks
# (U-Net skips + concatenation, SPADE hidden + gamma + beta), with room to spare.
_ACTIVATION_CHANNELS = 512
_GPU_MEMORY_SHARE = 0.5
_MAX_GPU_BATCH = 64
CPU_BATCH = 1


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {name!r}; use 'auto', 'cpu' or 'cuda'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("no GPU available: PyTorch sees no CUDA device; use device='cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"no GPU {device.index}: PyTorch sees {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("no Apple GPU available (MPS); use device='cpu'")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {name!r}; use 'auto', 'cpu' or 'cuda'")
    return device


def training_device(name: str) -> torch.device:
    """``resolve_device`` for the configuration's ``training.device``, its errors naming that key."""
    try:
        return resolve_device(name)
    except DeviceError as error:
        raise DeviceError(f"training.device: {error}") from None


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 dot products in hardware (x86 ``avx512_bf16`` or ``amx_bf16``); False
    where it cannot be told (not Linux), so fp32 stays."""
    return bool({"avx512_bf16", "amx_bf16"} & set(_cpuinfo("flags").split()))


def cpu_model_name() -> str:
    """The CPU's model name, as benchmarks and measurement records name the machine."""
    return _cpuinfo("model name") or platform.processor() or "unknown CPU"


def _cpuinfo(field: str) -> str:
    """The first ``field : value`` of /proc/cpuinfo ("" where there is none, as off Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.split(":", 1)[0].strip() == field),
                        "")
    except OSError:
        return ""


@functools.lru_cache(maxsize=None)
def cpu_bf16_is_faster() -> bool:
    """Whether bf16 convolutions outrun fp32 ones on this CPU: measured once per machine and torch version,
    then read back from ``$SASAN_CACHE/cpu_precision.json``.

    The ``avx512_bf16`` flag alone does not say it: on an AMD EPYC (Zen 4) bf16 ran the networks 2-3x faster
    than fp32, while on an Intel Xeon VM with the same flag and no AMX, bf16 convolutions ran at 0.55-0.65x
    fp32's speed (2026-12-03, benchmarks/RESULTS.md). The answer is kept so that every process on a machine
    (a Slicer module and its engine child, a test and the CLI it compares with) computes in the same
    precision whatever the load when it starts."""
    if not cpu_has_native_bf16():
        return False
    record = cache_folder() / "cpu_precision.json"
    machine = {"cpu": cpu_model_name(), "torch": torch.__version__}
    try:
        kept = json.loads(record.read_text())
        if kept.get("machine") == machine:
            return bool(kept["bf16_faster"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass  # not measured yet here, or an unreadable record: measure
    ratio = _bf16_time_ratio()
    faster = ratio < 0.9
    log.info("bf16 convolutions take %.2fx fp32's time on this CPU: precision 'auto' uses %s", ratio,
             "bf16" if faster else "fp32")
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(record) as temporary:
            temporary.write_text(json.dumps({"machine": machine, "bf16_faster": faster, "bf16_time_ratio": ratio}))
    except OSError as error:
        log.info("could not keep the precision measurement in %s (%s); it is measured again next time", record,
                 error)
    return faster


def _bf16_time_ratio(rounds: int = 9) -> float:
    """The median over alternating rounds of a bf16 convolution's time over the same fp32 one's (about 0.1 s):
    a ratio measured back to back, so that the machine's drift cancels out, on one thread and in that thread's
    CPU time, so that it compares arithmetic and not waits for a core that other jobs hold (on 2 busy cores a
    1 ms convolution took 60 ms of wall time)."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).eval()
    probe = torch.randn(1, 64, 48, 48)
    layers = {dtype: (copy.deepcopy(conv).to(dtype), probe.to(dtype)) for dtype in (torch.float32, torch.bfloat16)}
    ratios = []
    with torch.no_grad(), torch_threads(1):
        for layer, x in layers.values():
            layer(x)  # the first call of a dtype picks its kernels
        for _ in range(rounds):
            seconds = {}
            for dtype, (layer, x) in layers.items():
                started = time.thread_time()
                layer(x)
                seconds[dtype] = time.thread_time() - started
            ratios.append(seconds[torch.bfloat16] / seconds[torch.float32])
    return statistics.median(ratios)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``precision`` on ``device``; "auto" picks the fastest accurate one."""
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_bf16_is_faster():
            return torch.bfloat16
        return torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise DeviceError("fp16 is for GPUs; on the CPU use precision 'bf16' or 'fp32'")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        log.warning("this CPU has no native bf16 instructions: bf16 is emulated and likely slower than fp32")
    return _DTYPES[precision]


def precision_name(dtype: torch.dtype) -> str:
    return next(name for name, value in _DTYPES.items() if value == dtype)


def available_cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity, so a container's or ``taskset``'s limit counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def free_cpu_cores() -> int:
    """``available_cpu_cores`` minus the current one-minute load of the machine (at least 1)."""
    cores = available_cpu_cores()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


@contextlib.contextmanager
def torch_threads(threads: Optional[int]) -> Iterator[int]:
    """Run the block with ``threads`` intra-op threads (default: ``available_cpu_cores``); restore afterwards."""
    if threads is not None and threads < 1:
        raise DeviceError(f"threads must be a positive integer; got {threads}")
    wanted = threads or available_cpu_cores()
    previous = torch.get_num_threads()
    torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        torch.set_num_threads(previous)


def default_batch_size(device: torch.device, image_size: int, dtype: torch.dtype) -> int:
    """Slices per batch: ``CPU_BATCH`` on the CPU; on a GPU half of its free memory over a per-slice
    activation estimate (``_ACTIVATION_CHANNELS`` x size² values), capped at ``_MAX_GPU_BATCH``."""
    if device.type != "cuda":
        return CPU_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    per_slice = _ACTIVATION_CHANNELS * image_size * image_size * torch.finfo(dtype).bits // 8
    return max(1, min(_MAX_GPU_BATCH, int(free * _GPU_MEMORY_SHARE // per_slice)))
