"""The paper's evaluation outputs: per-method summaries, CSV, Markdown tables and one figure per volume.

Statistics are over volumes: every volume counts once, standard deviations are population
standard deviations (numpy's default, ``ddof=0``).
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

logger = logging.getLogger(__name__)

MEAN_STRUCTURE = "mean"
SUMMARY_COLUMNS = ("method", "structure", "dice_mean", "dice_std", "assd_mean", "assd_std")
IMAGE_METRICS = (("ssim", "SSIM"), ("psnr", "PSNR (dB)"), ("mae", "MAE"), ("rmse", "RMSE"), ("pcc", "PCC"))
FIGURE_COLUMNS = 4
MAX_ATTENTION_PANELS = 8
_OVERLAY_ALPHA = 0.45


class EvaluationError(ValueError):
    """Scores or arrays handed to the evaluation do not fit together."""


@dataclass
class VolumeScores:
    """Scores of one method on one volume.

    ``scores`` maps a structure to ``{"dice", "assd"}`` (see ``metrics.segmentation_scores``), or,
    for paired image metrics, an image name (e.g. ``"CT"``) to ``metrics.image_scores``.
    """

    volume_id: str
    method: str
    scores: dict[str, dict[str, float]]


def summarize(rows: list[VolumeScores]) -> list[dict]:
    """Dice and ASSD mean and std over volumes, per method and structure.

    Each method also gets a ``"mean"`` structure: every volume's mean over its structures, then mean
    and std of those values over the volumes. All volumes of a method must score the same structures.
    Returns dicts with the keys of ``SUMMARY_COLUMNS``; methods and structures in first-seen order.
    """
    summary = []
    for method, method_rows in _rows_by_method(rows).items():
        structures = list(method_rows[0].scores)
        _check_same_structures(method, method_rows, structures)
        dice = np.array([[row.scores[s]["dice"] for s in structures] for row in method_rows])
        assd = np.array([[row.scores[s]["assd"] for s in structures] for row in method_rows])
        # Columns are structures; the last one is each volume's mean over its structures.
        dice = np.column_stack([dice, dice.mean(axis=1)])
        assd = np.column_stack([assd, assd.mean(axis=1)])
        for column, structure in enumerate([*structures, MEAN_STRUCTURE]):
            summary.append(
                {
                    "method": method,
                    "structure": structure,
                    "dice_mean": float(dice[:, column].mean()),
                    "dice_std": float(dice[:, column].std()),
                    "assd_mean": float(assd[:, column].mean()),
                    "assd_std": float(assd[:, column].std()),
                }
            )
    return summary


def write_csv(summary: list[dict], path: Union[str, Path]) -> None:
    """Write ``summary`` with exactly the columns ``SUMMARY_COLUMNS``, one row per method and structure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for entry in summary:
            missing = set(SUMMARY_COLUMNS) - set(entry)
            if missing:
                raise EvaluationError(f"summary entry {entry} lacks {sorted(missing)}")
            writer.writerow({column: entry[column] for column in SUMMARY_COLUMNS})
    logger.info("wrote %d summary rows to %s", len(summary), path)


def markdown_table(summary: list[dict], structures: Sequence[str], decimals: int = 2) -> str:
    """Markdown table like the paper's Tables 1-2: one row per method.

    Columns ``Dice <structure>`` for each of ``structures`` then ``Dice mean``, then the same for
    ASSD (mm); cells ``mean ± std``. The mean columns average over all the method's structures.
    """
    cells = {(entry["method"], entry["structure"]): entry for entry in summary}
    methods = list(dict.fromkeys(entry["method"] for entry in summary))
    columns = [s for s in structures if s != MEAN_STRUCTURE] + [MEAN_STRUCTURE]
    header = ["Method"] + [f"Dice {s}" for s in columns] + [f"ASSD {s} (mm)" for s in columns]
    lines = [_markdown_row(header), _markdown_row(["---"] * len(header))]
    for method in methods:
        row = [method]
        for metric in ("dice", "assd"):
            for structure in columns:
                if (method, structure) not in cells:
                    raise EvaluationError(f"the summary has no {structure!r} row for method {method!r}")
                entry = cells[(method, structure)]
                row.append(_mean_std(entry[f"{metric}_mean"], entry[f"{metric}_std"], decimals))
        lines.append(_markdown_row(row))
    return "\n".join(lines) + "\n"


