"""The evaluation protocol of the paper, shared by ``sasan evaluate`` and ``sasan demo``.

A *method* turns one held-out source volume into a segmentation (and, when it translates, a translated
volume and attention maps), all on the input's grid. Every method runs on every held-out volume of
the source domain; each volume is scored per structure (Dice, ASSD in mm from its own spacing, capped
at 50 mm when a structure is missing on one side) and, for paired data, the translation against the
co-registered target image (SSIM, PSNR, MAE, RMSE, PCC). The outputs: per-method NIfTI volumes under
``volumes/<method>/``, one PNG per volume for the methods asked (``figures/``), ``results.csv`` (mean and
std over volumes per method and structure) and ``results.md`` (the paper's Tables 1/2, and 6 for paired).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from sasan import bundle
from sasan.atomic import staged_folder
from sasan.bundle import SASANModel
from sasan.card import request_problem
from sasan.config import LabelSpec, RunConfig, load_config
from sasan.data.domains import PreparedVolume, load_domain
from sasan.data.geometry import from_slice_stack
from sasan.data.io import read_volume, volume_to_image, write_text, write_volume
from sasan.data.volume import Volume
from sasan.inference import translate_volume
from sasan.metrics import image_scores, segmentation_scores
from sasan.reports import VolumeScores, image_metrics_table, markdown_table, save_volume_figure, summarize, write_csv

log = logging.getLogger(__name__)

RESULTS_CSV = "results.csv"
RESULTS_MARKDOWN = "results.md"
VOLUMES_DIR = "volumes"
FIGURES_DIR = "figures"


class ProtocolError(ValueError):
    """The data, the model and the configuration of an evaluation do not fit together."""


@dataclass
class MethodOutput:
    """What a method made of one volume, each on the input's grid (None where the method makes none).

    ``segmentation``: uint8 class indices; ``translated``: float32 in the target's units;
    ``attention``: K uint8 volumes (0..255 for attention 0..1).
    """

    segmentation: Optional[Volume]
    translated: Optional[Volume] = None
    attention: Optional[list[Volume]] = None


Method = Callable[[Volume], MethodOutput]


@dataclass
class HeldOutVolume:
    """One held-out source volume: its raw image (original geometry) and what it is scored against.

    ``labels``: class indices ``(z, y, x)`` or None; ``paired``: the co-registered target image on the
    same grid, or None; ``paired_mask``: the voxels where ``paired`` has data (None: all).
    """

    subject: str
    volume: Volume
    labels: Optional[np.ndarray] = None
    paired: Optional[np.ndarray] = None
    paired_mask: Optional[np.ndarray] = None


@dataclass
class ProtocolResult:
    """Scores per method and volume, and the files written."""

    segmentation_rows: list[VolumeScores] = field(default_factory=list)
    image_rows: list[VolumeScores] = field(default_factory=list)
    volumes: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def translation_method(model: SASANModel, source: str, target: str, *, device: str = "auto",
                       threads: Optional[int] = None) -> Method:
    """Translate with ``model`` and segment with its target U-Net (when it has one); attention maps when
    the model has an attention module."""
    segment = model.segmenter(target) is not None
    attention = model.attention(source) is not None

    def run(volume: Volume) -> MethodOutput:
        result = translate_volume(volume, model, target, source=source, device=device, segment=segment,
                                  attention=attention, threads=threads)
        return MethodOutput(result.segmentation, result.translated, result.attention)

    return run


def held_out_volumes(config: RunConfig, split: str = "test") -> list[HeldOutVolume]:
    """The source domain's test split (the final scoring; ``split="validation"`` for choices made before it)
    with its labels (volume order) and, for paired data, its partners."""
    prepared = load_domain(config.data.source, config.data, split=split, cropped=False)
    if not prepared:
        raise ProtocolError(f"no held-out {config.data.source.modality} volumes: the {split} split is empty "
                            "(a domain needs at least two subjects; see data.test_fraction)")
    paired = config.training.setup == "paired"
    volumes = []
    for item in prepared:
        test = HeldOutVolume(item.subject.id, item.volume, _labels_in_volume_order(item))
        if paired:
            if item.subject.paired_with is None:
                raise ProtocolError(f"{item.subject.id}: paired evaluation needs its co-registered "
                                    f"{config.data.target.modality} image, and none was found")
            test.paired, test.paired_mask = paired_reference(item.volume, read_volume(item.subject.paired_with))
        volumes.append(test)
    if config.data.labels and all(v.labels is None for v in volumes) and not paired:
        raise ProtocolError(f"none of the held-out {config.data.source.modality} volumes has a label file: "
                            "nothing to score")
    return volumes


def _labels_in_volume_order(item: PreparedVolume) -> Optional[np.ndarray]:
    return None if item.labels is None else np.ascontiguousarray(from_slice_stack(item.labels, item.axis))


def paired_reference(volume: Volume, partner: Volume) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``partner`` on ``volume``'s grid (linear interpolation through world space) and the mask of the
    voxels it covers (None when the grids already agree)."""
    if partner.same_geometry(volume):
        return partner.array.astype(np.float32, copy=False), None
    reference = volume_to_image(volume.with_array(np.zeros(volume.shape, np.float32)))
    fill = float(partner.array.min())
    resampled = sitk.Resample(volume_to_image(partner), reference, sitk.Transform(), sitk.sitkLinear, fill,
                              sitk.sitkFloat32)
    covered = sitk.Resample(volume_to_image(partner.with_array(np.ones(partner.shape, np.float32))), reference,
                            sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, sitk.sitkFloat32)
    mask = sitk.GetArrayFromImage(covered) > 0
    if not mask.any():
        raise ProtocolError("the paired target image does not overlap the source volume in world space")
    return sitk.GetArrayFromImage(resampled), mask


