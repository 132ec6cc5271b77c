"""Whole synthetic CT volumes through ``translate_volume``: the time per phase and the peak memory of a
process of its own, and the marginal time per slice of the whole path.

    .venv/bin/python -m benchmarks.inference_volume --model-file paper.safetensors --slices 300 --device cuda

prints one JSON line (``benchmarks.inference`` runs it so for its report). On a GPU the volume is translated
twice in the process: the first run pays for starting CUDA and loading its kernels, the second is what a
process that already runs the GPU pays. The "compute" of a run is its slice loop until every result is back
on the host, plus the paste and clean-up after it; "prepare" (model file, networks onto the device) is apart.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from sasan.bundle import SASANModel
from sasan.data.volume import Volume
from sasan.inference import translate_volume
from sasan.metrics import psnr
from sasan.runtime import available_cpu_cores

REPOSITORY = Path(__file__).resolve().parents[1]


def synthetic_ct(slices: int, size: int, seed: int = 0) -> Volume:
    """int16 HU: an elliptic body (fat rim, muscle), lungs, a bright spine and contrast-filled heart, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    array = np.empty((slices, size, size), np.int16)
    for k in range(slices):
        t = k / max(slices - 1, 1) - 0.5
        image = np.full((size, size), -1000.0, np.float32)
        body = (x / 0.45) ** 2 + (y / 0.33) ** 2 < 1.0
        image[body] = -100.0
        image[(x / 0.42) ** 2 + (y / 0.30) ** 2 < 1.0] = 40.0
        for side in (-1, 1):
            image[((x - side * 0.18) / 0.13) ** 2 + (y / (0.2 - 0.1 * abs(t))) ** 2 < 1.0] = -850.0
        image[((x - 0.04) / 0.11) ** 2 + ((y + 0.02 - 0.05 * t) / 0.09) ** 2 < 1.0] = 300.0
        image[(x / 0.04) ** 2 + ((y - 0.22) / 0.04) ** 2 < 1.0] = 700.0
        image += rng.normal(0.0, 15.0, image.shape).astype(np.float32)
        array[k] = np.clip(image, -1024, 3071).astype(np.int16)
    return Volume(array, spacing=(0.7, 0.7, 1.5))


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM, which (unlike ru_maxrss) does not inherit the
    parent's peak across fork + exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def marginal_ms_per_slice(model: SASANModel, device: str, in_plane: int, slices: int, base: int = 4,
                          threads: Optional[int] = None, precision: str = "auto") -> float:
    """ms per slice that ``slices`` more slices add to a translated + segmented + mapped CT of ``base`` slices:
    the whole path per slice, without what a run pays once (preparing the networks, the first batch)."""
    seconds = []
    for count in (base, base + slices):
        volume = synthetic_ct(count, in_plane)
        started = time.perf_counter()
        translate_volume(volume, model, "MR", device=device, threads=threads, precision=precision)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return 1000 * (seconds[1] - seconds[0]) / slices


def compare_with_cpu(model: SASANModel, device: str, slices: int, in_plane: int) -> dict[str, float]:
    """translate_volume of the same small CT on the CPU in fp32 and on ``device`` (automatic precision)."""
    volume = synthetic_ct(slices, in_plane, seed=1)
    reference = translate_volume(volume, model, "MR", device="cpu", precision="fp32")
    other = translate_volume(volume, model, "MR", device=device)
    maps_difference = max(int(np.abs(a.array.astype(np.int16) - b.array).max())
                          for a, b in zip(reference.attention, other.attention))
    return {"slices": slices, "in_plane": in_plane, "device": other.device, "precision": other.precision,
            "psnr_db": image_psnr(reference.translated.array, other.translated.array),
            "labels_equal": float(np.mean(reference.segmentation.array == other.segmentation.array)),
            "attention_max_difference": maps_difference}


def image_psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR of ``test`` against ``reference`` over the reference's range of values."""
    return psnr(reference, test, data_range=float(reference.max() - reference.min()))


def volume_runs(model_file: Path, slices: int, in_plane: int, device: str, precision: str,
                threads: Optional[int], batch_size: Optional[int]) -> dict:
    """Translate + segment + attention maps of an ``in_plane``² x ``slices`` CT in this process (twice on a
    GPU); seconds per phase of each run, and the process's peak RSS."""
    volume = synthetic_ct(slices, in_plane)
    summary = {"input_mb": volume.array.nbytes / 2 ** 20, "rss_before_mb": peak_rss_mb(), "runs": []}
    for _ in range(2 if device.startswith("cuda") else 1):
        result = translate_volume(volume, model_file, "MR", device=device, precision=precision, threads=threads,
                                  batch_size=batch_size)
        summary["runs"].append({"seconds": result.seconds, **result.timings,
                                "compute": result.timings["slices"] + result.timings["finish"]})
        summary.update(device=result.device, precision=result.precision, batch_size=result.batch_size,
                       threads=result.threads, notes=result.notes)
        del result  # the second run's outputs replace the first's, as in a process that translates again
    summary["peak_rss_mb"] = peak_rss_mb()
    if summary["device"].startswith("cuda"):
        summary["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return summary


def run_in_subprocess(model_file: Path, slices: int, in_plane: int, device: str, precision: str,
                      threads: Optional[int], batch_size: Optional[int]) -> dict:
    """``volume_runs`` in a fresh process, so that its peak RSS is its own."""
    command = [sys.executable, "-m", "benchmarks.inference_volume", "--model-file", str(model_file), "--slices",
               str(slices), "--in-plane", str(in_plane), "--device", device, "--precision", precision]
    command += ["--threads", str(threads)] if threads else []
    command += ["--batch-size", str(batch_size)] if batch_size else []
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPOSITORY).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-file", type=Path, required=True)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--in-plane", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="default: the cores this process may use")
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads or available_cpu_cores())
    print(json.dumps(volume_runs(args.model_file, args.slices, args.in_plane, args.device, args.precision,
                                 args.threads, args.batch_size)))


if __name__ == "__main__":
    main()
