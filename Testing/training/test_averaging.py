"""The exported EMA translator: it starts from the pre-trained attention, then averages the live weights."""
import torch

from sasan.training.networks import ExponentialAverage
from sasan.training.run_folder import read_run_config
from sasan.training.segmenter import train_segmenter
from sasan.training.trainer import Trainer

from .tiny import tiny_config


def test_average_moves_by_one_minus_decay_and_reset_copies():
    live = torch.nn.Linear(1, 1, bias=False)
    live.weight.data.fill_(0.0)
    average = ExponentialAverage({"net": live}, decay=0.75)
    live.weight.data.fill_(4.0)
    average.update({"net": live})
    assert average.shadow["net"].weight.item() == 1.0  # 0 + (1 - 0.75) * (4 - 0)
    average.reset({"net": live})
    assert average.shadow["net"].weight.item() == 4.0


def test_frozen_pretrained_attention_is_exported_exactly(tmp_path):
    # decay 0.99 over 2 adversarial steps: without the restart the average would still be ~98% the
    # random initialisation of the frozen MR attention module.
    trainer = Trainer(tiny_config(training={"pretrain_attention_steps": 3, "steps": 2, "segmenter_steps": 0,
                                            "ema_decay": 0.99, "checkpoint_every": 100}), tmp_path)
    initial = {k: v.clone() for k, v in trainer.ema.shadow["attention.MR"].state_dict().items()}
    trainer.fit()
    exported = trainer.exported_networks()["attention.MR"].state_dict()
    live = trainer.nets.attention["MR"].state_dict()
    assert all(torch.equal(exported[k], live[k]) for k in live)
    assert any(not torch.equal(exported[k], initial[k]) for k in live)
    # the CT attention trains adversarially: its average lags the live weights
    ct_exported = trainer.exported_networks()["attention.CT"].state_dict()
    ct_live = trainer.nets.attention["CT"].state_dict()
    assert any(not torch.equal(ct_exported[k], ct_live[k]) for k in ct_live if ct_live[k].is_floating_point())


def test_unlabelled_attention_can_start_as_a_copy_of_the_pretrained_one(tmp_path):
    trainer = Trainer(tiny_config(training={"pretrain_attention_steps": 3, "steps": 2, "segmenter_steps": 0,
                                            "copy_pretrained_attention": True}), tmp_path)
    for _ in range(3):
        trainer.train_step()
        trainer.step += 1
    mr = trainer.nets.attention["MR"].state_dict()
    assert any(not torch.equal(v, trainer.nets.attention["CT"].state_dict()[k]) for k, v in mr.items())
    trainer._begin_adversarial_phase()
    for ct in (trainer.nets.attention["CT"], trainer.ema.shadow["attention.CT"]):  # live and averaged
        assert all(torch.equal(v, ct.state_dict()[k]) for k, v in mr.items())
    trainer.train_step()  # the copy is a separate module: adversarial updates move CT, not the frozen MR
    assert all(torch.equal(v, trainer.nets.attention["MR"].state_dict()[k]) for k, v in mr.items())
    assert any(not torch.equal(v, trainer.nets.attention["CT"].state_dict()[k]) for k, v in mr.items()
               if v.is_floating_point())


def test_segmenter_only_run_of_a_copying_configuration_writes_a_config_that_loads_again(tmp_path):
    # train-segmenter (and the demo's MR U-Net) zero the adversarial and pre-training steps of such a config
    config = tiny_config(training={"pretrain_attention_steps": 2, "steps": 2, "segmenter_steps": 2,
                                   "copy_pretrained_attention": True})
    run = train_segmenter(config, tmp_path / "unet")
    assert read_run_config(run).training.copy_pretrained_attention
