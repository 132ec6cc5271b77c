"""Write the bad-input corpus into a folder: every broken volume, model file, dataset and configuration.

Nothing of it is committed: ``make_corpus(root)`` generates it all in a few seconds at test time.

Layout under ``root``::

    volumes/    one file per kind of broken (or merely odd) image, and ``good.nii.gz``
    models/     ``good.safetensors`` (CT <-> MR, MR U-Net) and damaged, foreign or hostile model files
    datasets/   folder-layout datasets (``<name>/<CT|MR>/images|labels/<id>.nii.gz``)
    configs/    run configurations (YAML) pointing at those datasets with absolute paths
    runs/good/  a finished one-step training run of ``configs/good.yaml`` (for ``sasan export``)

The pickle files carry a payload that would create ``root/PWNED`` if anything unpickled them.
"""
from __future__ import annotations

import copy
import dataclasses
import gzip
import io
import json
import pathlib
import pickle
import struct
from pathlib import Path
from typing import Callable

import fixtures
import nibabel
import numpy as np
import SimpleITK as sitk
import torch
import yaml

from sasan import bundle
from sasan.card import CARD_KEY, ModelCard

SHAPE = (4, 20, 24)                 # (z, y, x) of every small volume
SPACING = (1.2, 1.1, 2.5)           # (x, y, z) mm
HUGE_SIZE = (2000, 2000, 2000)      # what the huge headers claim; no voxel data follows them
PWNED = "PWNED"                     # created only if a pickle payload runs

# The model files' tiny networks, with discriminators: also the ``model`` section of the corpus's run configurations.
TINY_ARCHITECTURE = {**fixtures.TINY_ARCHITECTURE, **fixtures.TINY_DISCRIMINATORS}
LABEL = {"name": "blob", "value": 1, "color": [0.9, 0.2, 0.2]}
CT_NORMALIZATION = {"method": "window", "percentiles": [2.0, 98.0], "window": [-200.0, 400.0]}
MR_NORMALIZATION = {"method": "percentile", "percentiles": [1.0, 99.0], "window": [-1000.0, 1000.0]}


class _Payload:
    """Unpickling this calls ``Path(target).touch()``: proof that a loader ran code from the file."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.target),)


def make_corpus(root: Path) -> Path:
    """Generate the whole corpus into ``root`` (created); returns ``root``."""
    root = Path(root)
    _volumes(root / "volumes")
    _models(root / "models", root / PWNED)
    _datasets(root / "datasets")
    _configs(root / "configs", root / "datasets")
    _train(root / "configs" / "good.yaml", root / "runs" / "good")
    return root


# --- volumes -----------------------------------------------------------------------------------------
def blob_labels(shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """uint8 ``(z, y, x)``: 1 inside an off-centre ellipsoid, 0 elsewhere."""
    k, j, i = np.indices(shape, dtype=np.float32)
    z, y, x = (s / 2.0 for s in shape)
    inside = ((i - x * 0.9) / (x * 0.5)) ** 2 + ((j - y * 1.1) / (y * 0.45)) ** 2 + ((k - z) / max(z, 1.0)) ** 2 < 1
    return inside.astype(np.uint8)


def ct_array(seed: int = 0, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """float32 HU-like ``(z, y, x)``: the blob at 200, the rest at -50, with noise."""
    noise = np.random.default_rng(seed).normal(0.0, 10.0, shape)
    return (np.where(blob_labels(shape), 200.0, -50.0) + noise).astype(np.float32)


def mr_array(seed: int = 0, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """float32 MR-like ``(z, y, x)``: the blob at 800, the rest at 250, with noise."""
    noise = np.random.default_rng(seed + 100).normal(0.0, 15.0, shape)
    return (np.where(blob_labels(shape), 800.0, 250.0) + noise).astype(np.float32)


def write_image(path: Path, array: np.ndarray, *, origin=(0.0, 0.0, 0.0), vector: bool = False,
                compress: bool = True) -> Path:
    """Write ``array`` with SimpleITK (``vector``: the last axis holds components)."""
    image = sitk.GetImageFromArray(array, isVector=vector)
    dimension = image.GetDimension()
    image.SetSpacing((SPACING + (1.0,))[:dimension])
    image.SetOrigin((tuple(origin) + (0.0,))[:dimension])
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def write_four_d(path: Path) -> Path:
    """Two time points of a CT-like volume as one 4D image (SimpleITK ``JoinSeries``)."""
    frames = [sitk.GetImageFromArray(ct_array(seed)) for seed in (1, 2)]
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.JoinSeries(frames), str(path))
    return path


def _cut(source: Path, target: Path, keep: float) -> None:
    """``target``: the first ``keep`` fraction of ``source``'s bytes; ``source`` is deleted."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    source.unlink()