def method_folder_name(method: str) -> str:
    """A file-system-safe folder name for a method's outputs ("W/o adaptation" -> "w_o_adaptation")."""
    return re.sub(r"[^a-z0-9]+", "_", method.lower()).strip("_") or "method"


def run_methods(methods: dict[str, Method], volumes: Sequence[HeldOutVolume], labels: list[LabelSpec],
                output: Path, *, target: str, figure_methods: Collection[str] = (),
                overwrite: bool = False) -> ProtocolResult:
    """Apply every method to every volume, write its volumes (and figures), and score it.

    ``labels`` name the classes (class ``i`` is ``labels[i - 1]``); ``target`` names the paired image
    in the image-metric rows. Returns the per-volume scores and the paths written.
    """
    class_names = [label.name for label in labels]
    colors = [label.color for label in labels]
    result = ProtocolResult()
    for method, run in methods.items():
        folder = Path(output) / VOLUMES_DIR / method_folder_name(method)
        for number, test in enumerate(volumes, start=1):
            made = run(test.volume)
            result.volumes += _write_outputs(made, folder, test.subject, overwrite)
            message = f"{method}: {test.subject} ({number}/{len(volumes)})"
            if made.segmentation is not None and test.labels is not None and class_names:
                scores = segmentation_scores(made.segmentation.array, test.labels, class_names, test.volume.spacing)
                result.segmentation_rows.append(VolumeScores(test.subject, method, scores))
                message += f", mean Dice {np.mean([s['dice'] for s in scores.values()]):.3f}"
            if made.translated is not None and test.paired is not None:
                scores = image_scores(made.translated.array, test.paired, mask=test.paired_mask)
                result.image_rows.append(VolumeScores(test.subject, method, {target: scores}))
                message += f", SSIM {scores['ssim']:.3f}"
            log.info("%s", message)
            if method in figure_methods and made.translated is not None:
                path = Path(output) / FIGURES_DIR / f"{method_folder_name(method)}_{test.subject}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                _save_figure(path, test, made, method, colors)
                result.figures.append(path)
    return result


def _write_outputs(made: MethodOutput, folder: Path, subject: str, overwrite: bool) -> list[Path]:
    written = []
    for kind, volume in (("translated", made.translated), ("segmentation", made.segmentation)):
        if volume is not None:
            written.append(write_volume(volume, folder / f"{subject}_{kind}.nii.gz", overwrite=overwrite))
    return written


