"""Shipped presets and model files are found in a source checkout, an installed wheel and the Slicer
extension, by one standard-library module."""
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from sasan import resources

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_checkout(tmp_path, monkeypatch):
    """An engine installed without Resources/ beside it, and an empty interpreter data folder."""
    monkeypatch.setattr(resources, "ENGINE_ROOT", tmp_path / "site-packages")
    monkeypatch.setattr(sysconfig, "get_path", lambda name, scheme=None: str(tmp_path / "prefix"))
    monkeypatch.setattr(resources.site, "getuserbase", lambda: str(tmp_path / "user"))
    return tmp_path


def test_the_checkout_presets_and_models_are_found():
    path = resources.preset_path("phantom_demo.yaml")
    assert path == REPOSITORY / "Resources" / "configs" / "phantom_demo.yaml" and path.is_file()
    assert "phantom_tiny" in [p.stem for p in resources.find_presets()]
    assert resources.model_folders()[0] == REPOSITORY / "Resources" / "Models"


def test_an_installed_wheel_is_searched_after_the_package(no_checkout):
    installed = no_checkout / "prefix" / "share" / "sasan"
    (installed / "configs").mkdir(parents=True)
    (installed / "configs" / "phantom_quick.yaml").write_text("name: installed\n")
    (installed / "Models").mkdir()
    assert resources.preset_path("phantom_quick.yaml") == installed / "configs" / "phantom_quick.yaml"
    assert resources.model_folders() == [installed / "Models"]


def test_the_slicer_extensions_resources_beside_the_modules_are_found(no_checkout, monkeypatch):
    modules = no_checkout / "qt-scripted-modules"  # the engine is installed here too, beside the modules
    for kind in ("configs", "Models"):
        (modules / "Resources" / kind).mkdir(parents=True)
    for name in ("b.yaml", "a.yml", "notes.txt"):
        (modules / "Resources" / "configs" / name).write_text("")
    monkeypatch.setattr(resources, "ENGINE_ROOT", modules)
    assert [p.name for p in resources.find_presets()] == ["a.yml", "b.yaml"]
    assert resources.model_folders() == [modules / "Resources" / "Models"]


def test_a_module_folder_is_searched_as_installed_and_as_in_the_source_tree(no_checkout):
    source_tree = no_checkout / "repo"
    (source_tree / "Resources" / "configs").mkdir(parents=True)
    (source_tree / "Resources" / "configs" / "c.yaml").write_text("")
    (source_tree / "SASANTrainer" / "Resources" / "configs").mkdir(parents=True)
    (source_tree / "SASANTrainer" / "Resources" / "configs" / "c.yaml").write_text("")
    assert resources.find_presets() == []
    assert resources.find_presets(source_tree / "SASANTrainer") == [
        source_tree / "SASANTrainer" / "Resources" / "configs" / "c.yaml"]  # the module's own folder first
    folders = resources.resource_folders("configs", source_tree / "SASANTrainer")
    assert len(folders) == len(set(folders)) and source_tree / "Resources" / "configs" in folders


def test_a_missing_preset_names_every_folder_searched(no_checkout):
    with pytest.raises(FileNotFoundError, match="no_such.yaml") as error:
        resources.preset_path("no_such.yaml")
    assert str(no_checkout / "site-packages") in str(error.value) and "share" in str(error.value)
    with pytest.raises(ValueError, match="configs or Models"):
        resources.resource_folders("models")


def test_a_shipped_preset_with_relative_data_folders_is_refused_naming_the_key(tmp_path):
    shipped = REPOSITORY / "Resources" / "configs"
    with pytest.raises(ValueError, match=r"^data\.source\.root: 'data/mmwhs' is a relative folder, and "
                                         r"'mmwhs_ct_to_mr\.yaml' is a preset shipped with SASAN"):
        resources.check_shipped_preset_data_folders(shipped / "mmwhs_ct_to_mr.yaml")
    resources.check_shipped_preset_data_folders(shipped / "phantom_tiny.yaml")  # no data folders at all
    copy = tmp_path / "mmwhs_ct_to_mr.yaml"  # the user's copy, beside the data: relative is what they mean
    copy.write_text((shipped / "mmwhs_ct_to_mr.yaml").read_text())
    resources.check_shipped_preset_data_folders(copy)
    assert resources.is_shipped_preset(shipped / "head_ct_mr.yaml") and not resources.is_shipped_preset(copy)


def test_nothing_but_the_standard_library_is_imported():
    code = "import sys, sasan.resources; assert not {'torch', 'yaml', 'numpy'} & set(sys.modules); print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