def _volumes(folder: Path) -> None:
    folder.mkdir(parents=True)
    write_image(folder / "good.nii.gz", ct_array())
    (folder / "zero_bytes.nii.gz").write_bytes(b"")
    (folder / "zero_bytes.nrrd").write_bytes(b"")
    _cut(write_image(folder / ".good.nii.gz", ct_array()), folder / "truncated.nii.gz", 0.5)
    # So short that nibabel cannot parse its header while ITK still can (and used to read zeros).
    _cut(write_image(folder / ".small.nii.gz", ct_array(shape=(4, 8, 8))), folder / "truncated_small.nii.gz", 0.5)
    _cut(write_image(folder / ".raw.nii", ct_array(), compress=False), folder / "truncated.nii", 0.9)
    _cut(write_image(folder / ".raw.nrrd", ct_array(), compress=False), folder / "truncated_raw.nrrd", 0.9)
    _cut(write_image(folder / ".gz.nrrd", ct_array(), compress=True), folder / "truncated_gzip.nrrd", 0.9)
    (folder / "text.nii.gz").write_text("patient list\nnot an image, only a name ending in .nii.gz\n" * 8)
    write_image(folder / "slice_2d.nii.gz", ct_array()[0])
    four_d = np.stack([ct_array(1), ct_array(2)], axis=-1).transpose(2, 1, 0, 3)  # (x, y, z, t) for nibabel
    nibabel.save(nibabel.Nifti1Image(four_d, np.diag([*SPACING, 1.0])), str(folder / "time_4d.nii.gz"))
    write_four_d(folder / "time_4d.nrrd")
    rgb = np.stack([blob_labels() * 200, np.full(SHAPE, 40), np.full(SHAPE, 90)], axis=-1).astype(np.uint8)
    write_image(folder / "rgb.nrrd", rgb, vector=True)
    write_image(folder / "vector.nii.gz", np.random.default_rng(3).normal(size=SHAPE + (3,)).astype(np.float32),
                vector=True)
    nan = ct_array()
    nan[2, 5, 7] = np.nan
    write_image(folder / "nan.nii.gz", nan)
    inf = ct_array()
    inf[1, 3, 3] = np.inf
    write_image(folder / "inf.nrrd", inf)
    write_image(folder / "constant.nii.gz", np.full(SHAPE, 42.0, np.float32))
    write_image(folder / "one_slice.nii.gz", ct_array()[:1])
    extremes = np.where(blob_labels() > 0, np.iinfo(np.uint64).max, 0).astype(np.uint64)
    write_image(folder / "uint64_extremes.nii.gz", extremes)
    signed = np.where(blob_labels() > 0, np.iinfo(np.int64).max, np.iinfo(np.int64).min).astype(np.int64)
    write_image(folder / "int64_extremes.nrrd", signed)
    _huge_headers(folder)


def _huge_headers(folder: Path) -> None:
    """Headers claiming 2000³ int16 voxels (16 GB) with no voxel data after them."""
    header = nibabel.Nifti1Header()
    header.set_data_shape(HUGE_SIZE)
    header.set_data_dtype(np.int16)
    header.set_qform(np.diag([*SPACING, 1.0]), code=1)
    block = header.binaryblock + b"\0" * 4  # the 4-byte extension flag, then data would start at 352
    (folder / "huge.nii").write_bytes(block)
    with gzip.open(folder / "huge.nii.gz", "wb") as stream:
        stream.write(block)
    (folder / "huge.nrrd").write_text(
        "NRRD0004\ntype: short\ndimension: 3\nsizes: 2000 2000 2000\nspacings: 1.2 1.1 2.5\n"
        "encoding: raw\nendian: little\n\n")


# --- model files -------------------------------------------------------------------------------------
def tiny_card(name: str = "corpus_tiny", directions=(("CT", "MR"), ("MR", "CT"))) -> ModelCard:
    """A valid card for 16² tiny networks, CT <-> MR, one structure, an MR U-Net."""
    reference = {"CT": {"method": "window", "low": -200.0, "high": 400.0, "mean": 0.0, "std": 1.0},
                 "MR": {"method": "percentile", "low": 200.0, "high": 900.0, "mean": 400.0, "std": 150.0}}
    return fixtures.tiny_card(
        name=name, directions=[list(d) for d in directions], architecture=dict(TINY_ARCHITECTURE), image_size=16,
        normalization={"CT": {"config": CT_NORMALIZATION, "reference": reference["CT"]},
                       "MR": {"config": MR_NORMALIZATION, "reference": reference["MR"]}},
        labels=[dict(LABEL)], segmenters=["MR"], provenance={"data": "bad-input corpus"})


