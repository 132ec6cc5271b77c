"""One translation, run in a child process: ``python -m sasan_web.job REQUEST.json``.

The server never runs the engine in its own process: a run here builds its own MRML scene, loads the
input volume the server wrote, calls the Slicer module's public ``TranslationLogic().translate`` exactly as
the module does, and writes every node the run made (with its display settings and attributes) into the
request's output folder, listed in ``manifest.json``.  The server then loads them into its scene at once,
on its own event loop: a cancelled or failed run never touches the server's scene.

Protocol on stdout: the engine's progress lines (``sasan.progress``), then one outcome line, a JSON object
after ``PREFIX``: ``{"done": manifest}``, ``{"cancelled": true}`` or ``{"error": text}``; a line ``cancel``
on stdin (or stdin closing: the server went away) stops the run between two batches.
"""
from __future__ import annotations

import json
import sys
import threading
import traceback
from pathlib import Path

from sasan.progress import progress_line_printer

PREFIX = "@sasan-web "
MANIFEST = "manifest.json"
# Scalar volume display settings carried from the child's scene to the server's (colour table, fixed
# window, threshold: how the Slicer library chose to show a result).
_SCALAR_DISPLAY = ("AutoWindowLevel", "Window", "Level", "AutoThreshold", "LowerThreshold", "UpperThreshold",
                   "ApplyThreshold")


def emit(message: dict) -> None:
    sys.stdout.write(PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def display_settings(node) -> dict:
    """What of a volume's display node the server re-applies: colour node ID and scalar display settings."""
    display = node.GetDisplayNode()
    if display is None:
        return {}
    settings = {"ColorNodeID": display.GetColorNodeID()}
    if node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode"):
        settings.update({name: getattr(display, f"Get{name}")() for name in _SCALAR_DISPLAY})
    return settings


def attributes(node) -> dict:
    return {name: node.GetAttribute(name) for name in (node.GetAttributeNames() or ())}


def write_node(node, path: Path) -> None:
    """Write a volume (compressed NRRD) or segmentation (``.seg.nrrd``) node to ``path``."""
    import slicer

    storage = (slicer.vtkMRMLSegmentationStorageNode() if node.IsA("vtkMRMLSegmentationNode")
               else slicer.vtkMRMLVolumeArchetypeStorageNode())
    storage.SetFileName(str(path))
    storage.SetUseCompression(True)
    if not storage.WriteData(node):
        raise OSError(f"could not write '{node.GetName()}' to {path.name}")


def read_volume(scene, path: Path, name: str):
    """A scalar volume node read from ``path`` (written by the server from its input node)."""
    import slicer

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise OSError(f"the input volume could not be read from {path.name}")
    node.CreateDefaultDisplayNodes()
    return node


def _entry(role: str, node, path: Path) -> dict:
    return {"role": role, "file": path.name, "class": node.GetClassName(), "name": node.GetName(),
            "display": display_settings(node), "attributes": attributes(node)}


def write_results(result, output: Path) -> dict:
    """Every node of a ``TranslationNodes`` into ``output``; the manifest (also written as ``MANIFEST``)."""
    nodes = [_entry("volume", result.volumeNode, output / "translated.nrrd")]
    if result.segmentationNode is not None:
        nodes.append(_entry("segmentation", result.segmentationNode, output / "segmentation.seg.nrrd"))
    for index, node in enumerate(result.attentionNodes, start=1):
        nodes.append(_entry("attention", node, output / f"attention-{index}.nrrd"))
    if result.attentionOverviewNode is not None:
        nodes.append(_entry("attention_overview", result.attentionOverviewNode, output / "attention-all.nrrd"))
    by_role = [result.volumeNode, result.segmentationNode, *result.attentionNodes, result.attentionOverviewNode]
    for entry, node in zip(nodes, [n for n in by_role if n is not None]):
        write_node(node, output / entry["file"])
    manifest = {"nodes": nodes, "device": result.device, "notes": list(result.notes),
                "seconds": result.seconds, "summary": result.summary()}
    (output / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def _watch_stdin(token) -> None:
    for line in sys.stdin:
        if line.strip() == "cancel":
            break
    token.cancel()  # "cancel", or stdin closed: the server is gone


def run(request: dict) -> dict:
    from .lib import ensure_slicer_lib, new_scene

    ensure_slicer_lib()
    from SASANSlicerLib import CancelToken, TranslationLogic

    token = CancelToken()
    threading.Thread(target=_watch_stdin, args=(token,), daemon=True).start()
    scene, logics = new_scene()
    input_node = read_volume(scene, Path(request["input"]), request["name"])
    result = TranslationLogic().translate(
        input_node, request["model"], target=request["target"], device=request["device"],
        segment=request["segment"], attention=request["attention"],
        progress=progress_line_printer(), cancel=token)
    return write_results(result, Path(request["output"]))


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        from .lib import ensure_slicer_lib

        ensure_slicer_lib()
        from SASANSlicerLib import RunCancelled

        emit({"done": run(request)})
        return 0
    except RunCancelled:
        emit({"cancelled": True})
        return 0
    except (ValueError, ImportError, OSError, RuntimeError) as error:  # the library's user-facing errors
        traceback.print_exc()
        emit({"error": str(error) or type(error).__name__})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
