"""Summaries, tables and figures of the evaluation, on hand-worked numbers and tiny volumes."""
import csv
import math
import struct

import numpy as np
import pytest

from sasan.reports import (
    SUMMARY_COLUMNS,
    EvaluationError,
    VolumeScores,
    image_metrics_table,
    markdown_table,
    save_volume_figure,
    summarize,
    write_csv,
)


def _scores(liver, spleen):
    """``liver`` and ``spleen`` are (dice, assd) pairs."""
    return {
        "liver": {"dice": liver[0], "assd": liver[1]},
        "spleen": {"dice": spleen[0], "assd": spleen[1]},
    }


ROWS = [
    VolumeScores("v1", "SASAN", _scores((0.8, 2.0), (0.6, 4.0))),
    VolumeScores("v1", "CycleGAN", _scores((0.5, 10.0), (0.9, 2.0))),
    VolumeScores("v2", "SASAN", _scores((0.9, 1.0), (0.7, 3.0))),
    VolumeScores("v2", "CycleGAN", _scores((0.7, 6.0), (0.5, 4.0))),
]

# (method, structure): (dice mean, dice std, assd mean, assd std), population std over the 2 volumes.
EXPECTED = {
    ("SASAN", "liver"): (0.85, 0.05, 1.5, 0.5),
    ("SASAN", "spleen"): (0.65, 0.05, 3.5, 0.5),
    ("SASAN", "mean"): (0.75, 0.05, 2.5, 0.5),  # per-volume means: (0.7, 3.0) and (0.8, 2.0)
    ("CycleGAN", "liver"): (0.6, 0.1, 8.0, 2.0),
    ("CycleGAN", "spleen"): (0.7, 0.2, 3.0, 1.0),
    # per-volume means (0.7, 6.0) and (0.6, 5.0): the std is not the mean of the structures' stds.
    ("CycleGAN", "mean"): (0.65, 0.05, 5.5, 0.5),
}


def test_summarize_gives_mean_and_population_std_per_method_and_structure():
    summary = summarize(ROWS)
    assert [(e["method"], e["structure"]) for e in summary] == list(EXPECTED)
    for entry in summary:
        expected = EXPECTED[(entry["method"], entry["structure"])]
        got = (entry["dice_mean"], entry["dice_std"], entry["assd_mean"], entry["assd_std"])
        assert got == pytest.approx(expected)
        assert set(entry) == set(SUMMARY_COLUMNS)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([], "no scores"),
        ([ROWS[0], ROWS[0]], "twice"),
        ([ROWS[0], VolumeScores("v2", "SASAN", {"liver": {"dice": 1.0, "assd": 0.0}})], "scores"),
        ([VolumeScores("v1", "SASAN", {"mean": {"dice": 1.0, "assd": 0.0}})], "reserved"),
        ([VolumeScores("v1", "SASAN", {"liver": {"dice": 1.0}})], "needs 'dice' and 'assd'"),
    ],
)
def test_summarize_rejects_inconsistent_rows(rows, message):
    with pytest.raises(EvaluationError, match=message):
        summarize(rows)


def test_write_csv_has_exactly_the_columns_and_one_row_per_method_and_structure(tmp_path):
    path = tmp_path / "results" / "summary.csv"
    write_csv(summarize(ROWS), path)
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        body = list(reader)
    assert header == ["method", "structure", "dice_mean", "dice_std", "assd_mean", "assd_std"]
    assert len(body) == 2 * (2 + 1)
    cyclegan_mean = next(r for r in body if r[:2] == ["CycleGAN", "mean"])
    assert [float(v) for v in cyclegan_mean[2:]] == pytest.approx(EXPECTED[("CycleGAN", "mean")])


