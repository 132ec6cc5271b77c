"""Domain loading: tiny folder datasets through read, normalise, slice and dataset; the phantom cache."""
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from sasan.config import (ConfigError, DataConfig, DomainConfig, LabelSpec, NamedSplitConfig, NormalizationConfig,
                          config_from_dict)
from sasan.data.domains import build_slice_dataset, load_domain, prepare_volume
from sasan.data.io import GeometryMismatchError, write_volume
from sasan.data.layouts import Subject
from sasan.data.volume import Volume

LABELS = [LabelSpec("myo", 205), LabelSpec("lv", 500)]
GEOMETRY = dict(spacing=(0.8, 0.8, 2.0), origin=(5.0, -3.0, 10.0))


def write_subject(root: Path, name: str, seed: int, with_label: bool = True) -> None:
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 20.0, size=(4, 6, 5)).astype(np.float32)
    write_volume(Volume(image, **GEOMETRY), root / "images" / f"{name}.nii.gz")
    if with_label:
        labels = rng.choice([0, 205, 500], size=(4, 6, 5)).astype(np.int16)
        write_volume(Volume(labels, **GEOMETRY), root / "labels" / f"{name}.nii.gz")


def folder_domain(root: Path, labelled: bool = True) -> DomainConfig:
    return DomainConfig(modality="CT", layout="folder", root=str(root), labelled=labelled,
                        normalization=NormalizationConfig(method="percentile", percentiles=[2.0, 98.0]))


def test_prepare_volume_normalises_and_slices_along_the_chosen_axis(tmp_path):
    write_subject(tmp_path, "a", seed=0)
    subject = Subject("a", tmp_path / "images/a.nii.gz", tmp_path / "labels/a.nii.gz", "CT")
    prepared = prepare_volume(subject, NormalizationConfig(), LABELS, axis_preference="coronal")
    assert prepared.axis == 1 and prepared.stack.shape == (6, 4, 5) and prepared.stack.dtype == np.float32
    assert prepared.stack.min() == -1.0 and prepared.stack.max() == pytest.approx(1.0)
    assert prepared.volume.spacing == pytest.approx(GEOMETRY["spacing"]) and prepared.volume.array.shape == (4, 6, 5)
    assert prepared.labels.shape == (6, 4, 5) and set(np.unique(prepared.labels)) <= {0, 1, 2}
    assert prepared.intensity.low < prepared.intensity.high
    unlabelled = prepare_volume(subject, NormalizationConfig(), [])
    assert unlabelled.labels is None and unlabelled.axis == 0


def test_prepare_volume_refuses_labels_on_another_grid(tmp_path):
    write_subject(tmp_path, "a", seed=0)
    write_volume(Volume(np.zeros((4, 6, 5), np.int16)), tmp_path / "labels/a.nii.gz", overwrite=True)
    subject = Subject("a", tmp_path / "images/a.nii.gz", tmp_path / "labels/a.nii.gz", "CT")
    with pytest.raises(GeometryMismatchError, match="label grid does not match"):
        prepare_volume(subject, NormalizationConfig(), LABELS)


def test_load_domain_splits_prepares_and_builds_a_dataset(tmp_path):
    for index in range(5):
        write_subject(tmp_path, f"case{index}", seed=index)
    data = DataConfig(image_size=16, context=3, skip_empty=False, test_fraction=0.2, validation_fraction=0.2,
                      labels=LABELS)
    domain = folder_domain(tmp_path)
    train, validation, test = (load_domain(domain, data, split=split) for split in ("train", "validation", "test"))
    assert (len(train), len(validation), len(test)) == (3, 1, 1)
    ids = [{p.subject.id for p in part} for part in (train, validation, test)]
    assert ids[0].isdisjoint(ids[1] | ids[2]) and ids[1].isdisjoint(ids[2])
    assert len(load_domain(domain, data, split="all")) == 5
    dataset = build_slice_dataset(train, data, augment=True, seed=1)
    assert len(dataset) == 3 * 4 and dataset.augment is data.augment
    item = dataset[0]
    assert item["image"].shape == (3, 16, 16) and item["label"].shape == (16, 16)
    assert item["has_label"].item() is True
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load_domain(domain, data, split="val")


