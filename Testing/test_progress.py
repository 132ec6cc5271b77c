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
