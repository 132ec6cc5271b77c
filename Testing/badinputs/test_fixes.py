"""Unit tests of the engine fixes the corpus led to (the corpus cases show them end to end)."""
import errno
import gzip
import logging
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch

from sasan import cli
from sasan.config import LabelSpec
from sasan.data import io
from sasan.data.domains import PreparedVolume
from sasan.data.io import VolumeReadError, check_writable, read_labels, read_volume, write_volume, write_volumes
from sasan.data.layouts import Subject
from sasan.data.volume import Volume
from sasan.training import run_data
from sasan.training.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint


def failing_on_call(number: int, real):
    """A ``SimpleITK.WriteImage`` stand-in that fails (disk full) on its ``number``-th call."""
    calls = []

    def write(image, name, useCompression=False):
        calls.append(name)
        if len(calls) == number:
            Path(name).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(image, name, useCompression=useCompression)

    return write


def test_write_volumes_is_all_or_nothing(tmp_path, monkeypatch):
    old = tmp_path / "translated.nii.gz"
    write_volume(Volume(np.zeros((2, 3, 4), np.float32)), old)
    before = old.read_bytes()
    monkeypatch.setattr(io.sitk, "WriteImage", failing_on_call(2, io.sitk.WriteImage))
    targets = {old: Volume(np.ones((2, 3, 4), np.float32)),
               tmp_path / "new" / "labels.nii.gz": Volume(np.ones((2, 3, 4), np.uint8))}
    with pytest.raises(OSError, match=r"labels\.nii\.gz: could not be written \(No space left on device\)"):
        write_volumes(targets, overwrite=True)
    assert old.read_bytes() == before  # the first output was written, but never moved into place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["translated.nii.gz"]  # no temporary file, no new folder


def test_translate_leaves_no_translation_when_its_segmentation_cannot_be_written(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(io.sitk, "WriteImage", failing_on_call(2, io.sitk.WriteImage))
    status = cli.main(["translate", str(corpus / "volumes" / "good.nii.gz"), "--model",
                       str(corpus / "models" / "good.safetensors"), "--to", "MR", "-o", str(tmp_path / "t.nii.gz"),
                       "--segmentation", str(tmp_path / "s.nii.gz"), "--device", "cpu", "--threads", "1", "--quiet"])
    assert status == 2 and list(tmp_path.iterdir()) == []


def test_check_writable_probes_the_nearest_existing_folder_and_leaves_nothing(tmp_path, monkeypatch):
    check_writable(tmp_path / "not" / "yet" / "there.nii.gz")
    assert list(tmp_path.iterdir()) == []

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(io.tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError, match=rf"there\.nii\.gz: cannot write into {tmp_path} \(Read-only"):
        check_writable(tmp_path / "not" / "yet" / "there.nii.gz")


@pytest.mark.parametrize("name", ["values.nii", "values.nii.gz"])
def test_nifti_nan_and_infinite_voxels_are_read_as_stored(tmp_path, name):
    """ITK's NIfTI reader turns them into 0; ``read_volume`` gives them back so that they can be refused."""
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)  # (z, y, x); 0 at [0, 0, 0] stays 0
    array[0, 1, 2], array[1, 2, 3], array[1, 0, 1] = np.nan, np.inf, -np.inf
    nibabel.save(nibabel.Nifti1Image(array.transpose(), np.eye(4)), str(tmp_path / name))
    back = read_volume(tmp_path / name).array
    expected_bad = ~np.isfinite(array)
    np.testing.assert_array_equal(~np.isfinite(back), expected_bad)
    np.testing.assert_array_equal(back[expected_bad], array[expected_bad])
    np.testing.assert_array_equal(back[~expected_bad], array[~expected_bad])


def test_gzip_payload_tells_a_cut_stream_from_a_complete_one(tmp_path):
    payload = np.random.default_rng(0).bytes(50_000)
    whole = tmp_path / "whole.gz"
    whole.write_bytes(gzip.compress(payload))
    assert io._gzip_payload(whole) == (len(payload), True)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(whole.read_bytes()[:20_000])
    size, complete = io._gzip_payload(cut)
    assert not complete and 15_000 < size < 20_000  # everything decompressible is counted


def test_label_values_the_file_type_cannot_hold_are_refused(tmp_path):
    labels = [LabelSpec("blob", 1), LabelSpec("myocardium", 820)]
    write_volume(Volume(np.ones((2, 2, 2), np.uint8)), tmp_path / "small.nii.gz")
    with pytest.raises(VolumeReadError, match=r"stores uint8 values \(0\.\.255\), so label value 820 \('myocardium'\)"):
        read_labels(tmp_path / "small.nii.gz", labels)
    write_volume(Volume(np.full((2, 2, 2), 820, np.uint16)), tmp_path / "wide.nii.gz")
    assert (read_labels(tmp_path / "wide.nii.gz", labels).array == 2).all()


def prepared(subject: str, slices: int) -> PreparedVolume:
    return PreparedVolume(Subject(subject, Path(f"{subject}.nii.gz"), None, "CT"), None, 0,
                          np.zeros((slices, 4, 4), np.float32), None, None)


def test_paired_data_need_the_same_subjects_and_slice_counts():
    run_data._require_pairs({"CT": [prepared("a", 3)], "MR": [prepared("a", 3)]})
    with pytest.raises(ValueError, match="CT has a, b and MR has a, c \\(unmatched: b, c\\)"):
        run_data._require_pairs({"CT": [prepared("a", 3), prepared("b", 3)],
                                 "MR": [prepared("a", 3), prepared("c", 3)]})
    with pytest.raises(ValueError, match="subject a has 3 CT slices and 5 MR slices"):
        run_data._require_pairs({"CT": [prepared("a", 3)], "MR": [prepared("a", 5)]})


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 1, {"step": 1, "weights": torch.ones(3)})

    def half_then_full(obj, stream, *args, **kwargs):
        stream.write(b"PK" + b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_full)
    with pytest.raises(CheckpointError, match=r"step_00000002\.ckpt \(No space left on device\)"):
        save_checkpoint(tmp_path, 2, {"step": 2, "weights": torch.zeros(3)})
    monkeypatch.undo()
    (only,) = list_checkpoints(tmp_path)
    assert load_checkpoint(only)["step"] == 1
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_00000001.ckpt"]


def test_a_constant_volume_gets_one_warning(caplog):
    from sasan.config import NormalizationConfig
    from sasan.data.preprocess import fit_intensity_map

    with caplog.at_level(logging.WARNING):
        imap = fit_intensity_map(np.full((2, 3, 3), 42.0), NormalizationConfig())
    assert (imap.low, imap.high) == (42.0, 43.0)
    assert [r.getMessage() for r in caplog.records] == ["constant volume (value 42): it is normalised to -1"]


def test_phantom_overwrite_replaces_its_own_files_and_keeps_the_users(tmp_path):
    folder = tmp_path / "phantom"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert cli.main(["phantom", str(folder), "--subjects", "1", "--size", "24"]) == 2
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert cli.main(["phantom", str(folder), "--subjects", "1", "--size", "24", "--overwrite"]) == 0
    assert (folder / "notes.txt").read_text() == "mine"
    assert read_volume(folder / "CT" / "images" / "ct_000.nii.gz").shape[1:] == (24, 24)
    assert [p.name for p in tmp_path.iterdir()] == ["phantom"]  # no staging folder left
