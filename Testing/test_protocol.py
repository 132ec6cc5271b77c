"""The evaluation protocol: scoring hand-made methods, paired references, output folders, and
``sasan evaluate`` / ``sasan train-segmenter --translator`` on a tiny model trained here."""
import csv

import numpy as np
import pytest
import yaml
from fixtures import TINY_TRAINING_MODEL

from sasan import bundle, cli
from sasan.card import read_card
from sasan.config import LabelSpec, config_from_dict
from sasan.data.crop import crop_region
from sasan.data.geometry import slicing_axis
from sasan.data.io import read_labels, read_volume
from sasan.data.phantom import LABELS
from sasan.data.volume import Volume
from sasan.demo import load_preset, merge
from sasan.metrics import segmentation_scores
from sasan.protocol import (
    HeldOutVolume,
    MethodOutput,
    ProtocolError,
    check_model_fits,
    evaluate_model,
    method_folder_name,
    paired_reference,
    prepare_output_folder,
    run_methods,
    write_reports,
)
from sasan.reports import SUMMARY_COLUMNS
from sasan.training.checkpoint import latest_checkpoint
from sasan.training.export import export_run
from sasan.training.segmenter import train_segmenter
from sasan.training.trainer import Trainer

TINY = {"name": "protocol_tiny",
        "data": {"image_size": 32, "phantom_subjects": 3, "phantom_size": 32,
                 # both domains cropped to the body: training, the model card and evaluation must agree
                 "source": {"crop": {"method": "foreground", "margin_mm": 6.0}},
                 "target": {"crop": {"method": "foreground", "margin_mm": 6.0}}},
        "model": dict(TINY_TRAINING_MODEL),
        "training": {"steps": 4, "pretrain_attention_steps": 2, "segmenter_steps": 4, "threads": 1,
                     "log_every": 2}}
STRUCTURES = [label.name for label in LABELS]


# --- hand-made methods and volumes -----------------------------------------------------------------
def labelled_volume(subject="case_a") -> HeldOutVolume:
    labels = np.zeros((6, 12, 14), np.uint8)
    labels[2:4, 2:5, 3:7] = 1
    labels[1:5, 6:9, 2:10] = 2
    image = Volume(labels.astype(np.float32) * 100, spacing=(0.7, 0.8, 2.0), origin=(1.0, 2.0, 3.0))
    return HeldOutVolume(subject, image, labels)


def test_oracle_and_empty_methods_score_one_and_zero(tmp_path):
    volumes = [labelled_volume("case_a"), labelled_volume("case_b")]
    truth = volumes[0].labels  # the two cases are alike
    methods = {"Oracle": lambda volume: MethodOutput(volume.with_array(truth)),
               "Nothing": lambda volume: MethodOutput(volume.with_array(np.zeros(volume.shape, np.uint8)))}
    labels = [LabelSpec("first", 1), LabelSpec("second", 2)]
    result = run_methods(methods, volumes, labels, tmp_path, target="MR")
    assert [(row.method, row.volume_id) for row in result.segmentation_rows] == [
        ("Oracle", "case_a"), ("Oracle", "case_b"), ("Nothing", "case_a"), ("Nothing", "case_b")]
    for row in result.segmentation_rows:
        expected = (1.0, 0.0) if row.method == "Oracle" else (0.0, 50.0)  # ASSD capped when missing
        assert all((s["dice"], s["assd"]) == expected for s in row.scores.values()), row
    written = sorted(p.relative_to(tmp_path).as_posix() for p in result.volumes)
    assert written == [f"volumes/{m}/{s}_segmentation.nii.gz" for m in ("nothing", "oracle")
                       for s in ("case_a", "case_b")]
    back = read_volume(tmp_path / "volumes/oracle/case_a_segmentation.nii.gz", dtype=None)
    assert back.same_geometry(volumes[0].volume)
    np.testing.assert_array_equal(back.array, volumes[0].labels)

    text = write_reports(result, tmp_path, ["first", "second"], "hand-made")
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [(r["method"], r["structure"]) for r in rows] == [
        (m, s) for m in ("Oracle", "Nothing") for s in ("first", "second", "mean")]
    assert float(rows[-1]["assd_mean"]) == 50.0 and float(rows[0]["dice_mean"]) == 1.0
    assert "| Oracle | 1.00 ± 0.00 |" in text and (tmp_path / "results.md").read_text() == text


