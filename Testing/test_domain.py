"""The input check (``sasan.domain``) on synthetic scans: what a profile counts, which inputs warn and in which
words, that voxel order, direction and spacing do not change the verdict, and where the fingerprint comes from.

The real scans named by issue 22 are in test_domain_real_scans.py.
"""
from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
from fixtures import tiny_card, write_tiny_model
from synthetic_scans import chest_ct, head_ct, head_domain, head_mr

from sasan import cli
from sasan.card import CARD_KEY, FINGERPRINT_KEYS, ModelCard, ModelFileError, read_safetensors_metadata
from sasan.config import config_from_dict
from sasan.data.geometry import slicing_axis
from sasan.data.io import write_volume
from sasan.data.volume import Volume
from sasan.domain.check import check_domain
from sasan.domain.fingerprint import PRESENCE, Fingerprint, tissue_profiles
from sasan.domain.from_run import domain_from_run

HEAD_CT = "the input does not look like the head CT scans this model was trained on"


@pytest.fixture(scope="module")
def head_card() -> ModelCard:
    card = tiny_card()
    card = dataclasses.replace(card, domain=head_domain(card))
    card.validate()
    return ModelCard.from_json(card.to_json())  # as a model file stores it


def test_profiles_count_which_tissues_a_body_holds_and_in_which_layer():
    rows, columns = np.indices((41, 41)) - 20
    radius = np.hypot(rows, columns)
    image = np.full((41, 41), -3.0)            # air, below the body threshold
    image[radius <= 18] = 1.2                  # an outer ring ("bone": the bin 1.0 .. 1.5)
    image[radius <= 12] = 0.1                  # the inside ("brain": the bin 0.0 .. 0.25)
    image[radius <= 3] = -3.0                  # a cavity: part of the body (filled), in the lowest bin
    profile = np.exp(tissue_profiles(image[None], threshold=-2.0)[0]) - PRESENCE
    bins = len(profile) // 4
    whole, outer, middle, inner = (profile[n * bins:(n + 1) * bins] for n in range(4))
    air, brain, bone = 0, 5, 9                 # bins of -3, 0.1 and 1.2 between BIN_EDGES
    assert whole[[air, brain, bone]].sum() == pytest.approx(1.0) and whole[bone] > 0.4 and 0 < whole[air] < 0.1
    assert outer[bone] == pytest.approx(1.0, abs=0.15) and outer[air] == pytest.approx(0, abs=1e-9)
    assert inner[air] > 0.2 and inner[air] + inner[brain] == pytest.approx(1.0)  # the cavity lies deepest
    assert middle[air] == pytest.approx(0, abs=1e-9) and middle[bone] < outer[bone]


def test_unseen_heads_pass_and_a_chest_or_the_other_modality_warns_in_one_sentence(head_card):
    for seed in (10, 11):
        for modality, make in (("CT", head_ct), ("MR", head_mr)):
            check = check_domain(make(seed), head_card, modality)
            assert check.checked and check.warning is None and check.ratio < check.margin
    chest = check_domain(chest_ct(0), head_card, "CT")
    assert chest.warning.startswith(f"{HEAD_CT} (it lies ") and chest.ratio > chest.margin
    assert chest.warning.endswith(f"{chest.ratio:.1f}x further from the training scans than any validation scan)")
    assert check_domain(head_mr(10), head_card, "CT").warning == f"{HEAD_CT} (its intensities look like MR)"
    assert check_domain(head_ct(10), head_card, "MR").warning == (
        "the input does not look like the head MR scans this model was trained on (its intensities look like CT)")
    empty = check_domain(Volume(np.zeros((4, 16, 16), np.float32)), head_card, "CT")
    assert empty.warning == f"{HEAD_CT} (no slice holds enough of a body to compare)"


