"""Training speed: a paper-size step of the default fp32 path against the fast path, FLOPs and where the time goes.

    .venv/bin/python -m benchmarks.training                      # CPU, every core; under 10 minutes on 2 quiet cores
    .venv/bin/python -m benchmarks.training --rounds 1 --no-write  # a quick look

The paper-size step: 256², K = 8, the paper's widths (``ModelConfig`` defaults), batch 2, every loss
(unpaired CT -> MR with MR labelled: cycle + SSIM, identity, orthogonality, auxiliary with pseudo labels,
both image GANs and the segmentation GAN), no pre-training: ``Trainer.train_step`` on phantom slices, data
drawing and both updates included. fp32: the default path (``training.fast: false``). Ours: ``training.fast:
true`` in ``--precision`` (``auto``: what precision ``auto`` gives a user on this CPU,
``sasan.runtime.cpu_bf16_is_faster``). Each runs in worker processes of its own (the fast path changes process-wide allocator
settings), one at a time (a paper-size step holds 8-11 GB at its peak, two would not fit in 24 GB), in the
order fp32, ours, ours, fp32, so that a drift of a shared machine weighs on both alike; every block warms
up with two steps (the fast path's heap grows over its first two) before its timed ones.

Reported: FLOPs counted by ``torch.utils.flop_counter`` (convolutions and matrix products, forward and
backward), per network pass (forward + backward, batch 2, with its number per step) and per step; medians
of wall seconds; GFLOP/s against the matmul peaks measured in the same run; a profile of our step; and
the phantom_demo preset's phases on one thread, default against fast. The last line is
``paper-size step: fp32 X s, ours Y s, ratio Z``. Prints a Markdown section and writes it into
benchmarks/RESULTS.md. This is a script, not a test.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.inference import RESULTS, matmul_peaks, write_section
from sasan.config import RunConfig, config_from_dict, load_config
from sasan.data.phantom import LABELS
from sasan.runtime import cpu_bf16_is_faster, cpu_model_name
from sasan.training.trainer import Trainer

log = logging.getLogger("benchmarks.training")
REPOSITORY = Path(__file__).resolve().parent.parent
PHANTOM_PRESET = REPOSITORY / "Resources" / "configs" / "phantom_demo.yaml"
REPLY = "@@"   # marks a worker's answer on its stdout (libraries may print there too)
WARM_UP_STEPS = 2
# How many passes of batch 2 each network makes in one paper-size step (the fast path stacks some of them
# into larger passes, the same work): attention modules and generators 3 x 2 (translation, cycle, identity;
# forward + backward), image discriminators 2 in the translator's update and 4 in their own, the
# segmentation discriminator 2 + 3.
PASSES_PER_STEP = {"attention": 6, "generator": 6, "image discriminator": 6, "segmentation discriminator": 5}


def count_flops(call: Callable[[], object]) -> int:
    """FLOPs of the convolutions and matrix products ``call`` runs, its backward passes included."""
    counter = FlopCounterMode(display=False)
    with counter:
        call()
    return counter.get_total_flops()


def paper_config(fast: bool, precision: str, threads: int, image_size: int = 256) -> RunConfig:
    """The paper-size run: ModelConfig's and LossConfig's defaults (the paper's), batch 2, on phantom slices."""
    labels = [{"name": label.name, "value": label.value, "color": list(label.color)} for label in LABELS]
    return config_from_dict({
        "name": "paper_size_benchmark",
        "data": {"source": {"modality": "CT", "layout": "phantom", "labelled": False,
                            "normalization": {"method": "window", "window": [-300.0, 500.0]}},
                 "target": {"modality": "MR", "layout": "phantom", "labelled": True,
                            "normalization": {"method": "percentile", "percentiles": [0.5, 99.5]}},
                 "image_size": image_size, "phantom_subjects": 6, "validation_fraction": 0.0, "labels": labels},
        "training": {"steps": 1000, "batch_size": 2, "fast": fast, "precision": precision, "threads": threads},
    })


def phantom_config(fast: bool) -> RunConfig:
    """The phantom_demo preset on one thread (how the protocol runs it), default or fast path."""
    config = load_config(PHANTOM_PRESET)
    config.training.fast, config.training.threads = fast, 1
    return config


# --- the worker: one trainer in a process of its own --------------------------------------------------
class Worker:
    """A trainer of one run configuration and the measurements made on it."""

    def __init__(self, config: RunConfig, folder: Path) -> None:
        self.trainer = Trainer(config, folder / "run")
        self.trainer.nets.train()
        pretrain, adversarial, _ = self.trainer.phases
        self.phase_start = {"pretrain": 0, "adversarial": pretrain + 1, "segmenter": pretrain + adversarial}

    def step(self, phase: str = "adversarial") -> dict:
        """One ``train_step`` of ``phase`` (at that phase's first steps): wall and process CPU seconds."""
        self.trainer.step = self.phase_start[phase] + 1
        started, cpu = time.perf_counter(), time.process_time()
        self.trainer.train_step()
        return {"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu}

    def passes(self, repeats: int) -> dict:
        """Median seconds of each network's forward + backward at batch 2, and their FLOPs."""
        result = {}
        for name, call in self._pass_calls().items():
            call()
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                call()
                times.append(time.perf_counter() - started)
            result[name] = {"seconds": statistics.median(times), "flops": count_flops(call)}
        return result

    def flops(self) -> dict:
        """FLOPs of one step (it also serves as a warm-up step)."""
        return {"step": count_flops(self.step)}

    def profile(self, rows: int = 15) -> str:
        """A profile table of one step (it also serves as a warm-up step)."""
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            self.step()
        return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)

    def _pass_calls(self) -> dict[str, Callable[[], None]]:
        trainer, nets = self.trainer, self.trainer.nets
        config, dtype = trainer.config, trainer.precision
        size, classes = config.data.image_size, config.num_classes
        layout = torch.channels_last if config.training.fast else torch.contiguous_format
        generator = torch.Generator().manual_seed(0)
        image = (torch.rand(2, config.data.context, size, size, generator=generator) * 2 - 1).contiguous(
            memory_format=layout)
        probabilities = torch.softmax(torch.randn(2, classes, size, size, generator=generator), 1).contiguous(
            memory_format=layout)
        with torch.no_grad():
            maps = nets.attention["CT"](image)[0]

        def backward_of(forward: Callable[[], object]) -> Callable[[], None]:
            def call() -> None:
                nets.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                    outputs = forward()
                outputs = outputs if isinstance(outputs, tuple) else (outputs,)
                sum(output.float().square().mean() for output in outputs).backward()
            return call

        live_maps = maps.detach().requires_grad_()
        return {"attention": backward_of(lambda: nets.attention["CT"](image)),
                "generator": backward_of(lambda: nets.generator("CT", "MR")(image, live_maps)),
                "image discriminator": backward_of(lambda: nets.image_discriminators["CT"](image)),
                "segmentation discriminator": backward_of(lambda: nets.segmentation_discriminator(probabilities))}


def worker_main(kind: str, mode: str, precision: str, threads: int, image_size: int) -> None:
    """Serve JSON commands ``{"command": name, ...arguments}`` from stdin until ``quit``."""
    torch.set_num_threads(threads)
    fast = mode == "ours"
    config = paper_config(fast, precision, threads, image_size) if kind == "paper" else phantom_config(fast)
    with tempfile.TemporaryDirectory() as folder:
        worker = Worker(config, Path(folder))
        print(REPLY + json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            command = request.pop("command")
            if command == "quit":
                break
            print(REPLY + json.dumps(getattr(worker, command)(**request)), flush=True)


# --- the parent: workers timed alternately ------------------------------------------------------------
class WorkerProcess:
    def __init__(self, kind: str, mode: str, precision: str, threads: int, image_size: int = 256) -> None:
        self.name = mode
        command = [sys.executable, "-m", "benchmarks.training", "--worker", kind, mode, "--precision", precision,
                   "--threads", str(threads), "--image-size", str(image_size)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        cwd=REPOSITORY, env=env)
        self._read()

    def call(self, command: str, **arguments) -> object:
        self.process.stdin.write(json.dumps({"command": command, **arguments}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> object:
        for line in self.process.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        raise RuntimeError(f"the {self.name} worker ended (exit status {self.process.wait()}); see its messages above")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write(json.dumps({"command": "quit"}) + "\n")
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def alternate(workers: list[WorkerProcess], rounds: int, **arguments) -> list[dict]:
    """Median wall and CPU seconds of a step per worker, the workers timed in turn, after two warm-ups each."""
    for worker in workers:
        for _ in range(WARM_UP_STEPS):
            worker.call("step", **arguments)
    samples: list[list[dict]] = [[] for _ in workers]
    for _ in range(rounds):
        for worker, found in zip(workers, samples):
            found.append(worker.call("step", **arguments))
    return [medians(found) for found in samples]


def medians(samples: list[dict]) -> dict:
    return {key: statistics.median(sample[key] for sample in samples) for key in ("wall", "cpu")}


def paper_block(args: argparse.Namespace, mode: str, precision: str, details: bool) -> dict:
    """One worker's block: two warm-up steps (with ``details`` the first counts FLOPs), ``args.rounds`` timed
    steps, then with ``details`` the network passes and (ours) a profiled step."""
    worker = WorkerProcess("paper", mode, precision, args.threads, args.image_size)
    try:
        block = {"profile": ""}
        block["flops"] = worker.call("flops") if details else worker.call("step")
        for _ in range(WARM_UP_STEPS - 1):
            worker.call("step")
        block["steps"] = [worker.call("step") for _ in range(args.rounds)]
        if details:
            block["passes"] = worker.call("passes", repeats=args.rounds)
            if args.profile and mode == "ours":
                block["profile"] = worker.call("profile")
        return block
    finally:
        worker.close()


def paper_report(args: argparse.Namespace, precision: str) -> dict:
    blocks: dict[str, list[dict]] = {"fp32": [], "ours": []}
    for mode in ("fp32", "ours", "ours", "fp32"):
        log.info("paper-size step, %s block %d", mode, len(blocks[mode]) + 1)
        blocks[mode].append(paper_block(args, mode, "fp32" if mode == "fp32" else precision,
                                        details=not blocks[mode]))
    modes = ("fp32", "ours")
    return {"steps": [medians([s for block in blocks[m] for s in block["steps"]]) for m in modes],
            "passes": [blocks[m][0]["passes"] for m in modes], "flops": [blocks[m][0]["flops"] for m in modes],
            "profile": blocks["ours"][0]["profile"]}


def phantom_report(args: argparse.Namespace) -> dict:
    workers = [WorkerProcess("phantom", "fp32", "fp32", 1), WorkerProcess("phantom", "ours", "fp32", 1)]
    try:
        phases = {phase: alternate(workers, 3 * args.rounds, phase=phase)
                  for phase in ("pretrain", "adversarial", "segmenter")}
    finally:
        for worker in workers:
            worker.close()
    t = phantom_config(False).training
    return {"phases": phases, "steps": {"pretrain": t.pretrain_attention_steps, "adversarial": t.steps,
                                        "segmenter": t.segmenter_steps}}


def markdown(r: dict) -> str:
    peaks, ours_peak = r["peaks"], r["peaks"][r["precision"]]
    lines = [f"## Training benchmark ({r['device_kind']})", "",
             f"{r['date']} · {r['machine']} · torch {torch.__version__} · {r['threads']} thread(s) · load average "
             f"{r['load_before']:.2f} before, {r['load_after']:.2f} after · ours: `training.fast: true`, "
             f"{r['precision']}", "",
             f"Matmul peaks measured here: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s.", ""]
    p = r["paper"]
    fp32_step, our_step = p["steps"][0], p["steps"][1]
    step_gflop = p["flops"][0]["step"] / 1e9
    lines += [f"Paper-size step ({r['image_size']}², K = 8, paper widths, batch 2, every loss, both updates), medians of "
              f"{2 * r['rounds']} steps in blocks fp32, ours, ours, fp32; counted FLOPs {step_gflop:.0f} GFLOP per step (ours: "
              f"{p['flops'][1]['step'] / 1e9:.0f}):", "",
              "| | fp32 (default) | ours | fp32 / ours |", "|---|---:|---:|---:|",
              f"| wall s per step | {fp32_step['wall']:.2f} | {our_step['wall']:.2f} | "
              f"{fp32_step['wall'] / our_step['wall']:.2f}x |",
              f"| process CPU s per step | {fp32_step['cpu']:.2f} | {our_step['cpu']:.2f} | "
              f"{fp32_step['cpu'] / our_step['cpu']:.2f}x |",
              f"| GFLOP/s | {step_gflop / fp32_step['wall']:.0f} | {step_gflop / our_step['wall']:.0f} | |",
              f"| % of the matching matmul peak | {100 * step_gflop / fp32_step['wall'] / peaks['fp32']:.0f} % | "
              f"{100 * step_gflop / our_step['wall'] / ours_peak:.0f} % | |", "",
              "Per network pass (forward + backward, batch 2; passes per step as in the default path):", "",
              "| network | GFLOP/pass | passes/step | fp32 ms | ours ms | fp32 / ours | fp32 GFLOP/s | ours GFLOP/s "
              "| ours % of peak |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    in_passes = [0.0, 0.0]
    for name, count in PASSES_PER_STEP.items():
        default, ours = p["passes"][0][name], p["passes"][1][name]
        gflop = default["flops"] / 1e9
        in_passes[0] += count * default["seconds"]
        in_passes[1] += count * ours["seconds"]
        lines.append(f"| {name} | {gflop:.1f} | {count} | {1000 * default['seconds']:.0f} | "
                     f"{1000 * ours['seconds']:.0f} | {default['seconds'] / ours['seconds']:.2f}x | "
                     f"{gflop / default['seconds']:.0f} | {gflop / ours['seconds']:.0f} | "
                     f"{100 * gflop / ours['seconds'] / ours_peak:.0f} % |")
    lines += ["", f"These passes, times their number per step, add up to {in_passes[0]:.1f} s of fp32's "
              f"{fp32_step['wall']:.1f} s step (the rest: losses, optimisers, data) and to {in_passes[1]:.1f} s of "
              f"our {our_step['wall']:.1f} s (ours stacks some passes into larger, faster ones, which this sum of "
              "batch-2 passes does not see)."]
    if p["profile"]:
        lines += ["", "Where our step spends its time (torch.profiler, self CPU):", "", "```", p["profile"].rstrip(), "```"]
    f = r.get("phantom")
    if f:
        lines += ["", f"phantom_demo preset, one thread, s per step (medians of {3 * r['rounds']} alternating rounds):",
                  "", "| phase | steps | default | fast | default / fast |", "|---|---:|---:|---:|---:|"]
        totals = [0.0, 0.0]
        for phase, (default, fast) in f["phases"].items():
            steps = f["steps"][phase]
            totals[0] += steps * default["wall"]
            totals[1] += steps * fast["wall"]
            lines.append(f"| {phase} | {steps} | {default['wall']:.3f} | {fast['wall']:.3f} | "
                         f"{default['wall'] / fast['wall']:.2f}x |")
        lines.append(f"| whole preset (steps x median) | | {totals[0] / 60:.1f} min | {totals[1] / 60:.1f} min | "
                     f"{totals[0] / totals[1]:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="ours")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="paper-size step (default: all)")
    parser.add_argument("--image-size", type=int, default=256, help="of the paper-size step (the paper's: 256)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="timed steps per block (paper size: 2 blocks per path; phantom: 3x as many rounds)")
    parser.add_argument("--no-phantom", dest="phantom", action="store_false", help="skip the phantom preset")
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="skip the profile of our step")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.worker:
        logging.getLogger().setLevel(logging.WARNING)
        worker_main(*args.worker, args.precision, args.threads, args.image_size)
        return

    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    log.info("measuring matmul peaks on %d thread(s)", args.threads)
    peaks = matmul_peaks(torch.device("cpu"))
    precision = args.precision
    if precision == "auto":
        precision = "bf16" if cpu_bf16_is_faster() else "fp32"
    report = {"device_kind": "CPU", "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
              "machine": f"{cpu_model_name()}, {os.cpu_count()} cores", "threads": args.threads, "peaks": peaks,
              "precision": precision, "rounds": args.rounds, "image_size": args.image_size, "paper": paper_report(args, precision)}
    if args.phantom:
        log.info("phantom_demo preset, one thread")
        report["phantom"] = phantom_report(args)
    report["load_before"], report["load_after"] = load_before, os.getloadavg()[0]
    text = markdown(report)
    print(text)
    if not args.no_write:
        write_section(text, "## Training benchmark (CPU)", RESULTS)
        log.info("updated %s", RESULTS)
    fp32_step, our_step = (s["wall"] for s in report["paper"]["steps"])
    print(f"paper-size step: fp32 {fp32_step:.2f} s, ours {our_step:.2f} s, ratio {fp32_step / our_step:.2f}")


if __name__ == "__main__":
    main()
