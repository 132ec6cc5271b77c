"""Model files from outside the shipped set: which need a confirmation, remembering it, what is shown."""
import dataclasses
import json
import os
import struct

import pytest
from SASANSlicerLib.model_trust import ModelConsent, confirmation_text, model_digest, settings_key

from sasan.card import CARD_KEY, ModelCard, ModelFileError, read_card

DIGEST = "ab" * 32
NORM = {"config": {}, "reference": {}}
CARD = ModelCard(
    name="head CT<->MR", modalities=["CT", "MR"], directions=[["CT", "MR"], ["MR", "CT"]], architecture={},
    context=3, image_size=64, normalization={"CT": NORM, "MR": NORM},
    labels=[{"name": "head", "value": 1, "color": [1, 0, 0]}, {"name": "brain", "value": 2, "color": [0, 1, 0]}],
    description="Trained on one head CT",
    provenance={"source": "https://example.org/lab", "data": "folder:CT / folder:MR", "steps": 300},
    tensor_sha256=DIGEST,
)


class MemorySettings:
    """What ``qt.QSettings`` offers the consent logic: ``value(key, default)`` and ``setValue``."""

    def __init__(self):
        self.values = {}

    def value(self, key, default=None):
        return self.values.get(key, default)

    def setValue(self, key, value):
        self.values[key] = value


def model_file(path, card=CARD):
    """A minimal safetensors file holding ``card`` (header only matters here)."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                         "__metadata__": {CARD_KEY: card.to_json()}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    return path


@pytest.fixture
def folders(tmp_path):
    shipped, downloads = tmp_path / "Resources" / "Models", tmp_path / "Downloads"
    shipped.mkdir(parents=True)
    downloads.mkdir()
    return shipped, downloads


def test_shipped_models_need_no_confirmation_others_once(folders):
    shipped, downloads = folders
    settings = MemorySettings()
    consent = ModelConsent([shipped], settings)
    shipped_file = model_file(shipped / "head.safetensors", dataclasses.replace(CARD, tensor_sha256="cd" * 32))
    outside = model_file(downloads / "head.safetensors")
    assert not consent.needs_confirmation(shipped_file, read_card(shipped_file))
    assert consent.needs_confirmation(outside, CARD)
    consent.accept(outside, CARD)
    assert settings.values[f"SASAN/AcceptedModels/{DIGEST}"].startswith("head.safetensors accepted 20")
    assert not consent.needs_confirmation(outside, CARD)
    # A fresh consent object (the next Slicer session) reads the same settings.
    assert not ModelConsent([shipped], settings).needs_confirmation(outside, CARD)


def test_acceptance_follows_the_weights_not_the_file_name(folders):
    shipped, downloads = folders
    consent = ModelConsent([shipped], MemorySettings())
    consent.accept(model_file(downloads / "a.safetensors"), CARD)
    moved = model_file(downloads / "renamed copy.safetensors")
    assert not consent.needs_confirmation(moved, CARD)
    other_weights = dataclasses.replace(CARD, tensor_sha256="ef" * 32)
    assert consent.needs_confirmation(model_file(downloads / "a2.safetensors", other_weights), other_weights)


def test_a_link_in_the_shipped_folder_to_an_outside_file_is_not_shipped(folders):
    shipped, downloads = folders
    consent = ModelConsent([shipped], MemorySettings())
    outside = model_file(downloads / "untrusted.safetensors")
    os.symlink(outside, shipped / "looks_shipped.safetensors")
    assert consent.needs_confirmation(shipped / "looks_shipped.safetensors", CARD)
    os.symlink(shipped, downloads / "link_to_shipped")
    shipped_file = model_file(shipped / "real.safetensors")
    assert consent.is_shipped(downloads / "link_to_shipped" / "real.safetensors")
    assert consent.is_shipped(shipped_file)


@pytest.mark.parametrize("digest", [None, "", "ab" * 31, "AB" * 32, 42])
def test_a_card_without_a_valid_digest_always_asks_and_cannot_be_remembered(folders, digest):
    shipped, downloads = folders
    card = dataclasses.replace(CARD, tensor_sha256=digest)
    settings = MemorySettings()
    consent = ModelConsent([shipped], settings)
    path = model_file(downloads / "no_digest.safetensors", card)
    with pytest.raises(ModelFileError, match="no valid SHA-256 tensor digest"):
        consent.accept(path, card)
    assert settings.values == {} and consent.needs_confirmation(path, card)
    assert "Warning: the model card has no valid SHA-256" in confirmation_text(card, path)


def test_settings_key_and_digest():
    assert model_digest(CARD) == DIGEST
    assert settings_key(DIGEST) == "SASAN/AcceptedModels/" + DIGEST


def test_confirmation_shows_the_cards_summary_and_its_digest(tmp_path):
    text = confirmation_text(CARD, tmp_path / "head.safetensors")
    assert "'head.safetensors' is not one of the models shipped with SASAN." in text
    for label, value in CARD.summary().items():
        assert f"\n{label}: {value}\n" in text
    for line in ("Source: https://example.org/lab", "Translates: CT -> MR, MR -> CT", "Modalities: CT, MR",
                 "Training data: folder:CT / folder:MR", "Intended use: research; not for diagnosis",
                 "Structures: head, brain", f"SHA-256 of the weights: {DIGEST[:16]}...", "Use this model?"):
        assert line in text


def test_the_digest_of_a_saved_model_is_its_cards(tmp_path):
    pytest.importorskip("torch")
    from slicer_glue_helpers import write_tiny_model

    card = read_card(write_tiny_model(tmp_path / "tiny.safetensors"))
    assert model_digest(card) == card.tensor_sha256 and len(card.tensor_sha256) == 64
