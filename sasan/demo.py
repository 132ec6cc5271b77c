"""``sasan demo``: the paper's domain-adaptation protocol on the embedded phantom, end to end.

Source CT (unlabelled for training; its test subjects' labels only score), target MR (labelled):

1. the phantom is generated (once, into the cache ``$SASAN_CACHE``) and split by subject into training,
   validation and test subjects; only the test subjects are scored, once, at the end;
2. one MR U-Net is trained on real MR slices (a segmenter run) and serves every row below;
3. "W/o adaptation" (CT normalised as CT into the MR U-Net) and "Histogram matching" (CT matched to
   the MR training histogram, normalised as MR) are scored;
4. SASAN CT -> MR is trained and exported with the shared U-Net: the model file the user is pointed to;
5. (full mode) "CycleGAN": Zhu et al.'s CycleGAN (ResNet generators, PatchGAN discriminators, LSGAN, L1
   cycle and identity losses) with its published settings; "SASAN w/o SPADE (ablation)": SASAN's own
   generator without attention (plain instance norms; no auxiliary, regularisation or segmentation-GAN
   losses); both with the preset's budget, exported with the shared U-Net;
6. every translator translates the test CTs, which are segmented and scored in their original geometry.

With ``training.segmenter_with_translations: true`` in the preset (the full one), a "SASAN w/ aug." row
follows the paper's second variant: a second MR U-Net trained on real MR slices plus CT slices translated by
the SASAN model, labelled by its MR attention head (confident pixels only), exported with the same translator.

Outputs under the output folder: ``runs/`` (training runs), ``models/`` (model files), ``volumes/<method>/``
(NIfTI translations and segmentations), ``figures/`` (SASAN, one per volume, with attention maps),
``results.csv`` and ``results.md``. The table is printed on stdout with what each row's networks are;
progress is logged throughout.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from sasan import bundle
from sasan.config import RunConfig, config_from_dict
from sasan.demo_rows import (
    CYCLEGAN,
    HISTOGRAM_MATCHING,
    NO_ADAPTATION,
    SASAN,
    SASAN_AUGMENTED,
    SASAN_WITHOUT_SPADE,
    Stages,
    combine,
    forget_previous_run,
    phantom_description,
    print_summary,
    score_baselines,
    subject_counts,
)
from sasan.protocol import (
    held_out_volumes,
    prepare_output_folder,
    run_methods,
    translation_method,
    write_reports,
)
from sasan.resources import preset_path
from sasan.runtime import free_cpu_cores, torch_threads
from sasan.training.export import export_run, load_run_networks
from sasan.training.segmenter import train_segmenter
from sasan.training.trainer import Trainer

log = logging.getLogger(__name__)

QUICK_PRESET = "phantom_quick.yaml"
FULL_PRESET = "phantom_demo.yaml"
# Wall time of the whole demo on a 2-core AMD EPYC (Zen 4) with about one core free (benchmarks/RESULTS.md):
# quick 2.9 min beside a training run; full 38-42 min on one thread before the CycleGAN and ablation rows.
# Those add two translator runs of the same 1000 steps: a CycleGAN step costs what a SASAN step does (2.2 s
# each on one loaded core), an ablation step half that; the full demo is estimated from these, not yet timed
# end to end. Busier machines take longer.
EXPECTED_DURATION = {"quick": "about 3 minutes (under 5)", "full": "about 90 minutes (estimated)"}

# The CycleGAN baseline (Zhu et al., ICCV 2017) with its published settings, not tuned here: ResNet
# generators with 6 residual blocks (its choice at 128² and below) and 32 channels (half its 64, as the
# phantom preset halves SASAN's widths), the preset's PatchGAN discriminators, LSGAN, an L1 cycle loss
# (weight 10) and identity loss (0.5 x 10), Adam lr 2e-4; the preset's steps, batch, schedule and EMA.
CYCLEGAN_OVERRIDES = {
    "model": {"generator": "resnet", "attention": False, "resnet_width": 32, "resnet_blocks": 6},
    "losses": {"cycle": 10.0, "cycle_ssim": False, "identity": 5.0, "use_auxiliary": False,
               "use_regularization": False, "use_segmentation_discriminator": False},
    "training": {"lr": 0.0002, "pretrain_attention_steps": 0, "copy_pretrained_attention": False,
                 "segmenter_with_translations": False},
}

# The ablation: SASAN's generator and discriminators with plain instance norms instead of SPADE, and every
# loss that needs attention maps switched off; the preset's settings and budget otherwise.
SASAN_WITHOUT_SPADE_OVERRIDES = {
    "model": {"attention": False},
    "losses": {"use_auxiliary": False, "use_regularization": False, "use_segmentation_discriminator": False},
    # no head to pre-train, copy or label translations with
    "training": {"pretrain_attention_steps": 0, "copy_pretrained_attention": False,
                 "segmenter_with_translations": False},
}


@dataclass
class DemoConfigs:
    """The training runs of the demo, all from one preset."""

    sasan: RunConfig        # SASAN CT -> MR, no U-Net of its own
    segmenter: Optional[RunConfig] = None            # the MR U-Net alone (its segmenter_steps; full demo)
    cyclegan: Optional[RunConfig] = None             # the baselines of the full demo
    sasan_without_spade: Optional[RunConfig] = None
    segmenter_with_translations: Optional[RunConfig] = None  # the "w/ aug." U-Net, where the preset asks

    def translators(self) -> list[tuple[str, RunConfig, str]]:
        """(row, run, file-name slug) of each translator the demo trains."""
        found = [(CYCLEGAN, self.cyclegan, "cyclegan"),
                 (SASAN_WITHOUT_SPADE, self.sasan_without_spade, "sasan_without_spade"), (SASAN, self.sasan, "sasan")]
        return [(method, config, slug) for method, config, slug in found if config is not None]


def merge(base: dict, overrides: dict) -> dict:
    """A deep copy of ``base`` with ``overrides`` merged in, mapping by mapping (other values replaced)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def demo_configs(preset: dict, overrides: Optional[dict] = None, full: bool = True,
                 cyclegan_changes: Optional[dict] = None) -> DemoConfigs:
    """Build the demo's runs from a preset mapping (a phantom CT -> MR run configuration).

    Full demo (``full``): the preset's ``segmenter_steps`` train the shared U-Net on real MR only; the
    translators (SASAN, CycleGAN, SASAN without SPADE) train no U-Net of their own;
    ``training.segmenter_with_translations: true`` adds the "w/ aug." U-Net (same steps). Quick demo: the
    SASAN run alone (the short run). ``training.threads: 0`` becomes the number of currently free CPU cores.
    ``cyclegan_changes`` go on top of the CycleGAN baseline's settings (its tuning, benchmarks/cyclegan_tuning.py).
    """
    mapping = merge(preset, overrides or {})
    augmented = full and bool(mapping.get("training", {}).get("segmenter_with_translations", False))
    translator = merge(mapping, {"training": {"segmenter_steps": 0, "segmenter_with_translations": False}})

    def baseline(changes: dict, name: str) -> Optional[RunConfig]:
        return config_from_dict(merge(merge(translator, changes), {"name": name})) if full else None

    configs = DemoConfigs(
        sasan=config_from_dict(merge(translator, {"name": "phantom_sasan"})),
        segmenter=config_from_dict(merge(mapping, {"name": "phantom_mr_unet",
                                                   "training": {"segmenter_with_translations": False}}))
        if full else None,
        cyclegan=baseline(merge(CYCLEGAN_OVERRIDES, cyclegan_changes or {}), "phantom_cyclegan"),
        sasan_without_spade=baseline(SASAN_WITHOUT_SPADE_OVERRIDES, "phantom_sasan_without_spade"),
        segmenter_with_translations=(config_from_dict(merge(mapping, {"name": "phantom_mr_unet_with_translations"}))
                                     if augmented else None),
    )
    for config in (configs.segmenter, configs.sasan, configs.cyclegan, configs.sasan_without_spade,
                   configs.segmenter_with_translations):
        if config is None:
            continue
        if config.data.source.layout != "phantom" or config.data.target.layout != "phantom":
            raise ValueError("the demo runs on the embedded phantom: data.source/target.layout must be 'phantom'")
        if not config.data.target.labelled:
            raise ValueError("the demo needs labelled MR (data.target.labelled: true)")
        if config.training.threads == 0:
            config.training.threads = free_cpu_cores()
    if configs.segmenter is not None and configs.segmenter.training.segmenter_steps < 1:
        raise ValueError("the demo preset needs training.segmenter_steps >= 1 for the MR U-Net")
    return configs


