"""Test subjects are read by the final scoring only: poisoning them changes nothing a run learns, logs or picks."""
import shutil

import numpy as np
import pytest
import torch

from sasan import bundle
from sasan.data.io import read_volume, write_volume
from sasan.data.layouts import find_subjects, split_subjects
from sasan.data.phantom import write_phantom
from sasan.protocol import held_out_volumes, run_methods, translation_method
from sasan.training.checkpoint import latest_checkpoint, load_checkpoint
from sasan.training.export import export_run
from sasan.training.run_data import read_intensity
from sasan.training.trainer import Trainer

from .tiny import tiny_config

SUBJECTS = 5  # per modality: 3 train, 1 validation, 1 test with the fractions below


def folder_config(root):
    """The tiny run on a phantom written in the folder layout under ``root``."""
    config = tiny_config(training={"pretrain_attention_steps": 2, "steps": 4, "segmenter_steps": 2})
    for domain in (config.data.source, config.data.target):
        domain.layout, domain.root = "folder", str(root / domain.modality)
    config.data.test_fraction, config.data.validation_fraction = 0.2, 0.2
    return config


def poison_test_subjects(root, config) -> dict[str, list[str]]:
    """Replace every test subject's image by noise and its labels by one structure everywhere."""
    poisoned = {}
    for domain in (config.data.source, config.data.target):
        split = split_subjects(find_subjects("folder", root / domain.modality, domain.modality),
                               config.data.test_fraction, config.data.split_seed, config.data.validation_fraction)
        for subject in split.test:
            image = read_volume(subject.image)
            noise = np.random.default_rng(0).uniform(-1000, 1000, image.shape).astype(np.float32)
            write_volume(image.with_array(noise), subject.image, overwrite=True)
            labels = read_volume(subject.label, dtype=None)
            write_volume(labels.with_array(np.full(labels.shape, config.data.labels[0].value, labels.array.dtype)),
                         subject.label, overwrite=True)
        poisoned[domain.modality] = [s.id for s in split.test]
    return poisoned


def weights(state: dict) -> dict[str, torch.Tensor]:
    """Every network's and EMA's tensors of a checkpoint, by one flat name."""
    found = dict(state["networks"])
    found.update({f"ema.{module}.{key}": value for module, tensors in state["ema"].items()
                  for key, value in tensors.items()})
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(clean root, poisoned root, poisoned ids, {root name: (trainer, run folder)}) of two identical runs."""
    folder = tmp_path_factory.mktemp("splits")
    clean, poisoned = folder / "clean", folder / "poisoned"
    write_phantom(clean, SUBJECTS, seed=0, size=32)
    shutil.copytree(clean, poisoned)
    ids = poison_test_subjects(poisoned, folder_config(poisoned))
    trained = {}
    for root in (clean, poisoned):
        trainer = Trainer(folder_config(root), folder / f"run_{root.name}")
        trainer.fit()
        trained[root.name] = (trainer, folder / f"run_{root.name}")
    return clean, poisoned, ids, trained


def test_the_trainer_reads_no_test_subject(runs):
    _, _, ids, trained = runs
    for trainer, _ in trained.values():
        for modality, volumes in trainer.data.validation.items():
            assert volumes and not {v.subject.id for v in volumes} & set(ids[modality])
    assert all(len(test_ids) == 1 for test_ids in ids.values())


def test_poisoned_test_subjects_change_neither_weights_nor_validation_until_the_final_scoring(runs, tmp_path):
    clean, poisoned, _, trained = runs
    (clean_trainer, clean_run), (poisoned_trainer, poisoned_run) = trained["clean"], trained["poisoned"]
    clean_weights, poisoned_weights = (weights(load_checkpoint(latest_checkpoint(run)))
                                       for run in (clean_run, poisoned_run))
    assert clean_weights.keys() == poisoned_weights.keys() and any(k.startswith("ema.") for k in clean_weights)
    assert all(torch.equal(clean_weights[k], poisoned_weights[k]) for k in clean_weights)
    assert read_intensity(clean_run) == read_intensity(poisoned_run)
    scores = [trainer.validation_scores() for trainer in (clean_trainer, poisoned_trainer)]
    assert set(scores[0]) == {"val/dice_attention_head", "val/dice_segmenter"} and scores[0] == scores[1]

    # The model file's input check is made from training and validation scans only: the same fingerprint.
    model = bundle.load(export_run(clean_run, tmp_path / "model.safetensors"))
    poisoned_card = bundle.load(export_run(poisoned_run, tmp_path / "poisoned.safetensors")).card
    assert set(model.card.domain["modalities"]) == {"CT", "MR"} and model.card.domain == poisoned_card.domain

    # The final scoring is the first to read them: the same model scores differently on the poisoned copy.
    dice = []
    for root in (clean, poisoned):
        config = folder_config(root)
        result = run_methods({"SASAN": translation_method(model, "CT", "MR", device="cpu")},
                             held_out_volumes(config), config.data.labels, tmp_path / root.name, target="MR")
        dice.append([s["dice"] for row in result.segmentation_rows for s in row.scores.values()])
    assert dice[0] != dice[1]
