"""The trainer's headless script, its command line, and its live log turned into progress."""
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from SASANTrainerLib import train as train_script
from SASANTrainerLib.command import MODEL_FILE_NAME, TRAIN_SCRIPT, training_command
from SASANTrainerLib.training_log import OutputReader, Progress, parse_progress

FAKE_CLI = textwrap.dedent('''
    import json, os, sys
    def main(argv):
        with open(os.environ["FAKE_CLI_LOG"], "a") as log:
            log.write(json.dumps(argv) + "\\n")
        if argv[0] == "export":
            open(argv[3], "w").write("model")
        return int(os.environ.get("FAKE_CLI_STATUS", "0"))
''')


def fake_extension(tmp_path) -> Path:
    """An installed-extension layout: <modules>/sasan (a fake engine CLI) and <modules>/SASANTrainerLib/train.py."""
    modules = tmp_path / "qt-scripted-modules"
    (modules / "sasan").mkdir(parents=True)
    (modules / "sasan" / "__init__.py").write_text("")
    (modules / "sasan" / "cli.py").write_text(FAKE_CLI)
    (modules / "SASANTrainerLib").mkdir()
    script = modules / "SASANTrainerLib" / "train.py"
    script.write_text(TRAIN_SCRIPT.read_text())
    return script


def run_script(script, arguments, tmp_path, status=0):
    log = tmp_path / "calls.jsonl"
    environment = {"PATH": "/usr/bin:/bin", "FAKE_CLI_LOG": str(log), "FAKE_CLI_STATUS": str(status)}
    # -I -S: isolated and without site-packages (where the real engine is installed), so only the
    # script's own sys.path logic can find the fake engine
    completed = subprocess.run([sys.executable, "-I", "-S", str(script), *arguments], env=environment,
                               capture_output=True, text=True, timeout=60)
    calls = [__import__("json").loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return completed.returncode, calls, completed.stderr


def test_arguments_after_double_dash_go_to_sasan_train_and_status_is_returned(tmp_path):
    script = fake_extension(tmp_path)
    status, calls, _ = run_script(script, ["--no-splash", "--", "cfg.yaml", "--resume", "--output", "run"], tmp_path, 3)
    assert status == 3
    assert calls == [["train", "cfg.yaml", "--resume", "--output", "run"]]


def test_without_double_dash_every_argument_goes_to_train_and_export_follows_success(tmp_path):
    script = fake_extension(tmp_path)
    model = tmp_path / "out" / "m.safetensors"
    model.parent.mkdir()
    status, calls, _ = run_script(script, ["cfg.yaml", "--output", "run", "--export", str(model)], tmp_path)
    assert status == 0
    assert calls == [["train", "cfg.yaml", "--output", "run"], ["export", "run", "-o", str(model), "--overwrite"]]
    assert model.read_text() == "model"


def test_no_export_after_a_failed_training(tmp_path):
    script = fake_extension(tmp_path)
    status, calls, _ = run_script(script, ["cfg.yaml", "--output", "run", "--export=m.safetensors"], tmp_path, 2)
    assert status == 2 and calls == [["train", "cfg.yaml", "--output", "run"]]


def test_missing_engine_exits_with_a_message(tmp_path):
    script = fake_extension(tmp_path)
    (script.parent.parent / "sasan" / "__init__.py").unlink()
    (script.parent.parent / "sasan" / "cli.py").unlink()
    status, calls, stderr = run_script(script, ["cfg.yaml"], tmp_path)
    assert status == 1 and calls == []
    assert "SASAN engine (package 'sasan') was not found" in stderr


def test_source_tree_layout_finds_the_engine_two_levels_up(tmp_path):
    script = tmp_path / "repo" / "SASANTrainer" / "SASANTrainerLib" / "train.py"
    assert train_script.engine_roots(script) == [tmp_path / "repo" / "SASANTrainer", tmp_path / "repo"]


def test_split_export_and_script_arguments():
    assert train_script.script_arguments(["train.py", "a", "b"]) == ["a", "b"]
    assert train_script.script_arguments(["Slicer", "--x", "--", "a"]) == ["a"]
    assert train_script.split_export(["c.yaml", "--export", "m", "--resume"]) == (["c.yaml", "--resume"], "m")
    with pytest.raises(SystemExit, match="needs a model file"):
        train_script.split_export(["c.yaml", "--export"])


def test_training_command_runs_unbuffered_in_the_config_folder_and_exports_into_the_run(tmp_path):
    config = tmp_path / "configs" / "tiny.yaml"
    config.parent.mkdir()
    config.write_text("name: tiny\n")
    command = training_command(config, tmp_path / "run", resume=False, steps=4, device="cpu", program="python")
    assert command.program == "python" and command.working_directory == config.parent
    assert command.model_file == tmp_path / "run" / MODEL_FILE_NAME
    assert command.arguments == ["-u", str(TRAIN_SCRIPT), str(config), "--output", str(tmp_path / "run"),
                                 "--export", str(command.model_file), "--steps", "4", "--device", "cpu"]


def test_training_command_refuses_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        training_command(tmp_path / "none.yaml", tmp_path / "run")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="not a YAML"):
        training_command(tmp_path / "config.json", tmp_path / "run")
    config = tmp_path / "c.yaml"
    config.write_text("name: c\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_text("")
    with pytest.raises(ValueError, match="not empty: tick Resume"):
        training_command(config, tmp_path / "run")
    assert "--resume" in training_command(config, tmp_path / "run", resume=True).arguments
    shipped = Path(__file__).resolve().parents[2] / "Resources" / "configs"
    with pytest.raises(ValueError, match="data.source.root: 'data/brats' is a relative folder"):
        training_command(shipped / "brats_t2_to_t1.yaml", tmp_path / "brats")
    assert training_command(shipped / "phantom_tiny.yaml", tmp_path / "tiny").working_directory == shipped


def test_a_real_tqdm_bar_is_parsed():
    tqdm = pytest.importorskip("tqdm").tqdm
    stream = io.StringIO()
    bar = tqdm(total=40, desc="training", unit="step", file=stream, mininterval=0, ascii=False)
    bar.update(18)
    bar.set_postfix({"cycle": "0.123"})
    bar.close()
    lines = OutputReader().feed(stream.getvalue())
    assert Progress("training", 18, 40) in [parse_progress(line) for line in lines]
    assert parse_progress("12:00:01 INFO sasan: run finished: runs/x (export it with ...)") is None
    assert parse_progress(" 50%|#####     | 2/4 [00:01<00:01]") == Progress("progress", 2, 4)
    assert Progress("training", 18, 40).fraction == pytest.approx(0.45)


def test_output_reader_reassembles_chunks_split_anywhere():
    reader = OutputReader()
    assert reader.feed("12:00 INFO start\ntrain") == ["12:00 INFO start"]
    assert reader.feed("ing: 10%|#| 1/10\rtraining: 20%|##| 2/10\r") == [
        "training: 10%|#| 1/10", "training: 20%|##| 2/10"]
    assert reader.feed("\r\ndone") == []
    assert reader.flush() == ["done"] and reader.flush() == []
