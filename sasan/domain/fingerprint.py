"""A compact fingerprint of the scans a model was trained on, and how far an input lies from it (numpy, scipy).

A slice is described by which tissues it holds and where they lie. Its body is the region above the
volume's Otsu threshold with its holes filled (so lungs and sinuses belong to it). Intensities are read in
the modality's own units as the model's normalisation reads them: ``u = -1 .. 1`` spans the model's window
(CT: its HU window) or, for a modality normalised by percentiles (MR), the volume's own percentile range.
They are binned (``BIN_EDGES``: quarter-window bins across the span, wider ones beyond) over the whole body
-- the *tissues* view -- and over each of ``SHELLS`` layers of the body by depth below its surface, the
depth measured in millimetres and divided by the slice's deepest point -- the *layers* view (the scalp
and skull of a head, the fat and ribs of a chest). Each bin holds the log of its fraction plus
``PRESENCE``: whether a tissue is there counts more than how much of it there is, which changes from the
neck to the vertex.

A modality's fingerprint keeps up to ``MAX_REFERENCE`` training slices' profiles and each number's spread
over them (at least ``SPREAD_FLOOR``). An input's score in a view is the median, over up to ``MAX_SLICES``
of its slices, of the distance (root mean square in units of the spread) to the nearest training slice;
its ratio is the larger of the two views' scores over the farthest validation scan's. Past ``margin`` the
input is out of the model's domain.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from sasan.card import FINGERPRINT_METHOD

METHOD = FINGERPRINT_METHOD  # named in sasan.card, which checks the fingerprint's form without numpy
VIEWS = ("tissues", "layers")
# Inner bin edges in the modality's own units (-1 .. 1 = the model's window or percentile range).
BIN_EDGES = (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
SHELLS = 3                # layers by depth: outer, middle, inner third
PRESENCE = 0.01           # a tissue below 1 % of a region counts as absent
SPREAD_FLOOR = 0.5        # log units: a factor 1.65 in a tissue's fraction is never "far" on its own
MIN_BODY_FRACTION = 0.01  # a slice with less body than this (air above the head) is not scored
MAX_SLICES = 16           # slices scored per input: a small fraction of a translation's cost
MAX_REFERENCE = 256       # training slices kept per modality
MARGIN = 2.0              # out of domain past twice the farthest validation scan
MIN_VALIDATION_SCORE = 0.1  # near-identical validation scans must not make every small difference "far"
FOLDS = 4                 # a modality with one training volume: its held-out quarters stand in for validation


def own_units(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` mapped linearly so that ``low`` -> -1 and ``high`` -> 1, not clipped (float32)."""
    return (np.asarray(values, np.float32) - np.float32(low)) * np.float32(2.0 / (high - low)) - np.float32(1.0)


def scored_slices(stack: np.ndarray, threshold: float, limit: int = MAX_SLICES) -> np.ndarray:
    """Indices of up to ``limit`` slices of ``stack`` ``(n, h, w)``, evenly spread over those whose body
    (voxels above ``threshold``) is at least ``MIN_BODY_FRACTION`` of the slice; possibly empty."""
    body = np.array([(image > threshold).mean() for image in stack])
    candidates = np.flatnonzero(body >= MIN_BODY_FRACTION)
    return candidates[evenly(len(candidates), limit)]


