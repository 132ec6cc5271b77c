"""Crash-safe training: ``sasan train`` killed with SIGKILL at random moments resumes to the same weights.

The experiment itself lives in ``benchmarks/kill_resume.py`` (which also records its figure in
``benchmarks/RESULTS.md``); here it runs with 3 kills by default and 12 when slow tests are asked for.
After every kill each checkpoint on disk must load (the experiment raises otherwise).
"""
import importlib.util
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_experiment():
    spec = importlib.util.spec_from_file_location("kill_resume", ROOT / "benchmarks" / "kill_resume.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


kill_resume = load_experiment()


def check(experiment, kills: int) -> None:
    assert len(experiment.kills) == kills, experiment.kills
    assert experiment.identical, experiment.differing
    writes = [k for k in experiment.kills if k.moment == kill_resume.CHECKPOINT_WRITE]
    assert writes and all(k.torn_files == 1 for k in writes), experiment.kills
    # A kill throws away at most the steps since the last checkpoint and the step in flight.
    assert experiment.max_steps_lost <= experiment.checkpoint_every + 1


def test_kill_moments_include_checkpoint_writes_and_start_up():
    moments = kill_resume.plan_moments(12, random.Random(0))
    assert len(moments) == 12 and moments.count(kill_resume.CHECKPOINT_WRITE) == 4
    assert moments.count(kill_resume.START_UP) == 1


def test_three_kills_resume_to_the_uninterrupted_weights(tmp_path):
    check(kill_resume.run_experiment(tmp_path, kills=3, seed=1, steps=8), kills=3)


@pytest.mark.slow
def test_twelve_kills_resume_to_the_uninterrupted_weights(tmp_path):
    experiment = kill_resume.run_experiment(tmp_path, kills=12, seed=2)
    check(experiment, kills=12)
    assert experiment.count(kill_resume.START_UP) >= 1
