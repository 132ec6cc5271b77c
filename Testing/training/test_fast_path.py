"""The fast training path (training.fast) is what runs when asked, computes the default path's losses, and its
runs export like any other. (Learning and exact resume: test_learning.py and test_resume.py, parametrised.)"""
import pytest
import torch

from sasan import bundle
from sasan.models.channels_last import ChannelsLastAttentionModule, SplitAttentionNorm
from sasan.training.export import export_run
from sasan.training.trainer import Trainer

from .tiny import tiny_config

ADVERSARIAL_ONLY = {"pretrain_attention_steps": 0, "steps": 2, "segmenter_steps": 0, "checkpoint_every": 2}


def test_the_fast_path_runs_channels_last_networks_with_fused_adam(tmp_path):
    trainer = Trainer(tiny_config(training={**ADVERSARIAL_ONLY, "fast": True}), tmp_path)
    assert all(isinstance(module, ChannelsLastAttentionModule) for module in trainer.nets.attention.values())
    assert any(isinstance(module, SplitAttentionNorm) for module in trainer.nets.modules())
    assert all(optimiser.defaults["fused"] for optimiser in trainer.optimisers.values())
    batch = trainer._batches()
    assert all(b["image"].is_contiguous(memory_format=torch.channels_last) for b in batch.values())
    default = Trainer(tiny_config(training=ADVERSARIAL_ONLY), tmp_path / "default")
    assert not any(isinstance(module, SplitAttentionNorm) for module in default.nets.modules())
    assert not any(optimiser.defaults["fused"] for optimiser in default.optimisers.values())


def test_the_first_step_has_the_default_paths_losses(tmp_path):
    """Same seed, same initial weights, same batch: every loss term agrees to rounding (after that GAN training
    amplifies rounding differences, as it does between thread counts)."""
    terms = {}
    for fast in (False, True):
        trainer = Trainer(tiny_config(training={**ADVERSARIAL_ONLY, "fast": fast}), tmp_path / str(fast))
        terms[fast] = trainer.train_step()
    assert terms[True].keys() == terms[False].keys()
    for name, value in terms[False].items():
        assert terms[True][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_a_fast_run_exports_a_model_file_that_loads(tmp_path):
    Trainer(tiny_config(training={**ADVERSARIAL_ONLY, "fast": True}), tmp_path / "run").fit()
    model = bundle.load(export_run(tmp_path / "run", tmp_path / "model.safetensors"))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    translated = model.generator("CT", "MR")(x, model.attention("CT")(x)[0])
    assert translated.shape == x.shape and torch.isfinite(translated).all()
