"""Between the engine and the GUI: progress reports, cancel between batches, result conversion."""
import dataclasses
import logging
import sys
import types

import numpy as np
import pytest

pytest.importorskip("slicer", reason="the MRML glue needs the slicer-core wheel")

from SASANSlicerLib.engine import as_label_values, as_uint8_map, translate  # noqa: E402
from SASANSlicerLib.progress import CancelToken, RunCancelled, progress_callback, progress_text  # noqa: E402

from sasan.config import LabelSpec  # noqa: E402
from sasan.data.volume import Volume  # noqa: E402

CPU_FALLBACK = "cuda:0 ran out of memory even at one slice per batch; finished on the CPU"
LABELS = [LabelSpec("myocardium", 205, [1.0, 0.5, 0.0]), LabelSpec("LV blood", 500, [1.0, 0.0, 0.0])]


def test_progress_reports_pumps_then_stops_at_cancel():
    events, token = [], CancelToken()
    callback = progress_callback(lambda f, m: events.append(("report", f, m)), token, lambda: events.append("pump"))
    callback(0.25, "slice 2 of 8")
    callback(1.5)  # clipped: an engine rounding past 1 does not break the bar
    assert events == [("report", 0.25, "slice 2 of 8"), "pump", ("report", 1.0, ""), "pump"]
    token.cancel()
    with pytest.raises(RunCancelled):
        callback(0.5)
    assert token.cancelled and token.is_set() and token()


def test_cancel_from_the_pump_stops_the_engine_loop_between_batches():
    """A click on Cancel arrives while the GUI processes events; the engine stops before its next batch."""
    token, batches_done = CancelToken(), []
    def pump():  # the user clicks Cancel while the second batch's progress is shown
        if len(batches_done) == 2:
            token.cancel()

    callback = progress_callback(lambda f, m: None, token, pump)

    def engine(batches, progress):
        for index in range(batches):
            batches_done.append(index)
            progress((index + 1) / batches)

    with pytest.raises(RunCancelled):
        engine(10, callback)
    assert batches_done == [0, 1]


def test_progress_text():
    assert progress_text(0.154, "slice 12 of 80") == "Translating: 15% (slice 12 of 80)"
    assert progress_text(1.0) == "Translating: 100%"


def test_segmentation_values_are_kept_and_indices_converted():
    values = Volume(np.array([[[0, 205], [500, 0]]], np.uint16))
    assert as_label_values(values, LABELS) is values
    indices = Volume(np.array([[[0, 1], [2, 0]]], np.uint8))
    np.testing.assert_array_equal(as_label_values(indices, LABELS).array, values.array)


def test_attention_maps_become_uint8():
    floats = Volume(np.array([[[0.0, 0.5], [1.0, 1.2]]], np.float32))
    np.testing.assert_array_equal(as_uint8_map(floats).array, [[[0, 128], [255, 255]]])
    as_bytes = Volume(np.zeros((1, 2, 2), np.uint8))
    assert as_uint8_map(as_bytes) is as_bytes
    with pytest.raises(ValueError, match="uint8 or float"):
        as_uint8_map(Volume(np.zeros((1, 2, 2), np.int32)))


def test_translate_calls_the_engine_like_the_cli_and_converts_its_result(tmp_path, monkeypatch):
    bundle = pytest.importorskip("sasan.bundle")
    from sasan.card import ModelCard

    card = ModelCard(
        name="tiny", modalities=["CT", "MR"], directions=[["CT", "MR"]],
        architecture={"num_maps": 2, "attention_widths": [4, 8], "encoder_widths": [4, 8, 8, 8],
                      "decoder_widths": [8, 4, 4], "head_width": 4, "spade_hidden": 4},
        context=3, image_size=32,
        normalization={m: {"config": {}, "reference": {}} for m in ("CT", "MR")},
        labels=[dataclasses.asdict(label) for label in LABELS],
    )
    model_path = bundle.save(tmp_path / "tiny.safetensors", card, bundle.expected_networks(card))
    volume = Volume(np.zeros((2, 2, 2), np.float32))
    calls = []

    def fake_translate_volume(volume_in, model, target, **options):
        calls.append((volume_in, model, target, options))
        if options["progress"] is not None:
            options["progress"](1.0, "done")
        engine_log = logging.getLogger("sasan.inference.translation")
        engine_log.warning("GPU out of memory: retrying with %d slices per batch", 4)
        engine_log.warning(CPU_FALLBACK)  # the engine logs its CPU fallback and lists it in notes
        return types.SimpleNamespace(
            translated=volume_in.with_array(np.ones((2, 2, 2), np.float32)),
            segmentation=volume_in.with_array(np.full((2, 2, 2), 2, np.uint8)),
            attention=[volume_in.with_array(np.full((2, 2, 2), 0.5, np.float32))],
            device="cpu", notes=[CPU_FALLBACK],
        )

    monkeypatch.setitem(sys.modules, "sasan.inference", types.SimpleNamespace(
        translate_volume=fake_translate_volume, TranslationCancelled=RuntimeError, InferenceError=ValueError))
    reports = []
    output = translate(volume, model_path, "MR", device="cpu", segment=True, attention=True,
                       progress=lambda fraction, message="": reports.append(fraction))
    (volume_in, model, target, options), = calls
    assert volume_in is volume and model == str(model_path) and target == "MR"
    assert options["device"] == "cpu" and options["segment"] and options["attention"]
    assert options["cancel"] is None
    assert reports == [1.0]
    assert output.labels == LABELS
    np.testing.assert_array_equal(output.segmentation.array, 500)
    np.testing.assert_array_equal(output.attention[0].array, 128)
    # The engine's warnings during the run and its notes reach the user once each, in order.
    assert output.device == "cpu"
    assert output.notes == ["GPU out of memory: retrying with 4 slices per batch", CPU_FALLBACK]
    assert translate(volume, model_path, "MR", segment=False, attention=False).segmentation is None