def test_translations_are_scored_against_a_paired_image_and_drawn(tmp_path):
    test = labelled_volume()
    test.paired = test.volume.array * 2
    attention = [test.volume.with_array(np.full(test.volume.shape, 128, np.uint8))]
    method = {"Doubler": lambda v: MethodOutput(v.with_array(test.labels), v.with_array(v.array * 2), attention)}
    result = run_methods(method, [test], [LabelSpec("first", 1), LabelSpec("second", 2)], tmp_path, target="MR",
                         figure_methods={"Doubler"})
    (row,) = result.image_rows
    assert row.scores["MR"]["mae"] == 0.0 and row.scores["MR"]["pcc"] == pytest.approx(1.0)
    assert [p.name for p in result.figures] == ["doubler_case_a.png"] and result.figures[0].stat().st_size > 0
    assert "SSIM" in write_reports(result, tmp_path, ["first", "second"], "paired")


def test_paired_reference_resamples_through_world_space():
    volume = Volume(np.zeros((3, 4, 8), np.float32), spacing=(1.0, 1.0, 1.0))
    ramp = np.broadcast_to(np.arange(8, dtype=np.float32) + 2.0, (3, 4, 8)).copy()  # value = world x
    partner = Volume(ramp, spacing=(1.0, 1.0, 1.0), origin=(2.0, 0.0, 0.0))
    resampled, mask = paired_reference(volume, partner)
    assert mask[:, :, :2].sum() == 0 and mask[:, :, 2:].all()
    np.testing.assert_allclose(resampled[:, :, 2:], np.broadcast_to(np.arange(2, 8), (3, 4, 6)))
    same, no_mask = paired_reference(volume, volume.with_array(ramp))
    assert no_mask is None and np.array_equal(same, ramp)


def test_method_folder_names_are_safe():
    assert method_folder_name("W/o adaptation") == "w_o_adaptation"
    assert method_folder_name("CycleGAN-style") == "cyclegan_style"


def test_output_folder_is_refused_when_it_holds_anything_unless_overwrite(tmp_path):
    assert prepare_output_folder(tmp_path / "new", overwrite=False).is_dir()
    (tmp_path / "new" / "mine.txt").write_text("user file")
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare_output_folder(tmp_path / "new", overwrite=False)
    prepare_output_folder(tmp_path / "new", overwrite=True)
    assert (tmp_path / "new" / "mine.txt").read_text() == "user file"
    with pytest.raises(NotADirectoryError):
        prepare_output_folder(tmp_path / "new" / "mine.txt", overwrite=True)


# --- a tiny trained model -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(config file, model file, phantom cache folder): a tiny SASAN + MR U-Net run on a 3-subject phantom."""
    folder = tmp_path_factory.mktemp("protocol")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SASAN_CACHE", str(folder / "cache"))
        mapping = merge(load_preset(quick=True)[0], TINY)
        config_file = folder / "tiny.yaml"
        config_file.write_text(yaml.safe_dump(mapping))
        run_dir = Trainer(config_from_dict(mapping), folder / "run").fit()
        model_file = export_run(run_dir, folder / "tiny.safetensors")
        yield config_file, model_file, folder / "cache"


