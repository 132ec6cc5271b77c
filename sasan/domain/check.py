"""Does an input look like the scans a model was trained on? One sentence for the user when it does not.

The input is profiled as the claimed source modality and scored against that modality's fingerprint in
the model card (``sasan.domain.fingerprint``): its ratio says how many times farther it lies than the
farthest validation scan. It is out of the model's domain when the ratio passes the fingerprint's margin,
and the warning then says so; an input beyond every validation scan of its claimed modality that lies
within those of the model's other modality is named as that modality instead (a CT given as MR). Model
files without a fingerprint are not checked (logged at info).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional

from sasan.card import ModelCard
from sasan.data.volume import Volume

from .fingerprint import METHOD, Fingerprint
from .volumes import volume_profiles

log = logging.getLogger(__name__)


@dataclass
class DomainCheck:
    """The outcome: ``warning`` (one sentence, None when the input fits or was not checked); ``ratio``: the
    input's score over the farthest validation scan's (None when not checked); ``margin``: the ratio past
    which it warns."""

    checked: bool
    warning: Optional[str] = None
    ratio: Optional[float] = None
    margin: Optional[float] = None

    def to_dict(self) -> dict:
        finite = self.ratio is not None and math.isfinite(self.ratio)
        return {"checked": self.checked, "warning": self.warning, "ratio": round(self.ratio, 3) if finite else None,
                "margin": self.margin}


def fingerprints(card: ModelCard) -> dict[str, Fingerprint]:
    """The card's fingerprints this SASAN can score, by modality."""
    found = {}
    for modality, entry in card.domain.get("modalities", {}).items():
        data = entry.get("fingerprint")
        if data and data.get("method") == METHOD:
            found[modality] = Fingerprint.from_dict(data)
        elif data:
            log.info("the %s fingerprint of model %r was made with method %r, which this SASAN cannot score",
                     modality, card.name, data.get("method"))
    return found


def check_domain(volume: Volume, card: ModelCard, source: str) -> DomainCheck:
    """Check ``volume`` given as modality ``source`` against ``card``'s fingerprints."""
    known = fingerprints(card)
    if source not in known:
        log.info("model %r has no %s fingerprint: the input is not checked against its training scans", card.name,
                 source)
        return DomainCheck(checked=False)
    claimed, kind = known[source], card.domain_description(source)
    try:
        ratio = _ratio(volume, card, source, claimed)
        log.info("domain check: the input lies %.2fx as far from the %s training scans as the farthest validation "
                 "scan (warns past %.1fx)", ratio, kind, claimed.margin)
        reason = _reason(volume, card, source, ratio, known)
    except ValueError as error:  # the check advises; an input it cannot read is the translation's to refuse
        log.warning("the input could not be compared with the model's training scans: %s", error)
        return DomainCheck(checked=False)
    warning = None if reason is None else f"the input does not look like the {kind} scans this model was trained on " \
                                          f"({reason})"
    return DomainCheck(checked=True, warning=warning, ratio=ratio, margin=claimed.margin)


def _reason(volume: Volume, card: ModelCard, source: str, ratio: float,
            known: dict[str, Fingerprint]) -> Optional[str]:
    """Why the input is out of the model's domain, or None when it is not."""
    if ratio == float("inf"):
        return "no slice holds enough of a body to compare"
    if ratio > 1.0:
        other = _other_modality(volume, card, source, known)
        if other:
            return other
    if ratio > known[source].margin:
        return f"it lies {ratio:.1f}x further from the training scans than any validation scan"
    return None


def _ratio(volume: Volume, card: ModelCard, modality: str, fingerprint: Fingerprint) -> float:
    """The input read as ``modality``: its score over the farthest validation scan's (inf without a body slice)."""
    profiles = volume_profiles(volume, card.normalization_config(modality), card.crop(modality), card.slicing_axis,
                               fingerprint)
    return fingerprint.ratio(profiles) if len(profiles) else float("inf")


def _other_modality(volume: Volume, card: ModelCard, source: str, known: dict[str, Fingerprint]) -> Optional[str]:
    """"its intensities look like MR" when the input, read as another modality of the model, lies within that
    modality's validation scans."""
    for other, fingerprint in known.items():
        if other == source:
            continue
        other_ratio = _ratio(volume, card, other, fingerprint)
        log.info("domain check: read as %s, the input lies %.2fx as far as the farthest validation scan", other,
                 other_ratio)
        if other_ratio <= 1.0:  # as close to the other modality's training scans as its validation scans
            return f"its intensities look like {other}"
    return None
