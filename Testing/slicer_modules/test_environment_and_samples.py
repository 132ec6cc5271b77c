"""Engine location, PyTorch and pip requirements, and the phantom sample volumes of the Sample Data module."""
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import SASANSlicerLib.environment as environment
import SimpleITK as sitk
from SASANSlicerLib.environment import (
    EngineNotFoundError,
    InstallationRefusedError,
    dependency_problems,
    device_choices,
    ensure_engine_importable,
    find_pip_ensure,
    install_missing,
    installed_version,
    missing_requirements,
    pip_installer,
    read_requirements,
    requirement_name,
    torch_problem,
    version_satisfies,
)
from SASANSlicerLib.sample_data import (
    PHANTOM_SAMPLES,
    phantom_sample_file,
    phantom_sample_path,
    phantom_sample_sources,
    prepare_phantom_samples,
    sample_cache_dir,
)

REQUIREMENTS = Path(__file__).resolve().parents[2] / "SASANSlicer" / "Resources" / "SASANSlicer-requirements.txt"


def test_engine_beside_the_module_folder_is_put_on_sys_path(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "repo" / "fake_sasan_engine").mkdir(parents=True)
    (tmp_path / "repo" / "fake_sasan_engine" / "__init__.py").write_text("")
    (tmp_path / "repo" / "SASANSlicer").mkdir()
    root = ensure_engine_importable(tmp_path / "repo" / "SASANSlicer", package="fake_sasan_engine")
    assert root == tmp_path / "repo" and sys.path[0] == str(tmp_path / "repo")
    assert ensure_engine_importable(tmp_path / "elsewhere", package="fake_sasan_engine") == tmp_path / "repo"


def test_missing_engine_is_reported_with_the_folders_searched(tmp_path):
    with pytest.raises(EngineNotFoundError, match=f"'no_such_engine'.*{tmp_path.name}"):
        ensure_engine_importable(tmp_path / "SASANSlicer", package="no_such_engine")


def test_requirements_file_lists_what_the_module_and_a_translation_import_beyond_slicer():
    names = {requirement_name(r).lower() for r in read_requirements(REQUIREMENTS)}
    assert names == {"safetensors", "nibabel", "psutil"}  # test_dependencies checks them against the imports
    assert not names & {"torch", "numpy", "scipy", "simpleitk"}  # PyTorch extension; bundled with Slicer


def test_requirement_names_and_missing_detection(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("# comment\nnumpy>=1.24  # inline\n\nno-such-distribution-xyz==1.0\npyyaml[extra]~=6.0\n")
    requirements = read_requirements(path)
    assert requirements == ["numpy>=1.24", "no-such-distribution-xyz==1.0", "pyyaml[extra]~=6.0"]
    assert [requirement_name(r) for r in requirements] == ["numpy", "no-such-distribution-xyz", "pyyaml"]
    assert missing_requirements(requirements) == ["no-such-distribution-xyz==1.0"]
    assert missing_requirements(["numpy>=999", "numpy<1"]) == ["numpy>=999", "numpy<1"]  # too new, too old
    with pytest.raises(ValueError, match="not a requirement"):
        requirement_name(">=1.0")


def test_sample_cache_follows_sasan_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SASAN_CACHE", str(tmp_path))
    assert sample_cache_dir() == tmp_path / "slicer-samples"
    assert phantom_sample_file("MR").parent == tmp_path / "slicer-samples"
    with pytest.raises(ValueError, match="'PET'"):
        phantom_sample_file("PET")


def test_phantom_sample_is_generated_once_with_the_engine_geometry(tmp_path):
    phantom = pytest.importorskip("sasan.data.phantom")
    path = phantom_sample_path("CT", tmp_path)
    image = sitk.ReadImage(str(path))
    expected, _ = phantom.make_subject(101, "CT", 96)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), expected.array)
    np.testing.assert_allclose(image.GetSpacing(), expected.spacing)
    np.testing.assert_allclose(image.GetOrigin(), expected.origin)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), expected.direction)
    modified = path.stat().st_mtime_ns
    assert phantom_sample_path("CT", tmp_path) == path and path.stat().st_mtime_ns == modified
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


@pytest.mark.parametrize("version, requirement, satisfied", [
    ("2.5.1+cu121", "torch>=2.5", True), ("2.4.9", "torch>=2.5", False), ("2.6.0.dev20241001", "torch>=2.6", True),
    ("1.5.2", "monai>=1.3,<1.6", True), ("1.6", "monai>=1.3,<1.6", False), ("6.0.1", "pyyaml~=6.0", True),
    ("7.0", "pyyaml~=6.0", False), ("2.2.3", "numpy==2.2.*", True), ("2.3.0", "numpy==2.2.*", False),
    ("2.0", "x!=2.0", False), ("1.0", 'x[extra]>=1.0; python_version > "3"', True), ("3", "x", True),
])
def test_versions_are_compared_by_release(version, requirement, satisfied):
    assert version_satisfies(version, requirement) is satisfied


