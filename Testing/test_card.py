"""The model card without torch: the header reader, validation, typed accessors, the one request check and
the one summary."""
import json
import struct
import subprocess
import sys
from pathlib import Path

import fixtures
import pytest

from sasan.card import (
    CARD_KEY,
    ModelCard,
    ModelFileError,
    read_card,
    read_safetensors_metadata,
    request_problem,
)
from sasan.config import CropConfig, NormalizationConfig

SHIPPED = Path(__file__).resolve().parents[1] / "Resources" / "Models"
NORM = {"config": {"method": "window", "percentiles": [2.0, 98.0], "window": [-200.0, 400.0]},
        "reference": {"method": "window", "low": -200.0, "high": 400.0}}
BODY_BOX = {"method": "foreground", "threshold": None, "margin_mm": 10.0, "rows": [0.0, 1.0], "columns": [0.0, 1.0]}


def card(**changes) -> ModelCard:
    """A valid CT <-> MR card with an MR segmenter (no tensors needed here)."""
    return fixtures.tiny_card(**{"architecture": {"num_maps": 2}, "normalization": {"CT": NORM, "MR": NORM},
                                 "labels": [{"name": "heart", "value": 1, "color": [1.0, 0.0, 0.0]}], **changes})


def write_safetensors(path: Path, metadata=None) -> Path:
    """A minimal valid safetensors file written by hand (u64 header length, JSON header, data)."""
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(8))
    return path


