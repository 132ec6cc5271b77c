"""Files and folders appear complete or not at all; failures name the destination and leave nothing behind."""
import errno
import os
from pathlib import Path

import pytest

from sasan.atomic import atomic_file, atomic_files, staged_folder


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def disk_full() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


def test_a_written_file_replaces_the_old_one_readable_by_everyone(tmp_path):
    target = tmp_path / "table.md"
    target.write_text("old")
    with atomic_file(target, suffix=".md") as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".table.md.")
        assert temporary.name.endswith(".md") and target.read_text() == "old"
        temporary.write_text("new")
    assert target.read_text() == "new" and names(tmp_path) == ["table.md"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_old_file_and_names_the_destination(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_text("old")
    with pytest.raises(OSError, match=r"model\.safetensors: could not be written \(No space left on device\); "
                                      "nothing was left behind") as failure:
        with atomic_file(target) as temporary:
            temporary.write_text("half")
            raise disk_full()
    assert type(failure.value) is OSError and ".tmp" not in str(failure.value)
    assert target.read_text() == "old" and names(tmp_path) == ["model.safetensors"]


def test_other_errors_pass_unchanged_and_chosen_ones_keep_their_type(tmp_path):
    with pytest.raises(ValueError, match="^bad tensor$"):
        with atomic_file(tmp_path / "a.bin") as temporary:
            temporary.write_text("half")
            raise ValueError("bad tensor")
    with pytest.raises(RuntimeError, match=r"b\.nii\.gz: could not be written \(disk full\)"):
        with atomic_file(tmp_path / "b.nii.gz", failures=(RuntimeError,)):
            raise RuntimeError("ITK ERROR: ImageFileWriter\ndisk full")
    with pytest.raises(PermissionError, match=r"^cannot write c\.ckpt: Permission denied$"):
        with atomic_file(tmp_path / "c.ckpt", message=lambda path, reason: f"cannot write {path.name}: {reason}"):
            raise PermissionError(errno.EACCES, "Permission denied")
    assert names(tmp_path) == []


def test_a_folder_that_takes_no_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"out\.nrrd: cannot write into this folder \(No such file"):
        with atomic_file(tmp_path / "missing" / "out.nrrd"):
            pass


def test_several_files_appear_together_or_not_at_all(tmp_path):
    first, second = tmp_path / "translated.nii.gz", tmp_path / "labels.nii.gz"
    first.write_text("old translation")
    with pytest.raises(OSError, match=r"labels\.nii\.gz: could not be written \(No space"):
        with atomic_files() as files:
            files.add(first).write_text("new translation")
            files.add(second).write_text("half")
            raise disk_full()
    assert names(tmp_path) == ["translated.nii.gz"] and first.read_text() == "old translation"
    with atomic_files() as files:
        files.add(first).write_text("new translation")
        files.add(second).write_text("labels")
    assert first.read_text() == "new translation" and second.read_text() == "labels"
    assert names(tmp_path) == ["labels.nii.gz", "translated.nii.gz"]


def test_a_refused_second_file_is_reported_as_itself(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^\S*nowhere/b\.txt: cannot write into this folder") as failure:
        with atomic_files() as files:
            files.add(tmp_path / "a.txt").write_text("a")
            files.add(tmp_path / "nowhere" / "b.txt")
    assert "a.txt" not in str(failure.value) and names(tmp_path) == []


def test_a_new_staged_folder_appears_whole(tmp_path):
    output = tmp_path / "deep" / "phantom"
    with staged_folder(output) as staging:
        assert staging.parent == output.parent and staging.name.startswith(".phantom.partial.")
        (staging / "CT").mkdir()
        (staging / "CT" / "ct_000.nii.gz").write_text("ct")
        assert not output.exists()
    assert (output / "CT" / "ct_000.nii.gz").read_text() == "ct" and names(output.parent) == ["phantom"]


def test_files_staged_for_a_used_folder_replace_only_their_names(tmp_path):
    output = tmp_path / "results"
    (output / "volumes").mkdir(parents=True)
    (output / "notes.txt").write_text("mine")
    (output / "volumes" / "a.nii.gz").write_text("old")
    with staged_folder(output) as staging:
        assert staging.parent == output  # same file system: every move is one rename
        (staging / "volumes").mkdir()
        (staging / "volumes" / "a.nii.gz").write_text("new")
        (staging / "results.md").write_text("table")
    assert names(output) == ["notes.txt", "results.md", "volumes"]
    assert (output / "volumes" / "a.nii.gz").read_text() == "new" and (output / "notes.txt").read_text() == "mine"


def test_a_failure_adds_nothing(tmp_path):
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    for output in (tmp_path / "new", tmp_path / "kept"):
        with pytest.raises(RuntimeError, match="half-way"):
            with staged_folder(output) as staging:
                (staging / "results.md").write_text("partial")
                raise RuntimeError("half-way")
    assert names(tmp_path) == ["kept"] and names(tmp_path / "kept") == ["notes.txt"]


def test_a_folder_made_meanwhile_receives_the_files(tmp_path):
    """Another process finished the same cache folder first: its files are replaced, nothing fails."""
    output = tmp_path / "phantom-v1"
    with staged_folder(output) as staging:
        (staging / "ct_000.nii.gz").write_text("mine")
        output.mkdir()
        (output / "ct_000.nii.gz").write_text("theirs")
        (output / "mr_000.nii.gz").write_text("theirs")
    assert (output / "ct_000.nii.gz").read_text() == "mine" and names(output) == ["ct_000.nii.gz", "mr_000.nii.gz"]
    assert names(tmp_path) == ["phantom-v1"]


def test_a_file_in_the_way_is_refused(tmp_path):
    (tmp_path / "output").write_text("a file")
    with pytest.raises(NotADirectoryError, match="exists and is not a folder"):
        with staged_folder(tmp_path / "output"):
            pass


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permission bits do not bind root")
def test_a_read_only_folder_is_named(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=r"m\.safetensors: cannot write into this folder"):
            with atomic_file(tmp_path / "m.safetensors"):
                pass
    finally:
        tmp_path.chmod(0o755)
