"""The model file's tensors: round trip, validation against the card, and no unpickling ever."""
import json
import pickle

import fixtures
import pytest
import torch
from safetensors.torch import load_file, save_file

from sasan import bundle
from sasan.card import CARD_KEY, ModelCard, ModelFileError, read_card

NORM = {"config": {"method": "window", "percentiles": [2.0, 98.0], "window": [-200.0, 400.0]},
        "reference": {"method": "window", "low": -200.0, "high": 400.0}}


def tiny_card(**changes) -> ModelCard:
    """The shared tiny card with one normalization (no mean, no std) for both and one structure."""
    return fixtures.tiny_card(**{"normalization": {"CT": NORM, "MR": NORM},
                                 "labels": [{"name": "heart", "value": 1, "color": [1.0, 0.0, 0.0]}], **changes})


@pytest.fixture
def model_file(tmp_path):
    card = tiny_card()
    return bundle.save(tmp_path / "m.safetensors", card, bundle.expected_networks(card)), card


def test_round_trip_gives_identical_outputs(tmp_path):
    card = tiny_card()
    networks = bundle.expected_networks(card)
    path = bundle.save(tmp_path / "m.safetensors", card, networks)
    model = bundle.load(path)
    x = torch.randn(1, 3, 32, 32)
    for name, module in networks.items():
        module.eval()
    with torch.no_grad():
        maps, _ = networks["attention.CT"](x)
        expected = networks["generator.CT_to_MR"](x, maps)
        maps2, _ = model.attention("CT")(x)
        assert torch.equal(model.generator("CT", "MR")(x, maps2), expected)
    assert model.segmenter("MR") is not None and model.segmenter("CT") is None
    assert read_card(path).labels == card.labels


def test_half_precision_file_loads_as_float(tmp_path):
    card = tiny_card()
    path = bundle.save(tmp_path / "h.safetensors", card, bundle.expected_networks(card), half=True)
    assert all(t.dtype in (torch.float16, torch.int64) for t in load_file(path).values())
    model = bundle.load(path)
    assert next(model.generator("CT", "MR").parameters()).dtype == torch.float32


def test_refuses_overwrite(model_file):
    path, card = model_file
    with pytest.raises(FileExistsError):
        bundle.save(path, card, bundle.expected_networks(card))


def _rewrite(path, tensors, card_json):
    save_file(tensors, path, metadata={CARD_KEY: card_json})


@pytest.mark.parametrize("damage, message", [
    (lambda t, c: (dict(list(t.items())[1:]), c), "lacks"),
    (lambda t, c: ({**t, "generator.CT_to_MR.extra": torch.zeros(1)}, c), "does not describe"),
    (lambda t, c: ({k: (v.reshape(-1) if k.endswith("to_maps.weight") else v) for k, v in t.items()}, c), "shape"),
    (lambda t, c: ({k: (v + 1 if k.endswith("head.0.bias") else v) for k, v in t.items()}, c), "checksum"),
    (lambda t, c: (t, c.replace('"format_version": 1', '"format_version": 99')), "format version"),
    (lambda t, c: (t, c[:-5]), "not valid JSON"),
    (lambda t, c: (t, json.dumps({**json.loads(c), "context": 2})), "context"),
    (lambda t, c: (t, json.dumps({k: v for k, v in json.loads(c).items() if k != "normalization"})), "normalization"),
])
def test_damaged_files_are_refused_with_a_clear_message(model_file, damage, message):
    path, _ = model_file
    tensors = load_file(path)
    tensors, card_json = damage(tensors, read_card(path).to_json())
    _rewrite(path, tensors, card_json)
    with pytest.raises(ModelFileError, match=message):
        bundle.load(path)


def test_pickle_renamed_safetensors_is_never_unpickled(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ModelFileError, match="not a safetensors"):
        bundle.load(path)
    assert not (tmp_path / "pwned").exists()


def test_other_direction_is_refused(tmp_path):
    card = tiny_card(directions=[["CT", "MR"]])
    model = bundle.load(bundle.save(tmp_path / "m.safetensors", card, bundle.expected_networks(card)))
    with pytest.raises(ModelFileError, match="does not translate MR to CT"):
        model.generator("MR", "CT")


