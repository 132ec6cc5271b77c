"""The bad-input case table: what each front is given, the one message the user must see, what must not exist.

A CLI case runs ``sasan <argv>`` (in-process through ``sasan.cli.main``, or as a real process where
``process`` is set, to prove the exit code); a Slicer case runs ``TranslationLogic().translate`` on a
node made by ``node`` with a model file of the corpus. ``{corpus}`` is the generated corpus
(``make_corpus``), ``{out}`` a fresh folder per case, not created beforehand unless a ``fault`` says so.

Outcomes: ``refused`` (exit status 2, exactly one logged message, at ERROR, containing ``message``, no
traceback, nothing of ``absent`` left; ``context_warnings`` allows that many warnings before it),
``accepted`` (exit status 0, the files of ``produces`` written; with a ``message``, exactly one warning
containing it), ``debug`` (``--debug``: the traceback is shown).

Faults, set up by the test before the run: ``existing_output`` (a user's file already at the output),
``output_is_file`` (a file where the output folder should be), ``used_folder`` (a folder holding a user's
file), ``existing_run`` (a run folder holding a checkpoint), ``read_only`` (a folder nothing can be
written into: mode 0o555, and when the tests run as root, which ignores permission bits, creating a file
in it is made to fail with EACCES instead), ``disk_full`` (the volume writer fails with ENOSPC half-way through a file),
``checkpoint_disk_full`` (the checkpoint writer fails with ENOSPC half-way through), ``model_disk_full``
(the safetensors writer fails half-way through, as it reports a full disk), ``pickled_checkpoint`` (a
run folder whose newest checkpoint is a torch pickle that would run code).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .make_corpus import SHAPE, ct_array

REFUSED, ACCEPTED, DEBUG = "refused", "accepted", "debug"
FRONTS = ("translate", "train", "evaluate", "export", "phantom", "slicer")


@dataclass(frozen=True)
class Case:
    name: str
    front: str
    message: str                                   # fragment of the one message (case-sensitive)
    argv: tuple[str, ...] = ()                     # CLI arguments after ``sasan``
    node: Optional[Callable] = None                # Slicer: node(scene) -> input volume node
    model: str = "good"                            # Slicer: model file name under {corpus}/models
    logic_options: dict = field(default_factory=dict)
    outcome: str = REFUSED
    absent: tuple[str, ...] = ("{out}",)           # paths (globs) that must not exist afterwards
    produces: tuple[str, ...] = ()                 # paths that must exist afterwards (accepted cases)
    fault: Optional[str] = None
    process: bool = False
    memory_limit_mb: Optional[float] = None        # peak memory the case may add (header-only refusals)
    context_warnings: int = 0                      # warnings expected before a refusal's one error


# --- translate ---------------------------------------------------------------------------------------
OUTPUT = "{out}/translated.nii.gz"
SEGMENTATION = "{out}/segmentation.nii.gz"


def translate(volume: str, model: str = "good", *, to: str = "MR", extra: tuple[str, ...] = (),
              segment: bool = True) -> tuple[str, ...]:
    argv = ("translate", f"{{corpus}}/volumes/{volume}", "--model", f"{{corpus}}/models/{model}.safetensors",
            "--to", to, "-o", OUTPUT, "--device", "cpu", "--threads", "1", "--quiet")
    return argv + (("--segmentation", SEGMENTATION) if segment else ()) + extra


def refused_volume(name: str, volume: str, message: str, **options) -> Case:
    return Case(name, "translate", message, translate(volume), **options)


def refused_model(name: str, model: str, message: str, **options) -> Case:
    return Case(name, "translate", message, translate("good.nii.gz", model), **options)


TRANSLATE_CASES = [
    refused_volume("zero_byte_nifti", "zero_bytes.nii.gz", "the file is empty (0 bytes)"),
    refused_volume("zero_byte_nrrd", "zero_bytes.nrrd", "the file is empty (0 bytes)"),
    refused_volume("truncated_nifti_gz", "truncated.nii.gz", "truncated.nii.gz: the file is truncated"),
    refused_volume("truncated_small_nifti_gz", "truncated_small.nii.gz", "its gzip stream ends after"),
    refused_volume("truncated_nifti", "truncated.nii", "truncated.nii: the file is truncated"),
    refused_volume("truncated_raw_nrrd", "truncated_raw.nrrd", "could not be read; truncated?"),
    refused_volume("truncated_gzip_nrrd", "truncated_gzip.nrrd", "could not be read; truncated?"),
    refused_volume("text_named_nifti", "text.nii.gz", "not a readable image"),
    refused_volume("image_2d", "slice_2d.nii.gz", "a 2D image of size (24, 20); a 3D volume is needed"),
    refused_volume("time_series_4d_nifti", "time_4d.nii.gz", "a 4D image of size (24, 20, 4, 2)"),
    refused_volume("time_series_4d_nrrd", "time_4d.nrrd", "a 4D image of size (24, 20, 4, 2)"),
    refused_volume("rgb_nrrd", "rgb.nrrd", "3 values per voxel"),
    refused_volume("vector_nifti", "vector.nii.gz", "3 values per voxel"),
    refused_volume("nan_voxel_nifti", "nan.nii.gz", "1 voxel(s) are NaN or infinite (first at array index (2, 5, 7))"),
    refused_volume("inf_voxel_nrrd", "inf.nrrd", "1 voxel(s) are NaN or infinite (first at array index (1, 3, 3))"),
    refused_volume("huge_header_nifti", "huge.nii", "declares 8000000000 voxels", memory_limit_mb=100),
    refused_volume("huge_header_nifti_gz", "huge.nii.gz", "declares 8000000000 voxels", memory_limit_mb=100),
    refused_volume("huge_header_nrrd", "huge.nrrd", "declares 8000000000 voxels", memory_limit_mb=100),
    refused_volume("missing_input", "no_such_volume.nii.gz", "no such file or folder"),
    refused_model("model_for_the_other_direction", "mr_to_ct_only", "does not translate to MR (it offers MR -> CT)"),
    refused_model("model_missing_tensor", "missing_tensor", "model file lacks 1 tensors the card needs"),
    refused_model("model_extra_tensor", "extra_tensor", "tensors the card does not describe"),
    refused_model("model_reshaped_tensor", "reshaped_tensor", "the card's architecture needs"),
    refused_model("model_tampered_tensors", "tampered_tensors", "tensor checksum does not match the model card"),
    refused_model("model_tampered_checksum", "tampered_checksum", "tensor checksum does not match the model card"),
    refused_model("model_card_unknown_field", "tampered_card_field", "unknown fields: execute_on_load"),
    refused_model("model_card_broken_json", "tampered_card_json", "the model card is not valid JSON"),
    refused_model("model_without_card", "no_card", "has no SASAN model card"),
    refused_model("pickle_renamed_safetensors", "pickle", "is not a safetensors model file",
                  absent=("{out}", "{corpus}/PWNED")),
    refused_model("torch_checkpoint_renamed_safetensors", "torch_checkpoint", "is not a safetensors model file",
                  absent=("{out}", "{corpus}/PWNED")),
    refused_model("missing_model_file", "no_such_model", "does not exist"),
    Case("existing_output_without_overwrite", "translate", "exists; pass --overwrite to replace it",
         translate("good.nii.gz"), fault="existing_output", absent=("{out}/.*", SEGMENTATION)),
    Case("read_only_output_folder", "translate", "cannot write into", translate("good.nii.gz"),
         fault="read_only", absent=("{out}/*", "{out}/.*")),
    Case("disk_full_during_write", "translate", "No space left on device", translate("good.nii.gz"),
         fault="disk_full"),
    Case("unwritable_output_format", "translate", "cannot write this format",
         translate("good.nii.gz", extra=("-o", "{out}/translated.png"))),
    Case("constant_volume", "translate", "constant volume", translate("constant.nii.gz", to="CT", segment=False),
         outcome=ACCEPTED, absent=("{out}/.*",), produces=(OUTPUT,)),
    Case("one_slice_volume", "translate", "", translate("one_slice.nii.gz"), outcome=ACCEPTED,
         absent=("{out}/.*",), produces=(OUTPUT, SEGMENTATION)),
    Case("uint64_extreme_values", "translate", "", translate("uint64_extremes.nii.gz"), outcome=ACCEPTED,
         absent=("{out}/.*",), produces=(OUTPUT, SEGMENTATION)),
    Case("int64_extreme_values", "translate", "", translate("int64_extremes.nrrd"), outcome=ACCEPTED,
         absent=("{out}/.*",), produces=(OUTPUT, SEGMENTATION)),
    Case("control_good_volume", "translate", "", translate("good.nii.gz"), outcome=ACCEPTED,
         absent=("{out}/.*",), produces=(OUTPUT, SEGMENTATION)),
    # Real processes: the exit status and stderr as a user sees them.
    Case("process_zero_byte_nifti", "translate", "the file is empty (0 bytes)", translate("zero_bytes.nii.gz"),
         process=True),
    Case("process_debug_shows_traceback", "translate", "the file is empty (0 bytes)",
         ("--debug",) + translate("zero_bytes.nii.gz"), outcome=DEBUG, process=True),
]


# --- train -------------------------------------------------------------------------------------------
RUN = "{out}/run"


def train(config: str) -> tuple[str, ...]:
    return ("train", f"{{corpus}}/configs/{config}.yaml", "--output", RUN)


def refused_config(name: str, config: str, message: str, **options) -> Case:
    return Case(name, "train", message, train(config), **options)


TRAIN_CASES = [
    refused_config("config_unknown_key", "unknown_key", "training.stepz: unknown key"),
    refused_config("config_wrong_type", "wrong_type", "training.steps: expected an integer, got 'many'"),
    refused_config("config_bad_data_path", "bad_path", "data.source.root: folder"),
    refused_config("config_not_yaml", "not_yaml", "not valid YAML (line 3, column 9"),
    refused_config("config_missing", "no_such_config", "no_such_config.yaml' does not exist"),
    refused_config("empty_data_folder", "empty_data", "no image found"),
    refused_config("unpaired_folders_as_paired", "unpaired_as_paired",
                   "the paired set-up needs the same co-registered subjects in both domains"),
    refused_config("nan_training_image", "nan_image", "voxel(s) are NaN or infinite"),
    refused_config("label_shape_mismatch", "label_shape", "label array shape (4, 22, 24) (z, y, x) differs"),
    refused_config("label_geometry_mismatch", "label_geometry", "the label grid does not match the image's"),
    refused_config("label_values_beyond_uint8", "label_uint8_overflow",
                   "stores uint8 values (0..255), so label value 820 ('myocardium') can never occur"),
    refused_config("four_d_training_image", "four_d_image", "a 4D image of size (24, 20, 4, 2)"),
    Case("existing_run_without_resume", "train", "already holds checkpoints; pass --resume", train("good"),
         fault="existing_run", absent=(f"{RUN}/config.yaml",)),
    Case("output_folder_of_other_files", "train", "is not a SASAN run folder", train("good"),
         fault="used_folder", absent=(f"{RUN}/config.yaml",)),
    Case("resume_from_a_pickled_checkpoint", "train", "is not made of tensors, numbers and strings only",
         train("good") + ("--resume",), fault="pickled_checkpoint", absent=("{corpus}/PWNED", f"{RUN}/intensity.json")),
    Case("disk_full_during_checkpoint", "train", "No space left on device", train("good"),
         fault="checkpoint_disk_full", absent=(f"{RUN}/checkpoints/*", f"{RUN}/checkpoints/.*")),
    Case("label_values_not_in_the_list", "train", "label values not in the label list became background: 3, 7",
         train("label_unknown_values"), outcome=ACCEPTED, absent=(f"{RUN}/checkpoints/.*",),
         produces=(f"{RUN}/checkpoints/step_00000001.ckpt",)),
    Case("control_good_run", "train", "", train("good"), outcome=ACCEPTED,
         produces=(f"{RUN}/checkpoints/step_00000001.ckpt",), absent=(f"{RUN}/checkpoints/.*",)),
    Case("process_config_unknown_key", "train", "training.stepz: unknown key", train("unknown_key"), process=True),
]


# --- evaluate ----------------------------------------------------------------------------------------
EVALUATION = "{out}/evaluation"


def evaluate(config: str = "good", model: str = "good") -> tuple[str, ...]:
    return ("evaluate", f"{{corpus}}/configs/{config}.yaml", "--model", f"{{corpus}}/models/{model}.safetensors",
            "--output", EVALUATION, "--device", "cpu")


EVALUATE_CASES = [
    Case("evaluate_model_for_the_other_direction", "evaluate", "does not translate CT to MR (it offers MR -> CT)",
         evaluate(model="mr_to_ct_only")),
    Case("evaluate_pickle_model", "evaluate", "is not a safetensors model file", evaluate(model="pickle"),
         absent=("{out}", "{corpus}/PWNED")),
    Case("evaluate_tampered_model", "evaluate", "tensor checksum does not match", evaluate(model="tampered_tensors")),
    Case("evaluate_nan_held_out_volume", "evaluate", "voxel(s) are NaN or infinite", evaluate("nan_image")),
    Case("evaluate_label_geometry_mismatch", "evaluate", "the label grid does not match the image's",
         evaluate("label_geometry")),
    Case("evaluate_empty_test_split", "evaluate", "the test split is empty", evaluate("single_subject"),
         context_warnings=1),  # "only 1 subject(s): all go to training, none to test"
    Case("evaluate_output_is_a_file", "evaluate", "exists and is not a folder", evaluate(),
         fault="output_is_file", absent=()),
    Case("evaluate_used_output_folder", "evaluate", "already exists and is not empty; pass --overwrite",
         evaluate(), fault="used_folder", absent=(f"{EVALUATION}/results.md", f"{EVALUATION}/volumes")),
    Case("control_good_evaluation", "evaluate", "", evaluate(), outcome=ACCEPTED,
         produces=(f"{EVALUATION}/results.md", f"{EVALUATION}/results.csv"), absent=(f"{EVALUATION}/**/.*",)),
    Case("process_evaluate_pickle_model", "evaluate", "is not a safetensors model file", evaluate(model="pickle"),
         process=True, absent=("{out}", "{corpus}/PWNED")),
]


# --- export ------------------------------------------------------------------------------------------
MODEL = "{out}/model.safetensors"


def export(run: str = "{corpus}/runs/good") -> tuple[str, ...]:
    return ("export", run, "-o", MODEL)


EXPORT_CASES = [
    Case("export_existing_model_file", "export", "exists; pass overwrite=True (CLI: --overwrite)", export(),
         fault="existing_output", absent=("{out}/.*",)),
    Case("export_not_a_run_folder", "export", "is not a SASAN run folder (no config.yaml)",
         export("{corpus}/datasets/good")),
    Case("export_read_only_folder", "export", "cannot write into this folder", export(), fault="read_only",
         absent=("{out}/*", "{out}/.*")),
    Case("export_a_pickled_checkpoint", "export", "refused without running any of it", export(RUN),
         fault="pickled_checkpoint", absent=("{corpus}/PWNED", MODEL)),
    Case("export_disk_full", "export", "could not be written (", export(), fault="model_disk_full",
         absent=(MODEL, "{out}/.*")),
    Case("control_good_export", "export", "", export(), outcome=ACCEPTED, produces=(MODEL,), absent=("{out}/.*",)),
]


# --- phantom -----------------------------------------------------------------------------------------
PHANTOM = ("phantom", "{out}/phantom", "--subjects", "1", "--size", "24")

PHANTOM_CASES = [
    Case("phantom_into_a_used_folder", "phantom", "already exists and is not empty; pass --overwrite", PHANTOM,
         fault="used_folder", absent=("{out}/phantom/CT", "{out}/.*")),
    Case("phantom_output_is_a_file", "phantom", "exists and is not a folder", PHANTOM, fault="output_is_file",
         absent=("{out}/.*",)),
    Case("control_phantom", "phantom", "", PHANTOM, outcome=ACCEPTED, absent=("{out}/.*",),
         produces=("{out}/phantom/CT/images/ct_000.nii.gz", "{out}/phantom/MR/labels/mr_000.nii.gz")),
]


# --- Slicer logic ------------------------------------------------------------------------------------
def scalar_node(array: np.ndarray, name: str = "CT"):
    def make(scene):
        from SASANSlicerLib.nodes import node_from_volume

        from sasan.data.volume import Volume

        return node_from_volume(Volume(array, spacing=(1.2, 1.1, 2.5)), name, scene)

    return make


def vector_node(scene):
    import slicer

    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "RGB photo")
    slicer.util.updateVolumeFromArray(node, np.zeros(SHAPE + (3,), np.uint8))
    return node


def with_nan() -> np.ndarray:
    array = ct_array()
    array[1, 1, 1] = np.nan
    return array


GOOD_CT = scalar_node(ct_array())

SLICER_CASES = [
    Case("slicer_2d_image", "slicer", "is 2D (24 x 20 x 1 voxels)", node=scalar_node(ct_array()[:1])),
    Case("slicer_rgb_volume", "slicer", "several values per voxel", node=vector_node),
    Case("slicer_nan_voxels", "slicer", "volume 'CT': 1 voxel(s) are NaN or infinite", node=scalar_node(with_nan())),
    Case("slicer_pickle_model", "slicer", "is not a safetensors model file", node=GOOD_CT, model="pickle",
         absent=("{corpus}/PWNED",)),
    Case("slicer_tampered_model", "slicer", "tensor checksum does not match", node=GOOD_CT, model="tampered_tensors"),
    Case("slicer_model_for_the_other_direction", "slicer", "does not translate to MR", node=GOOD_CT,
         model="mr_to_ct_only"),
    Case("slicer_model_reshaped_tensor", "slicer", "the card's architecture needs", node=GOOD_CT,
         model="reshaped_tensor"),
    Case("slicer_missing_model_file", "slicer", "does not exist", node=GOOD_CT, model="no_such_model"),
    Case("slicer_no_model_selected", "slicer", "select a model file", node=GOOD_CT, model=""),
    Case("slicer_model_without_segmenter_for_target", "slicer", "no segmenter for CT", node=GOOD_CT,
         logic_options={"target": "CT"}),
]

CASES: list[Case] = TRANSLATE_CASES + TRAIN_CASES + EVALUATE_CASES + EXPORT_CASES + PHANTOM_CASES + SLICER_CASES
