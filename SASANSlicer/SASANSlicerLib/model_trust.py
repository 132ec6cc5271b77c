"""Model files from outside the shipped set: show their card and ask once before the first use.

A model file cannot run code (safetensors holds only tensors and a JSON card), but a model trained on
other data, or for another purpose, can produce convincing and wrong images.  So before a model that did
not come with SASAN is used for the first time, the module shows where it comes from (source, direction,
modalities, training data, intended use) and asks.  The decision is remembered per model by the SHA-256
tensor digest in its card (the engine checks that digest against the tensors on every load, so a file
whose tensors differ from the accepted ones cannot pass as accepted), under ``SASAN/AcceptedModels/`` in
the application settings (``qt.QSettings`` in Slicer; any object with ``value`` / ``setValue``).

Standard library only: this runs in the GUI before torch may be installed.
"""
from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any, Protocol

from .models import ModelFileError

SETTINGS_GROUP = "SASAN/AcceptedModels"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
NOT_STATED = "not stated"


class Settings(Protocol):
    """The part of ``qt.QSettings`` used here."""

    def value(self, key: str, default: Any = None) -> Any: ...

    def setValue(self, key: str, value: Any) -> None: ...


def model_digest(card: dict) -> str:
    """The card's SHA-256 tensor digest (64 lowercase hex digits); ``ModelFileError`` when it has none."""
    digest = card.get("tensor_sha256")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ModelFileError("the model card has no valid SHA-256 tensor digest, so this file cannot be verified")
    return digest


def settings_key(digest: str) -> str:
    """``"SASAN/AcceptedModels/<digest>"``: where the acceptance of one model is remembered."""
    return f"{SETTINGS_GROUP}/{digest}"


def card_facts(card: dict) -> dict[str, str]:
    """What to know about a model before using it, as label -> text (the fields of ``sasan.bundle.card_summary``)."""
    provenance = card.get("provenance") if isinstance(card.get("provenance"), dict) else {}
    directions = [d for d in card.get("directions") or [] if isinstance(d, (list, tuple)) and len(d) == 2]
    labels = [label for label in card.get("labels") or [] if isinstance(label, dict)]
    return {
        "Name": str(card.get("name") or NOT_STATED),
        "Source": str(provenance.get("source", NOT_STATED)),
        "Translates": ", ".join(f"{s} -> {t}" for s, t in directions) or NOT_STATED,
        "Modalities": ", ".join(map(str, card.get("modalities") or [])) or NOT_STATED,
        "Training data": str(provenance.get("data", NOT_STATED)),
        "Intended use": str(card.get("intended_use") or NOT_STATED),
        "Structures": ", ".join(str(label.get("name")) for label in labels) or "none",
        "Description": str(card.get("description") or NOT_STATED),
    }


def confirmation_text(card: dict, path: Path) -> str:
    """The question the module asks before the first use of ``path`` (plain text, one fact a line)."""
    facts = "\n".join(f"{label}: {text}" for label, text in card_facts(card).items())
    try:
        digest = f"SHA-256 of the weights: {model_digest(card)[:16]}..."
    except ModelFileError as error:
        digest = f"Warning: {error}."
    return (
        f"'{Path(path).name}' is not one of the models shipped with SASAN.\n\n{facts}\n{digest}\n\n"
        "A model file cannot run code, but a model trained on other data or for another purpose can produce "
        "convincing and wrong images. Use it only if you trust where it comes from. Results are for "
        "research, not for diagnosis.\n\nUse this model? (You will not be asked again for this model.)"
    )


class ModelConsent:
    """Which model files need the user's confirmation, and remembering it.

    ``shipped_folders``: the folders of the models that come with SASAN (``models.model_folders``);
    ``settings``: where accepted digests are kept (``qt.QSettings()`` in Slicer).
    """

    def __init__(self, shipped_folders: list[Path], settings: Settings) -> None:
        self.shipped_folders = [Path(folder).resolve() for folder in shipped_folders]
        self.settings = settings

    def is_shipped(self, path: Path) -> bool:
        """True for a file directly inside one of the shipped model folders (links resolved)."""
        return Path(path).resolve().parent in self.shipped_folders

    def was_accepted(self, card: dict) -> bool:
        """True once the user accepted a model with this card's tensor digest (False without a digest)."""
        try:
            return bool(self.settings.value(settings_key(model_digest(card)), ""))
        except ModelFileError:
            return False

    def needs_confirmation(self, path: Path, card: dict) -> bool:
        """True before the first use of a model that neither came with SASAN nor was accepted before."""
        return not self.is_shipped(path) and not self.was_accepted(card)

    def accept(self, path: Path, card: dict) -> None:
        """Remember that the user accepted this model (value: the file name and when, for the curious)."""
        when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.settings.setValue(settings_key(model_digest(card)), f"{Path(path).name} accepted {when}")
