"""``sasan train`` stops cleanly on request, reports progress as lines and exports its model file."""
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from sasan import bundle
from sasan.progress import parse_progress_line
from sasan.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from sasan.training.stop import StopRequest, TrainingStopped, request_stop
from sasan.training.trainer import Trainer

from .test_resume import assert_same, final_weights
from .tiny import TINY_RUN, tiny_config

INTERRUPTED = 130


def test_a_stopped_run_has_a_checkpoint_and_resumes_exactly(tmp_path):
    Trainer(tiny_config(), tmp_path / "straight").fit()
    trainer = Trainer(tiny_config(), tmp_path / "stopped", stop=lambda: trainer.step >= 3)
    with pytest.raises(TrainingStopped, match="at step 3"):
        trainer.fit()
    assert load_checkpoint(latest_checkpoint(tmp_path / "stopped"))["step"] == 3  # between checkpoints (every 2)
    Trainer(tiny_config(), tmp_path / "stopped", resume=True).fit()
    assert_same(final_weights(tmp_path / "straight"), final_weights(tmp_path / "stopped"))


def test_a_request_during_the_last_step_lets_the_run_finish(tmp_path):
    trainer = Trainer(tiny_config(), tmp_path, stop=lambda: True)
    trainer.total_steps = 1
    assert trainer.fit() == tmp_path


def test_the_stop_file_and_signals_ask_for_a_stop(tmp_path):
    stop = StopRequest(tmp_path / "run")
    assert not stop()
    assert request_stop(tmp_path / "run") == stop.file and stop()
    stop.clear()
    assert not stop() and not stop.file.exists()
    before = signal.getsignal(signal.SIGTERM)
    with stop.on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal: at once
    assert signal.getsignal(signal.SIGTERM) == before


def long_run_config(tmp_path, steps=400):
    config = dict(TINY_RUN, training=dict(TINY_RUN["training"], steps=steps, checkpoint_every=1000,
                                          validate_every=1000))
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_training(config, run, *options):
    return subprocess.Popen([sys.executable, "-m", "sasan", "train", str(config), "--output", str(run),
                             "--progress-lines", *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_progress(process):
    """Read the child's stdout until its first progress line (training has begun)."""
    for line in process.stdout:
        if parse_progress_line(line) is not None:
            return
    pytest.fail(f"no progress line; exit {process.wait()}: {process.stderr.read()[-2000:]}")


@pytest.mark.parametrize("how", ["file", "sigterm"])
def test_a_running_training_process_stops_with_a_checkpoint(tmp_path, how):
    run = tmp_path / "run"
    process = start_training(long_run_config(tmp_path), run, "--export", str(run / "model.safetensors"))
    try:
        wait_for_progress(process)
        if how == "file":
            request_stop(run)
        else:
            process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=120)
    finally:
        process.kill()
    stderr = process.stderr.read()
    assert status == INTERRUPTED, stderr[-2000:]
    assert "stopped at step" in stderr and "--resume" in stderr
    (checkpoint,) = list_checkpoints(run)  # none was due before step 1000: this one is the stop's
    assert 0 < load_checkpoint(checkpoint)["step"] < 408
    assert not (run / "STOP").exists() and not (run / "model.safetensors").exists()


def test_progress_lines_then_the_model_file(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_RUN))
    model = tmp_path / "out" / "tiny.safetensors"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "sasan", "train", str(config), "--output", str(tmp_path / "run"),
                           "--progress-lines", "--export", str(model)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    reports = [parse_progress_line(line) for line in done.stdout.splitlines()]
    assert reports and None not in reports, done.stdout  # nothing but progress lines on stdout
    fractions = [report.fraction for report in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and reports[-1].message == "step 8 of 8"
    assert "training:" not in done.stderr  # no progress bar
    assert bundle.read_card(model).name == "test_tiny" and time.monotonic() - started < 300


def test_an_export_file_that_cannot_be_written_is_refused_before_training(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_RUN))
    (tmp_path / "file").write_text("")
    done = subprocess.run([sys.executable, "-m", "sasan", "train", str(config), "--output", str(tmp_path / "run"),
                           "--export", str(tmp_path / "file" / "model.safetensors")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "model.safetensors" in done.stderr
    assert not (tmp_path / "run").exists()