def test_evaluate_writes_tables_volumes_and_figures_that_agree(tiny, tmp_path):
    config_file, model_file, cache = tiny
    output = tmp_path / "evaluation"
    assert "| " in evaluate_model(config_file, model_file, output, device="cpu")

    rows = list(csv.DictReader(open(output / "results.csv")))
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    assert [(r["method"], r["structure"]) for r in rows] == [("protocol_tiny", s) for s in STRUCTURES + ["mean"]]
    (segmentation_file,) = (output / "volumes" / "protocol_tiny").glob("*_segmentation.nii.gz")
    subject = segmentation_file.name[: -len("_segmentation.nii.gz")]
    (phantom,) = cache.glob("phantom*")
    ct = read_volume(phantom / "CT" / "images" / f"{subject}.nii.gz")
    segmentation = read_volume(segmentation_file, dtype=None)
    translated = read_volume(output / "volumes" / "protocol_tiny" / f"{subject}_translated.nii.gz")
    assert segmentation.same_geometry(ct) and translated.same_geometry(ct)
    # the model's crop was applied: nothing is labelled outside the body's box, yet the box is not everything
    card = read_card(model_file)
    region = crop_region(ct, card.crop("CT"), slicing_axis(ct, card.slicing_axis))
    outside = np.ones(ct.shape, bool)
    outside[region.slices] = False
    assert card.crop("CT").method == "foreground" and outside.any()
    assert not segmentation.array[outside].any()
    assert np.all(translated.array[outside] == card.reference("MR")["low"])
    # the table's numbers are those of the written segmentation against the phantom's own labels
    truth = read_labels(phantom / "CT" / "labels" / f"{subject}.nii.gz", LABELS)
    scores = segmentation_scores(segmentation.array, truth.array, STRUCTURES, ct.spacing)
    for row in rows[:-1]:
        assert float(row["dice_mean"]) == pytest.approx(scores[row["structure"]]["dice"])
        assert float(row["assd_mean"]) == pytest.approx(scores[row["structure"]]["assd"])
    assert (output / "figures" / f"protocol_tiny_{subject}.png").is_file()
    assert "| protocol_tiny |" in (output / "results.md").read_text()


def test_evaluate_refuses_a_used_output_folder_and_a_mismatched_model(tiny, tmp_path, capsys):
    config_file, model_file, _ = tiny
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("keep me")
    assert cli.main(["evaluate", str(config_file), "--model", str(model_file), "--output",
                     str(tmp_path / "used")]) == 2
    assert (tmp_path / "used" / "notes.txt").read_text() == "keep me"

    other = merge(yaml.safe_load(config_file.read_text()), {"data": {"labels": [
        {"name": "something else", "value": 205}, *[{"name": l.name, "value": l.value} for l in LABELS[1:]]]}})
    with pytest.raises(ProtocolError, match="structures"):
        check_model_fits(bundle.load(model_file), config_from_dict(other))
    reversed_direction = merge(yaml.safe_load(config_file.read_text()),
                               {"data": {"source": {"modality": "PET"}}})
    with pytest.raises(ProtocolError, match="does not translate PET to MR"):
        check_model_fits(bundle.load(model_file), config_from_dict(reversed_direction))


def test_train_segmenter_adds_translated_images_with_a_translator(tiny, tmp_path):
    """Item 5 ("w/ aug."): the U-Net trains on real MR plus CT translated by a model file."""
    config_file, model_file, _ = tiny
    config = config_from_dict(yaml.safe_load(config_file.read_text()))
    run_dir = train_segmenter(config, tmp_path / "augmented", translator=model_file)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["training"]["segmenter_with_translations"] is True
    assert latest_checkpoint(run_dir).name == f"step_{config.training.segmenter_steps:08d}.ckpt"
    model = export_run(model_file.parent / "run", tmp_path / "augmented.safetensors", segmenter_run=run_dir)
    assert bundle.load(model).segmenter("MR") is not None


def test_evaluate_failing_half_way_adds_nothing_and_keeps_older_results(tiny, tmp_path, monkeypatch):
    config_file, model_file, _ = tiny
    kept = tmp_path / "kept"
    assert "| " in evaluate_model(config_file, model_file, kept, device="cpu")
    before = {p.relative_to(kept): p.read_bytes() for p in kept.rglob("*") if p.is_file()}

    def fail(*args, **kwargs):
        raise RuntimeError("disk full while writing the tables")

    # volumes and figures are written by then: only the tables fail
    monkeypatch.setattr("sasan.protocol.write_reports", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        evaluate_model(config_file, model_file, tmp_path / "new", device="cpu")
    assert not (tmp_path / "new").exists()
    with pytest.raises(RuntimeError, match="disk full"):
        evaluate_model(config_file, model_file, kept, device="cpu", overwrite=True)
    assert {p.relative_to(kept): p.read_bytes() for p in kept.rglob("*") if p.is_file()} == before
    assert not [p for folder in (tmp_path, kept) for p in folder.iterdir() if p.name.startswith(".")]