def _random_tensors(card: ModelCard) -> dict[str, torch.Tensor]:
    """The freshly initialised (seeded) networks the card describes, as a flat name -> tensor mapping."""
    torch.manual_seed(0)
    networks = bundle.expected_networks(card)
    return {f"{prefix}.{key}": value.detach().clone().contiguous()
            for prefix, module in networks.items() for key, value in module.state_dict().items()}


def _write_raw_model(path: Path, card: ModelCard, tensors: dict[str, torch.Tensor]) -> None:
    """A safetensors file with exactly these tensors; the card's checksum is recomputed over them."""
    from safetensors.torch import save_file

    card = dataclasses.replace(card, tensor_sha256=bundle.tensor_digest(tensors))
    save_file(tensors, str(path), metadata={CARD_KEY: card.to_json()})


def _edit_header(source: Path, target: Path, edit) -> None:
    """Copy a safetensors file, passing its JSON header through ``edit(header) -> header``."""
    data = source.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = edit(json.loads(data[8 : 8 + length]))
    raw = json.dumps(header).encode()
    target.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])


def _with_card(card_text: Callable[[dict], str]) -> Callable[[dict], dict]:
    """A header edit (for ``_edit_header``) replacing the model card by ``card_text(card)``."""
    def on_header(header: dict) -> dict:
        metadata = header["__metadata__"]
        metadata[CARD_KEY] = card_text(json.loads(metadata[CARD_KEY]))
        return header

    return on_header


def _models(folder: Path, pwned: Path) -> None:
    folder.mkdir(parents=True)
    card = tiny_card()
    tensors = _random_tensors(card)
    good = folder / "good.safetensors"
    _write_raw_model(good, card, tensors)
    _write_raw_model(folder / "mr_to_ct_only.safetensors", tiny_card("mr_to_ct", (("MR", "CT"),)),
                     _random_tensors(tiny_card("mr_to_ct", (("MR", "CT"),))))

    missing = dict(tensors)
    del missing[next(name for name in sorted(missing) if name.startswith("generator.CT_to_MR."))]
    _write_raw_model(folder / "missing_tensor.safetensors", card, missing)
    extra = dict(tensors, **{"generator.CT_to_MR.backdoor.weight": torch.zeros(3, 3)})
    _write_raw_model(folder / "extra_tensor.safetensors", card, extra)
    reshaped = dict(tensors)
    name = next(n for n in sorted(reshaped)
                if n.startswith("segmenter.MR.") and reshaped[n].dim() == 4 and reshaped[n].shape[-1] > 1)
    reshaped[name] = reshaped[name].reshape(reshaped[name].shape[0], -1, 1, 1).contiguous()
    _write_raw_model(folder / "reshaped_tensor.safetensors", card, reshaped)

    # Tensor bytes changed after export: the card's checksum no longer matches.
    data = bytearray(good.read_bytes())
    data[-7] ^= 0xFF
    (folder / "tampered_tensors.safetensors").write_bytes(bytes(data))
    # The card edited by hand: its checksum field, then its structure.
    _edit_header(good, folder / "tampered_checksum.safetensors",
                 _with_card(lambda card: json.dumps({**card, "tensor_sha256": "0" * 64})))
    _edit_header(good, folder / "tampered_card_field.safetensors",
                 _with_card(lambda card: json.dumps({**card, "execute_on_load": "rm -rf ~"})))
    _edit_header(good, folder / "tampered_card_json.safetensors", _with_card(lambda card: '{"name": "half a card'))
    _edit_header(good, folder / "no_card.safetensors", lambda h: {k: v for k, v in h.items() if k != "__metadata__"})

    (folder / "pickle.safetensors").write_bytes(pickle.dumps({"weights": _Payload(pwned)}))
    buffer = io.BytesIO()
    torch.save({"state_dict": _Payload(pwned)}, buffer)
    (folder / "torch_checkpoint.safetensors").write_bytes(buffer.getvalue())


# --- datasets ----------------------------------------------------------------------------------------
SUBJECTS = ("s1", "s2", "s3")


def _dataset(root: Path, *, ct_ids=SUBJECTS, mr_ids=SUBJECTS, replace=None) -> Path:
    """CT and MR folder domains, both with label files (CT's only score). ``replace`` maps
    ``"<modality>/<images|labels>"`` (every subject) or ``".../<id>"`` (one) to a function writing that file."""
    replace = replace or {}
    for modality, ids, image in (("CT", ct_ids, ct_array), ("MR", mr_ids, mr_array)):
        for number, subject in enumerate(ids):
            for kind, array in (("images", image(number)), ("labels", blob_labels())):
                path = root / modality / kind / f"{subject}.nii.gz"
                writer = replace.get(f"{modality}/{kind}/{subject}") or replace.get(f"{modality}/{kind}")
                if writer is None:
                    write_image(path, array)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    writer(path)
    return root


