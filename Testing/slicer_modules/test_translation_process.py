"""The translation process's parts without running it: its command line, the outputs and report read back onto the
input's exact geometry, and a failure said in one sentence (test_translation_logic runs the whole path)."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("slicer", reason="the MRML glue needs the slicer-core wheel")

from SASANSlicerLib.nodes import node_from_volume  # noqa: E402
from SASANSlicerLib.results import add_results_to_scene  # noqa: E402
from SASANSlicerLib.translation_process import (  # noqa: E402
    REPORT_FILE,
    TranslationError,
    TranslationRequest,
    failure_message,
    read_outputs,
    translation_command,
)
from slicer_glue_helpers import rotation  # noqa: E402

from sasan.config import LabelSpec  # noqa: E402
from sasan.data.io import write_volume  # noqa: E402
from sasan.data.volume import Volume  # noqa: E402

LABELS = [LabelSpec("myocardium", 205, [1.0, 0.5, 0.0]), LabelSpec("LV blood", 500, [1.0, 0.0, 0.0])]
FALLBACK = "cuda:0 ran out of memory even at one slice per batch; finished on the CPU"
SHAPE = (3, 4, 5)


def reference() -> Volume:
    return Volume(np.zeros(SHAPE, np.float32), spacing=(0.7, 0.9, 2.5), origin=(-20.123456789, 33.3, 4.5),
                  direction=rotation((8, -5, 14)))


def test_the_command_line_runs_the_engines_translate_with_progress_lines_and_a_report(tmp_path):
    model = tmp_path / "models" / "m.safetensors"
    command = translation_command(tmp_path / "run", TranslationRequest(model, "MR", "cuda", True, True),
                                  tmp_path / "modules",
                                  program="PythonSlicer", inherited={"PYTHONPATH": "/slicer/lib"})
    run = tmp_path / "run"
    assert [command.program, *command.arguments] == [
        "PythonSlicer", "-u", "-m", "sasan", "translate", str(run / "input.mha"), "--model", str(model), "--to", "MR",
        "-o", str(run / "translated.mha"), "--segmentation", str(run / "segmentation.mha"),
        "--attention", str(run / "attention"), "--device", "cuda", "--progress-lines",
        "--report", str(run / "report.json")]
    assert command.environment == {"PYTHONPATH": f"{tmp_path / 'modules'}{os.pathsep}/slicer/lib",
                                   "PYTHONUNBUFFERED": "1"}
    assert command.folder == run
    bare = translation_command(run, TranslationRequest(model, "CT", "cpu", False, False), tmp_path, inherited={})
    assert "--segmentation" not in bare.arguments and "--attention" not in bare.arguments
    assert bare.environment["PYTHONPATH"] == str(tmp_path)


def write_outputs(folder, translated: Volume, classes: Volume, maps: list, notes: list, **extra) -> None:
    """What ``sasan translate --report`` leaves in ``folder`` (maps as NIfTI: float32 geometry in the header);
    ``extra``: more keys of the report (``warning``)."""
    files = {"translated": folder / "translated.mha", "segmentation": folder / "segmentation.mha",
             "attention": [folder / "attention" / f"attention_{k:02d}.nii.gz" for k in range(1, len(maps) + 1)]}
    for path, volume in [(files["translated"], translated), (files["segmentation"], classes),
                         *zip(files["attention"], maps)]:
        write_volume(volume, path)
    report = {"device": "cpu", "notes": notes, "seconds": 1.5, **extra,
              "files": {"translated": str(files["translated"]), "segmentation": str(files["segmentation"]),
                        "attention": [str(path) for path in files["attention"]]}}
    (folder / REPORT_FILE).write_text(json.dumps(report), encoding="utf-8")


def test_outputs_come_back_on_the_exact_input_geometry_with_label_values_and_the_engines_notes(tmp_path, scene):
    source = reference()
    classes = np.zeros(SHAPE, np.uint8)
    classes[1, 1:3, 1:4], classes[2, 0, 0] = 1, 2
    maps = [source.with_array(np.full(SHAPE, 40 * k, np.uint8)) for k in (1, 2)]
    write_outputs(tmp_path, source.with_array(np.full(SHAPE, 7.0, np.float32)), source.with_array(classes), maps,
                  [FALLBACK])
    output = read_outputs(tmp_path, source, LABELS)
    for volume in (output.image, output.segmentation, *output.attention):
        assert (volume.spacing, volume.origin) == (source.spacing, source.origin)
        assert np.array_equal(volume.direction, source.direction)  # bit for bit, although NIfTI rounds it
    np.testing.assert_array_equal(output.image.array, 7.0)
    expected = np.zeros(SHAPE, np.uint16)
    expected[1, 1:3, 1:4], expected[2, 0, 0] = 205, 500
    np.testing.assert_array_equal(output.segmentation.array, expected)
    assert [m.array.dtype for m in output.attention] == [np.uint8, np.uint8]
    assert output.attention[1].array[0, 0, 0] == 80
    assert (output.device, output.notes, output.labels) == ("cpu", [FALLBACK], LABELS)

    # The notes reach the user: in the nodes and in the status line.
    node = node_from_volume(source, "CT", scene)
    nodes = add_results_to_scene(node, output, "MR")
    assert nodes.notes == [FALLBACK] and nodes.device == "cpu"
    assert nodes.summary().endswith(f"2 attention maps. Note: {FALLBACK}.")


def test_the_input_checks_warning_leads_the_status_and_the_notes_in_the_engines_words(tmp_path, scene):
    source = reference()
    warning = ("the input does not look like the head CT scans this model was trained on (it lies 3.4x further "
               "from the training scans than any validation scan)")
    write_outputs(tmp_path, source.with_array(np.zeros(SHAPE, np.float32)),
                  source.with_array(np.zeros(SHAPE, np.uint8)), [], [FALLBACK], warning=warning)
    output = read_outputs(tmp_path, source, LABELS)
    assert output.warning == warning
    nodes = add_results_to_scene(node_from_volume(source, "CT", scene), output, "MR")
    assert nodes.warning == warning and nodes.notes == [warning, FALLBACK]
    assert nodes.summary().startswith(f"Warning: {warning}. Done in ")
    assert nodes.summary().endswith(f"'CT segmentation'. Note: {FALLBACK}.") and nodes.summary().count(warning) == 1

    # A report of an engine without the input check, or of an input that passed it: no warning.
    for number, extra in enumerate(({}, {"warning": None})):
        folder = tmp_path / str(number)
        folder.mkdir()
        write_outputs(folder, source.with_array(np.zeros(SHAPE, np.float32)),
                      source.with_array(np.zeros(SHAPE, np.uint8)), [], [], **extra)
        assert read_outputs(folder, source, LABELS).warning == ""


def test_outputs_off_the_input_grid_or_without_a_report_are_refused(tmp_path):
    source = reference()
    shifted = Volume(np.zeros(SHAPE, np.float32), spacing=source.spacing, origin=(0.0, 0.0, 0.0),
                     direction=source.direction)
    write_outputs(tmp_path, shifted, source.with_array(np.zeros(SHAPE, np.uint8)), [], [])
    with pytest.raises(TranslationError, match=r"the translated image \(\(3, 4, 5\) voxels\) came back off"):
        read_outputs(tmp_path, source, LABELS)
    (tmp_path / REPORT_FILE).unlink()
    with pytest.raises(TranslationError, match="outputs could not be read back"):
        read_outputs(tmp_path, source, LABELS)


@pytest.mark.parametrize("status, log, message", [
    (2, ["12:00:01 INFO sasan: reading", "12:00:02 ERROR sasan: no GPU available: PyTorch sees no CUDA device"],
     "no GPU available: PyTorch sees no CUDA device"),
    (1, ["Traceback (most recent call last):", '  File "x.py", line 1', "MemoryError: Unable to allocate 3 GiB"],
     "the translation process failed with exit status 1: MemoryError: Unable to allocate 3 GiB"),
    (-9, ["12:00:01 INFO sasan: reading"],
     "the translation process was ended by signal 9: 12:00:01 INFO sasan: reading"),
    (1, [], "the translation process failed with exit status 1: it printed nothing"),
])
def test_a_failure_is_said_in_one_sentence(status, log, message):
    assert failure_message(status, log) == message
