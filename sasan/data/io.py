"""Reading and writing 3D volumes (NIfTI, NRRD, MetaImage, DICOM series) with their geometry intact.

Every refusal is a ``VolumeReadError`` that names the file and says what is wrong with it, raised
before any voxel memory is allocated where the header alone tells (dimensions, components, size).
"""
from __future__ import annotations

import contextlib
import logging
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Optional, Union

import nibabel
import numpy as np
import SimpleITK as sitk

from sasan.atomic import atomic_file, atomic_files
from sasan.config import LabelSpec
from sasan.data.volume import Volume

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

MAX_VOXELS = 2**31
READABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
# Only single-file formats can be written atomically (a .mhd/.nhdr header names its data file).
WRITABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
COMPRESSED_SUFFIXES = (".nii.gz", ".nrrd")
# Geometry agreement between an image and its label file, in mm (headers stored as float32 differ slightly).
LABEL_GEOMETRY_TOLERANCE_MM = 1e-3


class VolumeReadError(ValueError):
    """A file or folder cannot be used as a 3D volume; the message names it and the reason."""


class GeometryMismatchError(VolumeReadError):
    """A label volume does not lie on the same voxel grid as its image."""


def volume_suffix(path: PathLike, allowed: tuple[str, ...] = READABLE_SUFFIXES) -> Optional[str]:
    """The recognised (possibly double) extension of ``path``, lower case, or None."""
    name = Path(path).name.lower()
    return next((suffix for suffix in allowed if name.endswith(suffix)), None)


def read_volume(path: PathLike, dtype: Optional[type] = np.float32) -> Volume:
    """Read a 3D scalar volume from a file or a DICOM series folder.

    Returns a ``Volume`` whose array is ``(nz, ny, nx)``, cast to ``dtype`` (pass ``None`` to keep the
    stored pixel type, e.g. integer labels). Spacing, origin and direction are kept as stored.
    Non-finite voxels are allowed here; call ``check_finite`` where they matter.
    """
    path = Path(path)
    if not path.exists():
        raise VolumeReadError(f"{path}: no such file or folder")
    if path.is_dir():
        image = _read_dicom_series(path)
    else:
        image = _read_image_file(path)
    try:
        volume = Volume(
            sitk.GetArrayFromImage(image),
            spacing=image.GetSpacing(),
            origin=image.GetOrigin(),
            direction=np.array(image.GetDirection()).reshape(3, 3),
        )
    except ValueError as error:
        raise VolumeReadError(f"{path}: invalid geometry in the header ({error})") from None
    if not np.all(np.isfinite(volume.direction)) or abs(np.linalg.det(volume.direction)) < 1e-6:
        raise VolumeReadError(f"{path}: the direction matrix in the header is singular or not finite")
    if volume_suffix(path) in (".nii", ".nii.gz") and np.issubdtype(volume.array.dtype, np.floating):
        _restore_nifti_non_finite(path, volume.array)
    if dtype is not None:
        volume.array = volume.array.astype(dtype, copy=False)
    return volume


def check_finite(volume: Union[Volume, np.ndarray], name: str) -> None:
    """Raise ``VolumeReadError`` if any voxel is NaN or infinite (``name`` identifies the volume)."""
    array = volume.array if isinstance(volume, Volume) else np.asarray(volume)
    if not np.issubdtype(array.dtype, np.floating):
        return
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise VolumeReadError(
            f"{name}: {int(bad.sum())} voxel(s) are NaN or infinite (first at array index {first}); "
            "fix or mask them before use"
        )


def write_volume(volume: Volume, path: PathLike, overwrite: bool = False) -> Path:
    """Write ``volume`` with its geometry; the format follows the extension.

    The file appears complete or not at all: it is written to a hidden temporary file in the same
    folder and then moved into place. Refuses an existing ``path`` unless ``overwrite``.
    """
    (path,) = write_volumes({Path(path): volume}, overwrite=overwrite)
    return path


def write_volumes(volumes: dict[Path, Volume], overwrite: bool = False) -> list[Path]:
    """Write several volumes all or nothing (e.g. a translation and its segmentation).

    Every volume is first written to a hidden temporary file beside its target; only when all are
    written are they moved into place. A failure (disk full, folder not writable, ...) removes the
    temporary files and any folder this call created, and raises with a message naming the target.
    Refuses an unknown format, or an existing target unless ``overwrite``, before writing anything.
    """
    targets = [Path(p) for p in volumes]
    for path in targets:
        if volume_suffix(path, WRITABLE_SUFFIXES) is None:
            raise ValueError(f"{path}: cannot write this format; use one of {', '.join(WRITABLE_SUFFIXES)}")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    new_folders = sorted({f for p in targets for f in (p.parent, *p.parent.parents) if not f.exists()},
                         key=lambda f: len(f.parts), reverse=True)
    try:
        for path in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_files(failures=(RuntimeError,)) as files:  # ITK reports a full disk as RuntimeError
            for path, volume in zip(targets, volumes.values()):
                suffix = volume_suffix(path, WRITABLE_SUFFIXES)
                sitk.WriteImage(volume_to_image(volume), str(files.add(path, suffix)),
                                useCompression=suffix in COMPRESSED_SUFFIXES)
    except BaseException:
        for folder in new_folders:  # deepest first; only if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return targets