def test_a_domain_too_small_for_a_validation_part_names_the_key(tmp_path):
    for index in range(2):
        write_subject(tmp_path, f"case{index}", seed=index)
    data = DataConfig(image_size=16, validation_fraction=0.1, labels=LABELS)
    with pytest.raises(ConfigError, match=r"^data\.validation_fraction: the CT domain's 2 subjects cannot be split"):
        load_domain(folder_domain(tmp_path), data, split="train")
    data.validation_fraction = 0.0
    assert len(load_domain(folder_domain(tmp_path), data, split="train")) == 1


def test_unlabelled_domains_ignore_label_files_and_labelled_ones_need_them(tmp_path):
    for index in range(3):
        write_subject(tmp_path, f"case{index}", seed=index, with_label=False)
    data = DataConfig(labels=LABELS)
    assert all(p.labels is None for p in load_domain(folder_domain(tmp_path, labelled=False), data, split="all"))
    with pytest.raises(ValueError, match="marked labelled but none of its all subjects has a label file"):
        load_domain(folder_domain(tmp_path, labelled=True), data, split="all")


def fake_phantom_module(calls: list, fail: bool = False) -> types.ModuleType:
    """Stands in for sasan.data.phantom: writes one tiny CT and MR subject per call."""
    def write_phantom(out_dir: Path, subjects: int, seed: int, size: int = 96, profile: str = "default") -> Path:
        calls.append((Path(out_dir), subjects, seed, size, profile))
        for modality in ("CT", "MR"):
            write_subject(Path(out_dir) / modality, f"{modality.lower()}_000", seed=seed)
        if fail:
            raise RuntimeError("generator crashed")
        return Path(out_dir)

    module = types.ModuleType("sasan.data.phantom")
    module.write_phantom = write_phantom
    module.PHANTOM_VERSION = 7
    return module


def test_phantom_is_generated_once_into_the_cache(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "sasan.data.phantom", fake_phantom_module(calls))
    monkeypatch.setenv("SASAN_CACHE", str(tmp_path / "cache"))
    data = DataConfig(phantom_subjects=1, phantom_seed=3, phantom_size=32, labels=LABELS)
    first = load_domain(DomainConfig(modality="ct", layout="phantom"), data, split="all")
    second = load_domain(DomainConfig(modality="MR", layout="phantom", labelled=False), data, split="all")
    assert len(calls) == 1 and calls[0][1:] == (1, 3, 32, "default")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["phantom-v7-1-3-32"]
    assert first[0].subject.image == tmp_path / "cache/phantom-v7-1-3-32/CT/images/ct_000.nii.gz"
    # Held-out labels are read for every domain; training (run_data) hides them from unlabelled ones.
    assert first[0].labels is not None and second[0].labels is not None


