"""``sasan demo`` end to end on a tiny phantom (32x32 slices, a few steps per phase), its presets and its
refusals."""
import contextlib
import csv
import io

import numpy as np
import pytest
import yaml
from fixtures import TINY_TRAINING_MODEL

from sasan import bundle, cli
from sasan.config import config_from_dict
from sasan.data.io import read_volume
from sasan.demo import CYCLEGAN_OVERRIDES, SASAN_WITHOUT_SPADE_OVERRIDES, demo_configs, load_preset, merge, run_demo
from sasan.demo_quick import ShippedModelError
from sasan.demo_rows import HISTOGRAM_MATCHING, NO_ADAPTATION, ROW_ORDER, SASAN, SASAN_SHORT_RUN
from sasan.models import Generator, ResnetGenerator
from sasan.reports import SUMMARY_COLUMNS
from sasan.resources import preset_path

STRUCTURES = ["LV myocardium", "LA blood", "LV blood", "ascending aorta"]
FULL_ROWS = [row for row in ROW_ORDER if row != SASAN_SHORT_RUN]
TINY = {"data": {"image_size": 32, "phantom_subjects": 4, "phantom_size": 32},
        "model": {**TINY_TRAINING_MODEL, "resnet_width": 4, "resnet_blocks": 1},
        "training": {"steps": 6, "pretrain_attention_steps": 3, "segmenter_steps": 8, "threads": 1,
                     "log_every": 2, "segmenter_with_translations": True,  # every row, "w/ aug." included
                     # the full preset's pre-training options, so every run the demo derives must accept them
                     "pretrain_regularization_warmup": 0.5, "copy_pretrained_attention": True}}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(output folder, printed text, phantom cache folder) of one tiny full-mode demo run (every row)."""
    folder = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SASAN_CACHE", str(folder / "cache"))
        output = folder / "output"
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert run_demo(output, quick=False, config_overrides=TINY) == 0
        yield output, printed.getvalue(), folder / "cache"


def test_results_csv_has_one_row_per_method_and_structure(demo):
    output, _, _ = demo
    with open(output / "results.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == SUMMARY_COLUMNS
    assert [(r["method"], r["structure"]) for r in rows] == [(m, s) for m in FULL_ROWS for s in STRUCTURES + ["mean"]]
    for row in rows:
        assert 0.0 <= float(row["dice_mean"]) <= 1.0 and float(row["assd_mean"]) >= 0.0


def test_the_printed_table_has_every_row_and_says_where_things_are(demo):
    output, printed, _ = demo
    table_rows = [line.split("|")[1].strip() for line in printed.splitlines() if line.startswith("| ")]
    assert table_rows[0] == "Method" and table_rows[2:] == FULL_ROWS
    model_file = output / "models" / "sasan_ct_to_mr.safetensors"
    assert str(model_file) in printed and str(output / "figures") in printed
    origins = printed[printed.index("Where each row's networks come from:"):].splitlines()[1:len(FULL_ROWS) + 1]
    assert [line.split(":")[0] for line in origins] == [f"- {method}" for method in FULL_ROWS]
    assert all("trained in this run" in line for line in origins)


def test_outputs_lie_on_the_input_grid_and_the_model_is_complete(demo):
    output, _, cache = demo
    segmentations = sorted((output / "volumes").glob("*/*_segmentation.nii.gz"))
    assert sorted({p.parent.name for p in segmentations}) == ["cyclegan", "histogram_matching", "sasan",
                                                            "sasan_w_aug", "sasan_w_o_spade_ablation",
                                                            "w_o_adaptation"]
    for path in segmentations + sorted((output / "volumes").glob("*/*_translated.nii.gz")):
        subject = path.name.rsplit("_", 1)[0]
        (ct_file,) = cache.glob(f"*/CT/images/{subject}.nii.gz")
        ct = read_volume(ct_file)
        assert read_volume(path, dtype=None).same_geometry(ct), path
    assert len(list((output / "figures").glob("sasan_ct*.png"))) == len(segmentations) // 6
    sasan = bundle.load(output / "models" / "sasan_ct_to_mr.safetensors")
    assert sasan.attention("CT") is not None and sasan.segmenter("MR") is not None
    ablation = bundle.load(output / "models" / "sasan_without_spade_ct_to_mr.safetensors")
    assert ablation.attention("CT") is None and isinstance(ablation.generator("CT", "MR"), Generator)
    cyclegan = bundle.load(output / "models" / "cyclegan_ct_to_mr.safetensors")
    assert cyclegan.attention("CT") is None and isinstance(cyclegan.generator("CT", "MR"), ResnetGenerator)
    # one U-Net serves every row but "w/ aug.": the model files carry the same weights
    for baseline in (ablation, cyclegan):
        for a, b in zip(sasan.segmenter("MR").state_dict().values(), baseline.segmenter("MR").state_dict().values()):
            assert np.array_equal(a.numpy(), b.numpy())
    # "w/ aug." is the same translator with its own U-Net
    augmented = bundle.load(output / "models" / "sasan_aug_ct_to_mr.safetensors")
    for a, b in zip(sasan.generator("CT", "MR").state_dict().values(),
                    augmented.generator("CT", "MR").state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy())
    assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in
               zip(sasan.segmenter("MR").state_dict().values(), augmented.segmenter("MR").state_dict().values()))


@pytest.fixture(scope="module")
def quick_demo(demo, tmp_path_factory):
    """(output folder, printed text, the model file it was given as shipped) of one tiny quick-mode run,
    with the tiny full demo's SASAN model standing in for the shipped phantom model."""
    full_output, _, cache = demo
    shipped = full_output / "models" / "sasan_ct_to_mr.safetensors"
    output = tmp_path_factory.mktemp("quick") / "output"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SASAN_CACHE", str(cache))
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert run_demo(output, quick=True, config_overrides=TINY, shipped_model=shipped) == 0
        yield output, printed.getvalue(), shipped


