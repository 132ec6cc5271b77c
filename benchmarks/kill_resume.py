"""Kill ``sasan train`` with SIGKILL at random moments, resume it each time, and compare with an unbroken run.

    .venv/bin/python -m benchmarks.kill_resume                 # 20 kills; writes its section of RESULTS.md
    .venv/bin/python -m benchmarks.kill_resume --kills 5 --no-write

A tiny deterministic run on the phantom (32², narrow networks, all three phases: attention pre-training,
adversarial training, the U-Net; checkpoint every 2 steps) is trained once without interruption, then
again while being killed ``--kills`` times, each kill at a random moment of one of three kinds: during
start-up, during a training step, or half-way through writing a checkpoint. After every kill each
checkpoint on disk must load, and the run is resumed with ``--resume``. The figure: kills survived,
the steps each kill threw away (at most ``checkpoint_every`` + the step in flight), and whether the
final weights (networks and their EMA) equal the unbroken run's bit for bit.

The training processes are real ``sasan train`` processes (``sasan.cli.main``) with two observers
added (``LAUNCHER``): a marker file says which step is running, and ``torch.save`` pauses half-way
through each checkpoint file so that a kill can land inside the write. Neither changes any number.
``Testing/training/test_kill_resume.py`` runs the same experiment (3 kills by default, 12 when slow).
"""
from __future__ import annotations

import argparse
import copy
import datetime
import logging
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import yaml

from sasan.demo import merge
from sasan.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from sasan.training.run_folder import CHECKPOINT_DIR
from Testing.training.tiny import TINY_RUN

log = logging.getLogger("benchmarks.kill_resume")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SECTION = "## Kill and resume"

START_UP, TRAINING_STEP, CHECKPOINT_WRITE = "start-up", "training step", "checkpoint write"
WRITE_PAUSE_S = 0.2       # torch.save pauses this long half-way through every checkpoint file
POLL_S = 0.005
TIMEOUT_S = 300.0

# The tiny run of the training tests, longer, with a checkpoint every 2 steps.
RUN_CONFIG = merge(TINY_RUN, {
    "name": "kill_resume",
    "training": {"pretrain_attention_steps": 4, "steps": 20, "segmenter_steps": 6, "device": "cpu",
                 "validate_every": 8, "image_every": 8},
})

# ``python -c LAUNCHER train CONFIG --output RUN [--resume]``: sasan's own CLI, observed through a marker
# file ("step N": step N is being computed; "writing N": the checkpoint of step N is being written).
LAUNCHER = r"""
import io, os, sys, time
import torch
from sasan import cli
from sasan.training import trainer

marker, pause = os.environ["KILL_RESUME_MARKER"], float(os.environ["KILL_RESUME_WRITE_PAUSE"])

def mark(text):
    with open(marker + ".new", "w") as stream:
        stream.write(text)
    os.replace(marker + ".new", marker)

real_save, real_step = torch.save, trainer.Trainer.train_step

def save_with_a_pause(obj, stream, *args, **kwargs):
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    stream.write(data[: len(data) // 2])
    stream.flush()
    mark(f"writing {obj['step']}")
    time.sleep(pause)
    stream.write(data[len(data) // 2 :])

def observed_step(self):
    mark(f"step {self.step}")
    return real_step(self)

torch.save, trainer.Trainer.train_step = save_with_a_pause, observed_step
sys.exit(cli.main(sys.argv[1:]))
"""


@dataclass
class Kill:
    """One SIGKILL: when it landed, how far the run had got, and what survived on disk."""

    planned: str
    moment: str                 # what the process was doing when killed (from the marker)
    steps_done: int             # steps computed or in flight when killed
    checkpoint_step: int        # step of the newest checkpoint left on disk (0: none)
    torn_files: int             # temporary files this kill cut off mid-write
    checkpoints: int            # checkpoints on disk, every one of them loaded successfully

    @property
    def steps_lost(self) -> int:
        return max(0, self.steps_done - self.checkpoint_step)


@dataclass
class Experiment:
    phases: tuple[int, int, int]    # steps of attention pre-training, adversarial training, U-Net training
    checkpoint_every: int
    kills: list[Kill] = field(default_factory=list)
    identical: bool = False
    differing: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total_steps(self) -> int:
        return sum(self.phases)

    @property
    def max_steps_lost(self) -> int:
        return max((kill.steps_lost for kill in self.kills), default=0)

    def count(self, moment: str) -> int:
        return sum(kill.moment == moment for kill in self.kills)


def run_config(steps: int) -> dict:
    """The tiny run with ``steps`` adversarial steps (pre-training and U-Net phases as in ``RUN_CONFIG``)."""
    config = copy.deepcopy(RUN_CONFIG)
    config["training"]["steps"] = steps
    return config


