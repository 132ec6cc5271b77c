"""Dataset layouts built as tiny files in tmp_path, label constants and the subject-level split."""
import random
from pathlib import Path

import numpy as np
import pytest

from sasan.data.io import write_volume
from sasan.data.layouts import (
    BRATS_LABELS,
    MMWHS_LABELS,
    LayoutError,
    SplitError,
    Subject,
    find_subjects,
    split_subjects,
)
from sasan.data.volume import Volume


def tiny(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_volume(Volume(np.zeros((2, 3, 4), np.float32)), path)


def test_folder_layout_pairs_images_with_same_named_labels(tmp_path):
    for name in ["b.nii.gz", "a.nrrd", "c.mha"]:
        tiny(tmp_path / "images" / name)
    tiny(tmp_path / "labels" / "a.nrrd")
    tiny(tmp_path / "labels" / "b.nii.gz")
    (tmp_path / "images" / ".b.nii.gz.tmp.nii.gz").write_bytes(b"partial")  # an unfinished write
    (tmp_path / "images" / "notes.txt").write_text("ignored")
    subjects = find_subjects("folder", tmp_path, "MR")
    assert [s.id for s in subjects] == ["a", "b", "c"]
    assert subjects[0] == Subject("a", tmp_path / "images/a.nrrd", tmp_path / "labels/a.nrrd", "MR")
    assert subjects[1].label == tmp_path / "labels/b.nii.gz"
    assert subjects[2].label is None and subjects[2].paired_with is None


def test_folder_layout_errors(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        find_subjects("folder", tmp_path / "absent", "CT")
    (tmp_path / "images").mkdir()
    with pytest.raises(LayoutError, match="images: no image found"):
        find_subjects("folder", tmp_path, "CT")
    tiny(tmp_path / "images" / "a.nii.gz")
    tiny(tmp_path / "labels" / "z.nii.gz")
    with pytest.raises(LayoutError, match="label file\\(s\\) without an image.*: z"):
        find_subjects("folder", tmp_path, "CT")
    (tmp_path / "labels" / "z.nii.gz").unlink()
    tiny(tmp_path / "images" / "a.nrrd")
    with pytest.raises(LayoutError, match="two files for 'a'"):
        find_subjects("folder", tmp_path, "CT")
    with pytest.raises(LayoutError, match="holds no paired images"):
        find_subjects("folder", tmp_path, "CT", pair_with="MR")
    with pytest.raises(LayoutError, match="unknown dataset layout 'nnunet'"):
        find_subjects("nnunet", tmp_path, "CT")


def test_mmwhs_layout_picks_the_modality_folder(tmp_path):
    for prefix in ["ct_train", "mr_train"]:
        for number in [1002, 1001]:
            tiny(tmp_path / prefix / f"{prefix}_{number}_image.nii.gz")
        tiny(tmp_path / prefix / f"{prefix}_1001_label.nii.gz")
    subjects = find_subjects("mmwhs", tmp_path, "mr")
    assert [s.id for s in subjects] == ["mr_train_1001", "mr_train_1002"]
    assert subjects[0].label == tmp_path / "mr_train/mr_train_1001_label.nii.gz"
    assert subjects[1].label is None and subjects[0].modality == "mr"
    assert find_subjects("mmwhs", tmp_path, "CT")[0].image == tmp_path / "ct_train/ct_train_1001_image.nii.gz"
    with pytest.raises(LayoutError, match="modalities CT and MR"):
        find_subjects("mmwhs", tmp_path, "PET")
    with pytest.raises(LayoutError, match="no image found"):
        find_subjects("mmwhs", tmp_path / "ct_train", "CT")


def test_brats_layout_picks_the_sequence_and_its_partner(tmp_path):
    for case in ["BraTS_002", "BraTS_001"]:
        for sequence in ["t1", "t2", "seg"]:
            tiny(tmp_path / case / f"{case}_{sequence}.nii.gz")
    subjects = find_subjects("brats", tmp_path, "T2", brats_sequence="t2")
    assert [s.id for s in subjects] == ["BraTS_001", "BraTS_002"]
    assert subjects[0].image == tmp_path / "BraTS_001/BraTS_001_t2.nii.gz"
    assert subjects[0].label == tmp_path / "BraTS_001/BraTS_001_seg.nii.gz"
    paired = find_subjects("brats", tmp_path, "T2", pair_with="t1")
    assert paired[1].paired_with == tmp_path / "BraTS_002/BraTS_002_t1.nii.gz"
    with pytest.raises(LayoutError, match="missing the flair image"):
        find_subjects("brats", tmp_path, "FLAIR", brats_sequence="flair")
    with pytest.raises(LayoutError, match="unknown BraTS sequence 'dwi'"):
        find_subjects("brats", tmp_path, "DWI", brats_sequence="dwi")


def make_rire(root: Path) -> None:
    tiny(root / "patient_001" / "ct" / "patient_001_ct.mha")
    tiny(root / "patient_001" / "mr_T1" / "patient_001_mr_T1.nii.gz")
    tiny(root / "patient_002" / "ct" / "patient_002_ct.mha")
    tiny(root / "patient_002" / "mr_T2" / "patient_002_mr_T2.mha")
    tiny(root / "patient_003" / "mr_T1" / "patient_003_mr_T1.mha")


def test_rire_layout_fills_the_partner_image(tmp_path):
    make_rire(tmp_path)
    ct = find_subjects("rire", tmp_path, "CT")
    assert [s.id for s in ct] == ["patient_001", "patient_002"]
    assert ct[0].image == tmp_path / "patient_001/ct/patient_001_ct.mha" and ct[0].label is None
    assert ct[0].paired_with == tmp_path / "patient_001/mr_T1/patient_001_mr_T1.nii.gz"
    assert ct[1].paired_with is None  # patient 2 has no T1
    t2 = find_subjects("rire", tmp_path, "MR_T2")
    assert [(s.id, s.paired_with) for s in t2] == [("patient_002", tmp_path / "patient_002/ct/patient_002_ct.mha")]


def test_rire_explicit_pairing_keeps_only_pairs_and_refuses_none(tmp_path):
    make_rire(tmp_path)
    assert [s.id for s in find_subjects("rire", tmp_path, "MR_T1", pair_with="CT")] == ["patient_001"]
    with pytest.raises(LayoutError, match="no image found"):
        find_subjects("rire", tmp_path, "MR_PD", pair_with="CT")
    with pytest.raises(LayoutError, match="no MR_T2 subject has a paired MR_T1 image"):
        find_subjects("rire", tmp_path, "MR_T2", pair_with="MR_T1")


def test_label_constants():
    assert [(s.name, s.value) for s in MMWHS_LABELS] == [
        ("myocardium", 205), ("left atrium blood cavity", 420), ("left ventricle blood cavity", 500),
        ("ascending aorta", 820)]
    assert [s.value for s in BRATS_LABELS] == [1, 2, 3, 4]
    for labels in (MMWHS_LABELS, BRATS_LABELS):
        colours = {tuple(s.color) for s in labels}
        assert len(colours) == len(labels) and all(0 <= c <= 1 for colour in colours for c in colour)


def subjects(count: int) -> list[Subject]:
    return [Subject(f"case{i:02d}", Path(f"case{i:02d}.nii.gz"), None, "CT") for i in range(count)]


def test_split_is_subject_level_stable_and_about_80_20():
    everyone = subjects(10)
    split = split_subjects(everyone, 0.2, seed=0)
    assert (len(split.train), len(split.validation), len(split.test)) == (8, 0, 2)
    assert {s.id for s in split.train}.isdisjoint({s.id for s in split.test})
    assert {s.id for s in split.train} | {s.id for s in split.test} == {s.id for s in everyone}
    shuffled = everyone[:]
    random.Random(5).shuffle(shuffled)
    assert split_subjects(shuffled, 0.2, seed=0) == split
    assert len({tuple(s.id for s in split_subjects(everyone, 0.2, seed).test) for seed in range(5)}) > 1


def test_three_way_split_is_disjoint_and_leaves_the_test_subjects_where_they_were():
    everyone = subjects(20)
    two_way = split_subjects(everyone, 0.2, seed=3)
    three_way = split_subjects(everyone, 0.2, seed=3, validation_fraction=0.15)
    assert (len(three_way.train), len(three_way.validation), len(three_way.test)) == (13, 3, 4)
    parts = [{s.id for s in part} for part in (three_way.train, three_way.validation, three_way.test)]
    assert parts[0].isdisjoint(parts[1]) and parts[0].isdisjoint(parts[2]) and parts[1].isdisjoint(parts[2])
    assert set().union(*parts) == {s.id for s in everyone}
    assert three_way.test == two_way.test                                   # validation never moves a test subject
    assert {s.id for s in three_way.validation} < {s.id for s in two_way.train}
    assert three_way.train == sorted(three_way.train, key=lambda s: s.id)
    shuffled = everyone[::-1]
    assert split_subjects(shuffled, 0.2, seed=3, validation_fraction=0.15) == three_way


def test_split_keeps_one_subject_on_each_side_when_possible():
    def sizes(*args, **kwargs):
        split = split_subjects(*args, **kwargs)
        return [len(split.train), len(split.validation), len(split.test)]

    assert sizes(subjects(2), 0.2, 0) == [1, 0, 1]
    assert sizes(subjects(3), 0.9, 0) == [1, 0, 2]
    assert sizes(subjects(1), 0.2, 0, validation_fraction=0.5) == [1, 0, 0]
    assert sizes(subjects(3), 0.2, 0, validation_fraction=0.05) == [1, 1, 1]   # at least one when asked
    with pytest.raises(SplitError, match="2 subjects cannot be split three ways"):
        split_subjects(subjects(2), 0.2, 0, validation_fraction=0.1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_subjects(subjects(4), 1.0, 0)
    with pytest.raises(ValueError, match="validation fraction"):
        split_subjects(subjects(4), 0.5, 0, validation_fraction=0.5)
    with pytest.raises(ValueError, match="unique"):
        split_subjects(subjects(2) + subjects(1), 0.5, 0)
