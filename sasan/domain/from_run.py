"""The card's ``domain`` entry from a run's own scans: the training subjects make each modality's fingerprint,
the validation subjects (without any: held-out quarters of the training volumes) set its scale."""
from __future__ import annotations

import logging

from sasan.config import DataConfig, DomainConfig, RunConfig
from sasan.data.domains import load_domain

from .fingerprint import MAX_SLICES, Fingerprint, build_fingerprint
from .volumes import prepared_profiles

log = logging.getLogger(__name__)


def domain_from_run(config: RunConfig) -> dict:
    """``{"body_region", "modalities": {modality: {"description", "fingerprint"}}}`` for the run ``config``
    (reads its training and validation scans; ``OSError`` or ``ValueError`` when they cannot be read)."""
    region = config.data.body_region
    modalities = {}
    for domain in (config.data.source, config.data.target):
        fingerprint = modality_fingerprint(domain, config.data)
        modalities[domain.modality] = {"description": f"{region} {domain.modality}".strip(),
                                       "fingerprint": fingerprint.to_dict()}
        log.info("%s fingerprint: %d training slices kept; farthest validation scores %s (%s)", domain.modality,
                 len(fingerprint.reference), fingerprint.to_dict()["validation_max"], fingerprint.validation)
    return {"body_region": region, "modalities": modalities}


def modality_fingerprint(domain: DomainConfig, data: DataConfig) -> Fingerprint:
    """One modality's fingerprint: every body slice of its training subjects, scaled by its validation subjects."""
    training = [prepared_profiles(v.volume, v.axis, v.intensity, limit=None)
                for v in load_domain(domain, data, split="train")]
    validation = [prepared_profiles(v.volume, v.axis, v.intensity, limit=MAX_SLICES)
                  for v in load_domain(domain, data, split="validation")]
    return build_fingerprint(training, validation)