def test_postprocessing_round_trips_and_defaults_to_none(tmp_path):
    card = tiny_card(postprocessing={"largest_foreground_component": True})
    path = bundle.save(tmp_path / "p.safetensors", card, bundle.expected_networks(card))
    assert bundle.load(path).card.postprocessing == {"largest_foreground_component": True}
    assert tiny_card().postprocessing == {}


def test_a_card_written_before_postprocessing_existed_still_loads(model_file):
    path, _ = model_file
    tensors = load_file(path)
    old = {k: v for k, v in json.loads(read_card(path).to_json()).items() if k != "postprocessing"}
    _rewrite(path, tensors, json.dumps(old))
    assert bundle.load(path).card.postprocessing == {}


@pytest.mark.parametrize("postprocessing, message", [
    ({"largest_component": True}, "unknown postprocessing option 'largest_component'"),
    ({"largest_foreground_component": 1}, "must be a bool; got 1"),
    ({"largest_foreground_component": "yes"}, "must be a bool"),
    (["largest_foreground_component"], "postprocessing must be an object"),
])
def test_malformed_postprocessing_is_refused(model_file, postprocessing, message):
    path, _ = model_file
    with pytest.raises(ModelFileError, match=message):
        tiny_card(postprocessing=postprocessing).validate()
    card_json = json.dumps({**json.loads(read_card(path).to_json()), "postprocessing": postprocessing})
    _rewrite(path, load_file(path), card_json)
    with pytest.raises(ModelFileError, match=message):
        read_card(path)


def test_saved_files_are_readable_by_everyone(tmp_path):
    card = tiny_card()
    path = bundle.save(tmp_path / "m.safetensors", card, bundle.expected_networks(card))
    assert path.stat().st_mode & 0o777 == 0o644
    bundle.save(path, card, bundle.expected_networks(card), overwrite=True)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_crop_round_trips_and_a_malformed_one_is_refused(tmp_path):
    crop = {"method": "foreground", "threshold": -400.0, "margin_mm": 12.0, "rows": [0.0, 1.0], "columns": [0.0, 1.0]}
    card = tiny_card(normalization={"CT": {**NORM, "crop": crop}, "MR": NORM})
    path = bundle.save(tmp_path / "c.safetensors", card, bundle.expected_networks(card))
    assert bundle.load(path).card.normalization["CT"]["crop"] == crop
    for bad, message in (({**crop, "rows": [0.8, 0.2]}, r"normalization.CT: crop.rows"),
                         ({**crop, "method": "lungs"}, "normalization.CT: crop.method"),
                         ({**crop, "margin": 3}, "normalization.CT: crop.margin: unknown key")):
        with pytest.raises(ModelFileError, match=message):
            tiny_card(normalization={"CT": {**NORM, "crop": bad}, "MR": NORM}).validate()
    with pytest.raises(ModelFileError, match=r"normalization.MR has unknown keys \['cropping'\]"):
        tiny_card(normalization={"CT": NORM, "MR": {**NORM, "cropping": crop}}).validate()


def test_replacing_the_card_keeps_the_tensors_bit_for_bit(tmp_path):
    card = tiny_card()
    path = bundle.save(tmp_path / "m.safetensors", card, bundle.expected_networks(card), half=True)
    before = load_file(str(path))
    stored = read_card(path)
    bundle.replace_card(path, ModelCard(**{**stored.__dict__, "description": "now with a fingerprint"}))
    after = load_file(str(path))
    assert read_card(path).description == "now with a fingerprint"
    assert before.keys() == after.keys()
    assert all(before[n].dtype == after[n].dtype and torch.equal(before[n].view(-1).view(torch.uint8),
                                                                 after[n].view(-1).view(torch.uint8)) for n in before)
    with pytest.raises(ModelFileError, match="checksum does not match the file's tensors"):
        bundle.replace_card(path, ModelCard(**{**stored.__dict__, "tensor_sha256": "0" * 64}))
    assert read_card(path).description == "now with a fingerprint"  # the refused card left the file as it was
