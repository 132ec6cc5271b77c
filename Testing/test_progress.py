"""Progress as machine-readable lines: what a child process prints and its parent reads back."""
import io
import json
from pathlib import Path

import pytest

from sasan.progress import (
    PROGRESS_PREFIX,
    ProgressReport,
    format_progress_line,
    parse_progress_line,
    progress_line_printer,
)


def test_a_line_round_trips():
    line = format_progress_line(0.42, "step 420 of 1000")
    assert line == 'SASAN-PROGRESS {"fraction": 0.42, "message": "step 420 of 1000"}'
    assert parse_progress_line(line) == ProgressReport(0.42, "step 420 of 1000")
    assert parse_progress_line(line + "\r\n") == ProgressReport(0.42, "step 420 of 1000")


def test_fractions_are_clipped_and_messages_stay_ascii():
    assert parse_progress_line(format_progress_line(1.5)) == ProgressReport(1.0, "")
    assert parse_progress_line(format_progress_line(-0.1, "début")) == ProgressReport(0.0, "début")
    assert format_progress_line(0.5, "\u2192").isascii()
    with pytest.raises(ValueError, match="finite"):
        format_progress_line(float("nan"))


@pytest.mark.parametrize("line", [
    "", "   ", "12:00:01 INFO sasan: run finished",
    "training:  45%|####5     | 18/40 [00:10<00:12]",
    PROGRESS_PREFIX, PROGRESS_PREFIX + " ", PROGRESS_PREFIX + ' {"fraction": 0.4',  # cut short
    PROGRESS_PREFIX + ' {"fraction": 0.4} trailing', PROGRESS_PREFIX + " [0.4]", PROGRESS_PREFIX + " 0.4",
    PROGRESS_PREFIX + ' {"message": "no fraction"}', PROGRESS_PREFIX + ' {"fraction": "half"}',
    PROGRESS_PREFIX + ' {"fraction": true}', PROGRESS_PREFIX + ' {"fraction": NaN}',
    PROGRESS_PREFIX + ' {"fraction": Infinity}', PROGRESS_PREFIX + ' {"fraction": 0.4, "message": 3}',
    PROGRESS_PREFIX + '{"fraction": 0.4}', "x" + PROGRESS_PREFIX + ' {"fraction": 0.4}',
    'WARNING: ' + PROGRESS_PREFIX + ' {"fraction": 0.4}', "\x00\xff garbage \ufffd",
])
def test_anything_else_is_not_progress(line):
    assert parse_progress_line(line) is None


def test_the_printer_writes_one_flushed_line_per_report():
    class Stream(io.StringIO):
        flushes = 0

        def flush(self):
            Stream.flushes += 1

    stream = Stream()
    report = progress_line_printer(stream)
    report(0.25, "slice 1 of 4")
    report(1.0)
    lines = stream.getvalue().splitlines()
    assert [parse_progress_line(line) for line in lines] == [ProgressReport(0.25, "slice 1 of 4"),
                                                              ProgressReport(1.0, "")]
    assert Stream.flushes == 2 and json.loads(lines[0].split(" ", 1)[1])["fraction"] == 0.25


def test_sasan_translate_prints_progress_lines_instead_of_a_bar(tmp_path, capsys):
    import numpy as np

    from sasan import cli
    from sasan.data.io import write_volume
    from sasan.data.volume import Volume

    model = Path(__file__).resolve().parents[1] / "Resources" / "Models" / "head_ct_mr.safetensors"
    ct = np.random.default_rng(0).uniform(-1000, 1000, (3, 24, 24)).astype(np.float32)
    write_volume(Volume(ct, spacing=(1.0, 1.0, 2.0)), tmp_path / "ct.nii.gz")
    status = cli.main(["translate", str(tmp_path / "ct.nii.gz"), "--model", str(model), "--to", "MR", "-o",
                       str(tmp_path / "mr.nii.gz"), "--device", "cpu", "--threads", "1", "--progress-lines"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    reports = [parse_progress_line(line) for line in captured.out.splitlines()]
    assert reports and None not in reports and reports[-1].fraction == 1.0
    assert "translating" not in captured.err  # no tqdm bar


def test_sasan_translate_reports_device_notes_and_files_once_its_outputs_are_written(tmp_path, monkeypatch, caplog):
    """``--report``: what the Slicer module reads back from its translation process, written after the outputs."""
    import numpy as np

    import sasan.inference
    from sasan import cli
    from sasan.data.io import write_volume
    from sasan.data.volume import Volume

    fallback = "cuda:0 ran out of memory even at one slice per batch; finished on the CPU"
    translate_volume = sasan.inference.translate_volume

    def finished_after_a_fallback(*arguments, **options):  # what a GPU run that fell back to the CPU returns
        result = translate_volume(*arguments, **options)
        result.notes.append(fallback)
        return result

    monkeypatch.setattr(sasan.inference, "translate_volume", finished_after_a_fallback)
    model = Path(__file__).resolve().parents[1] / "Resources" / "Models" / "head_ct_mr.safetensors"
    ct = np.random.default_rng(0).uniform(-1000, 1000, (3, 24, 24)).astype(np.float32)
    write_volume(Volume(ct, spacing=(1.0, 1.0, 2.0)), tmp_path / "ct.mha")
    out = tmp_path / "out"
    arguments = ["translate", str(tmp_path / "ct.mha"), "--model", str(model), "--to", "MR", "--device", "cpu",
                 "--threads", "1", "--progress-lines", "--report", str(out / "report.json")]
    status = cli.main([*arguments, "-o", str(out / "mr.mha"), "--segmentation", str(out / "labels.mha"),
                       "--attention", str(out / "maps")])
    assert status == 0, caplog.text
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    maps = [str(out / "maps" / f"attention_{k:02d}.nii.gz") for k in range(1, 9)]
    assert report["files"] == {"translated": str(out / "mr.mha"), "segmentation": str(out / "labels.mha"),
                               "attention": maps}
    assert report["device"] == "cpu" and report["notes"] == [fallback] and report["seconds"] > 0
    assert all(Path(path).is_file() for path in [report["files"]["translated"], *maps])
    assert not list(out.rglob(".*")), "temporary files left behind"

    caplog.clear()
    assert cli.main([*arguments, "-o", str(out / "mr2.mha")]) == cli.USAGE_ERROR  # refused before any work
    assert "report.json exists; pass --overwrite" in caplog.text and not (out / "mr2.mha").exists()
    (out / "report.json").unlink()
    assert cli.main([*arguments, "-o", str(out / "mr2.mha")]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["files"] == {"translated": str(out / "mr2.mha"), "segmentation": None, "attention": []}
