"""The model card: what a model file is and how to use it, read and checked with the standard library alone.

A model file is one ``.safetensors`` file: an 8-byte little-endian header length, a JSON header whose
``__metadata__`` holds the card (JSON, under ``sasan_model_card``), then the raw tensors (``sasan.bundle``).
The card says everything inference needs: directions, architecture, input context, in-plane size,
normalisation per modality, labels, provenance and a SHA-256 of the tensors, and what the model was
trained on (``domain``: a plain description and a fingerprint of the training scans per modality). No
torch here, so the Slicer module can list models, show their cards and say whether a request fits before
torch is installed, and reading a card never runs code.

``request_problem`` is the one answer to "can this model do this request" (the engine raises it as its
own error, the Slicer module shows it); ``ModelCard.summary`` is the one account of a model for its user.
"""
from __future__ import annotations

import dataclasses
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from .config import (
    ConfigError,
    CropConfig,
    CropError,
    LabelSpec,
    ModelConfig,
    NormalizationConfig,
    crop_from_dict,
    section_from_dict,
)

FORMAT_VERSION = 1
CARD_KEY = "sasan_model_card"
INTENDED_USE = "research; not for diagnosis"
# Clean-up steps a card may ask for, applied to every segmentation the model makes (see
# ``sasan.inference.postprocess``), with the type each option's value must have.
POSTPROCESSING_OPTIONS: dict[str, type] = {"largest_foreground_component": bool}
# What a modality's normalization entry may hold; "crop" is optional (older cards take whole slices).
NORMALIZATION_KEYS = {"config", "reference", "crop"}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own limit
# The card's ``domain``: what the model was trained on, per modality a plain description ("head CT") and a
# fingerprint of its training scans (``sasan.domain.fingerprint`` makes and scores it; the keys are checked here).
DOMAIN_KEYS = {"body_region", "modalities"}
DOMAIN_MODALITY_KEYS = {"description", "fingerprint"}
FINGERPRINT_METHOD = "tissue-layers-1"  # fingerprints of other methods (a later SASAN's) are kept, not checked
FINGERPRINT_KEYS = {"method", "bin_edges", "shells", "presence", "reference", "spread", "validation_max",
                    "validation", "margin", "slices"}
FINGERPRINT_VIEWS = {"tissues", "layers"}
NOT_STATED = "not stated"


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
    domain: dict = field(default_factory=dict)
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

    def source_for(self, target: str) -> str:
        """The modality this model translates into ``target`` (it must offer a direction to ``target``)."""
        return next(source for source, to in self.directions if to == target)

    def normalization_config(self, modality: str) -> NormalizationConfig:
        """How the volumes of ``modality`` are normalised before the networks see them."""
        try:
            return NormalizationConfig(**self.normalization[modality]["config"])
        except TypeError as error:
            raise ModelFileError(f"the model card's normalisation for {modality} is malformed ({error})") from None

    def reference(self, modality: str) -> dict:
        """The reference intensity map of ``modality`` (``IntensityMap.from_dict`` reads it): how the
        networks' [-1, 1] maps back to that modality's units."""
        return self.normalization[modality]["reference"]

    def crop(self, modality: str) -> CropConfig:
        """The in-plane crop of ``modality``'s volumes; none (whole slices) for cards written before crops."""
        try:
            return crop_from_dict(self.normalization[modality].get("crop", {}))
        except CropError as error:
            raise ModelFileError(f"the model card's crop for {modality} is malformed: {error}") from None

    def domain_description(self, modality: str) -> str:
        """What the model's ``modality`` scans were, in plain words ("head CT"); the modality's name if unstated."""
        return self.domain.get("modalities", {}).get(modality, {}).get("description") or modality

    def summary(self) -> dict[str, str]:
        """What a user should know before using the model, as label -> text (one line each)."""
        return {
            "Name": self.name,
            "Source": str(self.provenance.get("source", NOT_STATED)),
            "Translates": ", ".join(f"{source} -> {target}" for source, target in self.directions),
            "Modalities": ", ".join(self.modalities),
            "Input": f"{self.context} adjacent {self.slicing_axis} slices, resampled to "
                     f"{self.image_size} x {self.image_size} pixels",
            "Crop": "; ".join(filter(None, map(self._crop_text, self.modalities))) or "none (whole slices)",
            "Training data": str(self.provenance.get("data", NOT_STATED)),
            "Intended use": self.intended_use or NOT_STATED,
            "Structures": ", ".join(label["name"] for label in self.labels) or "none",
            "Segmenter for": ", ".join(self.segmenters) or "none",
            "Description": self.description or NOT_STATED,
            "Input check": self._domain_text(),
        }

    def _domain_text(self) -> str:
        checked = [m for m in self.modalities
                   if self.domain.get("modalities", {}).get(m, {}).get("fingerprint")]
        if not checked:
            return "none (inputs are not compared with the training scans)"
        return "warns when an input does not look like the " + ", ".join(
            f"{self.domain_description(m)} scans ({m})" for m in checked) + " it was trained on"

    def _crop_text(self, modality: str) -> str:
        crop = self.crop(modality)
        if crop.method == "foreground":
            threshold = "Otsu's" if crop.threshold is None else str(crop.threshold)
            return f"{modality}: body box (threshold {threshold}) + {crop.margin_mm} mm"
        if crop.method == "box":
            return f"{modality}: rows {crop.rows}, columns {crop.columns} of each slice"
        return ""

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
        need(isinstance(self.description, str) and isinstance(self.intended_use, str),
             "description and intended_use must be strings")
        need(isinstance(self.provenance, dict) and isinstance(self.evaluation, dict),
             "provenance and evaluation must be objects")
        need(isinstance(self.postprocessing, dict), "postprocessing must be an object")
        problem = _domain_problem(self.domain, self.modalities)
        need(problem is None, f"domain: {problem}")
        for option, value in self.postprocessing.items():
            known = ", ".join(sorted(POSTPROCESSING_OPTIONS))
            need(option in POSTPROCESSING_OPTIONS, f"unknown postprocessing option {option!r} (known: {known})")
            kind = POSTPROCESSING_OPTIONS[option]
            need(type(value) is kind, f"postprocessing.{option} must be a {kind.__name__}; got {value!r}")


