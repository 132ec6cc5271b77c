"""Model selector and card: shipped models found by folder, safetensors header read without torch."""
import json
import struct
from pathlib import Path

import pytest

from SASANSlicerLib.models import (
    CARD_KEY,
    ModelEntry,
    ModelFileError,
    find_models,
    model_card_html,
    model_folders,
    read_model_card,
    read_safetensors_metadata,
)

CARD = {
    "name": "phantom CT<->MR",
    "description": "Trained on the phantom.",
    "directions": [["CT", "MR"], ["MR", "CT"]],
    "context": 3,
    "image_size": 64,
    "labels": [{"name": "LV blood", "value": 500, "color": [1.0, 0.0, 0.5]}],
    "segmenters": ["MR"],
    "intended_use": "research; not for diagnosis",
    "provenance": {"data": "phantom", "steps": 40},
}


def write_safetensors(path, metadata=None, tensors=None):
    """A minimal valid safetensors file written by hand (the format: u64 header length, JSON, data)."""
    header = dict(tensors or {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(8))
    return path


def test_card_key_matches_the_engine():
    card = pytest.importorskip("sasan.card")
    assert CARD_KEY == card.CARD_KEY


def test_metadata_and_card_are_read_from_the_header(tmp_path):
    path = write_safetensors(tmp_path / "m.safetensors", {CARD_KEY: json.dumps(CARD), "other": "x"})
    assert read_safetensors_metadata(path)["other"] == "x"
    assert read_model_card(path) == CARD


def test_a_file_written_by_safetensors_itself_is_read(tmp_path):
    numpy_api = pytest.importorskip("safetensors.numpy")
    import numpy as np

    path = tmp_path / "lib.safetensors"
    numpy_api.save_file({"w": np.zeros(3, np.float32)}, str(path), metadata={CARD_KEY: json.dumps(CARD)})
    assert read_model_card(path)["name"] == "phantom CT<->MR"


@pytest.mark.parametrize("content, message", [
    (b"", "too short"),
    (struct.pack("<Q", 10**9) + b"{}", "header length"),
    (struct.pack("<Q", 3) + b"\xff\xfe\x00", "not JSON"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
])
def test_damaged_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        read_safetensors_metadata(path)


def test_missing_file_and_missing_card_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        read_model_card(tmp_path / "none.safetensors")
    path = write_safetensors(tmp_path / "plain.safetensors", {"format": "pt"})
    with pytest.raises(ModelFileError, match="no SASAN model card"):
        read_model_card(path)
    path = write_safetensors(tmp_path / "broken.safetensors", {CARD_KEY: "{not json"})
    with pytest.raises(ModelFileError, match="not valid JSON"):
        read_model_card(path)


def test_card_html_shows_directions_structures_and_escapes_text():
    text = model_card_html(CARD, "m.safetensors")
    assert "<h3>phantom CT&lt;-&gt;MR</h3>" in text
    assert "CT \u2192 MR, MR \u2192 CT" in text
    assert "LV blood" in text and "#ff0080" in text  # the structure's colour swatch
    assert "research; not for diagnosis" in text and "m.safetensors" in text
    assert "<b>steps</b></td><td>40" in text
    assert "<h3>fallback.safetensors</h3>" in model_card_html({}, "fallback.safetensors")
    assert "Crop" not in text  # no crop in the card, no row


def test_card_html_says_which_modalities_are_cropped():
    whole = {"config": {}, "reference": {}, "crop": {"method": "none"}}
    body = {**whole, "crop": {"method": "foreground", "threshold": None, "margin_mm": 10.0}}
    text = model_card_html({**CARD, "normalization": {"CT": body, "MR": whole}})
    assert "<b>Crop</b></td><td>CT: body box (threshold Otsu&#x27;s) + 10.0 mm</td>" in text


def test_shipped_models_are_listed_by_name_from_module_and_source_tree_folders(tmp_path):
    installed = tmp_path / "qt-scripted-modules"
    (installed / "Resources" / "Models").mkdir(parents=True)
    source_tree = tmp_path / "repo"
    module_dir = source_tree / "SASANSlicer"
    module_dir.mkdir(parents=True)
    (source_tree / "Resources" / "Models").mkdir(parents=True)
    write_safetensors(source_tree / "Resources" / "Models" / "mmwhs_ct_mr.safetensors", {})
    write_safetensors(source_tree / "Resources" / "Models" / "Brats.safetensors", {})
    (source_tree / "Resources" / "Models" / "notes.txt").write_text("not a model")
    assert installed / "Resources" / "Models" in model_folders(installed)
    folders = model_folders(module_dir)
    assert source_tree / "Resources" / "Models" in folders
    entries = find_models(folders)
    names = [entry.name for entry in entries if entry.path.parent == source_tree / "Resources" / "Models"]
    assert names == ["Brats", "mmwhs_ct_mr"]
    assert ModelEntry("Brats", source_tree / "Resources" / "Models" / "Brats.safetensors") in entries


def test_models_are_named_by_their_card_and_the_head_model_comes_first(tmp_path):
    folder = tmp_path / "Models"
    folder.mkdir()
    write_safetensors(folder / "a_cardiac.safetensors", {CARD_KEY: json.dumps({"name": "Cardiac CT to MR"})})
    write_safetensors(folder / "head_ct_mr.safetensors", {CARD_KEY: json.dumps({"name": "Head CT <-> T1 MR"})})
    write_safetensors(folder / "broken.safetensors", {CARD_KEY: "{not json"})
    assert [entry.name for entry in find_models([folder])] == ["Head CT <-> T1 MR", "broken", "Cardiac CT to MR"]


def test_the_shipped_head_model_is_the_default():
    shipped = Path(__file__).resolve().parents[2] / "Resources" / "Models"
    first = find_models([shipped])[0]
    assert first.path.stem == "head_ct_mr" and first.name == read_model_card(first.path)["name"]
