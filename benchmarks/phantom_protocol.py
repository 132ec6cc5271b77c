"""The demo's full protocol on the phantom, timed, with its table recorded in benchmarks/RESULTS.md.

    .venv/bin/python -m benchmarks.phantom_protocol                   # full preset (phantom_demo.yaml)
    .venv/bin/python -m benchmarks.phantom_protocol --quick           # the quick preset
    .venv/bin/python -m benchmarks.phantom_protocol --seeds 0 1 2 --threads 1 --output runs/protocol
    # or one process per seed (one per core), then the over-seeds section from their finished runs:
    .venv/bin/python -m benchmarks.phantom_protocol --seeds 0 --threads 1 --output runs/protocol &  # 1, 2 alike
    .venv/bin/python -m benchmarks.phantom_protocol --seeds 0 1 2 --collect --output runs/protocol

Runs ``sasan demo`` (MR U-Net, "W/o adaptation", "Histogram matching", "CycleGAN", "SASAN w/o SPADE
(ablation)", SASAN, SASAN w/ aug.) once per training seed into ``--output`` (replacing the results of a
previous benchmark there), then writes a section per mode and training seed into RESULTS.md: date,
machine, load, wall and CPU time, the demo's table on the test subjects, and the aims (no adaptation <= 0.2
mean Dice, SASAN >= 0.75 and above CycleGAN) with whether each was met, and the demo's models scored again
on subjects of other phantoms (seeds 1 and 2). With several seeds a last section gives each row's mean Dice
per seed and its mean and standard deviation over the seeds. A busy machine stretches the wall time, not the
CPU time: both are recorded. This is a script, not a test.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import logging
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

from benchmarks.inference import write_section
from sasan.baselines import UntranslatedSegmenter, no_adaptation
from sasan.bundle import SASANModel
from sasan.bundle import load as load_model
from sasan.config import RunConfig
from sasan.data.domains import load_domain
from sasan.data.geometry import from_slice_stack
from sasan.demo import demo_configs, load_preset, run_demo
from sasan.demo_quick import SHIPPED_MODEL
from sasan.demo_rows import (
    CYCLEGAN,
    NO_ADAPTATION,
    ROW_ORDER,
    SASAN,
    SASAN_AUGMENTED,
    SASAN_SHORT_RUN,
    SASAN_WITHOUT_SPADE,
)
from sasan.metrics import segmentation_scores
from sasan.protocol import HeldOutVolume, held_out_volumes, run_methods, translation_method
from sasan.reports import MEAN_STRUCTURE, markdown_table, summarize
from sasan.resources import model_path
from sasan.runtime import cpu_model_name

log = logging.getLogger("benchmarks.phantom_protocol")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
AIM_NO_ADAPTATION = 0.2
AIM_SASAN = 0.75
UNSEEN_PHANTOM_SEEDS = (1, 2)  # the demo renders seed 3 (seed 0 is the one earlier presets were chosen on)
# The demo's model files (sasan/demo.py names them so), scored again on the unseen phantoms.
DEMO_MODEL_FILES = {SASAN: "sasan_ct_to_mr.safetensors", SASAN_AUGMENTED: "sasan_aug_ct_to_mr.safetensors",
                    CYCLEGAN: "cyclegan_ct_to_mr.safetensors",
                    SASAN_WITHOUT_SPADE: "sasan_without_spade_ct_to_mr.safetensors",
                    SASAN_SHORT_RUN: "sasan_short_run_ct_to_mr.safetensors"}


def read_summary(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("dice_mean", "dice_std", "assd_mean", "assd_std"):
            row[key] = float(row[key])
    return rows


def mean_dice(summary: list[dict], method: str) -> float:
    return next(row["dice_mean"] for row in summary if row["method"] == method and row["structure"] == MEAN_STRUCTURE)


def real_target_dice(network: torch.nn.Module, config: RunConfig, device: str = "cpu", split: str = "test") -> float:
    """Mean Dice of the target-modality U-Net ``network`` on the ``split`` subjects' real target volumes of
    ``config``."""
    target = config.data.target
    unet = UntranslatedSegmenter(network, config.data.image_size, config.data.context, config.data.axis, device)
    names = [label.name for label in config.data.labels]
    means = []
    for item in load_domain(target, config.data, split=split):
        scores = segmentation_scores(unet(item.volume, target.normalization).array,
                                     from_slice_stack(item.labels, item.axis), names, item.volume.spacing)
        means.append(sum(s["dice"] for s in scores.values()) / len(scores))
    return sum(means) / len(means)


def score_model(model: SASANModel, name: str, config: RunConfig, volumes: list[HeldOutVolume], output: Path, *,
                threads: int | None = None, device: str = "auto", split: str = "test") -> dict:
    """Score ``model`` (source -> target, segmented by its own target U-Net) as ``name`` on ``volumes``, the
    held-out source volumes of ``config``: its mean Dice (std over volumes, per structure), "W/o adaptation"
    with the same U-Net, and that U-Net on the real target volumes of the same ``split`` of ``config``."""
    data = config.data
    source, target = data.source.modality, data.target.modality
    if model.segmenter(target) is None:
        raise ValueError(f"model {model.card.name!r} has no {target} U-Net to score with")
    unet = UntranslatedSegmenter(model.segmenter(target), model.card.image_size, model.card.context, data.axis, device)
    methods = {NO_ADAPTATION: no_adaptation(unet, data.source.normalization, data.source.crop),
               name: translation_method(model, source, target, device=device, threads=threads)}
    summary = summarize(run_methods(methods, volumes, data.labels, output, target=target,
                                    overwrite=True).segmentation_rows)
    mean_row = next(row for row in summary if row["method"] == name and row["structure"] == MEAN_STRUCTURE)
    return {"name": name, "volumes": len(volumes),
            "model_dice": round(mean_row["dice_mean"], 3), "model_dice_std": round(mean_row["dice_std"], 3),
            "per_structure": {row["structure"]: round(row["dice_mean"], 3) for row in summary
                              if row["method"] == name and row["structure"] != MEAN_STRUCTURE},
            "no_adaptation": round(mean_dice(summary, NO_ADAPTATION), 3),
            "unet_on_real_target": round(real_target_dice(model.segmenter(target), config, device, split), 3)}


def score_unseen(models: dict[str, Path], output: Path, *, phantom_seed: int, quick: bool = False,
                 subjects: int = 16, test_fraction: float = 0.75, threads: int | None = None,
                 device: str = "auto") -> list[dict]:
    """``score_model`` for each model file on the held-out volumes of the phantom of ``phantom_seed``
    (``subjects`` x ``test_fraction`` of them), rendered with the demo preset's settings: anatomy, pose,
    spacing and noise no run has seen. One dict per model, with its ``phantom_seed``."""
    preset, _ = load_preset(quick=quick)
    every_domain = {"phantom_subjects": subjects}   # over a preset that gives a domain its own count
    data = {"phantom_seed": phantom_seed, "phantom_subjects": subjects, "source": every_domain,
            "target": every_domain, "test_fraction": test_fraction}
    config = demo_configs(preset, {"data": data}, full=False).sasan
    volumes = held_out_volumes(config)
    return [{**score_model(load_model(path), name, config, volumes, output / f"phantom{phantom_seed}" / name,
                           threads=threads, device=device), "phantom_seed": phantom_seed}
            for name, path in models.items()]


def unseen_lines(rows: list[dict]) -> list[str]:
    """The section's table of the demo's models on the unseen phantoms: one row per model, a column per
    phantom seed, then their mean."""
    seeds = sorted({row["phantom_seed"] for row in rows})
    volumes = sorted({row["volumes"] for row in rows})
    lines = [f"The same models on subjects no run has seen (phantom seeds {', '.join(map(str, seeds))}, "
             f"{'/'.join(map(str, volumes))} test CT volumes each; mean Dice, each model with its own MR U-Net):",
             "", "| Model | " + " | ".join(f"phantom {seed}" for seed in seeds) + " | mean |",
             "| --- |" + " --- |" * (len(seeds) + 1)]

    def line(label: str, scores: list[float]) -> str:
        return f"| {label} | " + " | ".join(f"{score:.3f}" for score in scores) + f" | {sum(scores) / len(scores):.3f} |"

    def per_seed(name: str, key: str) -> list[float]:
        return [next(row[key] for row in rows if row["name"] == name and row["phantom_seed"] == seed) for seed in seeds]

    lines += [line(name, per_seed(name, "model_dice")) for name in dict.fromkeys(row["name"] for row in rows)]
    lines += [line(f"{NO_ADAPTATION} (the {SASAN} model's U-Net)", per_seed(SASAN, "no_adaptation")),
              line("MR U-Net on the real MR", per_seed(SASAN, "unet_on_real_target"))]
    return lines


def aims(summary: list[dict]) -> list[str]:
    """One line per aim of the issue, with the value reached and whether it was met."""
    plain, sasan = (mean_dice(summary, m) for m in (NO_ADAPTATION, SASAN))

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"
    lines = [f"- W/o adaptation mean Dice {plain:.3f} (aim <= {AIM_NO_ADAPTATION}): {verdict(plain <= AIM_NO_ADAPTATION)}",
             f"- SASAN mean Dice {sasan:.3f} (aim >= {AIM_SASAN}): {verdict(sasan >= AIM_SASAN)}"]
    if any(row["method"] == CYCLEGAN for row in summary):
        baseline = mean_dice(summary, CYCLEGAN)
        lines.append(f"- SASAN above CycleGAN ({sasan:.3f} vs {baseline:.3f}): {verdict(sasan > baseline)}")
    if any(row["method"] == SASAN_AUGMENTED for row in summary):
        augmented = mean_dice(summary, SASAN_AUGMENTED)
        lines.append(f"- {SASAN_AUGMENTED} mean Dice {augmented:.3f} (aim >= {AIM_SASAN}): "
                     f"{verdict(augmented >= AIM_SASAN)}")
    return lines


def section_title(mode: str, seed: int | None) -> str:
    """The RESULTS.md heading: one section per mode, and one per training seed when a seed is chosen."""
    return f"## Phantom protocol ({mode}{f', training seed {seed}' if seed is not None else ''})"


def section(mode: str, summary: list[dict], ceiling: float, started: datetime.datetime, wall: float, cpu: float,
            loads: tuple[float, float], output: Path, threads: int | None = None, seed: int | None = None,
            unseen: list[dict] | None = None, resumed: bool = False) -> str:
    structures = list(dict.fromkeys(row["structure"] for row in summary if row["structure"] != MEAN_STRUCTURE))
    busy = max(loads) > 0.5 * (os.cpu_count() or 1)
    lines = [section_title(mode, seed), "",
             f"{started:%Y-%m-%d %H:%M} · {cpu_model_name()}, {os.cpu_count()} cores · {platform.system()} · "
             f"torch {torch.__version__} · load average {loads[0]:.2f} before, {loads[1]:.2f} after"
             + (" (shared, busy machine: the wall time is stretched by other jobs; the CPU time is this run's)"
                if busy else ""), "",
             f"Wall time {wall / 60:.1f} min; CPU time of this process {cpu / 60:.1f} min"
             f"{' (resumed: the part after the interruption only)' if resumed else ''}. "
             f"Command: `python -m benchmarks.phantom_protocol{' --quick' if mode == 'quick' else ''}"
             f"{f' --threads {threads}' if threads else ''}{f' --seeds {seed}' if seed is not None else ''}"
             f"{' --resume' if resumed else ''}` "
             f"(runs `sasan demo`; outputs in `{output}`).", "",
             "The phantom's test subjects (CT), scored once at the end; Dice and ASSD (mm) mean ± std over volumes; "
             "the MR U-Net trained once on real MR serves every row.", "",
             markdown_table(summary, structures).rstrip(), "", *aims(summary),
             f"- For reference, the MR U-Net on the test subjects' real MR volumes: mean Dice {ceiling:.3f} "
             "(the ceiling of every row)."]
    if unseen:
        lines += ["", *unseen_lines(unseen)]
    return "\n".join(lines) + "\n"


def over_seeds(summaries: dict[int, list[dict]], mode: str) -> str:
    """The section of several training seeds: each row's mean Dice per seed, then mean and std over the seeds."""
    seeds = sorted(summaries)
    methods = [m for m in ROW_ORDER if all(any(r["method"] == m for r in summary) for summary in summaries.values())]
    lines = [over_seeds_title(mode, seeds), "",
             f"Mean Dice on the test subjects per training seed (sections above), then the mean and the standard "
             f"deviation (ddof 1) over the {len(seeds)} seeds.", "",
             "| Method | " + " | ".join(f"seed {seed}" for seed in seeds) + " | mean ± std |",
             "| --- |" + " --- |" * (len(seeds) + 1)]
    for method in methods:
        scores = [mean_dice(summaries[seed], method) for seed in seeds]
        lines.append(f"| {method} | " + " | ".join(f"{score:.3f}" for score in scores)
                     + f" | {statistics.mean(scores):.3f} ± {statistics.stdev(scores):.3f} |")
    return "\n".join(lines) + "\n"


