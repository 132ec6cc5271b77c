"""The Trainer module's command (the engine's ``sasan train``), as built and as run, and its output read back."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from SASANTrainerLib.command import new_run_folder, training_command
from SASANTrainerLib.training_log import OutputReader

from Testing.training.tiny import TINY_RUN

REPOSITORY = Path(__file__).resolve().parents[2]
SHIPPED = REPOSITORY / "Resources" / "configs"

FAKE_MAIN = textwrap.dedent('''
    import json, os, sys
    with open(os.environ["FAKE_LOG"], "w") as log:
        json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "file": __file__}, log)
    sys.exit(int(os.environ.get("FAKE_STATUS", "0")))
''')


def write_config(folder: Path, mapping=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "c.yaml").write_text(yaml.safe_dump(mapping or {"name": "c"}))
    return folder / "c.yaml"


def test_the_command_is_sasan_train_with_progress_lines_and_export_into_the_run(tmp_path):
    config = write_config(tmp_path / "configs")
    command = training_command(config, tmp_path / "run", tmp_path / "modules", resume=False, steps=4, device="cpu",
                               program="python", inherited={"PYTHONPATH": "/slicer/lib"})
    assert command.program == "python" and command.working_directory == config.parent
    assert command.run_folder == tmp_path / "run" and command.model_file == tmp_path / "run" / "model.safetensors"
    assert command.arguments == ["-u", "-m", "sasan", "train", str(config), "--output", str(tmp_path / "run"),
                                 "--export", str(command.model_file), "--progress-lines", "--steps", "4",
                                 "--device", "cpu"]
    assert command.environment == {"PYTHONPATH": f"{tmp_path / 'modules'}{os.pathsep}/slicer/lib",
                                   "PYTHONUNBUFFERED": "1"}
    assert training_command(config, tmp_path / "run", tmp_path, inherited={}).environment["PYTHONPATH"] == str(tmp_path)


def test_the_command_finds_the_engine_installed_beside_the_modules(tmp_path):
    """An installed-extension layout: <modules>/sasan is found through PYTHONPATH, from the config's folder."""
    modules = tmp_path / "qt-scripted-modules"
    (modules / "sasan").mkdir(parents=True)
    (modules / "sasan" / "__init__.py").write_text("")
    (modules / "sasan" / "__main__.py").write_text(FAKE_MAIN)
    config = write_config(tmp_path / "my configs")
    command = training_command(config, tmp_path / "run", modules, resume=True, program=sys.executable, inherited={})
    environment = {"PATH": os.environ.get("PATH", ""), "FAKE_LOG": str(tmp_path / "log.json"), "FAKE_STATUS": "3",
                   **command.environment}
    done = subprocess.run([command.program, *command.arguments], cwd=command.working_directory, env=environment,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    call = json.loads((tmp_path / "log.json").read_text())
    assert Path(call["file"]).parent == modules / "sasan" and Path(call["cwd"]) == config.parent
    assert call["argv"] == ["train", str(config), "--output", str(tmp_path / "run"), "--export",
                            str(command.model_file), "--progress-lines", "--resume"]


def test_the_command_trains_and_exports_with_the_engine(tmp_path):
    from sasan.card import read_card

    from sasan.progress import parse_progress_line

    config = write_config(tmp_path / "configs", TINY_RUN)
    command = training_command(config, tmp_path / "run", REPOSITORY, program=sys.executable)
    done = subprocess.run([command.program, *command.arguments], cwd=command.working_directory,
                          env={**os.environ, "SASAN_CACHE": str(tmp_path / "cache"), **command.environment},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    lines = OutputReader().feed(done.stdout)  # merged, as the module reads them
    reports = [parse_progress_line(line) for line in lines]
    assert [r for r in reports if r is not None][-1].fraction == 1.0
    assert any(r is None and "run finished" in line for r, line in zip(reports, lines))
    assert read_card(command.model_file).name == "test_tiny"


def test_the_command_refuses_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        training_command(tmp_path / "none.yaml", tmp_path / "run", REPOSITORY)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="not a YAML"):
        training_command(tmp_path / "config.json", tmp_path / "run", REPOSITORY)
    config = write_config(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_text("")
    with pytest.raises(ValueError, match="not empty: tick Resume"):
        training_command(config, tmp_path / "run", REPOSITORY)
    assert "--resume" in training_command(config, tmp_path / "run", REPOSITORY, resume=True).arguments
    with pytest.raises(ValueError, match="data.source.root: 'data/brats' is a relative folder"):
        training_command(SHIPPED / "brats_t2_to_t1.yaml", tmp_path / "brats", REPOSITORY)
    assert training_command(SHIPPED / "phantom_tiny.yaml", tmp_path / "tiny", REPOSITORY).working_directory == SHIPPED


def test_every_new_run_folder_is_a_new_one(tmp_path):
    first = new_run_folder(tmp_path, now=0)
    assert first.parent == tmp_path and first.name.startswith("run-") and not first.exists()
    first.mkdir()
    second = new_run_folder(tmp_path, now=0)  # the same second: still a folder of its own
    assert second == tmp_path / f"{first.name}-2"


def test_output_reader_reassembles_chunks_split_anywhere():
    reader = OutputReader()
    assert reader.feed("12:00 INFO start\nSASAN-PROG") == ["12:00 INFO start"]
    assert reader.feed('RESS {"fraction": 0.1}\rbar 20%\r') == ['SASAN-PROGRESS {"fraction": 0.1}', "bar 20%"]
    assert reader.feed("\r\ndone") == []
    assert reader.flush() == ["done"] and reader.flush() == []
