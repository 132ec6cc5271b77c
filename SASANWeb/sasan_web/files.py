"""What the server may read: uploads, the ``--data`` and ``--models`` folders, the shipped models.

No path that comes from the browser is ever opened: the page picks entries by the key the server gave
them, uploads are stored under names the server makes, and a file reached through a link that leaves its
folder is not listed.  Volumes come as single files (NRRD, NIfTI, MetaImage ``.mha``) whose voxels lie in
the file itself: a header naming a data file elsewhere would read that file, so it is refused.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

VOLUME_SUFFIXES = (".nrrd", ".nii.gz", ".nii", ".mha")
MODEL_SUFFIX = ".safetensors"
FORMAT_SUFFIXES = {"nifti": ".nii.gz", "nrrd": ".nrrd"}  # download format -> suffix
DEFAULT_MAX_UPLOAD_MB = 1024
MAX_LISTED = 500  # files listed per folder, so that a huge folder cannot stall the page
_HEADER_BYTES = 64 * 1024


class UploadError(ValueError):
    """A file the user gave cannot be used; the message says why, in one sentence."""


@dataclass(frozen=True)
class FileEntry:
    """A file offered in a selector: ``key`` is what the page sends back, ``title`` what it shows."""

    key: str
    title: str
    path: Path


def volume_suffix(name: str) -> Optional[str]:
    """The volume suffix of a file name (``.nii.gz`` counts as one), or None for other files."""
    lower = name.lower()
    return next((suffix for suffix in VOLUME_SUFFIXES if lower.endswith(suffix)), None)


def display_name(name: str, limit: int = 80) -> str:
    """A client's file name made safe to show and to name a node: no folders, no control characters."""
    name = re.split(r"[\\/]", str(name))[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip() or "upload"
    return name[:limit]


def node_name(file_name: str) -> str:
    """A node name from a file name: without its volume suffix (``ct.nii.gz`` -> ``ct``)."""
    suffix = volume_suffix(file_name)
    return file_name[: -len(suffix)] if suffix else Path(file_name).stem


def inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def list_files(folder: Optional[Path], wanted) -> list[FileEntry]:
    """Files under ``folder`` (recursively, sorted, at most ``MAX_LISTED``) whose name ``wanted`` accepts;
    keys ``"<folder index>:<relative path>"`` are resolved again by ``resolve_entry``."""
    if folder is None or not folder.is_dir():
        return []
    entries = []
    for path in sorted(folder.rglob("*")):
        if len(entries) >= MAX_LISTED:
            break
        if path.is_file() and wanted(path.name) and inside(path, folder):
            relative = path.relative_to(folder).as_posix()
            entries.append(FileEntry(key=relative, title=relative, path=path))
    return entries


def resolve_entry(entries: list[FileEntry], key: str) -> Path:
    """The path of the listed entry ``key``; ``UploadError`` for anything else (a path typed by hand)."""
    for entry in entries:
        if entry.key == key:
            return entry.path
    raise UploadError("that file is not offered here (choose one from the list)")


def check_single_file_volume(path: Path, shown_name: str) -> None:
    """Refuse a volume header that points at voxel data in another file (``data file:`` in NRRD,
    ``ElementDataFile`` other than ``LOCAL`` in MetaImage)."""
    suffix = volume_suffix(path.name)
    if suffix not in (".nrrd", ".mha"):
        return
    with path.open("rb") as handle:
        header = handle.read(_HEADER_BYTES)
    if suffix == ".nrrd":
        if not header.startswith(b"NRRD"):
            raise UploadError(f"'{shown_name}' is not a volume SASAN can read: it does not start like a NRRD file")
        text = header.split(b"\n\n", 1)[0].decode("latin-1").lower()
        if re.search(r"^\s*data ?file\s*:", text, re.MULTILINE):
            raise UploadError(f"'{shown_name}' keeps its voxels in another file (a detached NRRD header); "
                              "upload a single .nrrd file with the voxels in it")
    else:
        match = re.search(rb"ElementDataFile\s*=\s*(\S+)", header)
        if match is None or match.group(1) != b"LOCAL":
            raise UploadError(f"'{shown_name}' keeps its voxels in another file; upload a single .mha file "
                              "with the voxels in it (ElementDataFile = LOCAL)")


def check_volume_file(path: Path, shown_name: str) -> tuple[int, ...]:
    """Check that ``path`` is a 3D scalar volume SASAN can translate; its size (x, y, z).

    ``UploadError`` with one clear sentence otherwise: not a readable volume, a 2D image (also a volume of
    a single slice), 4D, or more than one value per voxel (colour, vector images).
    """
    if volume_suffix(path.name) is None:
        raise UploadError(f"'{shown_name}' is not a volume file SASAN reads (use NRRD, NIfTI or .mha)")
    check_single_file_volume(path, shown_name)
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise UploadError(f"'{shown_name}' is not a volume SASAN can read (NRRD, NIfTI or .mha)") from None
    size = tuple(int(n) for n in reader.GetSize())
    if reader.GetDimension() == 2 or (reader.GetDimension() == 3 and min(size) < 2):
        raise UploadError(f"'{shown_name}' is a 2D image ({' x '.join(map(str, size))} pixels); "
                          "SASAN translates 3D volumes")
    if reader.GetDimension() != 3:
        raise UploadError(f"'{shown_name}' has {reader.GetDimension()} dimensions; SASAN translates 3D volumes")
    components = reader.GetNumberOfComponents()
    if components != 1:
        raise UploadError(f"'{shown_name}' has {components} values per voxel (a colour or vector image); "
                          "SASAN needs a scalar volume")
    return size


def check_model_file(path: Path, shown_name: str):
    """The model card of ``path``; ``UploadError`` (the engine's reason, without server paths) otherwise.
    Reads only the header: a pickle or any other file renamed ``.safetensors`` is refused unread."""
    from sasan.card import ModelFileError, read_card

    try:
        return read_card(path)
    except ModelFileError as error:
        reason = str(error).replace(f"'{path}'", "the file").replace(str(path), "the file")
        raise UploadError(f"'{shown_name}' is not a SASAN model file: {reason}") from None


class UploadStore:
    """Uploaded files, each kept under a name the server made, in a private folder removed at exit."""

    def __init__(self, max_bytes: int, root: Optional[Path] = None) -> None:
        self.max_bytes = max_bytes
        self.root = Path(tempfile.mkdtemp(prefix="sasan-web-", dir=root))
        self._count = 0

    def check_size(self, size: int, shown_name: str) -> None:
        if size > self.max_bytes:
            raise UploadError(f"'{shown_name}' is {size / 1e6:.1f} MB, more than this server accepts "
                              f"({round(self.max_bytes / 1e6, 2):g} MB; see sasan web --max-upload-mb)")

    def save(self, content: bytes, shown_name: str, suffix: str) -> Path:
        """Store ``content`` as a new file with ``suffix`` (chosen by the caller from an allow-list)."""
        self.check_size(len(content), shown_name)
        self._count += 1
        path = self.root / f"upload-{self._count}{suffix}"
        path.write_bytes(content)
        return path

    def scratch(self, prefix: str) -> Path:
        """A new empty folder for one job's files."""
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.root))

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
