"""Every case of the bad-input corpus: one clear message, the right exit status, nothing left behind.

See ``cases.py`` for the table and what each outcome demands. Besides each case's own ``absent`` paths,
every case must leave no hidden (temporary) file under its output folder and must not have run the
pickle payload (``{corpus}/PWNED``).
"""
from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import resource
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from sasan import cli
from sasan.data.io import read_volume

from .cases import ACCEPTED, CASES, DEBUG, FRONTS, REFUSED, Case
from .make_corpus import PWNED

USER_DATA = b"the user's own file, which must survive\n"
ENGINE_LOGGERS = ("sasan",)


def fill(text: str, corpus: Path, out: Path) -> str:
    return text.replace("{corpus}", str(corpus)).replace("{out}", str(out))


def output_of(argv: list[str]) -> Path:
    """The output a command writes: the value of its last ``--output`` or ``-o`` (argparse keeps the last one
    too), else its positional argument (``sasan phantom OUT``)."""
    for option in ("--output", "-o"):
        if option in argv:
            return Path(argv[len(argv) - argv[::-1].index(option)])
    return Path(argv[1])


# --- faults ------------------------------------------------------------------------------------------
def _no_space() -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _write_half_then_fail(image, name, useCompression=False):
    """Stands in for ``SimpleITK.WriteImage`` on a full disk: part of the file, then ENOSPC."""
    Path(name).write_bytes(b"\x5c\x01\x00\x00" + b"\0" * 200)
    _no_space()


def _save_model_half_then_fail(tensors, filename, metadata=None):
    """Stands in for ``safetensors.torch.save_file`` on a full disk (it raises its own error type)."""
    from safetensors import SafetensorError

    Path(filename).write_bytes(b"\x10\x00" + b"\0" * 200)
    raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                          'message: "No space left on device" })')


def _save_half_then_fail(obj, stream, *args, **kwargs):
    """Stands in for ``torch.save`` on a full disk: part of the checkpoint, then ENOSPC."""
    stream.write(b"PK\x03\x04" + b"\0" * 200)
    stream.flush()
    _no_space()


def _read_only(folder: Path, monkeypatch) -> None:
    """Make ``folder`` unwritable. Root ignores permission bits, so there the file creation every writer
    starts with (``tempfile.mkstemp``) is made to fail inside ``folder`` as a read-only folder would."""
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return
    real_mkstemp = tempfile.mkstemp

    def refusing_mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refusing_mkstemp)


@contextlib.contextmanager
def fault(case: Case, argv: list[str], corpus: Path, out: Path, monkeypatch):
    """Set up the case's fault; afterwards check that the user's files are untouched."""
    kept: dict[Path, bytes] = {}
    if case.fault in ("existing_output", "output_is_file"):
        kept[output_of(argv)] = USER_DATA
    elif case.fault == "used_folder":
        kept[output_of(argv) / "notes.txt"] = USER_DATA
    elif case.fault == "existing_run":
        kept[output_of(argv) / "checkpoints" / "step_00000001.ckpt"] = USER_DATA
    elif case.fault == "pickled_checkpoint":
        run = out / "run"
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.yaml").write_bytes((corpus / "runs" / "good" / "config.yaml").read_bytes())
        hostile = corpus / "models" / "torch_checkpoint.safetensors"  # a torch.save file with a payload
        kept[run / "checkpoints" / "step_00000001.ckpt"] = hostile.read_bytes()
    for path, data in kept.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if case.fault == "read_only":
        out.mkdir(parents=True)
        _read_only(out, monkeypatch)
    elif case.fault == "disk_full":
        monkeypatch.setattr("sasan.data.io.sitk.WriteImage", _write_half_then_fail)
    elif case.fault == "checkpoint_disk_full":
        monkeypatch.setattr(torch, "save", _save_half_then_fail)
    elif case.fault == "model_disk_full":
        monkeypatch.setattr("safetensors.torch.save_file", _save_model_half_then_fail)
    try:
        yield
    finally:
        monkeypatch.undo()
        if case.fault == "read_only":
            out.chmod(0o755)
    for path, data in kept.items():
        assert path.read_bytes() == data, f"{path} was changed"