def load_preset(quick: bool, preset: Optional[Path] = None) -> tuple[dict, Path]:
    """The preset mapping (``preset`` if given, else the quick or full phantom preset) and its path."""
    path = Path(preset) if preset is not None else preset_path(QUICK_PRESET if quick else FULL_PRESET)
    if not path.is_file():
        raise FileNotFoundError(f"demo preset {path} not found")
    mapping = yaml.safe_load(path.read_text()) or {}
    if not isinstance(mapping, dict):
        raise ValueError(f"{path}: expected a run configuration mapping")
    return mapping, path


def _train_and_export(method: str, config: RunConfig, run_dir: Path, model_file: Path, segmenter_run: Path,
                      mode: str, overwrite: bool, resume: bool = False) -> Path:
    """Train one translator (continuing its last checkpoint if ``resume``) and export it with the shared
    U-Net; returns the model file."""
    _prepare_run(run_dir, resume)
    Trainer(config, run_dir, resume=resume).fit()
    return _export(method, config, run_dir, model_file, segmenter_run, mode, overwrite)


def _prepare_run(run_dir: Path, resume: bool) -> None:
    """A demo run starts from scratch (a previous demo's checkpoints forgotten) unless ``resume`` continues it
    from its last checkpoint (a run already at its last step only reloads)."""
    if not resume:
        forget_previous_run(run_dir)


