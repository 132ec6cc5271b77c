"""Model files offered to the user: the shipped ones, and the card of any file, shown as HTML.

The card is read from the safetensors header with the standard library alone (8-byte little-endian
header length, then a JSON header whose ``__metadata__`` holds the card), so the module can show it
before torch is installed, and opening a file never runs code.
"""
from __future__ import annotations

import html
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

MODEL_SUFFIX = ".safetensors"
CARD_KEY = "sasan_model_card"  # sasan.bundle.CARD_KEY (not imported: sasan.bundle needs torch)
MAX_HEADER_BYTES = 100 * 1024 * 1024


class ModelFileError(ValueError):
    """Not a readable safetensors file, or no SASAN model card in it."""


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
    try:
        name = read_model_card(path).get("name")
    except ModelFileError:
        return path.stem
    return name if isinstance(name, str) and name else path.stem


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file's header (``{}`` when it has none)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file '{path}' does not exist")
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ModelFileError(f"'{path.name}' is too short to be a safetensors file")
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > min(MAX_HEADER_BYTES, path.stat().st_size - 8):
            raise ModelFileError(f"'{path.name}' is not a safetensors file (header length {header_length})")
        raw = handle.read(header_length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"'{path.name}' is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"'{path.name}' is not a safetensors file (its header is not a JSON object)")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ModelFileError(f"'{path.name}': the safetensors metadata is not a mapping")
    return {str(key): str(value) for key, value in metadata.items()}


def read_model_card(path: Path) -> dict:
    """The SASAN model card of a model file, as a dict (not validated: the engine does that on load)."""
    metadata = read_safetensors_metadata(path)
    if CARD_KEY not in metadata:
        raise ModelFileError(f"'{Path(path).name}' has no SASAN model card; is it a SASAN model file?")
    try:
        card = json.loads(metadata[CARD_KEY])
    except json.JSONDecodeError as error:
        raise ModelFileError(f"'{Path(path).name}': the model card is not valid JSON ({error})") from None
    if not isinstance(card, dict):
        raise ModelFileError(f"'{Path(path).name}': the model card is not a JSON object")
    return card


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


def _crop_summary(card: dict) -> str:
    """Which input modalities the model crops before translating (results outside the crop stay empty)."""
    described = []
    for modality, entry in (card.get("normalization") or {}).items():
        crop = entry.get("crop") if isinstance(entry, dict) else None
        if not isinstance(crop, dict) or crop.get("method", "none") == "none":
            continue
        if crop.get("method") == "foreground":
            threshold = "Otsu's" if crop.get("threshold") is None else str(crop["threshold"])
            described.append(f"{modality}: body box (threshold {threshold}) + {crop.get('margin_mm')} mm")
        else:
            described.append(f"{modality}: rows {crop.get('rows')}, columns {crop.get('columns')} of each slice")
    return "; ".join(described)


def model_card_html(card: dict, file_name: Optional[str] = None) -> str:
    """The card as HTML for a QTextBrowser: what it translates, what it segments, where it comes from."""
    title = html.escape(str(card.get("name") or file_name or "SASAN model"))
    parts = [f"<h3>{title}</h3>"]
    if card.get("description"):
        parts.append(f"<p>{html.escape(str(card['description']))}</p>")
    overview = {
        "Translates": ", ".join(f"{s} \u2192 {t}" for s, t in card.get("directions", [])) or "not stated",
        "Input": f"{card.get('context', '?')} adjacent slices, resampled to {card.get('image_size', '?')}\u00b2 "
                 f"({card.get('slicing_axis', 'axial')})",
        "Intended use": card.get("intended_use", "not stated"),
    }
    crops = _crop_summary(card)
    if crops:
        overview["Crop"] = crops
    if file_name:
        overview["File"] = file_name
    parts.append(f"<table>{_rows(overview)}</table>")
    labels = card.get("labels") or []
    if labels:
        items = "".join(
            f"<li>{_swatch(label.get('color'))}{html.escape(str(label.get('name')))} "
            f"(value {html.escape(str(label.get('value')))})</li>"
            for label in labels if isinstance(label, dict)
        )
        segmenters = ", ".join(card.get("segmenters") or []) or "attention heads only"
        parts.append(f"<p><b>Segments</b> (U-Net for: {html.escape(segmenters)}):</p><ul>{items}</ul>")
    for section in ("provenance", "evaluation"):
        if isinstance(card.get(section), dict) and card[section]:
            parts.append(f"<p><b>{section.capitalize()}</b></p><table>{_rows(card[section])}</table>")
    return "".join(parts)


def request_problem(card: dict, target: str, segment: bool, attention: bool) -> Optional[str]:
    """Why the model cannot do what is asked (a sentence for the user), or None when it can.

    Mirrors the checks ``translate_volume`` makes, so the Apply button can say so before a run.
    """
    directions = [tuple(d) for d in card.get("directions", []) if isinstance(d, (list, tuple)) and len(d) == 2]
    if not any(t == target for _, t in directions):
        offered = ", ".join(f"{s} \u2192 {t}" for s, t in directions) or "nothing"
        return f"This model does not translate to {target} (it offers {offered})."
    if segment and target not in (card.get("segmenters") or []):
        return f"This model has no segmenter for {target}: untick the segmentation."
    if attention and not (card.get("architecture") or {}).get("attention", True):
        return "This model has no attention module: untick the attention maps."
    return None
