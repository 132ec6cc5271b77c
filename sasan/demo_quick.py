"""``sasan demo --quick``: the method at work in under five minutes on 2 CPU cores.

A few minutes of training on 2 CPU cores do not adapt SASAN (benchmarks/RESULTS.md), so the quick demo
scores the phantom model that the full protocol trained, shipped as ``Resources/Models/phantom_ct_mr.safetensors``
(``scripts/phantom_model.py`` makes it). Its card names the phantom and the subject split it was trained on;
the quick preset renders the same phantom and scores the same split's *test* subjects, which its training
never read, so a model trained on another split is refused. "W/o adaptation" and "Histogram matching" feed
the same model's MR U-Net, so the rows differ only in what reaches that U-Net. Beside them a short SASAN run
(``phantom_quick.yaml``: a few minutes of attention pre-training and adversarial steps) shows the trainer at
work; its translator is scored with the same U-Net. The printed table says which rows were trained in this
run and which come from the shipped model.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from sasan import bundle
from sasan import demo_rows as rows
from sasan.config import RunConfig
from sasan.models.translator import segmenter_name
from sasan.protocol import held_out_volumes, prepare_output_folder, run_methods, translation_method, write_reports
from sasan.resources import model_path
from sasan.training.export import build_card, load_run_networks
from sasan.training.trainer import Trainer

log = logging.getLogger(__name__)

SHIPPED_MODEL = "phantom_ct_mr.safetensors"


class ShippedModelError(ValueError):
    """The shipped phantom model does not fit the quick demo's data."""


def run_quick_demo(config: RunConfig, output: Path, overwrite: bool, device: str,
                   shipped_model: Optional[Path] = None) -> int:
    """The quick demo's stages with the short SASAN run ``config``; returns the exit status (0)."""
    threads = config.training.threads
    data = config.data
    source, target = data.source.modality, data.target.modality
    shipped_file = Path(shipped_model) if shipped_model is not None else model_path(SHIPPED_MODEL)
    shipped = bundle.load(shipped_file)
    check_shipped_model(shipped, config)  # before anything is written or trained
    output = prepare_output_folder(output, overwrite)
    stages = rows.Stages(4)

    stages.begin(f"phantom data: {rows.phantom_description(data)}")
    volumes = held_out_volumes(config)

    stages.begin(f"scoring the shipped model {shipped_file.name} on the {len(volumes)} test {source} volumes, and "
                 "its U-Net without adaptation and with histogram matching")
    unet = shipped.segmenter(target)
    results = [rows.score_baselines(config, unet, volumes, output, device, overwrite),
               run_methods({rows.SASAN: translation_method(shipped, source, target, device=device, threads=threads)},
                           volumes, data.labels, output, target=target, figure_methods={rows.SASAN},
                           overwrite=overwrite)]
    steps = shipped.card.provenance.get("steps", "?")
    shipped_unet = f"the shipped model's {target} U-Net, trained by the full protocol (not in this run)"
    origins = {name: f"no training of its own; {shipped_unet}"
               for name in (rows.NO_ADAPTATION, rows.HISTOGRAM_MATCHING)}
    origins[rows.SASAN] = (f"shipped model {shipped_file.name}, trained by the full protocol ({steps} steps) on this "
                           f"phantom's training subjects (not in this run); {shipped_unet}")

    t = config.training
    stages.begin(f"training a short {rows.SASAN} run ({t.pretrain_attention_steps} attention pre-training + {t.steps} "
                 "adversarial steps)")
    run_dir = output / "runs" / "sasan_short_run"
    rows.forget_previous_run(run_dir)
    Trainer(config, run_dir).fit()
    short_file = export_with_unet(run_dir, output / "models" / f"sasan_short_run_{source.lower()}_to_{target.lower()}"
                                  ".safetensors", shipped, overwrite)
    origins[rows.SASAN_SHORT_RUN] = (f"trained in this run ({t.pretrain_attention_steps} + {t.steps} steps, "
                                     f"{stages.elapsed() / 60:.1f} min so far), to show the trainer at work: minutes "
                                     f"of training do not adapt, the {rows.SASAN} row's did; {shipped_unet}")

    stages.begin(f"translating, segmenting and scoring the {len(volumes)} test {source} volumes with the short run")
    results.append(run_methods({rows.SASAN_SHORT_RUN: translation_method(bundle.load(short_file), source, target,
                                                                         device=device, threads=threads)},
                               volumes, data.labels, output, target=target, overwrite=overwrite))
    tables = write_reports(rows.combine(results), output, [label.name for label in data.labels],
                           f"SASAN demo on the phantom (quick): {source} -> {target}")
    rows.print_summary(tables, origins, stages.elapsed(), "quick", shipped_file, output, target)
    return 0


def check_shipped_model(model: bundle.SASANModel, config: RunConfig) -> None:
    """Refuse a shipped model that was not trained on ``config``'s phantom and split (its test subjects would
    not be unseen) or whose U-Net the short run's translator cannot feed."""
    data, card = config.data, model.card
    source, target = data.source.modality, data.target.modality
    trained_on = card.provenance.get("data")
    if trained_on != rows.phantom_description(data):
        raise ShippedModelError(f"the shipped model {card.name!r} was trained on {trained_on!r}, not on this "
                                f"demo's {rows.phantom_description(data)!r}: its test subjects would not be unseen")
    if model.segmenter(target) is None or [source, target] not in card.directions:
        raise ShippedModelError(f"the shipped model {card.name!r} has no {source} -> {target} translator with a "
                                f"{target} U-Net")
    shipped, short = card.model_config, config.model
    if (card.image_size, card.context, [label["name"] for label in card.labels],
            shipped.segmenter_width, shipped.segmenter_depth) != (
            data.image_size, data.context, [label.name for label in data.labels], short.segmenter_width,
            short.segmenter_depth):
        raise ShippedModelError("the quick preset's image size, context, structures or U-Net size differ from the "
                                f"shipped model {card.name!r}'s, whose U-Net scores every row")


def export_with_unet(run_dir: Path, path: Path, shipped: bundle.SASANModel, overwrite: bool) -> Path:
    """The translator of ``run_dir`` (a run without a U-Net of its own; its EMA weights when averaged) with
    ``shipped``'s target U-Net, as one model file."""
    config, _, exported, step = load_run_networks(run_dir)
    target = config.data.target.modality
    card = build_card(config, run_dir, step, [target],
                      description=f"{rows.SASAN} {config.data.source.modality} -> {target}: a short run of `sasan demo "
                                  "--quick` with the shipped phantom model's U-Net; for trying the tools",
                      provenance={"source": "sasan demo --quick", "data": rows.phantom_description(config.data)})
    return bundle.save(path, card, {**exported, segmenter_name(target): shipped.segmenter(target)},
                       overwrite=overwrite)
