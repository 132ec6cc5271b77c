"""``benchmarks/phantom_variant.py`` stops training at its time budget and scores the last checkpoint."""
import sys

import pytest

from benchmarks import phantom_variant
from sasan.training.checkpoint import list_checkpoints
from sasan.training.trainer import Trainer

from .tiny import tiny_config


def test_a_run_over_budget_is_cut_with_its_checkpoints_kept(tmp_path):
    trainer = Trainer(tiny_config(training={"pretrain_attention_steps": 0, "steps": 100_000, "segmenter_steps": 0,
                                            "checkpoint_every": 2}), tmp_path)
    assert phantom_variant.train_within(trainer, 3.0)
    assert 2 <= trainer.step < trainer.total_steps
    assert list_checkpoints(tmp_path)  # what the variant then exports and scores


def test_a_run_within_budget_finishes(tmp_path):
    trainer = Trainer(tiny_config(training={"pretrain_attention_steps": 0, "steps": 2, "segmenter_steps": 0}),
                      tmp_path)
    assert not phantom_variant.train_within(trainer, 600.0)
    assert trainer.step == trainer.total_steps


def test_a_folder_without_checkpoints_is_refused_before_any_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["phantom_variant.py", "x", str(tmp_path / "out"), "--sasan-run", str(tmp_path)])
    with pytest.raises(SystemExit) as stop:
        phantom_variant.main()
    assert stop.value.code == 2
    assert "not a SASAN run folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