def test_markdown_table_has_one_row_per_method_and_mean_std_cells():
    table = markdown_table(summarize(ROWS), ["liver", "spleen"])
    lines = table.strip().split("\n")
    assert len(lines) == 2 + 2
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == [
        "Method", "Dice liver", "Dice spleen", "Dice mean", "ASSD liver (mm)", "ASSD spleen (mm)", "ASSD mean (mm)",
    ]
    sasan = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert sasan == [
        "SASAN", "0.85 ± 0.05", "0.65 ± 0.05", "0.75 ± 0.05", "1.50 ± 0.50", "3.50 ± 0.50", "2.50 ± 0.50",
    ]
    assert lines[3].startswith("| CycleGAN | 0.60 ± 0.10 | 0.70 ± 0.20 | 0.65 ± 0.05 |")
    with pytest.raises(EvaluationError, match="kidney"):
        markdown_table(summarize(ROWS), ["kidney"])


def test_image_metrics_table_averages_over_volumes():
    def metrics(ssim, psnr):
        return {"CT": {"ssim": ssim, "psnr": psnr, "mae": 10.0, "rmse": 20.0, "pcc": 0.9}}

    rows = [
        VolumeScores("v1", "SASAN", metrics(0.8, 30.0)),
        VolumeScores("v2", "SASAN", metrics(0.9, 26.0)),
        VolumeScores("v1", "identity", metrics(1.0, math.inf)),
    ]
    lines = image_metrics_table(rows).strip().split("\n")
    assert lines[0] == "| Method | Image | SSIM | PSNR (dB) | MAE | RMSE | PCC |"
    assert lines[2] == "| SASAN | CT | 0.85 ± 0.05 | 28.00 ± 2.00 | 10.00 ± 0.00 | 20.00 ± 0.00 | 0.90 ± 0.00 |"
    assert lines[3].split("|")[4].strip() == "inf"
    with pytest.raises(EvaluationError, match="lacks image metrics"):
        image_metrics_table([VolumeScores("v1", "SASAN", {"CT": {"ssim": 1.0}})])


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _figure_volumes():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(5, 16, 16))
    truth = np.zeros((5, 16, 16), dtype=np.int64)
    truth[3, 4:9, 4:9] = 1
    truth[3, 10:12, 10:12] = 2
    truth[1, 5, 5] = 1
    predicted = np.roll(truth, 1, axis=2)
    return image, -image, predicted, truth


def test_save_volume_figure_wraps_attention_maps_in_rows_of_four(tmp_path):
    image, translated, predicted, truth = _figure_volumes()
    plain, with_maps = tmp_path / "plain.png", tmp_path / "maps.png"
    shown = save_volume_figure(plain, image, translated, predicted, truth, title="case 1")
    assert shown == 3  # the slice with the most true foreground
    attention = np.random.default_rng(1).uniform(size=(10, 5, 16, 16))
    colors = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)]
    save_volume_figure(with_maps, image, translated, predicted, truth, attention=attention, label_colors=colors)
    three_maps = tmp_path / "three.png"
    save_volume_figure(three_maps, image, translated, predicted, truth, attention=attention[:3])
    plain_width, plain_height = _png_size(plain)
    assert _png_size(with_maps) == (plain_width, 3 * plain_height)  # the first 8 maps: two rows of four
    assert _png_size(three_maps) == (plain_width, 2 * plain_height)


def test_save_volume_figure_rejects_arrays_that_do_not_fit(tmp_path):
    image, translated, predicted, truth = _figure_volumes()
    path = tmp_path / "bad.png"
    with pytest.raises(EvaluationError, match="shape"):
        save_volume_figure(path, image, translated[:, :8], predicted, truth)
    with pytest.raises(EvaluationError, match="attention"):
        save_volume_figure(path, image, translated, predicted, truth, attention=np.zeros((2, 5, 16, 15)))
    with pytest.raises(EvaluationError, match="class 2"):
        save_volume_figure(path, image, translated, predicted, truth, label_colors=[(1.0, 0.0, 0.0)])
    with pytest.raises(EvaluationError, match="integer"):
        save_volume_figure(path, image, translated, predicted.astype(float), truth)
    assert not path.exists()