def evenly(count: int, limit: int) -> np.ndarray:
    """Up to ``limit`` indices evenly spread over ``range(count)``."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(int))


def tissue_profiles(slices: np.ndarray, threshold: float, spacing: Sequence[float] = (1.0, 1.0),
                    bin_edges: Sequence[float] = BIN_EDGES, presence: float = PRESENCE,
                    shells: int = SHELLS) -> np.ndarray:
    """Profiles ``(n, bins * (1 + shells))`` of slices ``(n, h, w)`` in own units, body above ``threshold``:
    ``log(fraction + presence)`` per bin over the whole body, then per depth shell, outermost first.
    ``spacing``: the pixel size (rows, columns) in mm, so depth is measured alike on any grid."""
    edges = np.array([-np.inf, *bin_edges, np.inf])
    bins = len(edges) - 1
    profiles = np.empty((len(slices), bins * (1 + shells)))
    for row, image in enumerate(slices):
        body = ndimage.binary_fill_holes(image > threshold)
        depth = ndimage.distance_transform_edt(body, sampling=spacing)
        layer = np.minimum((depth / max(depth.max(), 1e-6) * shells).astype(int), shells - 1)
        regions = [body] + [body & (layer == shell) for shell in range(shells)]
        for number, region in enumerate(regions):
            values = image[region]
            counts = np.histogram(values, edges)[0]
            profiles[row, number * bins:(number + 1) * bins] = np.log(counts / max(values.size, 1) + presence)
    return profiles


@dataclass
class Fingerprint:
    """One modality's training slices as profiles, and the scale their validation set.

    ``reference`` (n, bins * (1 + shells)) and ``spread`` as lists; ``validation_max``: per view, the largest
    validation score (at least ``MIN_VALIDATION_SCORE``); ``validation``: how those scores came about.
    """

    reference: list
    spread: list
    validation_max: dict
    validation: str
    margin: float = MARGIN
    bin_edges: tuple = BIN_EDGES
    shells: int = SHELLS
    presence: float = PRESENCE
    slices: int = MAX_SLICES
    method: str = METHOD

    def ratio(self, profiles: np.ndarray) -> float:
        """How far the input whose slices have ``profiles`` lies, as a multiple of the farthest validation scan."""
        scores = view_scores(profiles, np.asarray(self.reference), np.asarray(self.spread), len(self.bin_edges) + 1)
        return max(scores[view] / self.validation_max[view] for view in VIEWS)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["reference"] = [[float(v) for v in row] for row in self.reference]
        data["spread"] = [float(v) for v in self.spread]
        data["bin_edges"] = list(self.bin_edges)
        data["validation_max"] = {view: round(float(v), 4) for view, v in self.validation_max.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Fingerprint":
        return cls(**{**data, "bin_edges": tuple(data["bin_edges"])})


def view_scores(profiles: np.ndarray, reference: np.ndarray, spread: np.ndarray, bins: int) -> dict[str, float]:
    """Per view, the median over the rows of ``profiles`` of the distance to the nearest row of ``reference``."""
    columns = {"tissues": slice(0, bins), "layers": slice(bins, None)}
    scores = {}
    for view, part in columns.items():
        scaled = (profiles[:, None, part] - reference[None, :, part]) / spread[part]
        scores[view] = float(np.median(np.sqrt((scaled ** 2).mean(axis=2)).min(axis=1)))
    return scores


def build_fingerprint(training: Sequence[np.ndarray], validation: Sequence[np.ndarray], *,
                      margin: float = MARGIN) -> Fingerprint:
    """The fingerprint of one modality from per-volume profiles (each ``(n, columns)``, slices in order).

    Validation scores: each ``validation`` volume against the training slices; and, so that a few
    validation scans do not set the scale alone, each training volume against the other training
    volumes -- or, for a single training volume, each of its ``FOLDS`` consecutive quarters against the
    other three (how far an unseen stretch of the same anatomy lies).
    """
    training = [np.asarray(p, float) for p in training if len(p)]
    if not training:
        raise ValueError("no training slice has enough body to be profiled")
    everything = np.concatenate(training)
    # Rounded as the card stores them, so that validation scores what inference will score.
    spread = np.maximum(everything.std(axis=0), SPREAD_FLOOR).round(4)
    reference = everything[evenly(len(everything), MAX_REFERENCE)].round(2)  # log units: 1 % apart
    bins = len(BIN_EDGES) + 1
    scores = [view_scores(np.asarray(p, float), reference, spread, bins) for p in validation if len(p)]
    how = [f"{len(scores)} validation scan(s) against the training slices"] if scores else []
    held_out = _held_out_scores(training, spread, bins)
    scores += held_out
    if len(training) > 1:
        how.append(f"each of the {len(training)} training volumes against the others")
    elif held_out:
        how.append(f"{FOLDS} quarters of the one training volume, each against the other three")
    if not scores:
        raise ValueError(f"nothing to validate the fingerprint with (no validation scan, and the one training "
                         f"volume has fewer than {FOLDS} body slices)")
    worst = {view: max(max(score[view] for score in scores), MIN_VALIDATION_SCORE) for view in VIEWS}
    return Fingerprint(reference=reference.tolist(), spread=spread.tolist(), validation_max=worst,
                       validation="; ".join(how), margin=margin)


def _held_out_scores(training: list[np.ndarray], spread: np.ndarray, bins: int) -> list[dict[str, float]]:
    """Each training volume against the others; a lone volume's quarters against its other quarters."""
    if len(training) > 1:
        parts = [(number, np.ones(len(p), bool)) for number, p in enumerate(training)]
    elif len(training[0]) >= FOLDS:
        quarter = (np.arange(len(training[0])) * FOLDS) // len(training[0])
        parts = [(0, quarter == part) for part in range(FOLDS)]
    else:
        return []
    scores = []
    for number, held in parts:
        others = [p for n, p in enumerate(training) if n != number] + [training[number][~held]]
        reference = np.concatenate(others)
        reference = reference[evenly(len(reference), MAX_REFERENCE)]
        profiles = training[number][held]
        scores.append(view_scores(profiles[evenly(len(profiles), MAX_SLICES)], reference, spread, bins))
    return scores
