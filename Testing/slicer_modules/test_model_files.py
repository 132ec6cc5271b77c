"""Model selector and card view: shipped models found by folder and named by their cards, a card as HTML."""
import dataclasses
import html
import json
import struct
from pathlib import Path

from SASANSlicerLib.model_files import ModelEntry, find_models, model_card_html, model_folders

from sasan.card import CARD_KEY, ModelCard, read_card

NORM = {"config": {}, "reference": {}}
CARD = ModelCard(
    name="phantom CT<->MR", modalities=["CT", "MR"], directions=[["CT", "MR"], ["MR", "CT"]], architecture={},
    context=3, image_size=64, normalization={"CT": NORM, "MR": NORM}, description="Trained on the phantom.",
    labels=[{"name": "LV blood", "value": 500, "color": [1.0, 0.0, 0.5]}], segmenters=["MR"],
    provenance={"data": "phantom", "steps": 40},
)


def write_model(path, card_text=None):
    """A minimal safetensors file (u64 header length, JSON header, data) holding ``card_text`` as its card."""
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    if card_text is not None:
        header["__metadata__"] = {CARD_KEY: card_text}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(8))
    return path


def test_card_html_shows_the_summary_structures_and_details_and_escapes_text():
    text = model_card_html(CARD, "m.safetensors")
    assert "<h3>phantom CT&lt;-&gt;MR</h3>" in text
    for label, value in CARD.summary().items():
        if label not in ("Name", "Structures"):  # the title, and the list of structures below
            assert f"<tr><td><b>{label}</b></td><td>{html.escape(value)}</td></tr>" in text
    assert "<b>File</b></td><td>m.safetensors" in text
    assert "LV blood (value 500)" in text and "#ff0080" in text  # the structure's colour swatch
    assert "<b>steps</b></td><td>40" in text
    assert "<b>Evaluation</b>" not in text  # an empty section is left out


def test_card_html_says_which_modalities_are_cropped():
    body = {**NORM, "crop": {"method": "foreground", "threshold": None, "margin_mm": 10.0}}
    text = model_card_html(dataclasses.replace(CARD, normalization={"CT": body, "MR": NORM}), "m.safetensors")
    assert "<b>Crop</b></td><td>CT: body box (threshold Otsu&#x27;s) + 10.0 mm</td>" in text


def test_shipped_models_are_listed_by_name_from_module_and_source_tree_folders(tmp_path):
    installed = tmp_path / "qt-scripted-modules"
    (installed / "Resources" / "Models").mkdir(parents=True)
    source_tree = tmp_path / "repo"
    module_dir = source_tree / "SASANSlicer"
    module_dir.mkdir(parents=True)
    (source_tree / "Resources" / "Models").mkdir(parents=True)
    write_model(source_tree / "Resources" / "Models" / "mmwhs_ct_mr.safetensors")
    write_model(source_tree / "Resources" / "Models" / "Brats.safetensors")
    (source_tree / "Resources" / "Models" / "notes.txt").write_text("not a model")
    assert installed / "Resources" / "Models" in model_folders(installed)
    folders = model_folders(module_dir)
    assert source_tree / "Resources" / "Models" in folders
    entries = find_models(folders)
    names = [entry.name for entry in entries if entry.path.parent == source_tree / "Resources" / "Models"]
    assert names == ["Brats", "mmwhs_ct_mr"]
    assert ModelEntry("Brats", source_tree / "Resources" / "Models" / "Brats.safetensors") in entries


def test_models_are_named_by_their_card_unreadable_ones_by_file_and_the_head_model_comes_first(tmp_path):
    folder = tmp_path / "Models"
    folder.mkdir()
    write_model(folder / "a_cardiac.safetensors", dataclasses.replace(CARD, name="Cardiac CT to MR").to_json())
    write_model(folder / "head_ct_mr.safetensors", dataclasses.replace(CARD, name="Head CT <-> T1 MR").to_json())
    write_model(folder / "broken.safetensors", "{not json")
    write_model(folder / "malformed.safetensors", json.dumps({"name": "no other field"}))
    names = [entry.name for entry in find_models([folder])]
    assert names == ["Head CT <-> T1 MR", "broken", "Cardiac CT to MR", "malformed"]


def test_the_shipped_head_model_is_the_default():
    shipped = Path(__file__).resolve().parents[2] / "Resources" / "Models"
    first = find_models([shipped])[0]
    assert first.path.stem == "head_ct_mr" and first.name == read_card(first.path).name
