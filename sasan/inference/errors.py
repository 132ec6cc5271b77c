"""The two ways a translation ends early."""
from __future__ import annotations


class TranslationCancelled(RuntimeError):
    """The caller's cancel flag was set; the run stopped between batches and returned nothing."""


class InferenceError(ValueError):
    """A request that cannot be carried out (wrong modality, unusable volume, no GPU, ...), said plainly."""