def test_voxel_order_direction_and_spacing_do_not_change_the_verdict(head_card):
    for make, modality in ((head_ct, "CT"), (chest_ct, "CT"), (head_mr, "MR")):
        volume = make(12)
        ratio = check_domain(volume, head_card, modality).ratio
        # Slices along the array's last axis, the direction saying so, a tilt of 10 degrees and thinner slices.
        angle = np.radians(10)
        tilt = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
        permuted = Volume(np.ascontiguousarray(volume.array.transpose(1, 2, 0)),
                          spacing=(volume.spacing[2] / 3, volume.spacing[0], volume.spacing[1]),
                          direction=tilt @ np.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]]))
        assert slicing_axis(permuted, "axial") == 2
        assert check_domain(permuted, head_card, modality).ratio == pytest.approx(ratio, abs=1e-9)
        # Every other column: pixels twice as wide, the same anatomy in millimetres.
        coarse = Volume(np.ascontiguousarray(volume.array[:, :, ::2]),
                        spacing=(2 * volume.spacing[0], volume.spacing[1], volume.spacing[2]))
        coarse = check_domain(coarse, head_card, modality)
        assert (coarse.ratio > coarse.margin) == (ratio > coarse.margin)
        assert coarse.ratio == pytest.approx(ratio, rel=0.5, abs=0.3)


def test_a_model_without_fingerprint_is_not_checked_and_says_so_in_the_log(caplog):
    with caplog.at_level(logging.INFO, logger="sasan.domain"):
        check = check_domain(chest_ct(0), tiny_card(), "CT")
    assert not check.checked and check.warning is None and check.ratio is None
    assert "has no CT fingerprint: the input is not checked" in caplog.text
    assert tiny_card().summary()["Input check"].startswith("none")


def test_the_card_states_what_it_checks_and_refuses_a_malformed_fingerprint(head_card, caplog):
    assert head_card.domain_description("CT") == "head CT"
    assert head_card.summary()["Input check"] == (
        "warns when an input does not look like the head CT scans (CT), head MR scans (MR) it was trained on")
    stored = json.loads(head_card.to_json())
    assert set(stored["domain"]["modalities"]["CT"]["fingerprint"]) == FINGERPRINT_KEYS == {
        f.name for f in dataclasses.fields(Fingerprint)}
    for change, message in [(lambda f: f["reference"][0].pop(), "reference must be a non-empty list of profiles"),
                            (lambda f: f.update(validation_max={"tissues": 1.0}), "validation_max must give"),
                            (lambda f: f.update(shells=0), "shells must be a positive integer"),
                            (lambda f: f.pop("spread"), "needs exactly the keys")]:
        broken = json.loads(head_card.to_json())
        change(broken["domain"]["modalities"]["CT"]["fingerprint"])
        with pytest.raises(ModelFileError, match=f"domain: modalities.CT.fingerprint: {message}"):
            ModelCard.from_json(json.dumps(broken))
    later = json.loads(head_card.to_json())
    later["domain"]["modalities"]["CT"]["fingerprint"] = {"method": "from a later SASAN", "anything": [1, 2]}
    with caplog.at_level(logging.INFO, logger="sasan.domain"):
        check = check_domain(chest_ct(0), ModelCard.from_json(json.dumps(later)), "CT")
    assert not check.checked and "made with method 'from a later SASAN', which this SASAN cannot score" in caplog.text
    broken = json.loads(head_card.to_json())
    broken["domain"]["modalities"]["PET"] = {"description": "head PET"}
    with pytest.raises(ModelFileError, match="domain: modalities must map modalities of this model"):
        ModelCard.from_json(json.dumps(broken))
    older = json.loads(head_card.to_json())
    del older["domain"]  # a card written before the input check existed
    assert ModelCard.from_json(json.dumps(older)).domain == {}


def run_config(root, validation_fraction: float):
    normalization = {"CT": {"method": "window", "window": [-200.0, 400.0]},
                     "MR": {"method": "percentile", "percentiles": [1.0, 99.0]}}
    domains = {name: {"modality": modality, "layout": "folder", "root": str(root / modality),
                      "labelled": modality == "MR", "normalization": normalization[modality]}
               for name, modality in (("source", "CT"), ("target", "MR"))}
    return config_from_dict({"name": "heads", "data": {
        **domains, "body_region": "head", "image_size": 32, "test_fraction": 0.2,
        "validation_fraction": validation_fraction, "split_seed": 0,
        "labels": [{"name": "head", "value": 1, "color": [1.0, 0.5, 0.0]}]}})


