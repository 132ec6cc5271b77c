"""Inference: a volume in, the translated volume, its segmentation and attention maps out, on any device.

``translate_volume`` is the one entry point (the Slicer module and the CLI call it); see
``sasan.inference.translation`` for the steps and ``sasan.inference.fast_modules`` for the fast path.
"""
from .errors import InferenceError, TranslationCancelled
from .translation import TranslationResult, translate_volume

__all__ = ["InferenceError", "TranslationCancelled", "TranslationResult", "translate_volume"]
