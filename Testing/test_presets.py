"""Presets are found in the source checkout, else in an installed package's data folder."""
import sysconfig

import pytest

from sasan import presets


def test_presets_are_read_from_the_checkout():
    path = presets.preset_path("phantom_demo.yaml")
    assert path == presets.CHECKOUT_FOLDER / "phantom_demo.yaml" and path.is_file()


def test_an_installed_copy_is_found_when_there_is_no_checkout(tmp_path, monkeypatch):
    prefix = tmp_path / "prefix"
    installed = prefix / presets.INSTALLED_SUBFOLDER
    installed.mkdir(parents=True)
    (installed / "phantom_quick.yaml").write_text("name: installed\n")
    monkeypatch.setattr(presets, "CHECKOUT_FOLDER", tmp_path / "no-checkout")
    monkeypatch.setattr(sysconfig, "get_path", lambda name, scheme=None: str(prefix))
    assert presets.preset_path("phantom_quick.yaml") == installed / "phantom_quick.yaml"


def test_a_missing_preset_names_every_folder_searched(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "CHECKOUT_FOLDER", tmp_path / "no-checkout")
    with pytest.raises(FileNotFoundError, match="no_such.yaml") as error:
        presets.preset_path("no_such.yaml")
    assert str(tmp_path / "no-checkout") in str(error.value) and "share" in str(error.value)
