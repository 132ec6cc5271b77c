"""Model files offered to the user: the shipped ones, listed by their cards' names, and a card as HTML.

Cards are read by the engine's ``sasan.card`` (standard library only: the header of the safetensors
file, no tensors), so the module can list and show models before torch is installed, and opening a file
never runs code.  ``sasan.card`` is imported when first needed, not here: Slicer imports this module
while it starts, before a source tree's engine is on ``sys.path``.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import environment

if TYPE_CHECKING:
    from sasan.card import ModelCard

MODEL_SUFFIX = ".safetensors"
MODULE_DIR = Path(__file__).resolve().parent.parent  # SASANSlicer/ (source tree) or the scripted-modules folder


@dataclass(frozen=True)
class ModelEntry:
    """A model file as listed in the model selector."""

    name: str
    path: Path


# The shipped real head CT <-> T1 MRI model: listed first, so it is what a new user gets.
DEFAULT_MODEL = "head_ct_mr"


def model_folders(module_dir: Path) -> list[Path]:
    """Existing folders of shipped model files (``sasan.resources.model_folders``: the installed extension's
    ``Resources/Models`` beside the modules, the source tree's, an installed wheel's), the engine made
    importable first (it is beside the module; both are standard library only)."""
    from .environment import ensure_engine_importable

    ensure_engine_importable(module_dir)
    from sasan.resources import model_folders as shipped_model_folders

    return shipped_model_folders(module_dir)


def find_models(folders: list[Path]) -> list[ModelEntry]:
    """Every ``*.safetensors`` file in ``folders`` (first folder wins for a file name), named by its model
    card's name (the file stem when the card cannot be read); the default model first, then by name."""
    entries: dict[str, ModelEntry] = {}
    for folder in folders:
        for path in sorted(folder.glob(f"*{MODEL_SUFFIX}")):
            entries.setdefault(path.stem, ModelEntry(_display_name(path), path))
    return sorted(entries.values(), key=lambda entry: (entry.path.stem != DEFAULT_MODEL, entry.name.lower()))


def _display_name(path: Path) -> str:
    environment.ensure_engine_importable(MODULE_DIR)
    from sasan.card import ModelFileError, read_card

    try:
        return read_card(path).name
    except ModelFileError:
        return path.stem


def _swatch(color) -> str:
    try:
        red, green, blue = (max(0, min(255, round(255 * float(c)))) for c in color)
    except (TypeError, ValueError):
        return ""
    return f'<span style="background-color:#{red:02x}{green:02x}{blue:02x}">&nbsp;&nbsp;&nbsp;&nbsp;</span> '


def _rows(mapping: dict) -> str:
    return "".join(
        f"<tr><td><b>{html.escape(str(key))}</b></td><td>{html.escape(_plain(value))}</td></tr>"
        for key, value in mapping.items()
    )


def _plain(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def model_card_html(card: ModelCard, file_name: str) -> str:
    """The card as HTML for a QTextBrowser: its summary (the structures as a list with their colours and
    label values), then the provenance and evaluation details."""
    summary = card.summary()
    title = summary.pop("Name")
    if card.labels:
        del summary["Structures"]
    parts = [f"<h3>{html.escape(title)}</h3>", f"<table>{_rows({**summary, 'File': file_name})}</table>"]
    if card.labels:
        items = "".join(f"<li>{_swatch(label['color'])}{html.escape(label['name'])} (value {label['value']})</li>"
                        for label in card.labels)
        parts.append(f"<p><b>Structures</b></p><ul>{items}</ul>")
    for section in ("provenance", "evaluation"):
        details = getattr(card, section)
        if details:
            parts.append(f"<p><b>{section.capitalize()}</b></p><table>{_rows(details)}</table>")
    return "".join(parts)
