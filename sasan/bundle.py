"""The model file's tensors: one ``.safetensors`` file holding every network plus a JSON model card.

Safetensors stores raw tensors and a string header, so opening a model file never runs code (no
pickle). The card (``sasan.card``, in the header's metadata) says everything inference needs; this module
saves and loads the networks it describes, checking their names, shapes and SHA-256 against it on every
load.

Tensor names: ``attention.<MOD>.*`` (one attention module per domain, with its segmentation head),
``generator.<SRC>_to_<TGT>.*``, ``segmenter.<MOD>.*`` (the detached U-Nets, when trained).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from .atomic import atomic_file
from .card import CARD_KEY, ModelCard, ModelFileError, read_card, request_problem
from .models import build_segmenter
from .models.translator import attention_name, build_translator, generator_name, segmenter_name

log = logging.getLogger(__name__)



def expected_networks(card: ModelCard) -> dict[str, nn.Module]:
    """Freshly initialised networks with exactly the names and shapes the card promises."""
    config = card.model_config
    networks = build_translator(config, card.context, card.num_classes, card.modalities, card.directions)
    for modality in card.segmenters:
        networks[segmenter_name(modality)] = build_segmenter(config, card.context, card.num_classes)
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


def replace_card(path: Union[str, Path], card: ModelCard) -> Path:
    """Rewrite the model file ``path`` with ``card``, its tensors as stored, bit for bit (same names, dtypes and
    bytes: the card's ``tensor_sha256`` must match them). For cards that learn something after training."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = _read_tensors(path)
    card.validate()
    _check_tensors(card, tensors)
    if card.tensor_sha256 != tensor_digest(tensors):
        raise ModelFileError(f"{path}: the new card's tensor checksum does not match the file's tensors")
    with atomic_file(path) as temporary:
        save_file(tensors, str(temporary), metadata={CARD_KEY: card.to_json()})
    log.info("rewrote the model card of %s (tensors unchanged)", path)
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


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # safetensors raises several types for a bad file
        raise ModelFileError(f"'{path}' is not a safetensors model file ({error})") from None


@dataclass
class SASANModel:
    """A loaded model file: its card and ready networks in eval mode."""

    card: ModelCard
    networks: dict[str, nn.Module]

    def attention(self, modality: str) -> Optional[nn.Module]:
        return self.networks.get(attention_name(modality))

    def generator(self, source: str, target: str) -> nn.Module:
        problem = request_problem(self.card, target, source=source, segment=False, attention=False)
        if problem:
            raise ModelFileError(problem)
        return self.networks[generator_name(source, target)]

    def segmenter(self, modality: str) -> Optional[nn.Module]:
        return self.networks.get(segmenter_name(modality))

    def to(self, device: Union[str, torch.device]) -> "SASANModel":
        for module in self.networks.values():
            module.to(device)
        return self


def load(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> SASANModel:
    """Open, verify (card, tensor names and shapes, SHA-256) and build a model file. Never unpickles."""
    card = read_card(path)
    tensors = _read_tensors(Path(path))
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
