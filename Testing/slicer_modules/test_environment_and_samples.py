"""Engine location, pip requirements, and the phantom sample volumes of the Sample Data module."""
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from SASANSlicerLib.environment import (
    EngineNotFoundError,
    ensure_engine_importable,
    missing_requirements,
    read_requirements,
    requirement_name,
)
from SASANSlicerLib.sample_data import phantom_sample_file, phantom_sample_path, sample_cache_dir

REQUIREMENTS = Path(__file__).resolve().parents[2] / "SASANSlicer" / "Resources" / "SASANSlicer-requirements.txt"


def test_engine_beside_the_module_folder_is_put_on_sys_path(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "repo" / "fake_sasan_engine").mkdir(parents=True)
    (tmp_path / "repo" / "fake_sasan_engine" / "__init__.py").write_text("")
    (tmp_path / "repo" / "SASANSlicer").mkdir()
    root = ensure_engine_importable(tmp_path / "repo" / "SASANSlicer", package="fake_sasan_engine")
    assert root == tmp_path / "repo" and sys.path[0] == str(tmp_path / "repo")
    assert ensure_engine_importable(tmp_path / "elsewhere", package="fake_sasan_engine") == tmp_path / "repo"


def test_missing_engine_is_reported_with_the_folders_searched(tmp_path):
    with pytest.raises(EngineNotFoundError, match=f"'no_such_engine'.*{tmp_path.name}"):
        ensure_engine_importable(tmp_path / "SASANSlicer", package="no_such_engine")


def test_requirements_file_lists_the_engine_packages_but_not_torch():
    requirements = read_requirements(REQUIREMENTS)
    names = [requirement_name(r) for r in requirements]
    assert {"safetensors", "pyyaml", "SimpleITK", "monai"} <= set(names)
    assert "torch" not in names  # torch comes from the PyTorch extension


def test_requirement_names_and_missing_detection(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("# comment\nnumpy>=1.24  # inline\n\nno-such-distribution-xyz==1.0\npyyaml[extra]~=6.0\n")
    requirements = read_requirements(path)
    assert requirements == ["numpy>=1.24", "no-such-distribution-xyz==1.0", "pyyaml[extra]~=6.0"]
    assert [requirement_name(r) for r in requirements] == ["numpy", "no-such-distribution-xyz", "pyyaml"]
    assert missing_requirements(requirements) == ["no-such-distribution-xyz==1.0"]
    with pytest.raises(ValueError, match="not a requirement"):
        requirement_name(">=1.0")


def test_sample_cache_follows_sasan_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SASAN_CACHE", str(tmp_path))
    assert sample_cache_dir() == tmp_path / "slicer-samples"
    assert phantom_sample_file("MR").parent == tmp_path / "slicer-samples"
    with pytest.raises(ValueError, match="'PET'"):
        phantom_sample_file("PET")


def test_phantom_sample_is_generated_once_with_the_engine_geometry(tmp_path):
    phantom = pytest.importorskip("sasan.data.phantom")
    path = phantom_sample_path("CT", tmp_path)
    image = sitk.ReadImage(str(path))
    expected, _ = phantom.make_subject(101, "CT", 96)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), expected.array)
    np.testing.assert_allclose(image.GetSpacing(), expected.spacing)
    np.testing.assert_allclose(image.GetOrigin(), expected.origin)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), expected.direction)
    modified = path.stat().st_mtime_ns
    assert phantom_sample_path("CT", tmp_path) == path and path.stat().st_mtime_ns == modified
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_install_missing_asks_first_and_installs_only_what_is_missing(monkeypatch):
    import SASANSlicerLib.environment as environment

    questions, installed = [], []
    assert environment.install_missing(["numpy"], questions.append, installed.append)
    assert questions == [] and installed == []  # nothing missing: no question

    assert not environment.install_missing(["numpy", "not-installed-xyz>=1"], lambda m: questions.append(m) and False,
                                           installed.append, purpose="SASAN Trainer")
    assert "SASAN Trainer needs" in questions[0] and "not-installed-xyz>=1" in questions[0]
    assert "numpy" not in questions[0] and installed == []

    monkeypatch.setattr(environment, "missing_requirements",
                        lambda requirements: [] if installed else ["not-installed-xyz>=1"])
    assert environment.install_missing(["not-installed-xyz>=1"], lambda m: True, installed.append)
    assert installed == [["not-installed-xyz>=1"]]


def test_install_that_does_not_take_is_reported():
    from SASANSlicerLib.environment import install_missing

    with pytest.raises(RuntimeError, match="installing not-installed-xyz failed"):
        install_missing(["not-installed-xyz"], lambda m: True, lambda missing: None)