def _domain_problem(domain: object, modalities: list[str]) -> Optional[str]:
    """What is malformed in a card's ``domain`` entry, or None."""
    if not isinstance(domain, dict) or not set(domain) <= DOMAIN_KEYS:
        return f"must be an object with keys among {sorted(DOMAIN_KEYS)}"
    if not isinstance(domain.get("body_region", ""), str):
        return "body_region must be a string"
    entries = domain.get("modalities", {})
    if not isinstance(entries, dict) or not set(entries) <= set(modalities):
        return "modalities must map modalities of this model to their entries"
    for modality, entry in entries.items():
        if not isinstance(entry, dict) or not set(entry) <= DOMAIN_MODALITY_KEYS:
            return f"modalities.{modality} must be an object with keys among {sorted(DOMAIN_MODALITY_KEYS)}"
        if not isinstance(entry.get("description", ""), str):
            return f"modalities.{modality}.description must be a string"
        if "fingerprint" in entry:
            problem = _fingerprint_problem(entry["fingerprint"])
            if problem:
                return f"modalities.{modality}.fingerprint: {problem}"
    return None


def _fingerprint_problem(fingerprint: object) -> Optional[str]:
    def numbers(values: object, count: int) -> bool:
        return isinstance(values, list) and len(values) == count and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)

    if not isinstance(fingerprint, dict) or not isinstance(fingerprint.get("method"), str):
        return "must be an object naming its method"
    if fingerprint["method"] != FINGERPRINT_METHOD:
        return None  # made by another SASAN version: the input check skips it and says so
    if set(fingerprint) != FINGERPRINT_KEYS:
        return f"needs exactly the keys {sorted(FINGERPRINT_KEYS)}"
    edges, shells = fingerprint["bin_edges"], fingerprint["shells"]
    if not numbers(edges, len(edges) if isinstance(edges, list) else -1) or edges != sorted(edges):
        return "bin_edges must be increasing numbers"
    for key in ("shells", "slices"):
        if type(fingerprint[key]) is not int or fingerprint[key] < 1:
            return f"{key} must be a positive integer"
    columns = (len(edges) + 1) * (1 + shells)
    reference = fingerprint["reference"]
    if not isinstance(reference, list) or not reference or not all(numbers(row, columns) for row in reference):
        return f"reference must be a non-empty list of profiles of {columns} numbers"
    if not numbers(fingerprint["spread"], columns) or min(fingerprint["spread"]) <= 0:
        return f"spread must be {columns} positive numbers"
    worst = fingerprint["validation_max"]
    if not isinstance(worst, dict) or set(worst) != FINGERPRINT_VIEWS or not numbers(list(worst.values()), 2) \
            or min(worst.values()) <= 0:
        return f"validation_max must give a positive number for each of {sorted(FINGERPRINT_VIEWS)}"
    for key in ("margin", "presence"):
        if not numbers([fingerprint[key]], 1) or fingerprint[key] <= 0:
            return f"{key} must be a positive number"
    if not isinstance(fingerprint["validation"], str):
        return "validation must be a string"
    return None


def read_safetensors_metadata(path: Union[str, Path]) -> dict[str, str]:
    """The string metadata of a safetensors file's header (``{}`` when it has none); reads the header only."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file '{path}' does not exist")
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ModelFileError(f"'{path}' is not a safetensors model file (shorter than its 8-byte header length)")
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > min(MAX_HEADER_BYTES, path.stat().st_size - 8):
            raise ModelFileError(f"'{path}' is not a safetensors model file (header length {header_length})")
        raw = handle.read(header_length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"'{path}' is not a safetensors model file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"'{path}' is not a safetensors model file (its header is not a JSON object)")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ModelFileError(f"'{path}' is not a safetensors model file (its metadata is not a mapping)")
    return {str(key): str(value) for key, value in metadata.items()}


def read_card(path: Union[str, Path]) -> ModelCard:
    """The validated model card of a model file (reads only the file's header; the tensors are
    ``sasan.bundle.load``'s, which also checks them against the card's digest)."""
    metadata = read_safetensors_metadata(path)
    if CARD_KEY not in metadata:
        raise ModelFileError(f"'{path}' has no SASAN model card (metadata key {CARD_KEY!r})")
    return ModelCard.from_json(metadata[CARD_KEY])


def request_problem(card: ModelCard, target: str, *, source: Optional[str] = None, segment: bool,
                    attention: bool) -> Optional[str]:
    """Why the model cannot translate to ``target`` (from ``source``; by default from whichever modality
    it translates to ``target``), with a segmentation and attention maps when asked: one sentence, or
    None when it can."""
    offered = ", ".join(f"{s} -> {t}" for s, t in card.directions)
    if source is None and not any(t == target for _, t in card.directions):
        return f"model {card.name!r} does not translate to {target} (it offers {offered})"
    if source is not None and not card.supports(source, target):
        return f"model {card.name!r} does not translate {source} to {target} (it offers {offered})"
    if segment and target not in card.segmenters:
        have = f"it has one for {', '.join(card.segmenters)}" if card.segmenters else "it has none"
        return f"model {card.name!r} has no segmenter for {target} ({have}): leave the segmentation out"
    if attention and not card.model_config.attention:
        return f"model {card.name!r} has no attention module: leave the attention maps out"
    return None