def write_heads(root, seeds) -> None:
    for seed in seeds:
        mr = head_mr(seed)
        write_volume(head_ct(seed), root / "CT" / "images" / f"ct_{seed}.nii.gz")
        write_volume(mr, root / "MR" / "images" / f"mr_{seed}.nii.gz")
        write_volume(mr.with_array((mr.array > 100).astype(np.uint8)), root / "MR" / "labels" / f"mr_{seed}.nii.gz")


def test_a_runs_fingerprint_comes_from_its_training_and_validation_scans_never_its_test_scans(tmp_path):
    write_heads(tmp_path, range(6))
    domain = domain_from_run(run_config(tmp_path, 0.2))
    assert domain["body_region"] == "head"
    assert [entry["description"] for entry in domain["modalities"].values()] == ["head CT", "head MR"]
    ct = domain["modalities"]["CT"]["fingerprint"]
    assert ct["validation"].startswith("1 validation scan(s) against the training slices; each of the 4 training")

    # The test scan is never read: replacing it by a chest changes nothing.
    from sasan.data.layouts import find_subjects, split_subjects

    test_subject = split_subjects(find_subjects("folder", tmp_path / "CT", "CT"), 0.2, 0, 0.2).test[0]
    write_volume(chest_ct(0), test_subject.image, overwrite=True)
    assert domain_from_run(run_config(tmp_path, 0.2)) == domain

    alone = tmp_path / "alone"
    write_heads(alone, [0])
    single = domain_from_run(run_config(alone, 0.0))["modalities"]["CT"]["fingerprint"]
    assert single["validation"] == "4 quarters of the one training volume, each against the other three"


def test_sasan_translate_prints_one_warning_line_and_reports_it(tmp_path, head_card, capsys):
    model = write_tiny_model(tmp_path / "tiny.safetensors", seed=0, domain=head_card.domain)
    outcomes = {}
    for name, volume in (("head", head_ct(10)), ("chest", chest_ct(0))):
        write_volume(volume, tmp_path / f"{name}.nii.gz")
        status = cli.main(["translate", str(tmp_path / f"{name}.nii.gz"), "--model", str(model), "--to", "MR",
                           "-o", str(tmp_path / f"{name}_mr.nii.gz"), "--quiet", "--threads", "1",
                           "--report", str(tmp_path / f"{name}.json")])
        captured = capsys.readouterr()
        report = json.loads((tmp_path / f"{name}.json").read_text())
        outcomes[name] = status, captured.err.splitlines(), report
    status, lines, report = outcomes["head"]
    assert status == 0 and not any(line.startswith("warning:") for line in lines)
    assert report["warning"] is None and report["input_check"]["checked"]
    status, lines, report = outcomes["chest"]
    warnings = [line for line in lines if line.startswith("warning:")]
    assert status == 0 and warnings == [f"warning: {report['warning']}"] and report["warning"].startswith(HEAD_CT)
    assert (tmp_path / "chest_mr.nii.gz").is_file()
    assert report["input_check"]["ratio"] > report["input_check"]["margin"] == 2.0


def test_the_fingerprint_script_rewrites_only_the_card(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from scripts import model_fingerprint

    write_heads(tmp_path / "data", range(4))
    config = tmp_path / "heads.yaml"
    domains = {name: {"modality": modality, "layout": "folder", "root": f"data/{modality}",
                      "labelled": modality == "MR"} for name, modality in (("source", "CT"), ("target", "MR"))}
    config.write_text(json.dumps({"name": "heads", "data": {  # JSON is YAML; the roots relative to the working folder
        **domains, "body_region": "head", "image_size": 32, "validation_fraction": 0.25,
        "labels": [{"name": "head", "value": 1, "color": [1.0, 0.5, 0.0]}]}}))
    model = write_tiny_model(tmp_path / "tiny.safetensors", seed=0)
    before = load_file(str(model))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["model_fingerprint", str(model), str(config)])
    model_fingerprint.main()
    card = ModelCard.from_json(read_safetensors_metadata(model)[CARD_KEY])
    assert card.domain_description("MR") == "head MR" and "fingerprint" in card.domain["modalities"]["CT"]
    after = load_file(str(model))
    assert all(torch.equal(before[name].view(-1).view(torch.uint8), after[name].view(-1).view(torch.uint8))
               for name in before) and before.keys() == after.keys()