def _datasets(folder: Path) -> None:
    _dataset(folder / "good")
    (folder / "empty" / "CT").mkdir(parents=True)
    (folder / "empty" / "MR").mkdir(parents=True)
    _dataset(folder / "unpaired", mr_ids=("x1", "x2", "x3"))
    _dataset(folder / "single_subject", ct_ids=("s1",))
    nan = ct_array(1)
    nan[1, 2, 3] = np.nan
    _dataset(folder / "nan_image", replace={"CT/images": lambda path: write_image(path, nan)})
    wrong_shape = blob_labels((SHAPE[0], SHAPE[1] + 2, SHAPE[2]))
    _dataset(folder / "label_shape", replace={"MR/labels": lambda path: write_image(path, wrong_shape)})
    _dataset(folder / "label_geometry", replace={
        "CT/labels": lambda path: write_image(path, blob_labels(), origin=(0.0, 7.5, 0.0))})
    unknown = blob_labels() * 7  # the configuration lists value 1 only
    unknown[0, :2, :2] = 3
    _dataset(folder / "label_unknown_values", replace={"MR/labels/s2": lambda path: write_image(path, unknown)})
    _dataset(folder / "label_uint8_overflow")  # its configuration asks for value 820 in uint8 label files
    # s2 is a training subject (s3 is the test subject, which training never reads)
    _dataset(folder / "four_d_image", replace={"CT/images/s2": write_four_d})


# --- configurations ----------------------------------------------------------------------------------
def base_config(datasets: Path, dataset: str = "good") -> dict:
    """A complete, valid tiny run on ``datasets/<dataset>`` (1 adversarial step, 16² slices)."""
    root = datasets / dataset
    return {
        "name": "corpus_tiny",
        "data": {
            "source": {"modality": "CT", "layout": "folder", "root": str(root / "CT"), "labelled": False,
                       "normalization": dict(CT_NORMALIZATION)},
            "target": {"modality": "MR", "layout": "folder", "root": str(root / "MR"), "labelled": True,
                       "normalization": dict(MR_NORMALIZATION)},
            "image_size": 16, "test_fraction": 0.34, "labels": [dict(LABEL)],
        },
        "model": dict(TINY_ARCHITECTURE),
        "training": {"steps": 1, "pretrain_attention_steps": 0, "segmenter_steps": 0, "batch_size": 2,
                     "threads": 1, "deterministic": False, "device": "cpu", "checkpoint_every": 1,
                     "validate_every": 1000, "log_every": 1, "image_every": 1000},
    }


def _configs(folder: Path, datasets: Path) -> None:
    folder.mkdir(parents=True)

    def write(name: str, mapping) -> None:
        (folder / name).write_text(mapping if isinstance(mapping, str) else yaml.safe_dump(mapping, sort_keys=False))

    good = base_config(datasets)
    write("good.yaml", good)
    unknown_key = copy.deepcopy(good)
    unknown_key["training"]["stepz"] = 5
    write("unknown_key.yaml", unknown_key)
    wrong_type = copy.deepcopy(good)
    wrong_type["training"]["steps"] = "many"
    write("wrong_type.yaml", wrong_type)
    bad_path = copy.deepcopy(good)
    bad_path["data"]["source"]["root"] = str(datasets / "no_such_folder" / "CT")
    write("bad_path.yaml", bad_path)
    write("not_yaml.yaml", "data:\n  source: {modality: CT\n  target: [\n")
    write("empty_data.yaml", base_config(datasets, "empty"))
    paired = base_config(datasets, "unpaired")
    paired["training"]["setup"] = "paired"
    write("unpaired_as_paired.yaml", paired)
    for dataset in ("nan_image", "label_shape", "label_geometry", "label_unknown_values", "four_d_image",
                    "single_subject"):
        write(f"{dataset}.yaml", base_config(datasets, dataset))
    overflow = base_config(datasets, "label_uint8_overflow")
    overflow["data"]["labels"] = [{"name": "blob", "value": 1, "color": [0.9, 0.2, 0.2]},
                                  {"name": "myocardium", "value": 820, "color": [0.2, 0.2, 0.9]}]
    write("label_uint8_overflow.yaml", overflow)


def _train(config: Path, run_dir: Path) -> None:
    """Train ``config`` into ``run_dir`` (the trainer sets torch's thread count: it is put back)."""
    from sasan.config import load_config
    from sasan.training.trainer import Trainer

    threads = torch.get_num_threads()
    try:
        Trainer(load_config(config), run_dir).fit()
    finally:
        torch.set_num_threads(threads)