# --- running a case ----------------------------------------------------------------------------------
@contextlib.contextmanager
def memory_watch(limit_mb):
    """Fail if the block raises the process's peak RSS or its traced Python allocations by ``limit_mb``."""
    if limit_mb is None:
        yield
        return
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    tracemalloc.start()
    try:
        yield
        traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    rss_added = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before
    assert traced_peak < limit_mb and rss_added < limit_mb, (traced_peak, rss_added)


def run_in_process(case: Case, argv: list[str], caplog, capsys) -> None:
    caplog.clear()
    deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    try:
        with caplog.at_level(logging.WARNING), memory_watch(case.memory_limit_mb):
            status = cli.main(argv)
    finally:  # a training case changes process-wide torch settings
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    messages = [(r.levelno, r.getMessage()) for r in caplog.records
                if r.levelno >= logging.WARNING and r.name.startswith(ENGINE_LOGGERS)]
    if case.outcome == REFUSED:
        assert status == 2
        assert len(messages) == 1 + case.context_warnings, messages
        assert all(level == logging.WARNING for level, _ in messages[:-1]), messages
        level, text = messages[-1]
        assert level == logging.ERROR and case.message in text and "\n" not in text, text
    else:
        assert status == 0, messages
        assert all(level < logging.ERROR for level, _ in messages), messages
        if case.message:
            assert [text for _, text in messages if case.message in text] and len(messages) == 1, messages
        else:
            assert not messages, messages


def run_as_process(case: Case, argv: list[str], cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "sasan", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    lines = done.stderr.strip().splitlines()
    if case.outcome == DEBUG:
        assert done.returncode == 1 and "Traceback" in done.stderr and case.message in done.stderr, done.stderr
        return
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and not done.stdout.strip(), done.stderr
    errors = [line for line in lines if " ERROR " in line or " WARNING " in line]
    assert len(errors) == 1 and " ERROR " in errors[0] and case.message in errors[0], lines


def run_slicer(case: Case, corpus: Path, scene) -> None:
    from SASANSlicerLib import TranslationLogic

    node = case.node(scene)
    before = [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]
    model = str(corpus / "models" / f"{case.model}.safetensors") if case.model else ""
    options = {"target": "MR", "device": "cpu", **case.logic_options}
    with pytest.raises((ValueError, ImportError)) as refusal:
        TranslationLogic().translate(node, model, **options)
    message = str(refusal.value)
    assert case.message in message and "\n" not in message, message
    assert [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())] == before


def check_leftovers(case: Case, corpus: Path, out: Path) -> None:
    assert not (corpus / PWNED).exists(), "a pickle payload ran"
    for pattern in case.absent:
        path = fill(pattern, corpus, out)
        assert not glob.glob(path, recursive=True) and not Path(path).exists(), f"{path} exists"
    if out.is_dir():
        hidden = [p for p in out.rglob(".*")]
        assert not hidden, f"temporary files left behind: {hidden}"
    for pattern in case.produces:
        assert Path(fill(pattern, corpus, out)).is_file(), f"{pattern} was not written"


def check_translations(case: Case, argv: list[str], corpus: Path, out: Path) -> None:
    """An accepted translation lies on its input's grid and holds finite numbers."""
    source = read_volume(argv[1])
    for pattern in case.produces:
        result = read_volume(fill(pattern, corpus, out))
        assert result.same_geometry(source) and np.isfinite(result.array).all()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case(case: Case, corpus: Path, tmp_path: Path, caplog, capsys, monkeypatch, request):
    out = tmp_path / "out"
    if case.front == "slicer":
        pytest.importorskip("slicer", reason="the Slicer cases need the slicer-core wheel")
        run_slicer(case, corpus, request.getfixturevalue("scene"))
        check_leftovers(case, corpus, out)
        return
    argv = [fill(arg, corpus, out) for arg in case.argv]
    with fault(case, argv, corpus, out, monkeypatch):
        if case.process:
            run_as_process(case, argv, tmp_path)
        else:
            run_in_process(case, argv, caplog, capsys)
    check_leftovers(case, corpus, out)
    if case.front == "translate" and case.outcome == ACCEPTED:
        check_translations(case, argv, corpus, out)


def test_the_corpus_covers_every_front_and_at_least_30_cases():  # the issue asks for 30 or more
    fronts = {case.front for case in CASES}
    assert fronts == set(FRONTS)
    assert len(CASES) >= 30 and len({case.name for case in CASES}) == len(CASES)