def image_metrics_table(rows: list[VolumeScores], decimals: int = 2) -> str:
    """Markdown table of paired image metrics like the paper's Table 6.

    ``rows`` hold ``{image name: metrics.image_scores(...)}``; one table row per method and image
    name, cells ``mean ± std`` over volumes for SSIM, PSNR, MAE, RMSE and PCC. A volume identical
    to its reference has an infinite PSNR, which makes that cell a bare ``inf``.
    """
    values: dict[tuple[str, str], list[dict[str, float]]] = {}
    for row in rows:
        for image_name, scores in row.scores.items():
            missing = {key for key, _ in IMAGE_METRICS} - set(scores)
            if missing:
                raise EvaluationError(
                    f"volume {row.volume_id!r} of {row.method!r} lacks image metrics {sorted(missing)}"
                )
            values.setdefault((row.method, image_name), []).append(scores)
    header = ["Method", "Image"] + [title for _, title in IMAGE_METRICS]
    lines = [_markdown_row(header), _markdown_row(["---"] * len(header))]
    for (method, image_name), volume_scores in values.items():
        cells = [method, image_name]
        for key, _ in IMAGE_METRICS:
            column = np.array([scores[key] for scores in volume_scores], dtype=np.float64)
            if np.all(np.isfinite(column)):
                cells.append(_mean_std(float(column.mean()), float(column.std()), decimals))
            else:  # an infinite PSNR (identical volume) leaves no meaningful std
                cells.append(f"{float(column.mean()):.{decimals}f}")
        lines.append(_markdown_row(cells))
    return "\n".join(lines) + "\n"