def test_the_card_module_imports_no_torch():
    script = ("import sys, sasan.card\n"
              "heavy = {'torch', 'numpy', 'safetensors', 'yaml'} & set(sys.modules)\n"
              "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_card_round_trips_through_a_file_header(tmp_path):
    written = card(provenance={"source": "a lab"}, tensor_sha256="ab" * 32)
    path = write_safetensors(tmp_path / "m.safetensors", {CARD_KEY: written.to_json(), "other": "x"})
    assert read_safetensors_metadata(path) == {CARD_KEY: written.to_json(), "other": "x"}
    assert read_card(path) == written


def test_a_file_written_by_safetensors_itself_is_read(tmp_path):
    numpy_api = pytest.importorskip("safetensors.numpy")
    import numpy as np

    path = tmp_path / "lib.safetensors"
    numpy_api.save_file({"w": np.zeros(3, np.float32)}, str(path), metadata={CARD_KEY: card().to_json()})
    assert read_card(path) == card()


def with_length(header: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header


@pytest.mark.parametrize("content, message", [
    (b"", r"not a safetensors model file \(shorter than its 8-byte header length\)"),
    (b"\x10\x00\x00", r"not a safetensors model file \(shorter than its 8-byte header length\)"),
    (struct.pack("<Q", 10**9) + b"{}", r"not a safetensors model file \(header length 1000000000\)"),
    (with_length(b"\xff\xfe\x00"), r"not a safetensors model file \(its header is not JSON\)"),
    (with_length(b"{not json}"), r"not a safetensors model file \(its header is not JSON\)"),
    (with_length(b"[]"), r"not a safetensors model file \(its header is not a JSON object\)"),
    (with_length(b'{"__metadata__": [1]}'), r"not a safetensors model file \(its metadata is not a mapping\)"),
])
def test_damaged_headers_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        read_card(path)


def test_a_truncated_file_is_refused(tmp_path):
    whole = write_safetensors(tmp_path / "whole.safetensors", {CARD_KEY: card().to_json()}).read_bytes()
    (length,) = struct.unpack("<Q", whole[:8])
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole[: 8 + length // 2])
    with pytest.raises(ModelFileError, match=f"header length {length}"):
        read_card(cut)


def test_missing_file_missing_card_and_bad_card_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="none.safetensors' does not exist"):
        read_card(tmp_path / "none.safetensors")
    plain = write_safetensors(tmp_path / "plain.safetensors", {"format": "pt"})
    with pytest.raises(ModelFileError, match="has no SASAN model card"):
        read_card(plain)
    assert read_safetensors_metadata(write_safetensors(tmp_path / "bare.safetensors")) == {}
    broken = write_safetensors(tmp_path / "broken.safetensors", {CARD_KEY: "{not json"})
    with pytest.raises(ModelFileError, match="the model card is not valid JSON"):
        read_card(broken)
    malformed = write_safetensors(tmp_path / "malformed.safetensors", {CARD_KEY: card(context=2).to_json()})
    with pytest.raises(ModelFileError, match="malformed model card: context"):
        read_card(malformed)


@pytest.mark.parametrize("changes, message", [
    (dict(description=3), "description and intended_use must be strings"),
    (dict(provenance=["lab"]), "provenance and evaluation must be objects"),
    (dict(segmenters=["PET"]), "segmenters must name modalities"),
])
def test_validation_names_the_field(changes, message):
    with pytest.raises(ModelFileError, match=message):
        card(**changes).validate()


def test_shipped_cards_read_back_byte_for_byte():
    paths = sorted(SHIPPED.glob("*.safetensors"))
    assert paths, f"no shipped model in {SHIPPED}"
    for path in paths:
        stored = read_safetensors_metadata(path)[CARD_KEY]
        assert read_card(path).to_json() == stored
        assert ModelCard.from_json(stored).to_json() == stored


def test_typed_accessors():
    cropped = card(normalization={"CT": {**NORM, "crop": BODY_BOX}, "MR": NORM})
    assert cropped.normalization_config("CT") == NormalizationConfig("window", [2.0, 98.0], [-200.0, 400.0])
    assert cropped.reference("MR") == NORM["reference"]
    assert cropped.crop("CT") == CropConfig(method="foreground", threshold=None, margin_mm=10.0)
    assert cropped.crop("MR") == CropConfig()  # a card written before crops existed: whole slices
    assert cropped.model_config.num_maps == 2 and cropped.model_config.attention
    assert [label.name for label in cropped.label_specs] == ["heart"] and cropped.num_classes == 2
    assert cropped.source_for("MR") == "CT"


def test_accessors_refuse_malformed_entries_of_unvalidated_cards():
    broken = card(normalization={"CT": {**NORM, "crop": {**BODY_BOX, "margin_mm": -1.0}},
                                 "MR": {**NORM, "config": {"method": "window", "level": 40}}})
    with pytest.raises(ModelFileError, match="the model card's crop for CT is malformed: crop.margin_mm"):
        broken.crop("CT")
    with pytest.raises(ModelFileError, match="the model card's normalisation for MR is malformed"):
        broken.normalization_config("MR")


@pytest.mark.parametrize("model, request_, sentence", [
    (card(), dict(target="PET"), "model 'tiny' does not translate to PET (it offers CT -> MR, MR -> CT)"),
    (card(directions=[["MR", "CT"]]), dict(target="MR"), "model 'tiny' does not translate to MR (it offers MR -> CT)"),
    (card(), dict(target="MR", source="MR"), "model 'tiny' does not translate MR to MR (it offers CT -> MR, MR -> CT)"),
    (card(directions=[["MR", "CT"]]), dict(target="MR", source="CT"),
     "model 'tiny' does not translate CT to MR (it offers MR -> CT)"),
    (card(), dict(target="CT", segment=True),
     "model 'tiny' has no segmenter for CT (it has one for MR): leave the segmentation out"),
    (card(segmenters=[]), dict(target="MR", segment=True),
     "model 'tiny' has no segmenter for MR (it has none): leave the segmentation out"),
    (card(architecture={"attention": False}), dict(target="MR", attention=True),
     "model 'tiny' has no attention module: leave the attention maps out"),
])
def test_each_refused_request_has_one_sentence(model, request_, sentence):
    request_ = {"segment": False, "attention": False, **request_}
    assert request_problem(model, **request_) == sentence


def test_possible_requests_have_no_problem():
    assert request_problem(card(), "MR", segment=True, attention=True) is None
    assert request_problem(card(), "CT", source="MR", segment=False, attention=True) is None
    assert request_problem(card(architecture={"attention": False}), "MR", segment=True, attention=False) is None


def test_the_summary_says_what_a_user_should_know():
    described = card(description="Trained on the phantom.", provenance={"source": "a lab", "data": "phantom"},
                     normalization={"CT": {**NORM, "crop": BODY_BOX}, "MR": NORM})
    assert described.summary() == {
        "Name": "tiny",
        "Source": "a lab",
        "Translates": "CT -> MR, MR -> CT",
        "Modalities": "CT, MR",
        "Input": "3 adjacent axial slices, resampled to 32 x 32 pixels",
        "Crop": "CT: body box (threshold Otsu's) + 10.0 mm",
        "Training data": "phantom",
        "Intended use": "research; not for diagnosis",
        "Structures": "heart",
        "Segmenter for": "MR",
        "Description": "Trained on the phantom.",
        "Input check": "none (inputs are not compared with the training scans)",
    }
    boxed = {"method": "box", "threshold": None, "margin_mm": 10.0, "rows": [0.1, 0.9], "columns": [0.0, 1.0]}
    bare = card(labels=[], segmenters=[], intended_use="", normalization={"CT": NORM, "MR": {**NORM, "crop": boxed}})
    summary = bare.summary()
    assert summary["Source"] == summary["Training data"] == summary["Description"] == "not stated"
    assert summary["Intended use"] == "not stated"
    assert summary["Structures"] == summary["Segmenter for"] == "none"
    assert summary["Crop"] == "MR: rows [0.1, 0.9], columns [0.0, 1.0] of each slice"
    assert card().summary()["Crop"] == "none (whole slices)"