def test_the_quick_demo_scores_the_shipped_model_beside_a_short_run_and_says_which_is_which(quick_demo):
    output, printed, shipped = quick_demo
    table_rows = [line.split("|")[1].strip() for line in printed.splitlines() if line.startswith("| ")]
    assert table_rows[2:] == [NO_ADAPTATION, HISTOGRAM_MATCHING, SASAN, SASAN_SHORT_RUN]
    origins = dict(line[2:].split(": ", 1) for line in
                   printed[printed.index("Where each row's networks come from:"):].splitlines()[1:5])
    assert "shipped model" in origins[SASAN] and "not in this run" in origins[SASAN]
    assert all("shipped model's MR U-Net" in origins[row] and "not in this run" in origins[row]
               for row in (NO_ADAPTATION, HISTOGRAM_MATCHING))
    assert origins[SASAN_SHORT_RUN].startswith("trained in this run")
    # every row is segmented by the shipped U-Net: the short run's model file carries its weights
    short = bundle.load(next((output / "models").glob("sasan_short_run_*.safetensors")))
    for a, b in zip(short.segmenter("MR").state_dict().values(),
                    bundle.load(shipped).segmenter("MR").state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy())


def test_the_quick_demo_refuses_a_model_trained_on_another_split(quick_demo, tmp_path):
    _, _, shipped = quick_demo
    with pytest.raises(ShippedModelError, match="would not be unseen"):
        run_demo(tmp_path / "out", quick=True, config_overrides=merge(TINY, {"data": {"split_seed": 4}}),
                 shipped_model=shipped)
    assert not (tmp_path / "out").exists()


def test_an_existing_output_is_refused_then_replaced_with_overwrite(quick_demo, caplog):
    output, _, shipped = quick_demo
    (output / "my_notes.txt").write_text("mine")
    assert cli.main(["demo", "--output", str(output)]) == 2
    assert "already exists" in caplog.text and "--overwrite" in caplog.text
    before = (output / "results.csv").stat().st_mtime_ns
    assert run_demo(output, quick=True, overwrite=True, config_overrides=TINY, shipped_model=shipped) == 0
    assert (output / "results.csv").stat().st_mtime_ns > before
    assert (output / "my_notes.txt").read_text() == "mine"


def test_a_file_as_output_folder_exits_with_status_2(tmp_path):
    (tmp_path / "file").write_text("")
    assert cli.main(["demo", "--quick", "--output", str(tmp_path / "file")]) == 2


def test_merge_replaces_leaves_and_merges_mappings():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 3}
    merged = merge(base, {"a": {"c": [9]}, "e": 4})
    assert merged == {"a": {"b": 1, "c": [9]}, "d": 3, "e": 4} and base["a"]["c"] == [1, 2]


@pytest.mark.parametrize("quick", [True, False])
def test_presets_build_the_runs(quick):
    configs = demo_configs(load_preset(quick)[0], full=not quick)
    assert configs.sasan.training.segmenter_steps == 0 and configs.sasan.model.attention
    assert [method for method, _, _ in configs.translators()] == (["SASAN"] if quick else
                                                                  ["CycleGAN", "SASAN w/o SPADE (ablation)", "SASAN"])
    for _, config, _ in configs.translators():
        assert config.training.steps == configs.sasan.training.steps  # the same budget
        assert config.training.threads >= 1 and config.data == configs.sasan.data
    if quick:  # no U-Net of its own: the shipped model's scores every row
        assert configs.segmenter is None and configs.segmenter_with_translations is None
    else:
        assert configs.segmenter.training.segmenter_steps > 0
        assert configs.cyclegan.model.generator == "resnet" and not configs.cyclegan.losses.cycle_ssim
        ablation = configs.sasan_without_spade.model
        assert not ablation.attention and ablation.generator == "sasan"
        # the shared U-Net sees real MR only, whatever the preset asks of the "w/ aug." one
        assert not configs.segmenter.training.segmenter_with_translations