def save_volume_figure(
    path: Union[str, Path],
    image: np.ndarray,
    translated: np.ndarray,
    predicted: np.ndarray,
    truth: np.ndarray,
    attention: Optional[np.ndarray] = None,
    title: str = "",
    label_colors: Optional[Sequence[Sequence[float]]] = None,
    slice_index: Optional[int] = None,
) -> int:
    """Save a PNG of one axial slice: input, translation, prediction over the translation, truth over the input.

    ``image``, ``translated``, ``predicted`` and ``truth`` are ``(z, y, x)`` arrays (the last two
    class indices); ``attention`` is ``(K, z, y, x)`` and its first 8 maps go in a second row.
    ``label_colors[i - 1]`` is the RGB (each in [0, 1]) of class ``i``. The slice is ``slice_index``,
    else the one with the most true foreground, else the middle one. Returns the slice shown.
    """
    # Drawing on an Agg canvas directly, not through pyplot: inside Slicer, switching pyplot's
    # backend would affect the application, and no GUI window is wanted here.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shape = _check_figure_arrays(image, translated, predicted, truth, attention)
    k = _pick_slice(truth, slice_index)
    colors = _label_colors(max(int(predicted.max()), int(truth.max()), 0), label_colors)
    maps = [] if attention is None else list(attention[:MAX_ATTENTION_PANELS, k])
    # Four panels a row (the attention maps wrap onto further rows), so every panel keeps the same size.
    map_rows = -(-len(maps) // FIGURE_COLUMNS)
    figure = Figure(figsize=(2.6 * FIGURE_COLUMNS, 2.9 * (1 + map_rows)), layout="constrained")
    FigureCanvasAgg(figure)
    if title:
        figure.suptitle(title)
    axes = figure.subplots(1 + map_rows, FIGURE_COLUMNS, squeeze=False)
    for axis, (name, background, labels) in zip(
        axes[0],
        [
            ("input", image, None),
            ("translation", translated, None),
            ("prediction on translation", translated, predicted),
            ("ground truth on input", image, truth),
        ],
    ):
        axis.imshow(background[k], cmap="gray", **_window(background[k]))
        if labels is not None:
            axis.imshow(_label_overlay(labels[k], colors))
        _label_axis(axis, name)
    map_axes = axes[1:].ravel()
    for index, axis in enumerate(map_axes):
        if index < len(maps):
            axis.imshow(maps[index], cmap="viridis")
            _label_axis(axis, f"attention {index + 1}")
        else:
            axis.set_axis_off()
    figure.savefig(Path(path), dpi=80)
    logger.info("saved the figure of slice %d of a %s volume to %s", k, shape, path)
    return k


def _rows_by_method(rows: list[VolumeScores]) -> dict[str, list[VolumeScores]]:
    if not rows:
        raise EvaluationError("no scores to summarise")
    by_method: dict[str, list[VolumeScores]] = {}
    for row in rows:
        method_rows = by_method.setdefault(row.method, [])
        if any(other.volume_id == row.volume_id for other in method_rows):
            raise EvaluationError(f"volume {row.volume_id!r} is scored twice for method {row.method!r}")
        if MEAN_STRUCTURE in row.scores:
            raise EvaluationError(f"{MEAN_STRUCTURE!r} is reserved for the mean over structures")
        method_rows.append(row)
    return by_method


def _check_same_structures(method: str, rows: list[VolumeScores], structures: list[str]) -> None:
    if not structures:
        raise EvaluationError(f"volume {rows[0].volume_id!r} of {method!r} has no structures")
    for row in rows:
        if set(row.scores) != set(structures):
            raise EvaluationError(
                f"method {method!r}: volume {row.volume_id!r} scores {sorted(row.scores)}, "
                f"volume {rows[0].volume_id!r} scores {sorted(structures)}"
            )
        for structure, scores in row.scores.items():
            if "dice" not in scores or "assd" not in scores:
                raise EvaluationError(f"{structure!r} of volume {row.volume_id!r} needs 'dice' and 'assd'")


def _mean_std(mean: float, std: float, decimals: int) -> str:
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _check_figure_arrays(
    image: np.ndarray,
    translated: np.ndarray,
    predicted: np.ndarray,
    truth: np.ndarray,
    attention: Optional[np.ndarray],
) -> tuple[int, ...]:
    shape = image.shape
    if image.ndim != 3:
        raise EvaluationError(f"the figure needs (z, y, x) volumes; the input has shape {shape}")
    for name, array in (("translation", translated), ("prediction", predicted), ("ground truth", truth)):
        if array.shape != shape:
            raise EvaluationError(f"the {name} has shape {array.shape}, the input {shape}")
    for name, labels in (("prediction", predicted), ("ground truth", truth)):
        if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
            raise EvaluationError(f"the {name} must hold non-negative integer class indices")
    if attention is not None and (attention.ndim != 4 or attention.shape[1:] != shape):
        raise EvaluationError(f"attention must be (K, z, y, x) with (z, y, x) = {shape}; got {attention.shape}")
    return shape


def _pick_slice(truth: np.ndarray, slice_index: Optional[int]) -> int:
    if slice_index is not None:
        if not 0 <= slice_index < truth.shape[0]:
            raise EvaluationError(f"slice {slice_index} is outside the volume's {truth.shape[0]} slices")
        return slice_index
    foreground = np.count_nonzero(truth.reshape(truth.shape[0], -1), axis=1)
    return int(foreground.argmax()) if foreground.any() else truth.shape[0] // 2


def _label_colors(
    highest_label: int, label_colors: Optional[Sequence[Sequence[float]]]
) -> np.ndarray:
    """Row ``i - 1`` is the RGB of class ``i``; matplotlib's tab10 cycle when none are given."""
    if label_colors is None:
        from matplotlib import colormaps

        palette = colormaps["tab10"].colors
        return np.array([palette[i % len(palette)] for i in range(highest_label)], dtype=float).reshape(-1, 3)
    colors = np.asarray(label_colors, dtype=float)
    if colors.ndim != 2 or colors.shape[1] != 3 or np.any(colors < 0) or np.any(colors > 1):
        raise EvaluationError("label_colors must be RGB triples with components in [0, 1]")
    if len(colors) < highest_label:
        raise EvaluationError(f"label_colors has {len(colors)} colours but class {highest_label} is present")
    return colors


def _label_overlay(labels: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """RGBA ``(y, x, 4)`` image: class colours where ``labels >= 1``, transparent elsewhere."""
    overlay = np.zeros((*labels.shape, 4))
    foreground = labels > 0
    overlay[foreground, :3] = colors[labels[foreground] - 1]
    overlay[foreground, 3] = _OVERLAY_ALPHA
    return overlay


def _window(image_slice: np.ndarray) -> dict[str, float]:
    """Grey levels from the 1st to the 99th percentile, so that a few outliers do not wash the slice out."""
    low, high = np.percentile(image_slice, [1, 99])
    return {"vmin": float(low), "vmax": float(high) if high > low else float(low) + 1.0}


def _label_axis(axis, name: str) -> None:
    axis.set_title(name, fontsize=9)
    axis.set_axis_off()