def test_torch_problem_names_the_minimum_and_how_to_get_it():
    assert torch_problem() is None  # this Python has torch >= 2.5
    assert torch_problem(version="2.5.0") is None
    old = torch_problem(version="2.4.1+cu121")
    assert "PyTorch 2.5 or newer" in old and "has PyTorch 2.4.1+cu121" in old and "'>=2.5'" in old
    assert "not installed" in torch_problem(version=None) and "PyTorch Utils" in torch_problem(version=None)
    with pytest.raises(environment.PyTorchMissingError, match="PyTorch 99 or newer"):
        environment.require_torch("99")
    assert dependency_problems(["numpy"]) == []
    problems = dependency_problems(["numpy", "not-installed-xyz"], minimum_torch="99")
    assert len(problems) == 2 and "not-installed-xyz" in problems[1] and "numpy" not in problems[1]


def test_device_choices_offer_mps_on_macos_only():
    assert device_choices("linux") == device_choices("win32") == ["auto", "cuda", "cpu"]
    assert device_choices("darwin") == ["auto", "cuda", "cpu", "mps"]


def test_install_missing_asks_first_and_installs_only_what_is_missing(monkeypatch):
    questions, installed = [], []

    def install(missing, constraints):
        installed.append((missing, Path(constraints).read_text()))

    assert install_missing(["numpy"], questions.append, install)
    assert questions == [] and installed == []  # nothing missing: no question

    assert not install_missing(["numpy", "not-installed-xyz>=1"], lambda m: questions.append(m) and False, install,
                               purpose="SASAN Trainer")
    assert "SASAN Trainer needs" in questions[0] and "not-installed-xyz>=1" in questions[0]
    assert "numpy" not in questions[0].split("\n\n", 1)[1] and installed == []

    monkeypatch.setattr(environment, "missing_requirements",
                        lambda requirements: [] if installed else ["not-installed-xyz>=1"])
    assert install_missing(["not-installed-xyz>=1"], lambda m: True, install)
    (missing, constraints), = installed
    assert missing == ["not-installed-xyz>=1"]
    # pip may not replace the installed torch or numpy to satisfy a dependency
    assert constraints.splitlines() == [f"torch=={installed_version('torch')}", f"numpy=={installed_version('numpy')}"]


def test_nothing_is_asked_or_installed_while_slicer_runs_tests():
    actions = []
    with pytest.raises(InstallationRefusedError, match=r"not-installed-xyz>=1.*runs tests"):
        install_missing(["numpy", "not-installed-xyz>=1"], actions.append, lambda *a: actions.append(a),
                        testing=True)
    assert actions == []
    assert install_missing(["numpy"], actions.append, lambda *a: actions.append(a), testing=True)  # all present
    environment.refuse_in_testing([], testing=True)
    environment.refuse_in_testing(["x"], testing=False)


def test_pip_ensure_where_slicer_has_it_else_pip_install_with_constraints(tmp_path):
    assert find_pip_ensure() is None  # slicer-core has no slicer.packaging (Slicer >= 5.12 has)
    calls = []
    ensure = pip_installer(lambda requirements, **options: calls.append((requirements, options)), None, "SASAN")
    ensure(["nibabel>=5.0"], tmp_path / "constraints.txt")
    assert calls == [(["nibabel>=5.0"], {"constraints": str(tmp_path / "constraints.txt"), "requester": "SASAN",
                                         "prompt_install": False})]  # the user was asked already
    install = pip_installer(None, calls.append, "SASAN")
    install(["nibabel>=5.0"], tmp_path / "constraints.txt")
    assert calls[-1] == ["nibabel>=5.0", "-c", str(tmp_path / "constraints.txt")]


def test_install_that_does_not_take_is_reported():
    with pytest.raises(RuntimeError, match="installing not-installed-xyz failed"):
        install_missing(["not-installed-xyz"], lambda m: True, lambda missing, constraints: None)


def test_sample_sources_point_at_files_made_before_registration(tmp_path):
    """SampleData.downloadSample copies a source's URI into Slicer's cache (urllib) and never calls the custom
    downloader: once prepared, every registered URI must be readable that way."""
    pytest.importorskip("sasan.data.phantom")
    sources = phantom_sample_sources(Path("icon.png"), tmp_path)
    assert [s["sampleName"] for s in sources] == list(PHANTOM_SAMPLES.values())
    assert all(s["nodeNames"] == s["sampleName"] and s["category"] == "SASAN" for s in sources)
    prepared = prepare_phantom_samples(tmp_path)
    for source, path in zip(sources, prepared.values()):
        assert source["uris"] == path.resolve().as_uri() and source["fileNames"] == path.name
        copy, _ = urllib.request.urlretrieve(source["uris"], tmp_path / "copy.nrrd")
        assert Path(copy).read_bytes() == path.read_bytes()


def test_phantom_samples_need_neither_torch_nor_yaml(tmp_path):
    script = (
        "import sys; sys.modules['torch'] = sys.modules['yaml'] = None\n"  # importing either now fails
        f"sys.path.insert(0, {str(REQUIREMENTS.parents[1])!r})\n"
        "from SASANSlicerLib.sample_data import prepare_phantom_samples\n"
        f"print(sorted(prepare_phantom_samples(__import__('pathlib').Path({str(tmp_path)!r}))))\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "['CT', 'MR']"