def volume_to_image(volume: Volume) -> sitk.Image:
    """``volume`` as a SimpleITK image with its spacing, origin and direction (booleans as uint8, float16 as
    float32, which ITK cannot hold)."""
    image = sitk.GetImageFromArray(_writable_array(volume.array))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(float(v) for v in volume.direction.ravel()))  # row-major: columns are i, j, k
    return image


def write_text(path: PathLike, text: str) -> Path:
    """Write a UTF-8 text file (e.g. a results table) atomically: temporary file, then rename."""
    path = Path(path)
    with atomic_file(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


def check_writable(path: PathLike) -> None:
    """Raise ``PermissionError`` (or another ``OSError``) unless a file can be created where ``path`` would go.

    Probes the nearest existing folder on the way with a temporary file (removed at once), so that a
    long computation is refused before it starts rather than when its result is written. Permission
    bits are not trusted: they do not apply to root, and a read-only mount ignores them.
    """
    folder = Path(path).absolute().parent
    while not folder.exists():
        folder = folder.parent
    try:
        handle, name = tempfile.mkstemp(prefix=".sasan-write-test.", dir=folder)
    except OSError as error:
        raise type(error)(f"{path}: cannot write into {folder} ({error.strerror or error})") from None
    os.close(handle)
    os.unlink(name)


def read_labels(path: PathLike, labels: list[LabelSpec], reference: Optional[Volume] = None) -> Volume:
    """Read a label file as class indices: 0 background, ``labels[i].value`` -> ``i + 1``.

    Returns a uint8 ``Volume`` ``(nz, ny, nx)``. Values not listed in ``labels`` become background
    (logged once per file). With ``reference``, refuses a label grid that differs from the image's.
    """
    values = [spec.value for spec in labels]
    if len(set(values)) != len(values):
        raise ValueError(f"label values must be distinct; got {values}")
    if len(values) > 255:
        raise ValueError(f"at most 255 structures fit in uint8 class indices; got {len(values)}")
    raw = read_volume(path, dtype=None)
    data = raw.array
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        impossible = [spec for spec in labels if not info.min <= spec.value <= info.max]
        if impossible:
            raise VolumeReadError(
                f"{path}: stores {data.dtype} values ({info.min}..{info.max}), so label value "
                f"{impossible[0].value} ({impossible[0].name!r}) can never occur in it; "
                "is the label list meant for another dataset?"
            )
    if np.issubdtype(data.dtype, np.floating):
        check_finite(raw, str(path))
        if not np.array_equal(data, np.round(data)):
            raise VolumeReadError(f"{path}: a label file needs whole-number values; is this an image?")
    if reference is not None:
        _require_same_grid(raw, reference, path)
    classes = np.zeros(data.shape, dtype=np.uint8)
    for index, value in enumerate(values, start=1):
        classes[data == value] = index
    unlisted = sorted(set(np.unique(data).tolist()) - set(values) - {0})
    if unlisted:
        shown = ", ".join(str(v) for v in unlisted[:10]) + (" ..." if len(unlisted) > 10 else "")
        log.warning("%s: label values not in the label list became background: %s", path, shown)
    return raw.with_array(classes)


def _read_image_file(path: Path) -> sitk.Image:
    if volume_suffix(path) is None:
        raise VolumeReadError(
            f"{path}: unsupported file type; expected {', '.join(READABLE_SUFFIXES)} or a DICOM folder"
        )
    if path.stat().st_size == 0:
        raise VolumeReadError(f"{path}: the file is empty (0 bytes)")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise VolumeReadError(f"{path}: not a readable image (the header could not be parsed)") from None
    _check_header(path, reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents())
    if volume_suffix(path) in (".nii", ".nii.gz"):
        _check_nifti_complete(path)
    try:
        return reader.Execute()
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1]
        raise VolumeReadError(f"{path}: the voxel data could not be read; truncated? ({reason})") from None


def _read_dicom_series(folder: Path) -> sitk.Image:
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise VolumeReadError(f"{folder}: the folder holds no DICOM series")
    if len(series_ids) > 1:
        raise VolumeReadError(
            f"{folder}: the folder holds {len(series_ids)} DICOM series ({', '.join(series_ids)}); "
            "put one series per folder"
        )
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0])
    first = sitk.ImageFileReader()
    first.SetFileName(files[0])
    try:
        first.ReadImageInformation()
    except RuntimeError:
        raise VolumeReadError(f"{folder}: the DICOM file {files[0]} could not be parsed") from None
    width, height = first.GetSize()[:2]
    _check_header(folder, 3, (width, height, len(files)), first.GetNumberOfComponents())
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1]
        raise VolumeReadError(f"{folder}: the DICOM series could not be read ({reason})") from None
    _check_header(folder, image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel())
    return image


