"""Files and folders that appear complete or not at all: the one way every part of SASAN writes them.

``atomic_file(destination)`` gives a hidden temporary path beside ``destination`` (same folder, so the
same file system); when the block succeeds the file is flushed to disk, made readable by everyone (0644,
like any file a user writes: ``mkstemp`` creates 0600, which would hide a shared model from other users)
and renamed over ``destination`` in one step (``os.replace``). Any failure removes the temporary file and
leaves an older ``destination`` as it was; errors name ``destination``, never the temporary file.
``atomic_files()`` does the same for several files that must appear together.

``staged_folder(destination)`` does the same for a folder of files: they are written into a hidden
folder and moved into ``destination`` only when the block succeeds.

Standard library only.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

FILE_MODE = 0o644

PathLike = Union[str, Path]


def failure_reason(error: BaseException) -> str:
    """What went wrong, in a few words: the OS's reason (``No space left on device``), else the last line of
    the message (ITK and safetensors put the reason there)."""
    lines = str(error).strip().splitlines()
    return getattr(error, "strerror", None) or (lines[-1] if lines else type(error).__name__)


class StagedFiles:
    """The temporary files of one ``atomic_files`` block, each beside the destination it will replace."""

    def __init__(self) -> None:
        self.staged: list[tuple[Path, Path]] = []  # (temporary, destination), in the order added
        self.current: Optional[Path] = None  # the destination being written (named by a failure)
        self.refusal: Optional[BaseException] = None

    def add(self, destination: PathLike, suffix: str = ".tmp") -> Path:
        """A new hidden temporary path beside ``destination`` (whose folder must exist), to write now.

        ``suffix``: the temporary file's ending (writers that pick the format from the name need the real
        one, e.g. ``.nii.gz``).  A folder that takes no new file raises its ``OSError`` type with
        ``"<destination>: cannot write into this folder (<reason>)"``.
        """
        destination = Path(destination)
        try:
            handle, name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=suffix, dir=destination.parent)
        except OSError as error:
            self.refusal = type(error)(f"{destination}: cannot write into this folder ({failure_reason(error)})")
            raise self.refusal from None
        os.close(handle)
        self.staged.append((Path(name), destination))
        self.current = destination
        return Path(name)


@contextlib.contextmanager
def atomic_files(
    *,
    failures: tuple[type[BaseException], ...] = (),
    message: Optional[Callable[[Path, str], str]] = None,
) -> Iterator[StagedFiles]:
    """Files that replace their destinations together, once the block succeeds: ``files.add(destination)``
    gives each a temporary path to write (e.g. a translation and its segmentation, all or nothing).

    Each file is flushed to disk and made 0644, then all are renamed into place.  Any failure removes every
    temporary file; an ``OSError`` or one of ``failures`` (how some writers report a full disk: ITK's
    ``RuntimeError``) is raised again with its type and a message naming the destination being written,
    ``message(destination, reason)``, by default ``"<destination>: could not be written (<reason>);
    nothing was left behind"``.
    """
    files = StagedFiles()
    try:
        yield files
        for temporary, destination in files.staged:
            files.current = destination
            _fsync(temporary, os.O_RDWR)  # read-write: Windows flushes only through a handle that may write
            os.chmod(temporary, FILE_MODE)
        for temporary, destination in files.staged:
            files.current = destination
            os.replace(temporary, destination)
    except BaseException as error:
        for temporary, _ in files.staged:
            temporary.unlink(missing_ok=True)
        if error is files.refusal or files.current is None or not isinstance(error, (OSError, *failures)):
            raise
        reason = failure_reason(error)
        text = (message(files.current, reason) if message is not None
                else f"{files.current}: could not be written ({reason}); nothing was left behind")
        raise type(error)(text) from None
    if os.name == "posix":  # the renames reach the disk with their folders' entries
        for folder in {destination.parent for _, destination in files.staged}:
            with contextlib.suppress(OSError):
                _fsync(folder, os.O_RDONLY)


@contextlib.contextmanager
def atomic_file(
    destination: PathLike,
    *,
    suffix: str = ".tmp",
    failures: tuple[type[BaseException], ...] = (),
    message: Optional[Callable[[Path, str], str]] = None,
) -> Iterator[Path]:
    """A temporary path beside ``destination`` to write; it replaces ``destination`` when the block succeeds.

    ``atomic_files`` with one file: see there for ``failures`` and ``message``, and ``StagedFiles.add`` for
    ``suffix``.
    """
    with atomic_files(failures=failures, message=message) as files:
        yield files.add(destination, suffix)


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def staged_folder(destination: PathLike) -> Iterator[Path]:
    """A hidden folder to write files into; they move into ``destination`` only when the block succeeds.

    A missing ``destination`` is the staged folder itself, renamed in one step (its parents are created).
    Into an existing folder (where the staging folder is made, so it is on the same file system) each file
    moves with one rename, replacing a file of the same name and leaving every other file alone.  A failure
    removes the staged folder and everything in it; ``destination`` is as it was.
    """
    destination = Path(destination)
    if destination.exists() and not destination.is_dir():
        raise NotADirectoryError(f"{destination} exists and is not a folder")
    existed = destination.is_dir()
    parent = destination if existed else destination.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial.", dir=parent))
    try:
        yield staging
        if existed or not _rename_folder(staging, destination):
            _move_files(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _rename_folder(staging: Path, destination: Path) -> bool:
    """Rename ``staging`` to ``destination``; False when a folder of that name appeared meanwhile (another
    process finished first), whose files are then replaced one by one."""
    try:
        os.rename(staging, destination)
    except OSError:
        if not destination.is_dir():
            raise
        return False
    return True


def _move_files(staging: Path, destination: Path) -> None:
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = destination / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
