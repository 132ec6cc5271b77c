"""Inference speed, memory and agreement: the naive path against ours, on paper-size random weights.

    .venv/bin/python -m benchmarks.inference                 # CPU, 300-slice 512² volume
    .venv/bin/python -m benchmarks.inference --slices 40     # shorter whole-volume run
    .venv/bin/python -m benchmarks.inference --device cuda   # on a GPU machine

Naive path: the stock networks, eager fp32, one slice per batch, ``torch.no_grad``. Ours: the engine
``translate_volume`` uses (rewritten modules, bf16 where the hardware has it, channels-last). First the
headline, ``--rounds`` alternating rounds of: the bf16 matmul peak, the naive full path (attention,
generator, U-Net) on one slice, ours on one slice, and ours as ``translate_volume`` runs it (the marginal
time per slice of a 512² CT, reading, resampling and writing included); each round's GFLOP/s over that
round's peak, the median of the rounds, and whether it reaches 80 % of the peak. Then per network: median
ms per slice of ``--repeats`` alternating runs, the ratio, and GFLOP/s. Agreement of the two paths on a
synthetic CT slice; then a whole 512 x 512 x N CT volume translated, segmented and with attention maps, in a
fresh process so that its peak RSS is its own (``benchmarks.inference_volume``), with its seconds per phase.

Prints a Markdown report and writes it into benchmarks/RESULTS.md (one section per device kind,
replaced on each run). This is a script, not a test.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.inference_volume import (
    compare_with_cpu,
    image_psnr,
    marginal_ms_per_slice,
    peak_rss_mb,
    run_in_subprocess,
    synthetic_ct,
)
from sasan import bundle
from sasan.bundle import SASANModel
from sasan.card import ModelCard
from sasan.data.geometry import fit_to_square
from sasan.data.preprocess import IntensityMap, normalize
from sasan.data.slices import context_stack
from sasan.data.volume import Volume
from sasan.inference.prepared import prepare_networks
from sasan.models.translator import translate
from sasan.runtime import (
    available_cpu_cores,
    cpu_model_name,
    default_batch_size,
    precision_name,
    resolve_device,
    resolve_precision,
)

log = logging.getLogger("benchmarks.inference")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
CT_WINDOW = [-1000.0, 1000.0]
LABELS = ["LV myocardium", "LA blood", "LV blood", "ascending aorta"]
PEAK_GOAL = 0.8  # of the bf16 matmul peak, for the whole path on the CPU
GPU_COMPUTE_GOAL_S = 1.0  # the 512 x 512 x 300 CT on a GPU, file I/O apart
RSS_GOAL_MB = 2048


def paper_card(image_size: int) -> ModelCard:
    """A CT <-> MR model card with the paper's architecture (defaults of ModelConfig)."""
    ct = {"config": {"method": "window", "percentiles": [2.0, 98.0], "window": CT_WINDOW},
          "reference": {"method": "window", "low": CT_WINDOW[0], "high": CT_WINDOW[1], "mean": 0.0, "std": 1.0}}
    mr = {"config": {"method": "percentile", "percentiles": [2.0, 98.0], "window": [0.0, 1.0]},
          "reference": {"method": "percentile", "low": 20.0, "high": 900.0, "mean": 310.0, "std": 180.0}}
    labels = [{"name": name, "value": i + 1, "color": [1.0, 0.0, 0.0]} for i, name in enumerate(LABELS)]
    return ModelCard(name="paper-size-random", modalities=["CT", "MR"], directions=[["CT", "MR"], ["MR", "CT"]],
                     architecture={}, context=3, image_size=image_size, normalization={"CT": ct, "MR": mr},
                     labels=labels, segmenters=["MR"], description="random weights, for benchmarks only")


