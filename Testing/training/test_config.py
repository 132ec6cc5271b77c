"""Configuration loading: one clear error naming the bad key; every shipped preset validates."""
from pathlib import Path

import pytest
import yaml

from sasan.config import ConfigError, config_from_dict, load_config, resolved_yaml

from .tiny import TINY_RUN

PRESETS = sorted((Path(__file__).parents[2] / "Resources" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("mapping, message", [
    ({"trainig": {}}, r"^trainig: unknown key"),
    ({"training": {"stepz": 3}}, r"^training\.stepz: unknown key"),
    ({"training": {"steps": "many"}}, r"^training\.steps: expected an integer, got 'many'"),
    ({"training": {"lr": True}}, r"^training\.lr: expected a number"),
    ({"training": {"precision": "fp8"}}, r"^training\.precision: expected one of"),
    ({"model": {"encoder_widths": [32, "x"]}}, r"^model\.encoder_widths\[1\]: expected an integer"),
    ({"data": {"labels": [{"name": "a"}]}}, r"^data\.labels\[0\]\.value: missing \(expected an integer\)"),
    ({"data": {"image_size": 100}}, r"^data\.image_size: expected a multiple of 16"),
    ({"data": {"context": 2}}, r"^data\.context: expected an odd number"),
    ({"data": {"validation_fraction": -0.1}}, r"^data\.validation_fraction: expected a number in \[0, 1\)"),
    ({"data": {"test_fraction": 0.5, "validation_fraction": 0.5}}, r"^data\.validation_fraction: expected"),
    ({"data": {"source": {"layout": "folder"}}}, r"^data\.source\.root: a 'folder' layout needs a data folder"),
    ({"data": {"segmenter_intensity_augment": {"gamma_range": [1.5, 0.7]}}},
     r"^data\.segmenter_intensity_augment: expected probabilities"),
    ({"data": {"segmenter_intensity_augment": {"probability": 2}}}, r"^data\.segmenter_intensity_augment: expected"),
    ({"data": {"target": {"phantom_subjects": 0}}}, r"^data\.target\.phantom_subjects: expected a positive integer"),
    ({"data": {"source": {"phantom_subjects": "all"}}}, r"^data\.source\.phantom_subjects: expected an integer"),
    ({"training": {"pretrain_regularization_warmup": 1.5}},
     r"^training\.pretrain_regularization_warmup: expected a fraction"),
    ({"model": {"attention": False}, "training": {"pretrain_attention_steps": 5}},
     r"^training\.pretrain_attention_steps: there is no attention module"),
    ({"training": {"copy_pretrained_attention": True}},
     r"^training\.copy_pretrained_attention: needs attention pre-training"),
])
def test_bad_values_name_the_key(mapping, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(mapping)


def test_missing_data_folder_is_named(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": {"source": {"layout": "folder", "root": "nowhere"},
                                             "labels": [{"name": "a", "value": 1}]}}))
    with pytest.raises(ConfigError, match=r"data\.source\.root: folder .*nowhere.* does not exist"):
        load_config(path)


def test_unparsable_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("training: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_resolved_config_round_trips():
    config = config_from_dict(TINY_RUN)
    assert config_from_dict(yaml.safe_load(resolved_yaml(config))) == config


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_every_preset_validates(preset):
    config = config_from_dict(yaml.safe_load(preset.read_text()))
    assert config.name == preset.stem