def over_seeds_title(mode: str, seeds: list[int]) -> str:
    return f"## Phantom protocol ({mode}, training seeds {', '.join(map(str, seeds))})"


def run_seed(mode: str, output: Path, seed: int | None, threads: int | None,
             resume: bool = False) -> tuple[str, list[dict]]:
    """One demo run with training seed ``seed`` (None: the preset's): its RESULTS.md section and its summary.
    ``resume`` continues an interrupted run in ``output`` (its wall and CPU times are then this part's only)."""
    started, load_before = datetime.datetime.now(), os.getloadavg()[0]
    wall_start, cpu_start = time.monotonic(), _cpu_seconds()
    overrides = {"training": {"seed": seed}} if seed is not None else None
    run_demo(output, quick=mode == "quick", overwrite=True, threads=threads, config_overrides=overrides,
             resume=resume)
    wall, cpu = time.monotonic() - wall_start, _cpu_seconds() - cpu_start
    models = {name: output / "models" / file for name, file in DEMO_MODEL_FILES.items()
              if (output / "models" / file).is_file()}
    if mode == "quick":  # its SASAN row is the shipped model
        models[SASAN] = model_path(SHIPPED_MODEL)
    config = demo_configs(load_preset(quick=mode == "quick")[0], full=False).sasan
    ceiling = real_target_dice(load_model(models[SASAN]).segmenter(config.data.target.modality), config)
    unseen = [row for phantom_seed in UNSEEN_PHANTOM_SEEDS
              for row in score_unseen(models, output / "unseen", phantom_seed=phantom_seed, quick=mode == "quick",
                                      threads=threads)]
    summary = read_summary(output / "results.csv")
    return section(mode, summary, ceiling, started, wall, cpu, (load_before, os.getloadavg()[0]), output, threads,
                   seed, unseen, resume), summary


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the quick preset instead of the full one")
    parser.add_argument("--output", default="runs/phantom_protocol_benchmark", help="the demo's output folder")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: the free cores)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="training seeds of every network, one demo each (default: the preset's); same phantom "
                             "and split")
    parser.add_argument("--resume", action="store_true",
                        help="continue interrupted runs in --output from their last checkpoints (same results)")
    parser.add_argument("--collect", action="store_true",
                        help="train nothing: write the over-seeds section from the --seeds' finished runs in "
                             "--output (for seeds run as separate processes, one per core)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    mode = "quick" if args.quick else "full"
    if args.collect and not (args.seeds and len(args.seeds) > 1):
        parser.error("--collect needs at least two --seeds")
    summaries = {}
    for seed in args.seeds or [None]:
        output = Path(args.output) / mode / (f"seed{seed}" if seed is not None else "preset_seed")
        if args.collect:
            if not (output / "results.csv").is_file():
                parser.error(f"--collect: no finished run for seed {seed} in {output} (results.csv missing)")
            summaries[seed] = read_summary(output / "results.csv")
            continue
        text, summaries[seed] = run_seed(mode, output, seed, args.threads, args.resume)
        print(text)
        if not args.no_write:
            write_section(text, section_title(mode, seed), RESULTS)
            log.info("updated %s", RESULTS)
    if args.seeds and len(args.seeds) > 1:
        text = over_seeds(summaries, mode)
        print(text)
        if not args.no_write:
            write_section(text, over_seeds_title(mode, sorted(summaries)), RESULTS)


if __name__ == "__main__":
    main()