def paper_model(image_size: int, seed: int = 0) -> SASANModel:
    torch.manual_seed(seed)
    card = paper_card(image_size)
    networks = bundle.expected_networks(card)
    for module in networks.values():
        module.eval()
    return SASANModel(card, networks)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(call: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        call()
    sync(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def paired_median_seconds(first: Callable[[], object], second: Callable[[], object], device: torch.device,
                          repeats: int) -> tuple[float, float]:
    """Medians of two calls timed alternately, so that both see the same drift of a shared machine."""
    first(), second()
    sync(device)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for call, samples in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            call()
            sync(device)
            samples.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """GFLOP/s of a large square matmul in ``dtype`` (TF32 off: true fp32), the median of three."""
    size = 8192 if device.type == "cuda" else 2048
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return 2 * size ** 3 / median_seconds(lambda: a @ b, device, 3) / 1e9


def matmul_peaks(device: torch.device) -> dict[str, float]:
    """The better of two ``matmul_peak`` measurements in fp32 and in bf16."""
    return {name: max(matmul_peak(device, dtype) for _ in range(2))
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}


def full_path_rounds(model: SASANModel, naive_full: Callable[[], object], our_full: Callable[[], object],
                     device: torch.device, gflop: float, args: argparse.Namespace) -> dict:
    """``args.rounds`` rounds, each timing in turn: the bf16 and fp32 matmul peaks, the naive and our full path on
    one slice, and ours as ``translate_volume`` runs it (marginal ms per slice); every round's share of its own
    bf16 peak (and of the higher of its two peaks: on a CPU without a fast bf16 path that is fp32's)."""
    samples: dict[str, list[float]] = {"peak": [], "fp32_peak": [], "naive_ms": [], "networks_ms": [],
                                       "translate_ms": []}
    for index in range(args.rounds):
        samples["peak"].append(matmul_peak(device, torch.bfloat16))
        samples["fp32_peak"].append(matmul_peak(device, torch.float32))
        samples["naive_ms"].append(1000 * median_seconds(naive_full, device, 1, warmup=0))
        samples["networks_ms"].append(1000 * median_seconds(our_full, device, 1, warmup=0))
        samples["translate_ms"].append(marginal_ms_per_slice(model, str(device), args.in_plane, args.round_slices,
                                                             threads=args.threads, precision=args.precision))
        log.info("  round %d: bf16 peak %.0f, fp32 peak %.0f GFLOP/s; naive %.0f ms, ours %.0f ms, translate_volume "
                 "%.0f ms per slice", index + 1, *(samples[key][-1] for key in samples))
    summary = {key: statistics.median(values) for key, values in samples.items()}
    best = [max(pair) for pair in zip(samples["peak"], samples["fp32_peak"])]
    for key in ("naive_ms", "networks_ms", "translate_ms"):
        speeds = [gflop / (ms / 1000) for ms in samples[key]]
        summary[key.replace("_ms", "_share")] = statistics.median(v / p for v, p in zip(speeds, samples["peak"]))
        summary[key.replace("_ms", "_best_share")] = statistics.median(v / p for v, p in zip(speeds, best))
    summary["speed-up"] = statistics.median(n / t for n, t in zip(samples["naive_ms"], samples["translate_ms"]))
    summary.update(rounds=args.rounds, gflop=gflop, slices=args.round_slices, in_plane=args.in_plane)
    return summary


def slice_input(volume: Volume, image_size: int, index: int) -> torch.Tensor:
    """The normalised, squared 3-slice stack around ``index`` -> (1, 3, S, S)."""
    imap = IntensityMap("window", *CT_WINDOW)
    stack = normalize(volume.array[max(0, index - 1) : index + 2], imap)
    centre = min(index, 1)
    return torch.from_numpy(fit_to_square(context_stack(stack, centre, 3), image_size, "image"))[None]


def flops_per_slice(model: SASANModel, x: torch.Tensor) -> dict[str, float]:
    counts = {}
    with torch.no_grad():
        maps, _ = model.attention("CT")(x)
        calls = {"attention": lambda: model.attention("CT")(x), "generator": lambda: model.generator("CT", "MR")(x, maps),
                 "segmenter": lambda: model.segmenter("MR")(x)}
        for name, call in calls.items():
            counter = FlopCounterMode(display=False)
            with counter:
                call()
            counts[name] = counter.get_total_flops()
    counts["full path"] = sum(counts.values())
    return counts


def naive_calls(model: SASANModel, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    attention, generator, segmenter = model.attention("CT"), model.generator("CT", "MR"), model.segmenter("MR")
    maps, _ = attention(x)

    def full() -> torch.Tensor:
        return segmenter(translate(attention, generator, x)[0])

    calls = {"attention": lambda: attention(x), "generator": lambda: generator(x, maps),
             "segmenter": lambda: segmenter(x), "full path": full}
    return {name: torch.no_grad()(call) for name, call in calls.items()}


def our_calls(engine, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    prepared = engine.prepare_input(x)
    maps = engine.attention(prepared)[0]

    def full() -> torch.Tensor:
        centre, _ = engine.translate(x)
        return engine.segment(centre.expand(-1, 3, -1, -1))

    calls = {"attention": lambda: engine.attention(prepared), "generator": lambda: engine.generator(prepared, maps),
             "segmenter": lambda: engine.segmenter(prepared), "full path": full}
    return {name: torch.inference_mode()(call) for name, call in calls.items()}


def agreement(model: SASANModel, engine, volume: Volume, image_size: int) -> dict[str, float]:
    """Translated centre slices (PSNR over the naive output's range) and segmenter labels (fraction equal)
    of naive vs ours on a few slices of the synthetic CT; ``model`` runs on the engine's device."""
    naive_images, our_images, naive_labels, our_labels = [], [], [], []
    indices = np.linspace(0, volume.shape[0] - 1, 4).astype(int)
    with torch.inference_mode():
        for index in indices:
            x = slice_input(volume, image_size, int(index)).to(engine.device)
            stack = translate(model.attention("CT"), model.generator("CT", "MR"), x)[0]
            naive_images.append(stack[:, 1].cpu().numpy())
            naive_labels.append(model.segmenter("MR")(stack).argmax(1).cpu().numpy())
            prepared = engine.prepare_input(x)
            ours = translate(engine.attention, engine.generator, prepared)[0].float()
            our_images.append(ours[:, 1].cpu().numpy())
            our_labels.append(engine.segment(ours).argmax(1).cpu().numpy())
    labels_equal = float(np.mean(np.concatenate(naive_labels) == np.concatenate(our_labels)))
    return {"psnr_db": image_psnr(np.concatenate(naive_images), np.concatenate(our_images)),
            "labels_equal": labels_equal}


def profile_ours(engine, x: torch.Tensor, rows: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if engine.device.type == "cuda" else [])
    calls = our_calls(engine, x)
    calls["full path"]()
    with profile(activities=activities) as profiler:
        calls["full path"]()
        sync(engine.device)
    key = "self_cuda_time_total" if engine.device.type == "cuda" else "self_cpu_time_total"
    return profiler.key_averages().table(sort_by=key, row_limit=rows)


def markdown(report: dict) -> str:
    r = report
    lines = [f"## Inference benchmark ({r['device_kind']})", "",
             f"{r['date']} · {r['machine']} · torch {torch.__version__} · ours: {r['precision']}, "
             f"batch {r['batch']}, {r['threads']} thread(s) · image {r['image_size']}² · "
             f"load average {r['load_before']:.2f} before, {r['load_after']:.2f} after"
             + (" (shared, busy machine: timings drift, compare within this run)" if r["busy"] else ""), "",
             f"Matmul peaks measured here: fp32 {r['peaks']['fp32']:.0f} GFLOP/s, bf16 {r['peaks']['bf16']:.0f} GFLOP/s.",
             *rounds_lines(r["rounds"]),
             "", "| network | GFLOP/slice | naive ms/slice | ours ms/slice | naive/ours | naive GFLOP/s | ours GFLOP/s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in r["networks"].items():
        lines.append(f"| {name} | {row['gflop']:.1f} | {row['naive_ms']:.0f} | {row['ours_ms']:.0f} | "
                     f"{row['naive_ms'] / row['ours_ms']:.2f}x | {row['gflop'] / row['naive_ms'] * 1000:.0f} | "
                     f"{row['gflop'] / row['ours_ms'] * 1000:.0f} |")
    lines += ["", "Ours, full path per slice by batch size: "
              + ", ".join(f"batch {b}: {ms:.0f} ms" for b, ms in r["batch_sweep"].items()) + ".", "",
              f"Agreement, ours vs naive (4 slices of the synthetic CT): translated PSNR "
              f"{r['agreement']['psnr_db']:.1f} dB, segmenter labels {100 * r['agreement']['labels_equal']:.2f} % equal "
              "(random weights: near-tied logits make labels the hardest case).", "",
              f"Peak RSS of the per-slice benchmark process: {r['rss_mb']:.0f} MB."]
    c = r.get("cpu_comparison")
    if c:
        lines += ["", f"translate_volume on {c['device']} ({c['precision']}) vs CPU fp32, {c['in_plane']}²x{c['slices']} "
                  f"CT: translated PSNR {c['psnr_db']:.1f} dB, labels {100 * c['labels_equal']:.2f} % equal, "
                  f"attention maps differ by at most {c['attention_max_difference']} of 255."]
    if r.get("volume"):
        lines += ["", volume_line(r["volume"], r)]
    if r.get("profile"):
        lines += ["", "Where our full path spends its time (torch.profiler, one slice):", "", "```",
                  r["profile"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def rounds_lines(rounds: dict) -> list[str]:
    """The headline: the full path's medians over alternating rounds, against each round's bf16 peak."""
    if not rounds:
        return []
    r, share = rounds, rounds["translate_share"]
    verdict = "reached" if share >= PEAK_GOAL else f"not reached: {100 * (PEAK_GOAL - share):.0f} points short"
    return ["", f"Full path ({r['gflop']:.0f} GFLOP a slice), medians of {r['rounds']} alternating rounds, each "
            f"against the bf16 matmul peak measured in it (median {r['peak']:.0f} GFLOP/s): naive eager fp32 "
            f"{r['naive_ms']:.0f} ms per slice ({100 * r['naive_share']:.0f} % of the bf16 peak); ours, networks "
            f"alone, {r['networks_ms']:.0f} ms ({100 * r['networks_share']:.0f} %); ours as `translate_volume` runs "
            f"it (marginal time per slice over {r['slices']} slices of a {r['in_plane']}² CT, resampling and "
            f"writing included) {r['translate_ms']:.0f} ms, **{100 * share:.0f} % of the bf16 peak** "
            f"({r['speed-up']:.2f}x the naive path). Goal >= {100 * PEAK_GOAL:.0f} % of the peak: {verdict}."
            + ("" if r["fp32_peak"] <= r["peak"] else
               f" The fp32 matmul peak (median {r['fp32_peak']:.0f} GFLOP/s) is the higher one on this CPU: bf16 is "
               f"not its fast path, and against the higher peak ours reaches {100 * r['translate_best_share']:.0f} % "
               f"(networks alone {100 * r['networks_best_share']:.0f} %, naive {100 * r['naive_best_share']:.0f} %).")]


def volume_line(v: dict, r: dict) -> str:
    """The whole volume in a process of its own: seconds per phase of each run, peak RSS, and the goals."""
    runs = []
    for index, run in enumerate(v["runs"]):
        name = "first run (CUDA starts)" if len(v["runs"]) > 1 and index == 0 else \
            ("second run" if len(v["runs"]) > 1 else "one run")
        runs.append(f"{name} {run['seconds']:.1f} s = prepare {run['prepare']:.1f} + slices {run['slices']:.2f} + "
                    f"finish {run['finish']:.2f} s ({1000 * run['compute'] / r['slices']:.1f} ms/slice of compute)")
    compute = v["runs"][-1]["compute"]
    goals = [f"peak RSS {v['peak_rss_mb']:.0f} MB (goal <= {RSS_GOAL_MB} MB: "
             f"{'met' if v['peak_rss_mb'] <= RSS_GOAL_MB else 'not met'})"]
    if v["device"].startswith("cuda"):
        goals.insert(0, f"compute {compute:.2f} s (goal <= {GPU_COMPUTE_GOAL_S:.0f} s: "
                        f"{'met' if compute <= GPU_COMPUTE_GOAL_S else 'not met'})")
        goals.append(f"GPU peak {v['gpu_peak_mb']:.0f} MB")
    return (f"Whole volume {r['in_plane']}x{r['in_plane']}x{r['slices']} int16 CT ({v['input_mb']:.0f} MB) -> "
            f"translated + segmented + {r['num_maps']} attention maps on {v['device']} ({v['precision']}, batch "
            f"{v['batch_size']}, {v['threads']} thread(s)), in a process of its own: {'; '.join(runs)}; "
            + "; ".join(goals) + (f"; notes: {'; '.join(v['notes'])}" if v["notes"] else "") + ".")


def write_section(text: str, header: str, path: Path = RESULTS) -> None:
    """Replace the section starting with ``header`` in ``path`` (or append it)."""
    existing = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = existing.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == header), None)
    if start is None:
        updated = existing.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        updated = "".join(lines[:start]) + text + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    path.write_text(updated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="default: the cores this process may use")
    parser.add_argument("--batch-size", type=int, default=None, help="ours; default: automatic")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs per network")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of the full path (0 skips them)")
    parser.add_argument("--round-slices", type=int, default=16,
                        help="slices translate_volume adds per round, for its marginal time (GPU: e.g. 192)")
    parser.add_argument("--slices", type=int, default=300, help="whole-volume run; 0 skips it")
    parser.add_argument("--in-plane", type=int, default=512)
    parser.add_argument("--batch-sweep", default="1,2,4", help="batch sizes of ours to time (GPU: e.g. 1,8,32)")
    parser.add_argument("--compare-cpu", type=int, default=0, metavar="SLICES",
                        help="also run translate_volume on SLICES slices on the CPU (fp32) and on --device and compare")
    parser.add_argument("--profile", action="store_true", help="add a torch.profiler table of our full path")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    load_before = os.getloadavg()[0]
    device = resolve_device(args.device)
    threads = args.threads or available_cpu_cores()
    torch.set_num_threads(threads)
    dtype = resolve_precision(args.precision, device)
    model = paper_model(args.image_size)
    ct = synthetic_ct(8, args.in_plane)
    x = slice_input(ct, args.image_size, 4)
    flops = flops_per_slice(model, x)
    log.info("measuring matmul peaks on %s", device)
    peaks = matmul_peaks(device)

    log.info("naive path (eager fp32, batch 1) and ours (%s), timed alternately", precision_name(dtype))
    model.to(device)
    x_device = x.to(device)
    engine = prepare_networks(model, "CT", "MR", device, dtype, segmenter=True)
    rows: dict[str, dict] = {}
    with torch.no_grad():
        naive = naive_calls(model, x_device)
    with torch.inference_mode():
        ours = our_calls(engine, x_device)
    for name in naive:
        naive_seconds, our_seconds = paired_median_seconds(naive[name], ours[name], device, args.repeats)
        rows[name] = {"gflop": flops[name] / 1e9, "naive_ms": 1000 * naive_seconds, "ours_ms": 1000 * our_seconds}
        log.info("  %s: naive %.0f ms, ours %.0f ms", name, rows[name]["naive_ms"], rows[name]["ours_ms"])
    rounds = {}
    if args.rounds:
        log.info("%d alternating rounds: bf16 peak, naive, ours, translate_volume (+%d slices)", args.rounds,
                 args.round_slices)
        rounds = full_path_rounds(model, naive["full path"], ours["full path"], device, flops["full path"] / 1e9, args)
    sweep = {}
    for batch in (int(b) for b in args.batch_sweep.split(",")):
        with torch.inference_mode():
            full = our_calls(engine, x_device.expand(batch, -1, -1, -1).contiguous())["full path"]
        sweep[batch] = 1000 * median_seconds(full, device, max(3, args.repeats // 2)) / batch
        log.info("  ours, batch %d: %.0f ms/slice", batch, sweep[batch])
    model.to("cpu")
    report = {
        "device_kind": "GPU" if device.type == "cuda" else "CPU",
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": torch.cuda.get_device_name(device) + " + " + cpu_model_name() if device.type == "cuda"
        else f"{cpu_model_name()}, {os.cpu_count()} cores",
        "precision": precision_name(dtype), "threads": threads, "image_size": args.image_size,
        "batch": args.batch_size or default_batch_size(device, args.image_size, dtype),
        "peaks": peaks, "rounds": rounds, "networks": rows, "batch_sweep": sweep,
        "agreement": agreement(model.to(device), engine, ct, args.image_size),
        "num_maps": model.card.model_config.num_maps, "slices": args.slices, "in_plane": args.in_plane,
        "profile": profile_ours(engine, x_device) if args.profile else "",
    }
    report["rss_mb"] = peak_rss_mb()
    del engine
    model.to("cpu")
    if args.compare_cpu:
        log.info("CPU fp32 vs %s on %d slices", args.device, args.compare_cpu)
        report["cpu_comparison"] = compare_with_cpu(model, args.device, args.compare_cpu, args.in_plane)
    if args.slices:
        with tempfile.TemporaryDirectory() as folder:
            model_file = bundle.save(Path(folder) / "paper.safetensors", model.card, model.networks)
            log.info("whole volume: %dx%dx%d", args.in_plane, args.in_plane, args.slices)
            report["volume"] = run_in_subprocess(model_file, args.slices, args.in_plane, args.device, args.precision,
                                                 args.threads, args.batch_size)
    report["load_before"], report["load_after"] = load_before, os.getloadavg()[0]
    report["busy"] = device.type == "cpu" and max(load_before, report["load_after"]) > 0.5
    text = markdown(report)
    print(text)
    if not args.no_write:
        write_section(text, f"## Inference benchmark ({report['device_kind']})")
        log.info("updated %s", RESULTS)


if __name__ == "__main__":
    main()