def _save_figure(path: Path, test: HeldOutVolume, made: MethodOutput, method: str,
                 colors: list[list[float]]) -> None:
    empty = np.zeros(test.volume.shape, np.uint8)
    predicted = made.segmentation.array if made.segmentation is not None else empty
    truth = test.labels if test.labels is not None else empty
    attention = np.stack([maps.array for maps in made.attention]) if made.attention else None
    save_volume_figure(path, test.volume.array, made.translated.array, predicted, truth, attention,
                       title=f"{method}: {test.subject}", label_colors=colors or None)


def write_reports(result: ProtocolResult, output: Path, structures: Sequence[str], title: str) -> str:
    """Write ``results.csv`` and ``results.md`` into ``output``; returns the Markdown tables."""
    output = Path(output)
    sections = [f"# {title}\n"]
    if result.segmentation_rows:
        summary = summarize(result.segmentation_rows)
        write_csv(summary, output / RESULTS_CSV)
        sections.append("Dice and ASSD (mm) per structure, mean ± std over the held-out volumes "
                        f"({len({row.volume_id for row in result.segmentation_rows})}).\n\n"
                        + markdown_table(summary, structures))
    if result.image_rows:
        sections.append("Translation against the co-registered target image, mean ± std over volumes.\n\n"
                        + image_metrics_table(result.image_rows))
    if result.figures:
        sections.append("Figures:\n\n" + "\n".join(f"- {path.relative_to(output)}" for path in result.figures)
                        + "\n")
    text = "\n".join(sections)
    write_text(output / RESULTS_MARKDOWN, text)
    return text


def prepare_output_folder(output: Path, overwrite: bool) -> Path:
    """Create ``output``; refuse a non-empty existing folder unless ``overwrite`` (which only lets the
    results be replaced: nothing else in the folder is ever deleted)."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"{output} exists and is not a folder; choose another --output")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(f"{output} already exists and is not empty; pass --overwrite to replace the "
                              "results in it (nothing else is deleted) or choose another --output")
    output.mkdir(parents=True, exist_ok=True)
    return output


def check_model_fits(model: SASANModel, config: RunConfig) -> None:
    """Refuse a model whose direction or structures differ from the configuration's."""
    source, target = config.data.source.modality, config.data.target.modality
    card = model.card
    problem = request_problem(card, target, source=source, segment=False, attention=False)
    if problem:
        raise ProtocolError(problem)
    names = [label.name for label in config.data.labels]
    card_names = [label["name"] for label in card.labels]
    if names and model.segmenter(target) is not None and names != card_names:
        raise ProtocolError(f"the configuration's structures {names} differ from the model's {card_names} "
                            "(same names in the same order are needed to compare class indices)")


def evaluate_model(config_path: Path, model_path: Path, output: Path, *, device: str = "auto",
                   overwrite: bool = False) -> str:
    """Score the model file on the configuration's held-out volumes into ``output`` (tables, CSV, volumes,
    figures; all or nothing); returns the Markdown tables (``sasan evaluate``)."""
    config = load_config(config_path)
    model = bundle.load(model_path)
    check_model_fits(model, config)
    source, target = config.data.source.modality, config.data.target.modality
    segments = model.segmenter(target) is not None and bool(config.data.labels)
    if not segments and config.training.setup != "paired":
        raise ProtocolError(f"nothing to score: model {model.card.name!r} has no {target} segmenter (or the "
                            "configuration lists no structures) and the data are not paired")
    volumes = held_out_volumes(config)  # before the output folder is made: unusable data leave nothing behind
    output = Path(output)
    if output.exists():
        prepare_output_folder(output, overwrite)  # refuses a used folder without --overwrite
    method = model.card.name
    log.info("evaluating %s (%s -> %s) on %d held-out volumes", method, source, target, len(volumes))
    with staged_folder(output) as staging:  # a run failing half-way adds nothing
        result = run_methods({method: translation_method(model, source, target, device=device)}, volumes,
                             config.data.labels if segments else [], staging, target=target,
                             figure_methods={method}, overwrite=True)
        if not result.segmentation_rows and not result.image_rows:
            raise ProtocolError(f"none of the held-out {source} volumes has labels or a paired image to score "
                                "against")
        tables = write_reports(result, staging, [label.name for label in config.data.labels],
                               f"{method}: {source} -> {target}")
    log.info("results: %s; volumes under %s; figures under %s", output / RESULTS_MARKDOWN, output / VOLUMES_DIR,
             output / FIGURES_DIR)
    return tables