def test_the_quick_preset_renders_the_full_presets_phantom_and_split():
    quick, full = (demo_configs(load_preset(q)[0], full=not q).sasan for q in (True, False))
    assert quick.data == full.data and quick.model.segmenter_width == full.model.segmenter_width
    assert quick.model.segmenter_depth == full.model.segmenter_depth


def test_the_w_aug_unet_is_built_only_where_the_preset_asks():
    preset = load_preset(quick=False)[0]
    assert demo_configs(merge(preset, {"training": {"segmenter_with_translations": False}})) \
        .segmenter_with_translations is None
    configs = demo_configs(merge(preset, {"training": {"segmenter_with_translations": True}}))
    augmented = configs.segmenter_with_translations
    assert augmented.training.segmenter_with_translations
    assert augmented.training.segmenter_steps == configs.segmenter.training.segmenter_steps
    assert not configs.segmenter.training.segmenter_with_translations
    assert not configs.sasan.training.segmenter_with_translations


def test_cyclegan_changes_go_on_top_of_the_baselines_settings_and_touch_no_other_run():
    preset = load_preset(quick=False)[0]
    plain = demo_configs(preset)
    tuned = demo_configs(preset, cyclegan_changes={"training": {"lr": 0.0005}, "losses": {"identity": 2.5}})
    assert plain.cyclegan.training.lr == CYCLEGAN_OVERRIDES["training"]["lr"] != 0.0005
    assert tuned.cyclegan.training.lr == 0.0005 and tuned.cyclegan.losses.identity == 2.5
    assert tuned.cyclegan.model == plain.cyclegan.model and tuned.cyclegan.model.generator == "resnet"
    assert (tuned.sasan, tuned.sasan_without_spade, tuned.segmenter) == \
        (plain.sasan, plain.sasan_without_spade, plain.segmenter)


@pytest.mark.parametrize("file_name, overrides", [("phantom_cyclegan.yaml", CYCLEGAN_OVERRIDES),
                                                   ("phantom_sasan_without_spade.yaml", SASAN_WITHOUT_SPADE_OVERRIDES)])
def test_the_baseline_config_files_are_the_demos_runs(file_name, overrides):
    demo_mapping = load_preset(quick=False)[0]
    shipped = yaml.safe_load(preset_path(file_name).read_text())
    expected = merge(demo_mapping, merge(overrides, {"name": shipped["name"], "output": shipped["output"]}))
    assert config_from_dict(shipped) == config_from_dict(expected)


@pytest.mark.parametrize("threads", [0, -2])
def test_demo_refuses_a_thread_count_below_one_before_doing_anything(tmp_path, threads):
    with pytest.raises(ValueError, match="--threads must be a positive integer"):
        run_demo(tmp_path / "out", quick=True, threads=threads)
    assert not (tmp_path / "out").exists()


def test_resume_continues_an_interrupted_demo_to_the_same_results(demo, tmp_path):
    """An interruption during the SASAN run (its checkpoints and model file gone): ``--resume`` keeps the finished
    runs, trains SASAN again and gives the uninterrupted demo's weights and table."""
    import shutil

    from sasan.training.checkpoint import list_checkpoints

    output, _, cache = demo
    copy = tmp_path / "output"
    shutil.copytree(output, copy)
    for checkpoint in list_checkpoints(copy / "runs" / "sasan"):
        checkpoint.unlink()
    (copy / "models" / "sasan_ct_to_mr.safetensors").unlink()
    unet_checkpoints = {path: path.read_bytes() for path in list_checkpoints(copy / "runs" / "mr_unet")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SASAN_CACHE", str(cache))
        with contextlib.redirect_stdout(io.StringIO()):
            assert run_demo(copy, quick=False, config_overrides=TINY, resume=True) == 0
    assert {path: path.read_bytes() for path in list_checkpoints(copy / "runs" / "mr_unet")} == unet_checkpoints
    resumed, original = (bundle.load(folder / "models" / "sasan_ct_to_mr.safetensors") for folder in (copy, output))
    assert resumed.card.tensor_sha256 == original.card.tensor_sha256  # the same weights, bit for bit
    assert (copy / "results.csv").read_text() == (output / "results.csv").read_text()


def test_resume_is_refused_for_the_quick_demo(tmp_path):
    with pytest.raises(ValueError, match="--resume continues an interrupted full demo"):
        run_demo(tmp_path / "out", quick=True, resume=True)
    assert not (tmp_path / "out").exists()
