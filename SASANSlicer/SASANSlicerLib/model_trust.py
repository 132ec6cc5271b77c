"""Model files from outside the shipped set: show their card and ask once before the first use.

A model file cannot run code (safetensors holds only tensors and a JSON card), but a model trained on
other data, or for another purpose, can produce convincing and wrong images.  So before a model that did
not come with SASAN is used for the first time, the module shows where it comes from (source, direction,
modalities, training data, intended use) and asks.  The decision is remembered per model by the SHA-256
tensor digest in its card (the engine checks that digest against the tensors on every load, so a file
whose tensors differ from the accepted ones cannot pass as accepted), under ``SASAN/AcceptedModels/`` in
the application settings (``qt.QSettings`` in Slicer; any object with ``value`` / ``setValue``).

Standard library only: this runs in the GUI before torch may be installed.  The cards are the engine's
``sasan.card.ModelCard`` (read by the caller, which makes the engine importable).
"""
from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol

if TYPE_CHECKING:
    from sasan.card import ModelCard

SETTINGS_GROUP = "SASAN/AcceptedModels"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
NO_DIGEST = "the model card has no valid SHA-256 tensor digest, so this file cannot be verified"


class Settings(Protocol):
    """The part of ``qt.QSettings`` used here."""

    def value(self, key: str, default: Any = None) -> Any: ...

    def setValue(self, key: str, value: Any) -> None: ...


def model_digest(card: ModelCard) -> Optional[str]:
    """The card's SHA-256 tensor digest (64 lowercase hex digits), or None when it has no valid one."""
    digest = card.tensor_sha256
    return digest if isinstance(digest, str) and _DIGEST.match(digest) else None


def settings_key(digest: str) -> str:
    """``"SASAN/AcceptedModels/<digest>"``: where the acceptance of one model is remembered."""
    return f"{SETTINGS_GROUP}/{digest}"


def confirmation_text(card: ModelCard, path: Path) -> str:
    """The question the module asks before the first use of ``path`` (plain text, one fact a line)."""
    facts = "\n".join(f"{label}: {text}" for label, text in card.summary().items())
    digest = model_digest(card)
    check = f"SHA-256 of the weights: {digest[:16]}..." if digest else f"Warning: {NO_DIGEST}."
    return (
        f"'{Path(path).name}' is not one of the models shipped with SASAN.\n\n{facts}\n{check}\n\n"
        "A model file cannot run code, but a model trained on other data or for another purpose can produce "
        "convincing and wrong images. Use it only if you trust where it comes from. Results are for "
        "research, not for diagnosis.\n\nUse this model? (You will not be asked again for this model.)"
    )


class ModelConsent:
    """Which model files need the user's confirmation, and remembering it.

    ``shipped_folders``: the folders of the models that come with SASAN (``model_files.model_folders``);
    ``settings``: where accepted digests are kept (``qt.QSettings()`` in Slicer).
    """

    def __init__(self, shipped_folders: list[Path], settings: Settings) -> None:
        self.shipped_folders = [Path(folder).resolve() for folder in shipped_folders]
        self.settings = settings

    def is_shipped(self, path: Path) -> bool:
        """True for a file directly inside one of the shipped model folders (links resolved)."""
        return Path(path).resolve().parent in self.shipped_folders

    def was_accepted(self, card: ModelCard) -> bool:
        """True once the user accepted a model with this card's tensor digest (False without a digest)."""
        digest = model_digest(card)
        return digest is not None and bool(self.settings.value(settings_key(digest), ""))

    def needs_confirmation(self, path: Path, card: ModelCard) -> bool:
        """True before the first use of a model that neither came with SASAN nor was accepted before."""
        return not self.is_shipped(path) and not self.was_accepted(card)

    def accept(self, path: Path, card: ModelCard) -> None:
        """Remember that the user accepted this model (value: the file name and when, for the curious);
        ``sasan.card.ModelFileError`` when its card has no valid digest to remember it by."""
        digest = model_digest(card)
        if digest is None:
            from sasan.card import ModelFileError

            raise ModelFileError(NO_DIGEST)
        when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.settings.setValue(settings_key(digest), f"{Path(path).name} accepted {when}")
