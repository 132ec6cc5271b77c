"""Checkpoints resume exactly: same weights as an uninterrupted run of the same length."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from sasan.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from sasan.training.trainer import Trainer

from .tiny import CYCLEGAN, TINY_RUN, tiny_config


def final_weights(run_dir):
    return load_checkpoint(latest_checkpoint(run_dir))["networks"]


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("sections", [{}, {**CYCLEGAN, "training": {"pretrain_attention_steps": 0}},
                                      {"training": {"fast": True}}, {"training": {"fast": True, "precision": "bf16"}}],
                         ids=["sasan", "cyclegan", "sasan-fast", "sasan-fast-bf16"])
def test_resume_in_process_matches_uninterrupted_run(tmp_path, sections):
    Trainer(tiny_config(**sections), tmp_path / "straight").fit()
    # Stop after the first checkpoint (step 2, inside the adversarial phase), then resume to the end.
    interrupted = Trainer(tiny_config(**sections), tmp_path / "resumed")
    interrupted.total_steps = 4
    interrupted.fit()
    resumed = Trainer(tiny_config(**sections), tmp_path / "resumed", resume=True)
    assert resumed.step == 4
    resumed.fit()
    assert_same(final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed"))


def test_segmenter_with_intensity_augmentation_resumes_exactly(tmp_path):
    def config(enabled=True):
        return tiny_config(training={"steps": 0, "pretrain_attention_steps": 0, "segmenter_steps": 4},
                           data={"segmenter_intensity_augment": {"enabled": enabled, "probability": 1.0}})
    Trainer(config(), tmp_path / "straight").fit()
    Trainer(config(enabled=False), tmp_path / "plain").fit()
    interrupted = Trainer(config(), tmp_path / "resumed")
    interrupted.total_steps = 2
    interrupted.fit()
    Trainer(config(), tmp_path / "resumed", resume=True).fit()
    assert_same(final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed"))
    plain = final_weights(tmp_path / "plain")   # the augmentation did change what the U-Net saw
    assert any(not torch.equal(plain[k], v) for k, v in final_weights(tmp_path / "straight").items())


def test_existing_run_is_not_overwritten_without_resume(tmp_path):
    Trainer(tiny_config(training={"steps": 1, "pretrain_attention_steps": 0, "segmenter_steps": 0,
                                  "checkpoint_every": 1}), tmp_path).fit()
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(tiny_config(), tmp_path)


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    """A real process killed with SIGKILL after a checkpoint resumes to identical weights."""
    config = dict(TINY_RUN, training=dict(TINY_RUN["training"], steps=8, checkpoint_every=1))
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ)
    command = [sys.executable, "-m", "sasan", "train", str(path)]
    subprocess.run(command + ["--output", str(tmp_path / "straight")], check=True, env=env,
                   capture_output=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen(command + ["--output", str(killed)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list_checkpoints(killed)) < 1 or load_checkpoint(latest_checkpoint(killed))["step"] < 5:
        assert time.monotonic() < deadline and process.poll() is None, "training ended before the kill"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_at = load_checkpoint(latest_checkpoint(killed))["step"]
    assert stopped_at < 12
    subprocess.run(command + ["--output", str(killed), "--resume"], check=True, env=env, capture_output=True)
    assert_same(final_weights(tmp_path / "straight"), final_weights(killed))


def test_a_folder_with_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a SASAN run folder"):
        Trainer(tiny_config(), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "config.yaml").exists()


def test_partial_checkpoint_write_is_discarded_on_resume(tmp_path):
    Trainer(tiny_config(training={"steps": 2, "pretrain_attention_steps": 0, "segmenter_steps": 0,
                                  "checkpoint_every": 1}), tmp_path).fit()
    partial = tmp_path / "checkpoints" / ".step_abc.tmp"
    partial.write_bytes(b"torn")
    Trainer(tiny_config(training={"steps": 3, "pretrain_attention_steps": 0, "segmenter_steps": 0,
                                  "checkpoint_every": 1}), tmp_path, resume=True).fit()
    assert not partial.exists() and load_checkpoint(latest_checkpoint(tmp_path))["step"] == 3
