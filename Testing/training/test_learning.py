"""Training learns: on the tiny phantom a few dozen steps lower each phase's loss by a stated margin."""
import numpy as np

from sasan.training.trainer import Trainer

from .tiny import tiny_config


def phase_losses(trainer, key, steps):
    values = []
    for _ in range(steps):
        values.append(trainer.train_step()[key])
        trainer.step += 1
    return values


def test_attention_pretraining_and_segmenter_learn(tmp_path):
    trainer = Trainer(tiny_config(training={"pretrain_attention_steps": 40, "steps": 1, "segmenter_steps": 40,
                                            "attention_lr": 0.003, "segmenter_lr": 0.01},
                                  model={"segmenter_width": 8}), tmp_path)
    pre = phase_losses(trainer, "pretrain_MR", 40)
    assert np.mean(pre[-5:]) < 0.7 * np.mean(pre[:5]), pre
    phase_losses(trainer, "translator", 1)
    seg = phase_losses(trainer, "segmenter", 40)
    assert np.mean(seg[-5:]) < 0.7 * np.mean(seg[:5]), seg


def test_adversarial_phase_lowers_the_cycle_loss(tmp_path):
    trainer = Trainer(tiny_config(training={"pretrain_attention_steps": 0, "steps": 40, "segmenter_steps": 0,
                                            "lr": 0.002}), tmp_path)
    cycle = [trainer.train_step()["cycle"] for _ in range(1) for trainer.step in [trainer.step]]
    for _ in range(39):
        trainer.step += 1
        cycle.append(trainer.train_step()["cycle"])
    assert np.mean(cycle[-5:]) < 0.8 * np.mean(cycle[:5]), cycle
