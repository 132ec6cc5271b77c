"""SASAN: self-attentive spatial adaptive normalisation for cross-modality translation and segmentation."""

__version__ = "0.1.0"