def _export(method: str, config: RunConfig, run_dir: Path, model_file: Path, segmenter_run: Path, mode: str,
            overwrite: bool) -> Path:
    """The translator of ``run_dir`` with the U-Net of ``segmenter_run`` as one model file."""
    source, target = config.data.source.modality, config.data.target.modality
    return export_run(run_dir, model_file, segmenter_run=segmenter_run, overwrite=overwrite,
                      description=f"{method} {source} -> {target} trained by `sasan demo` ({mode}) on the "
                                  "embedded phantom; for trying the tools, not for real images",
                      provenance={"source": "sasan demo", "data": phantom_description(config.data)})


def run_demo(output: Path, quick: bool = False, overwrite: bool = False, *, preset: Optional[Path] = None,
             config_overrides: Optional[dict] = None, device: str = "auto", threads: Optional[int] = None,
             shipped_model: Optional[Path] = None, resume: bool = False) -> int:
    """Run the whole demo into ``output`` and print its table; returns the exit status (0).

    ``preset`` replaces the quick / full preset file; ``config_overrides`` are merged into it (the tests
    shrink the run this way). ``threads`` fixes the CPU threads of every stage (default: the free cores).
    ``shipped_model`` replaces the quick demo's shipped phantom model. Refuses a non-empty ``output`` unless
    ``overwrite``; ``resume`` (full demo) continues an interrupted demo in ``output``: every training run from
    its last checkpoint, with bit-identical results, the scores recomputed.
    """
    if resume and quick:
        raise ValueError("--resume continues an interrupted full demo; the quick demo has nothing to resume")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be a positive integer; got {threads}")
    mode = "quick" if quick else "full"
    mapping, preset_file = load_preset(quick, preset)
    custom = preset is not None or bool(config_overrides)
    if threads is not None:
        config_overrides = merge(config_overrides or {}, {"training": {"threads": threads}})
    configs = demo_configs(mapping, config_overrides, full=not quick)
    expected = "unknown (custom preset)" if custom else EXPECTED_DURATION[mode]
    log.info("SASAN demo, %s mode (preset %s): expected duration %s on 2 free CPU cores; %d thread(s); "
             "output folder %s", mode, preset_file.name, expected, configs.sasan.training.threads, output)
    with torch_threads(configs.sasan.training.threads):
        if quick:
            from sasan.demo_quick import run_quick_demo  # the quick demo's own stages

            return run_quick_demo(configs.sasan, Path(output), overwrite, device, shipped_model)
        return _run_protocol(configs, Path(output), overwrite or resume, device, resume)