def test_another_phantom_profile_is_generated_into_its_own_cache_folder(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "sasan.data.phantom", fake_phantom_module(calls))
    monkeypatch.setenv("SASAN_CACHE", str(tmp_path / "cache"))
    for profile in ("default", "transfer"):
        data = DataConfig(phantom_subjects=1, phantom_seed=3, phantom_size=32, labels=LABELS, phantom_profile=profile)
        load_domain(DomainConfig(modality="CT", layout="phantom"), data, split="all")
    assert [call[4] for call in calls] == ["default", "transfer"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["phantom-v7-1-3-32", "phantom-v7-1-3-32-transfer"]


def test_a_domain_with_its_own_phantom_count_reads_the_same_first_subjects(tmp_path, monkeypatch):
    pytest.importorskip("sasan.data.phantom")
    from sasan.data.layouts import MMWHS_LABELS
    from sasan.data.phantom import PHANTOM_VERSION

    monkeypatch.setenv("SASAN_CACHE", str(tmp_path))
    data = DataConfig(phantom_subjects=1, phantom_seed=0, phantom_size=32, labels=MMWHS_LABELS, image_size=32)
    ct = load_domain(DomainConfig(modality="CT", layout="phantom", phantom_subjects=2), data, split="all")
    mr = load_domain(DomainConfig(modality="MR", layout="phantom"), data, split="all")
    ct_alone = load_domain(DomainConfig(modality="CT", layout="phantom"), data, split="all")
    assert (len(ct), len(mr), len(ct_alone)) == (2, 1, 1)
    assert ct[0].subject.image.parents[2].name == f"phantom-v{PHANTOM_VERSION}-2-0-32"
    assert mr[0].subject.image.parents[2].name == f"phantom-v{PHANTOM_VERSION}-1-0-32"
    np.testing.assert_array_equal(ct[0].volume.array, ct_alone[0].volume.array)   # subject 0 is subject 0
    assert not np.array_equal(ct[0].volume.array, ct[1].volume.array)


def test_a_failed_phantom_generation_leaves_no_cache_behind(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sasan.data.phantom", fake_phantom_module([], fail=True))
    monkeypatch.setenv("SASAN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="generator crashed"):
        load_domain(DomainConfig(modality="CT", layout="phantom"), DataConfig(labels=LABELS), split="all")
    assert list((tmp_path / "cache").iterdir()) == []


def test_real_phantom_loads_as_a_labelled_domain(tmp_path, monkeypatch):
    pytest.importorskip("sasan.data.phantom")
    from sasan.data.layouts import MMWHS_LABELS

    monkeypatch.setenv("SASAN_CACHE", str(tmp_path))
    data = DataConfig(phantom_subjects=2, phantom_seed=0, phantom_size=32, labels=MMWHS_LABELS, image_size=32)
    prepared = load_domain(DomainConfig(modality="CT", layout="phantom"), data, split="all")
    assert len(prepared) == 2
    assert all(p.labels is not None and p.labels.max() >= 1 for p in prepared)
    assert all(-1.0 <= p.stack.min() and p.stack.max() <= 1.0 for p in prepared)
    assert len(build_slice_dataset(prepared, data, augment=False, seed=0)) > 0


def test_a_named_split_puts_the_named_subjects_of_either_domain_in_validation_and_test(tmp_path):
    for name in ("a", "b", "c"):
        write_subject(tmp_path / "CT", name, seed=ord(name))
    for name in ("x", "y", "z"):
        write_subject(tmp_path / "MR", name, seed=ord(name))
    ct, mr = folder_domain(tmp_path / "CT"), folder_domain(tmp_path / "MR")
    mr.modality = "MR"
    data = DataConfig(source=ct, target=mr, labels=LABELS,
                      named_split=NamedSplitConfig(validation=["b"], test=["c", "z"]))
    parts = {(domain.modality, split): [p.subject.id for p in load_domain(domain, data, split=split)]
             for domain in (ct, mr) for split in ("train", "validation", "test")}
    assert parts == {("CT", "train"): ["a"], ("CT", "validation"): ["b"], ("CT", "test"): ["c"],
                     ("MR", "train"): ["x", "y"], ("MR", "validation"): [], ("MR", "test"): ["z"]}
    data.named_split.test = ["c", "zz"]  # a typo must not send z to training silently
    with pytest.raises(ConfigError, match=r"^data\.named_split: no subject 'zz' in either domain"):
        load_domain(mr, data, split="train")
    data.named_split = NamedSplitConfig(validation=["a", "b"], test=["c"])
    with pytest.raises(ConfigError, match=r"^data\.named_split: the CT domain's 3 subjects, all named"):
        load_domain(ct, data, split="train")


def test_a_subject_named_for_validation_and_test_is_refused_by_the_configuration():
    raw = {"data": {"named_split": {"validation": ["a"], "test": ["a", "b"]},
                    "labels": [{"name": "myo", "value": 205}]}}
    with pytest.raises(ConfigError, match=r"data\.named_split: a subject cannot be both in validation and in test"):
        config_from_dict(raw)
    raw["data"]["named_split"]["validation"] = ["c"]
    assert config_from_dict(raw).data.named_split == NamedSplitConfig(validation=["c"], test=["a", "b"])