def _check_header(path: Path, dimension: int, size: tuple[int, ...], components: int) -> None:
    """Refuse anything but a 3D scalar image of sensible size, before reading its voxels."""
    if dimension != 3:
        raise VolumeReadError(
            f"{path}: a {dimension}D image of size {tuple(size)}; a 3D volume is needed"
        )
    if components != 1:
        raise VolumeReadError(
            f"{path}: {components} values per voxel (a vector, RGB or 4D image); "
            "a single-channel 3D volume is needed"
        )
    voxels = int(np.prod([int(s) for s in size], dtype=np.int64))
    if voxels == 0:
        raise VolumeReadError(f"{path}: the image has no voxels (size {tuple(size)})")
    if voxels > MAX_VOXELS:
        raise VolumeReadError(
            f"{path}: the header declares {voxels} voxels (size {tuple(size)}), more than {MAX_VOXELS}; "
            "refusing to allocate it"
        )


def _check_nifti_complete(path: Path) -> None:
    """ITK fills a truncated NIfTI with zeros without complaint, so check the byte count ourselves."""
    compressed = path.name.lower().endswith(".gz")
    try:
        proxy = nibabel.load(str(path)).dataobj
        expected = proxy.offset + int(np.prod(proxy.shape, dtype=np.int64)) * proxy.dtype.itemsize
    except (nibabel.filebasedimages.ImageFileError, nibabel.spatialimages.HeaderDataError, ValueError, OSError):
        # nibabel is stricter than ITK about some headers (ITK's own reading then decides), but it also
        # fails on a gzip stream cut inside the header, which ITK reads as zeros: check the stream itself.
        log.debug("%s: nibabel could not parse the header; checking only the gzip stream", path)
        if compressed:
            actual, complete = _gzip_payload(path)
            if not complete:
                raise VolumeReadError(f"{path}: the file is truncated (its gzip stream ends after {actual} bytes)")
        return
    if not compressed:
        actual = path.stat().st_size
    elif _gzip_trailer_size(path) == expected % 2**32:
        return  # the stored uncompressed size agrees; a truncated stream would not end with it
    else:
        actual, _ = _gzip_payload(path)
    if actual < expected:
        raise VolumeReadError(
            f"{path}: the file is truncated ({actual} of {expected} bytes of header and voxel data)"
        )


def _restore_nifti_non_finite(path: Path, array: np.ndarray) -> None:
    """Put back the NaN and infinite voxels ITK's NIfTI reader silently turns into 0 (in place).

    Only voxels ITK returned as exactly 0 can be affected, so files without any are not read twice.
    ``array`` is ITK's ``(z, y, x)``; nibabel's data is ``(x, y, z)`` in the same voxel order.
    """
    zeros = array == 0
    if not zeros.any():
        return
    try:
        image = nibabel.load(str(path))
        if not np.issubdtype(image.get_data_dtype(), np.floating):
            return  # integers cannot hold NaN
        stored = np.asarray(image.dataobj)
    except (nibabel.filebasedimages.ImageFileError, nibabel.spatialimages.HeaderDataError, ValueError, OSError):
        log.debug("%s: nibabel could not read the voxels; NaN voxels, if any, read as 0", path)
        return
    if stored.ndim != 3 or stored.shape[::-1] != array.shape:
        return
    stored = stored.transpose()
    lost = zeros & ~np.isfinite(stored)
    array[lost] = stored[lost]


def _gzip_trailer_size(path: Path) -> int:
    with open(path, "rb") as stream:
        stream.seek(-4, os.SEEK_END)
        return struct.unpack("<I", stream.read(4))[0]


def _gzip_payload(path: Path) -> tuple[int, bool]:
    """(bytes the gzip stream decompresses to, whether the stream ends properly); a stream cut short
    counts every byte that could be decompressed. Output is discarded chunk by chunk (bounded memory)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    total = 0
    try:
        with open(path, "rb") as stream:
            pending = b""
            while not inflater.eof:
                chunk = pending or stream.read(1 << 20)  # b"" at the end of the file drains zlib's buffers
                output = inflater.decompress(chunk, 1 << 24)
                total += len(output)
                pending = inflater.unconsumed_tail
                if not chunk and not output:
                    break  # no input left and nothing more inside: the stream was cut short
    except zlib.error:
        log.debug("%s: gzip stream is corrupt after %d bytes", path, total)
        return total, False
    return total, inflater.eof


def _writable_array(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    return np.ascontiguousarray(array)


def _require_same_grid(labels: Volume, image: Volume, path: Path) -> None:
    if labels.shape != image.shape:
        raise GeometryMismatchError(
            f"{path}: label array shape {labels.shape} (z, y, x) differs from the image's {image.shape}"
        )
    if not labels.same_geometry(image, atol=LABEL_GEOMETRY_TOLERANCE_MM):
        raise GeometryMismatchError(
            f"{path}: the label grid does not match the image's: spacing {labels.spacing} vs "
            f"{image.spacing}, origin {labels.origin} vs {image.origin}, direction "
            f"{labels.direction.round(4).tolist()} vs {image.direction.round(4).tolist()}"
        )
