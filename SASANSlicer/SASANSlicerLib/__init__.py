"""MRML glue of the SASANSlicer module: scene nodes <-> engine volumes, result nodes, model files.

Nothing in this package imports Qt or needs ``slicer.app``, so it runs (and is tested) with the
``slicer-core`` wheel.  The public entry point is ``TranslationLogic`` (usable from Slicer's Python
console); other submodules are imported explicitly by their users.  Slicer imports this package while
it starts, before the engine or torch may be importable, so only standard-library code is imported here.
"""
from .logic import TranslationLogic
from .outcome import TranslationNodes
from .progress import CancelToken, RunCancelled

__all__ = ["CancelToken", "RunCancelled", "TranslationLogic", "TranslationNodes"]
