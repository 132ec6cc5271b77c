"""The benchmarks' table helpers: models named NAME=PATH, the unseen-phantom table, the summary over seeds."""
import argparse

import pytest

from benchmarks.fresh_phantom import named_model


def test_a_model_is_named_and_its_file_must_exist(tmp_path):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")
    assert named_model(f"seed0={model}") == ("seed0", model)
    for bad in (str(model), f"={model}", f"seed0={tmp_path / 'missing.safetensors'}", f"seed0={tmp_path}"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=PATH"):
            named_model(bad)


def test_the_unseen_table_has_a_column_per_phantom_and_their_mean():
    from benchmarks.phantom_protocol import unseen_lines

    def row(name, seed, dice, plain=0.2, unet=0.9):
        return {"name": name, "phantom_seed": seed, "volumes": 12, "model_dice": dice,
                "no_adaptation": plain, "unet_on_real_target": unet}

    rows = [row("SASAN", 1, 0.70, 0.10, 0.80), row("CycleGAN", 1, 0.30),
            row("SASAN", 2, 0.80, 0.30, 0.90), row("CycleGAN", 2, 0.20)]
    lines = unseen_lines(rows)
    assert "phantom seeds 1, 2, 12 test CT volumes each" in lines[0]
    assert "| Model | phantom 1 | phantom 2 | mean |" in lines
    assert "| SASAN | 0.700 | 0.800 | 0.750 |" in lines
    assert "| CycleGAN | 0.300 | 0.200 | 0.250 |" in lines
    assert "| W/o adaptation (the SASAN model's U-Net) | 0.100 | 0.300 | 0.200 |" in lines
    assert "| MR U-Net on the real MR | 0.800 | 0.900 | 0.850 |" in lines


def test_several_training_seeds_are_summarised_by_their_mean_and_spread():
    from benchmarks.phantom_protocol import over_seeds

    def summary(no_adaptation, sasan):
        return [{"method": "W/o adaptation", "structure": "mean", "dice_mean": no_adaptation},
                {"method": "SASAN", "structure": "mean", "dice_mean": sasan}]

    text = over_seeds({0: summary(0.2, 0.7), 1: summary(0.1, 0.8), 2: summary(0.3, 0.75)}, "full")
    assert text.startswith("## Phantom protocol (full, training seeds 0, 1, 2)\n")
    assert "| Method | seed 0 | seed 1 | seed 2 | mean ± std |" in text
    assert "| W/o adaptation | 0.200 | 0.100 | 0.300 | 0.200 ± 0.100 |" in text   # sample std of 0.1, 0.2, 0.3
    assert "| SASAN | 0.700 | 0.800 | 0.750 | 0.750 ± 0.050 |" in text