def plan_moments(kills: int, rng: random.Random) -> list[str]:
    """A third of the kills inside checkpoint writes, one (from 4 kills on) during start-up, the rest in steps."""
    writes = max(1, kills // 3)
    start_ups = 1 if kills >= 4 else 0
    moments = [CHECKPOINT_WRITE] * writes + [START_UP] * start_ups + [TRAINING_STEP] * (kills - writes - start_ups)
    rng.shuffle(moments)
    return moments


def _environment(marker: Path) -> dict:
    env = dict(os.environ, KILL_RESUME_MARKER=str(marker), KILL_RESUME_WRITE_PAUSE=str(WRITE_PAUSE_S))
    env.setdefault("SASAN_CACHE", str(Path(tempfile.gettempdir()) / "sasan_kill_resume_cache"))
    return env


def _start(config: Path, run_dir: Path, marker: Path, resume: bool) -> subprocess.Popen:
    marker.unlink(missing_ok=True)
    command = [sys.executable, "-c", LAUNCHER, "train", str(config), "--output", str(run_dir)]
    return subprocess.Popen(command + (["--resume"] if resume else []), env=_environment(marker),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _read_marker(marker: Path) -> tuple[str, int]:
    """(what the process is doing, step) from the marker; ("", 0) before training starts."""
    try:
        kind, step = marker.read_text().split()
    except (OSError, ValueError):
        return "", 0
    return kind, int(step)


def _checkpoint_step(run_dir: Path) -> int:
    latest = latest_checkpoint(run_dir)
    return int(latest.name[len("step_"):-len(".ckpt")]) if latest is not None else 0


def _wait_for_moment(process: subprocess.Popen, marker: Path, planned: str, target: int,
                     rng: random.Random) -> bool:
    """Wait until the planned moment comes at or after step ``target``; False if the run ended first."""
    deadline = time.monotonic() + TIMEOUT_S
    if planned == START_UP:
        time.sleep(rng.uniform(0.0, 2.0))
        return process.poll() is None
    while time.monotonic() < deadline and process.poll() is None:
        kind, step = _read_marker(marker)
        if planned == CHECKPOINT_WRITE and kind == "writing" and step >= target:
            return True
        if planned == TRAINING_STEP and kind == "step" and step >= target:
            time.sleep(rng.uniform(0.0, 0.1))  # somewhere inside the step (or just after it)
            return process.poll() is None
        time.sleep(POLL_S)
    if process.poll() is None:
        raise TimeoutError(f"the training process never reached a {planned} moment")
    return False


def _inspect(run_dir: Path) -> tuple[int, set[str]]:
    """(checkpoints on disk, names of torn temporary files); raises if any checkpoint cannot be loaded."""
    checkpoints = list_checkpoints(run_dir)
    for path in checkpoints:
        state = load_checkpoint(path)  # CheckpointError if unreadable
        if f"step_{int(state['step']):08d}.ckpt" != path.name:
            raise AssertionError(f"{path} holds step {state['step']}")
    folder = run_dir / CHECKPOINT_DIR
    return len(checkpoints), {p.name for p in folder.glob(".step_*.tmp")} if folder.is_dir() else set()


def _finish(process: subprocess.Popen, what: str) -> None:
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    if process.returncode != 0:
        raise RuntimeError(f"{what} failed with status {process.returncode}: {stderr.strip()[-2000:]}")


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    """The last checkpoint's networks and EMA weights, flattened to name -> tensor."""
    state = load_checkpoint(latest_checkpoint(run_dir))
    flat = {f"networks.{name}": tensor for name, tensor in state["networks"].items()}
    for module, weights in state.get("ema", {}).items():
        flat.update({f"ema.{module}.{name}": tensor for name, tensor in weights.items()})
    return flat


def differences(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> list[str]:
    """Names whose tensors are not bit-identical (or exist on one side only)."""
    names = sorted(set(first) | set(second))
    return [n for n in names if n not in first or n not in second or not torch.equal(first[n], second[n])]


def run_experiment(work: Path, kills: int, seed: int = 0, steps: Optional[int] = None) -> Experiment:
    """Train once straight and once with ``kills`` SIGKILLs (resuming after each) in ``work``; compare.

    ``steps``: adversarial steps (default: enough for every kill to land before the run ends).
    """
    started = time.monotonic()
    rng = random.Random(seed)
    steps = steps or max(20, 2 * kills)
    config = run_config(steps)
    t = config["training"]
    work.mkdir(parents=True, exist_ok=True)
    config_file = work / "run.yaml"
    config_file.write_text(yaml.safe_dump(config))
    marker = work / "marker"
    experiment = Experiment((t["pretrain_attention_steps"], steps, t["segmenter_steps"]), t["checkpoint_every"])

    straight, killed = work / "straight", work / "killed"
    # The unbroken run goes on beside the killed one (one thread each).
    unbroken = _start(config_file, straight, work / "straight_marker", resume=False)
    try:
        _kill_and_resume(experiment, config_file, killed, marker, kills, rng)
        _finish(unbroken, "the uninterrupted run")
    finally:
        if unbroken.poll() is None:  # the experiment failed: leave no training process behind
            unbroken.kill()
            unbroken.wait()
    experiment.differing = differences(final_state(straight), final_state(killed))
    experiment.identical = not experiment.differing and _checkpoint_step(killed) == experiment.total_steps
    experiment.seconds = time.monotonic() - started
    return experiment


def _kill_and_resume(experiment: Experiment, config_file: Path, killed: Path, marker: Path, kills: int,
                     rng: random.Random) -> None:
    """Start, kill at the planned moments, check the checkpoints after each kill, then resume to the end."""
    total = experiment.total_steps
    # One kill in each of ``kills`` equal stretches of the run, so that every phase gets some.
    targets = [min(total - 1, max(1, int((i + rng.random()) * total / kills))) for i in range(kills)]
    for number, (planned, target) in enumerate(zip(plan_moments(kills, rng), targets), start=1):
        resumed_at = _checkpoint_step(killed)
        _, torn_before = _inspect(killed)
        process = _start(config_file, killed, marker, resume=number > 1)
        try:
            reached = _wait_for_moment(process, marker, planned, max(target, resumed_at + 1), rng)
        except BaseException:  # leave no training process behind
            process.kill()
            process.wait()
            raise
        if not reached:
            _finish(process, "a run that ended before its kill")
            log.warning("the run ended before kill %d; %d kills made", number, number - 1)
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kind, step = _read_marker(marker)  # read after the kill: the process's very last state
        checkpoints, torn = _inspect(killed)
        torn -= torn_before
        newest = _checkpoint_step(killed)
        # A temporary checkpoint file left by this process: the kill cut a write (maybe before its marker).
        moment = CHECKPOINT_WRITE if torn else START_UP if not kind else TRAINING_STEP
        steps_done = step + 1 if kind == "step" else step
        kill = Kill(planned, moment, max(steps_done, resumed_at), newest, len(torn), checkpoints)
        experiment.kills.append(kill)
        log.info("kill %d (%s): at step %d, newest checkpoint %d, %d step(s) lost, %d torn file(s), "
                 "%d checkpoint(s) all readable", number, moment, kill.steps_done, kill.checkpoint_step,
                 kill.steps_lost, len(torn), checkpoints)
    _finish(_start(config_file, killed, marker, resume=True), "the last resume")
    if _inspect(killed)[1]:
        raise AssertionError("the finished run left torn checkpoint files behind")


def report(experiment: Experiment, seed: int) -> str:
    kills = experiment.kills
    p, s, u = experiment.phases
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    verdict = ("yes, bit for bit (networks and EMA)" if experiment.identical
               else "NO: " + (", ".join(experiment.differing[:3]) or "the resumed run did not reach the last step"))
    lines = [
        SECTION, "",
        f"{when} · {platform.machine()}, {os.cpu_count()} cores · torch {torch.__version__} · "
        f"`python -m benchmarks.kill_resume --kills {len(kills)} --seed {seed}` · {experiment.seconds:.0f} s",
        "",
        f"A tiny deterministic phantom run of {experiment.total_steps} steps (attention pre-training, adversarial, "
        f"U-Net; a checkpoint every {experiment.checkpoint_every} steps), SIGKILLed {len(kills)} times at random "
        "moments and resumed with `--resume` after each.",
        "",
        "| kills survived | in a checkpoint write | in a training step | in start-up | max steps lost | "
        "writes cut off | unreadable checkpoints | final weights = unbroken run |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {len(kills)} | {experiment.count(CHECKPOINT_WRITE)} | {experiment.count(TRAINING_STEP)} | "
        f"{experiment.count(START_UP)} | {experiment.max_steps_lost} | {sum(k.torn_files for k in kills)} | 0 | "
        f"{verdict} |",
        "",
        "Steps lost by each kill: " + ", ".join(f"{k.steps_lost} ({k.moment})" for k in kills) + ".",
        f"The kills came at steps {', '.join(str(k.steps_done) for k in kills)} (pre-training: steps 1-{p}, "
        f"adversarial: {p + 1}-{p + s}, U-Net: {p + s + 1}-{p + s + u}).",
        "A write cut off leaves the checkpoint's temporary file; no complete checkpoint is ever touched, and "
        "the resumed run deletes the temporary file and continues from the previous checkpoint.",
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path = RESULTS) -> None:
    """Replace this benchmark's section of ``path`` (or append it), leaving the other sections alone."""
    lines = path.read_text().splitlines(keepends=True) if path.exists() else ["# Benchmark results\n"]
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        path.write_text("".join(lines).rstrip("\n") + "\n\n" + text)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    path.write_text("".join(lines[:start]) + text + ("\n" + "".join(lines[end:]) if end < len(lines) else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="folder for the runs (default: a temporary folder)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    with tempfile.TemporaryDirectory(prefix="kill_resume.") as scratch:
        experiment = run_experiment(args.work or Path(scratch), args.kills, args.seed)
    text = report(experiment, args.seed)
    print(text)
    if not args.no_write:
        write_section(text)
        log.info("updated %s", RESULTS)
    if not experiment.identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
