"""Data-parallel training with torchrun (gloo, 2 CPU processes): ranks stay identical and learn."""
import os
import subprocess
import sys
from pathlib import Path

import torch


def test_two_ranks_hold_identical_weights_after_training(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                    str(worker), str(tmp_path)], check=True, env=env, capture_output=True, timeout=300)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    changed = 0
    for key, value in rank0["after"].items():
        assert torch.equal(value, rank1["after"][key]), key
        changed += int(not torch.equal(value, rank0["before"][key]))
    assert changed > 0.5 * len(rank0["after"])       # the step really updated the networks
    assert (tmp_path / "run" / "checkpoints").is_dir()  # rank 0 wrote the checkpoint
