"""Each module installs exactly what its code imports: a translation and a training run, each in its own Python,
report the distributions they imported, which must all be PyTorch, Slicer's bundled packages, the module's
requirements file or what those depend on; and every package in a requirements file must be one of them.

A translation runs as the module runs it, ``python -m sasan translate`` in a child process (``PythonSlicer`` in
Slicer); a training run as the trainer module runs it, ``SASANTrainerLib/train.py``.
"""
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from SASANSlicerLib.environment import SLICER_BUNDLED, read_requirements, requirement_name

ROOT = Path(__file__).resolve().parents[2]
TRANSLATION_REQUIREMENTS = ROOT / "SASANSlicer" / "Resources" / "SASANSlicer-requirements.txt"
TRAINING_REQUIREMENTS = ROOT / "SASANTrainer" / "Resources" / "SASANTrainer-requirements.txt"

# Run first in the child: at exit, write the distributions of every module imported.
PROBE = """
import atexit, importlib.metadata, os, sys

def _report():
    owners = importlib.metadata.packages_distributions()
    found = {d for name, module in list(sys.modules.items()) if module is not None
             for d in owners.get(name.split(".")[0], [])}
    with open(os.environ["IMPORTED_OUT"], "w") as out:
        out.write("\\n".join(sorted(found)))

atexit.register(_report)
"""


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions(code: str, tmp_path: Path, cwd: Path) -> set[str]:
    out = tmp_path / f"imported-{len(list(tmp_path.glob('imported-*')))}.txt"
    environment = {**os.environ, "IMPORTED_OUT": str(out), "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    completed = subprocess.run([sys.executable, "-c", PROBE + code], cwd=cwd, env=environment, capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return {normalized(name) for name in out.read_text().split()}


def with_dependencies(names: set[str]) -> set[str]:
    """``names`` and every installed distribution they require, recursively (optional extras included: a
    package may import an extra's dependency when it happens to be installed)."""
    found, todo = set(), [normalized(n) for n in names]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [normalized(requirement_name(r)) for r in requires]
    return found


def requirement_names(*paths: Path) -> set[str]:
    return {normalized(requirement_name(r)) for path in paths for r in read_requirements(path)}


def check_imports(imported: set[str], baseline: set[str], requirements: set[str]) -> None:
    provided = with_dependencies(requirements | {"torch", "sasan", *SLICER_BUNDLED})
    unexpected = imported - baseline - provided
    assert not unexpected, f"imported but neither required nor bundled with Slicer: {sorted(unexpected)}"
    unused = requirements - imported
    assert not unused, f"in a requirements file but never imported: {sorted(unused)}"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> set[str]:
    """What a bare Python imports at start-up (site hooks...)."""
    return imported_distributions("pass", tmp_path_factory.mktemp("baseline"), ROOT)


def test_a_translation_imports_its_requirements_and_nothing_else(tmp_path, baseline):
    models = sorted((ROOT / "Resources" / "Models").glob("*.safetensors"))
    if not models:
        pytest.skip("no shipped model file")
    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(40, 300, (6, 40, 48)).astype(np.int16))
    image.SetSpacing((1.0, 1.0, 2.5))
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    arguments = ["translate", "ct.nrrd", "--model", str(models[0]), "--to", "MR", "-o", "mr.nrrd", "--device", "cpu",
                 "--segmentation", "segmentation.nrrd", "--attention", "attention", "--quiet"]
    code = f"import runpy, sys; sys.argv = ['sasan', *{arguments!r}]; runpy.run_module('sasan', run_name='__main__')"
    imported = imported_distributions(code, tmp_path, tmp_path)
    assert (tmp_path / "mr.nrrd").is_file()
    # The module's own process imports its process-tree control, which ends the child on Cancel.
    imported |= imported_distributions("import os; from SASANSlicerLib.processes import end_process_tree; "
                                     "end_process_tree(os.getpid() + 10**7)", tmp_path, ROOT / "SASANSlicer")
    check_imports(imported, baseline, requirement_names(TRANSLATION_REQUIREMENTS))


def test_a_training_run_imports_its_requirements_and_nothing_else(tmp_path, baseline, monkeypatch):
    script = ROOT / "SASANTrainer" / "SASANTrainerLib" / "train.py"
    preset = ROOT / "Resources" / "configs" / "phantom_tiny.yaml"
    arguments = [str(preset), "--steps", "1", "--device", "cpu", "--output", str(tmp_path / "run"),
                 "--export", str(tmp_path / "model.safetensors")]
    code = (f"import runpy, sys; sys.argv = [{str(script)!r}, *{arguments!r}]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    monkeypatch.setenv("SASAN_CACHE", str(tmp_path / "cache"))
    imported = imported_distributions(code, tmp_path, tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    check_imports(imported, baseline, requirement_names(TRANSLATION_REQUIREMENTS, TRAINING_REQUIREMENTS))
