"""The model file: one ``.safetensors`` file holding every network plus a JSON model card.

Safetensors stores raw tensors and a string header, so opening a model file never runs code (no
pickle). The card (in the header's metadata under ``sasan_model_card``) says everything inference needs:
directions, architecture, input context, in-plane size, normalisation per modality, labels, provenance
and a SHA-256 of the tensors, checked on every load.

Tensor names: ``attention.<MOD>.*`` (one attention module per domain, with its segmentation head),
``generator.<SRC>_to_<TGT>.*``, ``segmenter.<MOD>.*`` (the detached U-Nets, when trained).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from .atomic import atomic_file
from .config import ConfigError, CropError, LabelSpec, ModelConfig, crop_from_dict, section_from_dict
from .models import build_attention, build_generator, build_segmenter

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CARD_KEY = "sasan_model_card"
INTENDED_USE = "research; not for diagnosis"
# Clean-up steps a card may ask for, applied to every segmentation the model makes (see
# ``sasan.inference.postprocess``), with the type each option's value must have.
POSTPROCESSING_OPTIONS: dict[str, type] = {"largest_foreground_component": bool}
# What a modality's normalization entry may hold; "crop" is optional (older cards take whole slices).
NORMALIZATION_KEYS = {"config", "reference", "crop"}


class ModelFileError(ValueError):
    """A model file is missing, not a safetensors file, or its card or tensors do not validate."""


@dataclass
class ModelCard:
    """What a model file is and how to use it (JSON in the file's metadata)."""

    name: str
    modalities: list[str]
    directions: list[list[str]]
    architecture: dict
    context: int
    image_size: int
    normalization: dict
    labels: list[dict] = field(default_factory=list)
    segmenters: list[str] = field(default_factory=list)
    slicing_axis: str = "axial"
    spacing_policy: str = "pad-to-square-then-resize"
    description: str = ""
    intended_use: str = INTENDED_USE
    provenance: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)
    postprocessing: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    tensor_sha256: str = ""

    @property
    def model_config(self) -> ModelConfig:
        return section_from_dict(ModelConfig, self.architecture, "architecture")

    @property
    def label_specs(self) -> list[LabelSpec]:
        return [LabelSpec(**label) for label in self.labels]

    @property
    def num_classes(self) -> int:
        return 1 + len(self.labels)

    def supports(self, source: str, target: str) -> bool:
        return [source, target] in self.directions

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ModelFileError(f"the model card is not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise ModelFileError("the model card must be a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelFileError(
                f"unknown model file format version {version!r} (this SASAN reads version {FORMAT_VERSION})")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ModelFileError(f"the model card has unknown fields: {', '.join(unknown)}")
        required = [f.name for f in fields.values()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise ModelFileError(f"the model card lacks required fields: {', '.join(missing)}")
        card = cls(**data)
        card.validate()
        return card

    def validate(self) -> None:
        """Raise ``ModelFileError`` naming the first malformed field."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ModelFileError(f"malformed model card: {message}")

        need(isinstance(self.name, str) and bool(self.name), "name must be a non-empty string")
        need(isinstance(self.modalities, list) and len(self.modalities) == 2
             and all(isinstance(m, str) and m for m in self.modalities), "modalities must list two names")
        need(isinstance(self.directions, list) and len(self.directions) >= 1 and all(
            isinstance(d, list) and len(d) == 2 and d[0] in self.modalities and d[1] in self.modalities
            and d[0] != d[1] for d in self.directions), "directions must be [source, target] pairs of the modalities")
        need(isinstance(self.context, int) and self.context >= 1 and self.context % 2 == 1,
             "context must be an odd positive integer")
        need(isinstance(self.image_size, int) and self.image_size >= 16, "image_size must be an integer >= 16")
        need(isinstance(self.architecture, dict), "architecture must be an object")
        try:
            self.model_config
        except ConfigError as error:
            raise ModelFileError(f"malformed model card: {error}") from None
        need(isinstance(self.normalization, dict) and all(m in self.normalization for m in self.modalities),
             "normalization must have an entry for each modality")
        for modality in self.modalities:
            entry = self.normalization[modality]
            need(isinstance(entry, dict) and "config" in entry and "reference" in entry,
                 f"normalization.{modality} needs 'config' and 'reference'")
            unknown = sorted(set(entry) - NORMALIZATION_KEYS)
            need(not unknown, f"normalization.{modality} has unknown keys {unknown}")
            if "crop" in entry:  # optional: cards written before crops existed take whole slices
                try:
                    crop_from_dict(entry["crop"])
                except CropError as error:
                    need(False, f"normalization.{modality}: {error}")
        need(isinstance(self.labels, list), "labels must be a list")
        for index, label in enumerate(self.labels):
            need(isinstance(label, dict) and isinstance(label.get("name"), str)
                 and isinstance(label.get("value"), int) and isinstance(label.get("color"), list)
                 and len(label["color"]) == 3, f"labels[{index}] needs name, integer value and RGB color")
        need(isinstance(self.segmenters, list) and all(m in self.modalities for m in self.segmenters),
             "segmenters must name modalities of this model")
        need(isinstance(self.tensor_sha256, str), "tensor_sha256 must be a string")
        need(isinstance(self.postprocessing, dict), "postprocessing must be an object")
        for option, value in self.postprocessing.items():
            known = ", ".join(sorted(POSTPROCESSING_OPTIONS))
            need(option in POSTPROCESSING_OPTIONS, f"unknown postprocessing option {option!r} (known: {known})")
            kind = POSTPROCESSING_OPTIONS[option]
            need(type(value) is kind, f"postprocessing.{option} must be a {kind.__name__}; got {value!r}")


def expected_networks(card: ModelCard) -> dict[str, nn.Module]:
    """Freshly initialised networks with exactly the names and shapes the card promises."""
    config = card.model_config
    networks: dict[str, nn.Module] = {}
    if config.attention:
        for modality in card.modalities:
            networks[f"attention.{modality}"] = build_attention(config, card.context, card.num_classes)
    for source, target in card.directions:
        networks[f"generator.{source}_to_{target}"] = build_generator(config, card.context)
    for modality in card.segmenters:
        networks[f"segmenter.{modality}"] = build_segmenter(config, card.context, card.num_classes)
    return networks


def _flatten(networks: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{key}": value for prefix, module in networks.items()
            for key, value in module.state_dict().items()}


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # Flatten first: a 0-d tensor (batch-norm step counter) cannot be viewed as bytes directly.
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save(path: Union[str, Path], card: ModelCard, networks: dict[str, nn.Module], *,
         half: bool = False, overwrite: bool = False) -> Path:
    """Write ``networks`` (named as in the module docstring) and ``card`` atomically to ``path``.

    ``half`` stores floating-point tensors as fp16 (shipped models); they load back as fp32.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    tensors = {}
    for name, tensor in _flatten(networks).items():
        tensor = tensor.detach().cpu()
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        tensors[name] = tensor.contiguous()
    card = dataclasses.replace(card, tensor_sha256=tensor_digest(tensors))
    card.validate()
    _check_tensors(card, tensors)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise type(error)(f"{path}: cannot write into this folder ({error.strerror or error})") from None
    with atomic_file(path) as temporary:
        try:
            save_file(tensors, str(temporary), metadata={CARD_KEY: card.to_json()})
        except SafetensorError as error:  # how safetensors reports a full disk
            raise OSError(str(error)) from None
    log.info("wrote model file %s (%d tensors)", path, len(tensors))
    return path


def _check_tensors(card: ModelCard, tensors: dict[str, torch.Tensor]) -> None:
    expected = _flatten(expected_networks(card))
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing:
        raise ModelFileError(f"model file lacks {len(missing)} tensors the card needs, e.g. {missing[0]}")
    if extra:
        raise ModelFileError(f"model file has {len(extra)} tensors the card does not describe, e.g. {extra[0]}")
    for name, tensor in expected.items():
        if tuple(tensors[name].shape) != tuple(tensor.shape):
            raise ModelFileError(
                f"tensor {name} has shape {tuple(tensors[name].shape)}, the card's architecture needs "
                f"{tuple(tensor.shape)}")


def read_card(path: Union[str, Path]) -> ModelCard:
    """The validated model card alone (cheap: reads only the file's header)."""
    card, _ = _open(path, with_tensors=False)
    return card


def _open(path: Union[str, Path], with_tensors: bool) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()} if with_tensors else {}
    except ModelFileError:
        raise
    except Exception as error:  # safetensors raises several types for a bad header
        raise ModelFileError(f"{path} is not a safetensors model file ({error})") from None
    if CARD_KEY not in metadata:
        raise ModelFileError(f"{path} has no SASAN model card (metadata key {CARD_KEY!r})")
    return ModelCard.from_json(metadata[CARD_KEY]), tensors


@dataclass
class SASANModel:
    """A loaded model file: its card and ready networks in eval mode."""

    card: ModelCard
    networks: dict[str, nn.Module]

    def attention(self, modality: str) -> Optional[nn.Module]:
        return self.networks.get(f"attention.{modality}")

    def generator(self, source: str, target: str) -> nn.Module:
        if not self.card.supports(source, target):
            offered = ", ".join(f"{s}->{t}" for s, t in self.card.directions)
            raise ModelFileError(
                f"model {self.card.name!r} does not translate {source} to {target} (it offers {offered})")
        return self.networks[f"generator.{source}_to_{target}"]

    def segmenter(self, modality: str) -> Optional[nn.Module]:
        return self.networks.get(f"segmenter.{modality}")

    def to(self, device: Union[str, torch.device]) -> "SASANModel":
        for module in self.networks.values():
            module.to(device)
        return self


def load(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> SASANModel:
    """Open, verify (card, tensor names and shapes, SHA-256) and build a model file. Never unpickles."""
    card, tensors = _open(path, with_tensors=True)
    _check_tensors(card, tensors)
    if card.tensor_sha256 != tensor_digest(tensors):
        raise ModelFileError(f"{path}: tensor checksum does not match the model card (file altered or damaged)")
    networks = expected_networks(card)
    for prefix, module in networks.items():
        state = {key[len(prefix) + 1:]: value.float() if value.is_floating_point() else value
                 for key, value in tensors.items() if key.startswith(prefix + ".")}
        module.load_state_dict(state, strict=True)
        module.eval().to(device)
    return SASANModel(card, networks)


def card_summary(card: ModelCard) -> dict[str, Any]:
    """What a user should see before using a model: source, directions, data, intended use."""
    return {
        "name": card.name,
        "directions": [f"{s} -> {t}" for s, t in card.directions],
        "modalities": card.modalities,
        "structures": [label["name"] for label in card.labels],
        "training data": card.provenance.get("data", "not stated"),
        "source": card.provenance.get("source", "not stated"),
        "intended use": card.intended_use,
        "description": card.description,
    }