def _run_protocol(configs: DemoConfigs, output: Path, overwrite: bool, device: str, resume: bool = False) -> int:
    """The full demo's stages (see the module docstring) with ``configs``; returns the exit status (0).
    ``resume`` continues each training run from its last checkpoint (an interrupted demo, same settings)."""
    mode, threads = "full", configs.sasan.training.threads
    output = prepare_output_folder(output, overwrite)
    data = configs.sasan.data
    source, target = data.source.modality, data.target.modality
    augmented = configs.segmenter_with_translations
    stages = Stages(4 + len(configs.translators()) + (augmented is not None))

    stages.begin(f"phantom data: {subject_counts(data)}, {data.phantom_size} voxels across")
    volumes = held_out_volumes(configs.sasan)

    stages.begin(f"training the {target} U-Net on real {target} slices "
                 f"({configs.segmenter.training.segmenter_steps} steps)")
    segmenter_run = output / "runs" / f"{target.lower()}_unet"
    _prepare_run(segmenter_run, resume)
    train_segmenter(configs.segmenter, segmenter_run, resume=resume)

    stages.begin(f"scoring the test {source} volumes without adaptation and with histogram matching")
    results = [score_baselines(configs.sasan, load_run_networks(segmenter_run)[1].segmenter, volumes, output, device,
                               overwrite)]
    unet = f"the {target} U-Net trained in this run ({configs.segmenter.training.segmenter_steps} steps)"
    origins = {NO_ADAPTATION: f"no training of its own; {unet}", HISTOGRAM_MATCHING: f"no training of its own; {unet}"}

    model_files, run_dirs = {}, {}
    for method, config, slug in configs.translators():
        origins[method] = (f"trained in this run ({config.training.pretrain_attention_steps} attention pre-training "
                           f"+ {config.training.steps} adversarial steps); {unet}")
        stages.begin(f"training {method} {source} -> {target} "
                     f"({config.training.pretrain_attention_steps + config.training.steps} steps)")
        run_dirs[method] = output / "runs" / slug
        model_files[method] = _train_and_export(
            method, config, run_dirs[method],
            output / "models" / f"{slug}_{source.lower()}_to_{target.lower()}.safetensors", segmenter_run, mode,
            overwrite, resume)

    if augmented is not None:
        stages.begin(f"training the {target} U-Net on real {target} and SASAN-translated {source} slices "
                     f"({augmented.training.segmenter_steps} steps)")
        augmented_run = output / "runs" / f"{target.lower()}_unet_with_translations"
        _prepare_run(augmented_run, resume)
        train_segmenter(augmented, augmented_run, resume=resume, translator=model_files[SASAN])
        origins[SASAN_AUGMENTED] = (f"the {SASAN} translator above; a second {target} U-Net trained in this run on "
                                    f"real {target} and translated {source} ({augmented.training.segmenter_steps} "
                                    "steps)")
        model_files[SASAN_AUGMENTED] = _export(
            SASAN_AUGMENTED, configs.sasan, run_dirs[SASAN],
            output / "models" / f"sasan_aug_{source.lower()}_to_{target.lower()}.safetensors", augmented_run, mode,
            overwrite)

    stages.begin(f"translating, segmenting and scoring the {len(volumes)} test {source} volumes")
    for method in model_files:
        model = bundle.load(model_files[method])
        translate = translation_method(model, source, target, device=device, threads=threads)
        results.append(run_methods({method: translate}, volumes, data.labels, output, target=target,
                                   figure_methods={SASAN}, overwrite=overwrite))

    tables = write_reports(combine(results), output, [label.name for label in data.labels],
                           f"SASAN demo on the phantom ({mode}): {source} -> {target}")
    print_summary(tables, origins, stages.elapsed(), mode, model_files[SASAN], output, target)
    return 0
