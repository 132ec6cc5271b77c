"""The translator's names and its one translation step, against the spelled-out path they replaced."""
import dataclasses

import pytest
import torch
from fixtures import TINY_ARCHITECTURE, tiny_card

from sasan import bundle
from sasan.config import ModelConfig, config_from_dict
from sasan.models import build_attention, build_generator
from sasan.models.translator import (
    attention_name,
    build_translator,
    direction_name,
    direction_networks,
    generator_name,
    segmenter_name,
    translate,
)
from sasan.training.networks import SASANNetworks

TINY = ModelConfig(**TINY_ARCHITECTURE)
DIRECTIONS = [("CT", "MR"), ("MR", "CT")]


def test_names_are_the_model_files_tensor_prefixes():
    assert attention_name("CT") == "attention.CT"
    assert generator_name("CT", "MR") == "generator.CT_to_MR" == f"generator.{direction_name('CT', 'MR')}"
    assert segmenter_name("MR") == "segmenter.MR"


def test_names_round_trip_through_a_model_file(tmp_path):
    card = tiny_card(directions=[list(d) for d in DIRECTIONS], architecture=dataclasses.asdict(TINY), labels=[],
                     normalization={m: {"config": {}, "reference": {}} for m in ("CT", "MR")})
    networks = bundle.expected_networks(card)
    assert list(networks) == ["attention.CT", "attention.MR", "generator.CT_to_MR", "generator.MR_to_CT",
                              "segmenter.MR"]
    model = bundle.load(bundle.save(tmp_path / "m.safetensors", card, networks))
    assert set(model.networks) == set(networks)
    found = {attention_name("CT"): model.attention("CT"), attention_name("MR"): model.attention("MR"),
             generator_name("CT", "MR"): model.generator("CT", "MR"),
             generator_name("MR", "CT"): model.generator("MR", "CT"), segmenter_name("MR"): model.segmenter("MR")}
    for name, module in found.items():
        for key, value in networks[name].state_dict().items():
            assert torch.equal(module.state_dict()[key], value), f"{name}.{key}"


def test_builder_draws_the_weights_the_spelled_out_builds_drew():
    torch.manual_seed(5)
    built = build_translator(TINY, 3, 3, ["CT", "MR"], DIRECTIONS)
    torch.manual_seed(5)
    spelled = {"attention.CT": build_attention(TINY, 3, 3), "attention.MR": build_attention(TINY, 3, 3),
               "generator.CT_to_MR": build_generator(TINY, 3), "generator.MR_to_CT": build_generator(TINY, 3)}
    assert list(built) == list(spelled)
    for name, module in spelled.items():
        for key, value in module.state_dict().items():
            assert torch.equal(built[name].state_dict()[key], value), f"{name}.{key}"
    assert list(build_translator(dataclasses.replace(TINY, attention=False), 3, 3, ["CT", "MR"], DIRECTIONS[1:])) \
        == ["generator.MR_to_CT"]


@pytest.mark.parametrize("attention", [True, False])
def test_translate_gives_the_translation_maps_and_head_logits(attention):
    model = dataclasses.replace(TINY, attention=attention)
    translator = build_translator(model, 3, 4, ["CT", "MR"], DIRECTIONS)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        translated, maps, logits = translate(*direction_networks(translator, "CT", "MR"), x)
    assert translated.shape == (2, 3, 32, 32) and translated.abs().max() <= 1
    if attention:
        assert maps.shape == (2, 2, 32, 32) and logits.shape == (2, 4, 32, 32)
        assert torch.allclose(maps.sum(1), torch.ones(2, 32, 32), atol=1e-5)
    else:
        assert maps is None and logits is None


@pytest.mark.parametrize("attention", [True, False])
def test_translate_equals_the_spelled_out_attention_then_generator(attention):
    translator = build_translator(dataclasses.replace(TINY, attention=attention), 3, 3, ["CT", "MR"], DIRECTIONS)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        if attention:
            maps, logits = translator["attention.MR"](x)
        else:
            maps = logits = None
        expected = translator["generator.MR_to_CT"](x, maps)
        got = translate(*direction_networks(translator, "MR", "CT"), x)
    assert torch.equal(got[0], expected)
    if attention:
        assert torch.equal(got[1], maps) and torch.equal(got[2], logits)


def test_a_runs_networks_are_the_translator_under_its_names():
    labels = [{"name": "heart", "value": 1, "color": [1.0, 0.0, 0.0]}]
    nets = SASANNetworks(config_from_dict({"data": {"labels": labels}, "model": dataclasses.asdict(TINY),
                                           "training": {"segmenter_steps": 1}}))
    translator = nets.translator()
    assert list(translator) == ["attention.CT", "attention.MR", "generator.CT_to_MR", "generator.MR_to_CT"]
    assert translator["attention.MR"] is nets.attention["MR"]
    assert translator["generator.CT_to_MR"] is nets.generator("CT", "MR") is nets.generators["CT_to_MR"]
    assert list(nets.exported()) == [*translator, "segmenter.MR"]
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        got = nets.translate(x, "CT", "MR")
        expected = translate(nets.attention["CT"], nets.generators["CT_to_MR"], x)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
