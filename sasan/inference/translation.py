"""Translate (and segment) a whole volume, slice by slice, onto the input's exact voxel grid.

The volume is first cropped in-plane as the card's ``crop`` for the source modality asks (the results
are pasted back onto the whole grid afterwards). ``VolumeRun`` then translates it along the model's slicing
axis, batch by batch on the networks' device: normalised with an intensity map fitted to the (cropped)
volume (the card's recipe for the source modality), 2.5D context stacks padded and resized to the model's
square, attention -> generator, the centre channel resized back and mapped into the target's units; the
translated square slices feed the target's segmenter through a rolling window (its input is 2.5D too),
whose logits are resized back before the argmax. Everything ends up in arrays on the input's grid, so each
result is ``volume.with_array(...)``. The finished segmentation is cleaned up as the card's
``postprocessing`` asks (``postprocess``).

Before the networks run, the input is compared with the model's training scans (``sasan.domain``): the
result's ``domain.warning`` says, in one sentence, when it does not look like them.

Progress is reported after every batch and the cancel flag is read before every batch; a cancelled
run raises ``TranslationCancelled`` and returns nothing. When a GPU runs out of memory the batch is
halved and retried; at one slice per batch the run continues on the CPU and says so in ``notes``.

Requests are refused up front with ``InferenceError`` saying ``sasan.card.request_problem``'s sentence: a
direction the model does not offer, a segmentation (``segment=True``, the default) when the model has no
segmenter for the target, or attention maps when it has no attention module -- callers pass
``segment=False`` / ``attention=False`` for such models (``model.card.segmenters`` says which exist), so
nothing silently goes missing.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from sasan import bundle
from sasan.bundle import SASANModel
from sasan.card import ModelCard, ModelFileError, request_problem
from sasan.config import NormalizationConfig
from sasan.data.crop import crop_region, crop_volume, paste
from sasan.data.geometry import slicing_axis
from sasan.data.preprocess import IntensityMap, NormalizationError, fit_intensity_map
from sasan.data.volume import Volume
from sasan.domain.check import DomainCheck, check_domain
from sasan.progress import Progress
from sasan.runtime import (
    DeviceError,
    default_batch_size,
    precision_name,
    resolve_device,
    resolve_precision,
    torch_threads,
)

from .errors import InferenceError
from .postprocess import apply_postprocessing
from .prepared import prepare_networks
from .volume_run import VolumeRun

log = logging.getLogger(__name__)


@dataclass
class TranslationResult:
    """Everything a translation produced, each volume on the input's grid.

    ``translated``: float32 in the target modality's units (the card's target reference map).
    ``segmentation``: uint8 class indices 0..C-1 (``card.labels[i - 1]`` is class ``i``), or None.
    ``attention``: K uint8 volumes, 0..255 for attention 0..1, or None.
    ``device``: where the run finished ("cpu" after a GPU fallback, which ``notes`` then explains).
    ``timings``: seconds per phase: "prepare" (the model, the checks, the intensity map, the networks on the
    device), "slices" (the slice loop, until every result is back on the host), "finish" (paste, clean-up).
    ``domain``: whether the input looks like the model's training scans (``sasan.domain``); its ``warning``
    is one sentence for the user, or None.
    """

    translated: Volume
    segmentation: Optional[Volume]
    attention: Optional[list[Volume]]
    source: str
    target: str
    device: str
    seconds: float
    precision: str = "fp32"
    batch_size: int = 1
    threads: int = 1
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    domain: DomainCheck = field(default_factory=lambda: DomainCheck(checked=False))


def translate_volume(
    volume: Volume,
    model: Union[SASANModel, str, Path],
    target: str,
    *,
    source: Optional[str] = None,
    device: str = "auto",
    segment: bool = True,
    attention: bool = True,
    batch_size: Optional[int] = None,
    precision: str = "auto",
    threads: Optional[int] = None,
    progress: Optional[Progress] = None,
    cancel: Optional[Callable[[], bool]] = None,
) -> TranslationResult:
    """Translate ``volume`` (the source modality) into ``target``; see the module docstring.

    ``source`` defaults to the model's other modality. ``device`` "auto" | "cpu" | "cuda[:N]";
    ``precision`` "auto" (bf16 on GPUs and on CPUs with native bf16, else fp32) | "fp32" | "bf16" |
    "fp16" (GPU only); ``batch_size`` and ``threads`` override the automatic choices.
    ``progress(fraction, message)`` is called with non-decreasing fractions ending at 1.0.
    """
    started = time.perf_counter()
    report = progress or (lambda fraction, message: None)
    private = not isinstance(model, SASANModel)
    if private:
        model = bundle.load(model, "cpu")
    card = model.card
    source = _check_request(card, source, target, segment, attention)
    axis = _check_volume(volume, card.slicing_axis)
    if threads is not None and threads < 1:
        raise InferenceError(f"threads must be a positive integer; got {threads}")
    try:
        torch_device = resolve_device(device)
        dtype = resolve_precision(precision, torch_device)
    except DeviceError as error:  # said in this function's terms: its device / precision arguments
        raise InferenceError(str(error)) from None
    if batch_size is not None and batch_size < 1:
        raise InferenceError(f"batch_size must be a positive integer; got {batch_size}")
    try:  # a malformed entry of the card, said as this function's error
        crop, normalization = card.crop(source), card.normalization_config(source)
    except ModelFileError as error:
        raise InferenceError(str(error)) from None
    domain = check_domain(volume, card, source)  # its own cheap pass over a few slices (sasan.domain)
    region = crop_region(volume, crop, axis)
    work = crop_volume(volume, region)
    source_map = _fit_source_map(work, normalization, source)
    target_map = _reference_map(card, target)

    with torch_threads(threads) as used_threads:
        report(0.0, "preparing the networks")
        networks = prepare_networks(model, source, target, torch_device, dtype, segmenter=segment, private=private)
        batch = batch_size or default_batch_size(torch_device, card.image_size, dtype)
        run = VolumeRun(work, axis, networks, source_map, target_map, card.image_size, batch,
                        segment=segment, num_maps=card.model_config.num_maps if attention else 0,
                        report=report, cancel=cancel)
        prepared = time.perf_counter()
        run.execute()
        looped = time.perf_counter()
    # Outside the crop: the target's darkest intensity (where the model maps background), no class, no attention.
    translated = paste(region, run.translated, target_map.low)
    segmentation = None if run.segmentation is None else paste(region, run.segmentation, 0)
    maps = None if run.attention is None else [paste(region, m, 0) for m in run.attention]
    if segmentation is not None:
        apply_postprocessing(segmentation, card.postprocessing)

    finished = time.perf_counter()
    seconds = finished - started
    timings = {"prepare": prepared - started, "slices": looped - prepared, "finish": finished - looped}
    log.info("translated %d slices %s -> %s on %s (%s, batch %d, %d threads) in %.1f s", run.count, source,
             target, run.networks.device, precision_name(run.networks.dtype), run.batch, used_threads, seconds)
    return TranslationResult(
        translated=volume.with_array(translated),
        segmentation=volume.with_array(segmentation) if segmentation is not None else None,
        attention=[volume.with_array(m) for m in maps] if maps is not None else None,
        source=source, target=target, device=str(run.networks.device), seconds=seconds,
        precision=precision_name(run.networks.dtype), batch_size=run.batch, threads=used_threads, notes=run.notes,
        timings=timings,
        domain=domain,
    )


def _check_request(card: ModelCard, source: Optional[str], target: str, segment: bool, attention: bool) -> str:
    """The request's source modality (the model's default when None), or ``InferenceError`` saying why not."""
    problem = request_problem(card, target, source=source, segment=segment, attention=attention)
    if problem:
        raise InferenceError(problem)
    return card.source_for(target) if source is None else source


def _check_volume(volume: Volume, plane: str) -> int:
    if not isinstance(volume, Volume):
        raise InferenceError(f"expected a sasan Volume; got {type(volume).__name__}")
    if min(volume.shape) < 1:
        raise InferenceError(f"the volume is empty: shape {volume.shape} (z, y, x) needs at least one voxel per axis")
    kind = volume.array.dtype
    if not np.issubdtype(kind, np.number) or np.issubdtype(kind, np.complexfloating):
        raise InferenceError(f"voxels of type {kind} are not image intensities")
    try:
        return slicing_axis(volume, plane)
    except ValueError as error:
        raise InferenceError(f"the model card's slicing plane is unusable: {error}") from None


def _fit_source_map(volume: Volume, config: NormalizationConfig, source: str) -> IntensityMap:
    try:
        return fit_intensity_map(volume.array, config)
    except NormalizationError as error:
        raise InferenceError(f"cannot normalise the {source} volume: {error}") from None


def _reference_map(card: ModelCard, target: str) -> IntensityMap:
    try:
        return IntensityMap.from_dict(card.reference(target))
    except NormalizationError as error:
        raise InferenceError(f"the model card's reference intensities for {target} are malformed: {error}") from None
